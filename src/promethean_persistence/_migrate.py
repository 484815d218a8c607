"""Moving entries between stores without loss (SPEC §7): ``migrate`` and ``validate``.

Both stream the two primary stores in ascending id order, so memory stays flat however large
the store. Writes are upserts by id, so a retried or resumed batch never duplicates anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

from ._copy import Copier
from ._entries import check_limit, now_ms, portable
from ._errors import MigrationError, ValidationError
from ._progress import progress_callback
from ._telemetry import traced
from ._types import Record
from .drivers.base import ProbingEmbedder, Warmable

if TYPE_CHECKING:
    from ._store import SemanticStore

__all__ = ["migrate", "validate"]

log = logging.getLogger("promethean_persistence.migrate")
_LISTED = 100  #: ids listed per kind in reports; counts are always complete
_COMPARED = ("text", "timestamp", "metadata", "extra")


# -- migrate ---------------------------------------------------------------------------------


def same_space(a: SemanticStore, b: SemanticStore) -> bool:
    """Whether vectors of store ``a`` can be used as they are by store ``b`` (same model and
    a known, equal dimension). Returns a bool; raises nothing."""
    space = (a.embedder.model, a.embedder.dimensions)
    return space == (b.embedder.model, b.embedder.dimensions) and None not in space


def _copy_mode(source: SemanticStore, target: SemanticStore, reembed: Any) -> bool:
    """True when vectors are copied as they are, False when the target re-embeds."""
    if reembed not in ("auto", "always", "never", True, False):
        raise ValidationError(f"reembed must be 'auto', True or False, got {reembed!r}", field="reembed")
    if reembed in (True, "always"):
        return False
    if not same_space(source, target):
        if reembed in (False, "never"):
            why = (
                f"{source.embedder.model!r} ({source.embedder.dimensions} dims) and "
                f"{target.embedder.model!r} ({target.embedder.dimensions} dims) differ"
            )
            raise MigrationError(
                f"Cannot copy vectors as they are: {why}; use reembed='auto' or True", operation="migrate"
            )
        return False
    return True


def _identity(store: SemanticStore) -> str:
    """Names the source in the target's checkpoint (secrets left out), so a checkpoint left
    by a migration from somewhere else is not resumed."""
    c = store.config.redacted()
    driver = store.config.primary_driver
    where = {"sqlite": store.config.sqlite_path, "memory": id(store.primary)}.get(driver, c.get(driver))
    text = json.dumps([driver, store.name, where], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


async def _ready(store: SemanticStore) -> None:
    """The store's buffered writes landed and its manifest is written."""
    await store.settle()
    if store.embedder.dimensions is None:
        await cast(ProbingEmbedder, store.embedder).probe()
        await store.settle()


@traced("migrate", of=1)  # on the target store
async def migrate(
    source: SemanticStore,
    target: SemanticStore,
    *,
    batch_size: int = 500,
    reembed: Any = "auto",
    resume: bool = True,
    verify: bool = True,
    progress: bool | Callable[[int, int], None] = True,
    sample_size: int | None = 100,
    index_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Copy every entry of ``source`` into ``target`` and return a report (SPEC §7).

    Ids, timestamps, metadata and extra fields are kept. An entry that ``insert`` would refuse
    (a NUL character, a lone surrogate or an integer beyond 64 bits, stored before these rules)
    is not copied: it is listed in ``failed_ids`` and ``errors``, and the others are copied.
    Vectors are copied as they are when both stores use the same embedding model and
    dimension (``reembed="auto"``), otherwise the target embeds the texts. Progress is
    checkpointed in the target after every batch, so a run that was interrupted (even by
    ``kill -9``) resumes where it stopped. At the end the two stores are compared
    (``validate``); entries changed meanwhile are copied again.

    ``batch_size``: entries per batch (an int ≥ 1). ``reembed``: ``"auto"`` (copy vectors
    when the spaces match), True or ``"always"`` (the target embeds the texts), False or
    ``"never"`` (copy, or fail when the spaces differ). ``resume``: continue from the
    target's checkpoint of a run from the same source. ``verify``: compare the stores at the
    end. ``progress``: True for a bar on stderr, a callable taking ``(done, total)``, or
    False. ``sample_size``: entries whose vectors ``validate`` compares (None: all).
    ``index_progress``: the final indexing's ``(done, total)`` callback (default: as ``progress``).

    Returns a report dict: ``status`` is ``"ok"`` only if every entry arrived; with
    ``total``, ``migrated``, ``indexed``, ``pending``, ``failed``, ``failed_ids``,
    ``errors``, ``verification`` and timings (``entries_per_second`` leaves out a model load).
    Raises ``MigrationError`` when ``source`` is ``target``, vectors cannot be copied with
    ``reembed=False`` or the target stays unreachable (what was written stays; a rerun
    resumes), ``ValidationError`` for a bad ``batch_size`` or ``reembed``,
    ``EmbeddingMismatchError`` when the target's embedder answers in another space than its
    collection's, and ``BackendUnavailable`` or ``BackendRejected`` when a backend fails."""
    if source is target:
        raise MigrationError("source and target are the same store", operation="migrate")
    batch_size = check_limit(batch_size, "batch_size")
    started = time.perf_counter()
    await _ready(source)
    await _ready(target)
    copy = _copy_mode(source, target, reembed)
    identity = _identity(source)
    manifest = await target.primary.get_manifest() or target.manifest()  # read once; checkpoints replace it
    checkpoint = manifest.migration
    resumed = bool(resume and checkpoint and checkpoint.get("source") == identity)
    state: dict[str, Any] = (
        checkpoint
        if resumed and checkpoint
        else {"source": identity, "after": None, "failed": {}, "started_at": now_ms()}
    )
    total = await source.count()
    report_progress = progress_callback(progress, "migrate")
    done = state.get("done", 0)
    copier = Copier(target)
    failed: dict[str, str] = dict(state["failed"])
    if not copy and target.embedder.capabilities.warm:
        await cast(Warmable, target.embedder).warm()  # the model load is not copying time
    copying = time.perf_counter()

    # Reading the next batch overlaps with writing this one.
    queue: asyncio.Queue[tuple[list[Record], dict[str, Any]] | Exception | None] = asyncio.Queue(maxsize=2)

    async def read() -> None:
        try:
            async for batch in source.primary.iterate(batch_size, after=state["after"]):
                await queue.put((batch, await _vectors_of(source, batch, copy)))
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - raised by the writer
            await queue.put(exc)

    async def write() -> None:
        nonlocal done
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            batch, vectors = item
            for id_ in [r.id for r in batch if r.id in failed]:
                del failed[id_]
            movable = portable(batch, failed)
            if movable:
                failed.update(await copier.write(movable, vectors))
            done += len(batch)
            state.update(after=batch[-1].id, done=done, failed=_capped(failed))
            await target.primary.set_manifest(manifest.copy(migration=state))
            report_progress(min(done, total), total)

    reader = asyncio.create_task(read())
    try:
        await write()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    # One more try for the entries that failed, read afresh (gone from the source: not failed).
    for id_, record in zip(list(failed), await source.primary.get(list(failed)) if failed else []):
        del failed[id_]
        if record is not None and portable([record], failed):
            failed.update(await copier.write([record], await _vectors_of(source, [record], copy)))

    verification = None
    caught_up = 0
    await target.flush(progress=index_progress or progress_callback(progress, "indexing"))  # what its outbox owes
    if verify:
        verification = await validate(source, target, sample_size, _repair=(copier, copy, failed))
        caught_up = verification.pop("repaired")
        if caught_up:
            await target.flush()
            verification = await validate(source, target, sample_size)
    ok = not failed and (verification is None or verification["ok"])
    await target.primary.set_manifest(manifest.copy(migration=None if ok else {**state, "failed": _capped(failed)}))
    vectors = await target.vector_counts()
    ended = time.perf_counter()
    return {
        "status": "ok" if ok else "failed",
        "source": describe(source),
        "target": describe(target),
        "mode": "copy vectors" if copy else "re-embed",
        "total": total,
        "migrated": copier.counts["copied"],  # written by this run (a resumed run: since the checkpoint)
        "verified": verification is not None and verification["ok"],
        **copier.counts,
        "caught_up": caught_up,
        "resumed": resumed,
        "indexed": vectors["indexed"],
        "pending": vectors["pending"],
        "failed": len(failed) + vectors["failed"],  # not copied, or copied without the vector it needs
        "failed_ids": sorted(failed)[:_LISTED],
        "errors": [{"id": i, "error": e} for i, e in sorted(failed.items())[:_LISTED]],
        "seconds": round(ended - started, 3),
        "entries_per_second": round(copier.counts["copied"] / (ended - copying), 1) if ended > copying else None,
        "verification": verification,
    }


def _capped(failed: dict[str, str]) -> dict[str, str]:
    """A checkpoint lists at most 10,000 failures (the report counts them all)."""
    return dict(list(failed.items())[:10_000])


async def _vectors_of(source: SemanticStore, records: list[Record], copy: bool) -> dict[str, Any]:
    """The source's vectors that the target can use as they are."""
    model = source.embedder.model
    usable = [r.id for r in records if copy and r.vector_status == "synced" and r.embedding_model in (model, None)]
    return await source.vector.fetch(usable) if usable else {}


def describe(store: SemanticStore) -> dict[str, Any]:
    """The ``store`` as reports name it: a dict of ``name``, ``primary``, ``vector``,
    ``embedding_model`` and ``dimensions``. Raises nothing."""
    c = store.config
    return {
        "name": store.name,
        "primary": c.primary_driver,
        "vector": c.vector_driver,
        "embedding_model": store.embedder.model,
        "dimensions": store.embedder.dimensions,
    }


# -- validate --------------------------------------------------------------------------------


async def _flat(store: SemanticStore, batch_size: int = 1000) -> AsyncIterator[Record]:
    last: str | None = None
    async for batch in store.primary.iterate(batch_size):
        for record in batch:
            if last is not None and record.id <= last:
                raise MigrationError(
                    f"The {store.config.primary_driver!r} driver of {store.name!r} did not iterate in ascending "
                    f"id order ({record.id!r} after {last!r})",
                    operation="validate",
                )
            last = record.id
            yield record


async def _merged(source: SemanticStore, target: SemanticStore) -> AsyncIterator[tuple[Record | None, Record | None]]:
    """Pairs of the two stores' records with the same id, in ascending id order."""
    left, right = _flat(source).__aiter__(), _flat(target).__aiter__()

    async def step(it: AsyncIterator[Record]) -> Record | None:
        return await anext(it, None)

    a, b = await asyncio.gather(step(left), step(right))
    while a is not None or b is not None:
        if b is None or (a is not None and a.id < b.id):
            yield a, None
            a = await step(left)
        elif a is None or b.id < a.id:
            yield None, b
            b = await step(right)
        else:
            yield a, b
            a, b = await asyncio.gather(step(left), step(right))


def _differences(a: Record, b: Record) -> list[str]:
    return [f for f in _COMPARED if getattr(a, f) != getattr(b, f)]


async def validate(
    source: SemanticStore,
    target: SemanticStore,
    sample_size: int | None = 100,
    *,
    _repair: tuple[Copier, bool, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Compare two stores: every id, every entry's text, timestamp, metadata and extra
    fields, and the target's vector for every entry that should have one. For a random
    sample of ``sample_size`` entries (None: all) the vectors themselves are compared when
    both stores share the embedding space. ``source`` and ``target`` are open stores;
    ``_repair`` is internal (``migrate`` catching up) and left unset.

    Returns a report dict: ``ok`` is True when nothing is missing or different (``exact``
    also requires no extra entries on the target), with counts and up to 100 ids of each
    kind (``missing``, ``extra``, ``mismatched``, ``vectors_missing``) and
    ``vector_mismatches``. Raises ``ValidationError`` for a bad ``sample_size``,
    ``MigrationError`` when a primary driver does not iterate in id order, and
    ``BackendUnavailable`` or ``BackendRejected`` when a backend fails."""
    if sample_size is not None and (
        isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 0
    ):
        raise ValidationError(f"sample_size must be an int >= 0 or None, got {sample_size!r}", field="sample_size")
    started = time.perf_counter()
    await _ready(source)
    await _ready(target)
    found: dict[str, Any] = {"missing": [], "extra": [], "mismatched": [], "vectors_missing": []}
    counts = dict.fromkeys(found, 0)
    compared = repaired = source_count = target_count = 0
    rng = random.Random(0)
    sample: list[str] = []
    to_check: list[str] = []  #: target ids whose vector must exist
    to_copy: list[Record] = []  #: with ``_repair``: source records missing or different on the target

    def note(kind: str, item: Any) -> None:
        counts[kind] += 1
        if len(found[kind]) < _LISTED:
            found[kind].append(item)

    async def check_vectors() -> None:
        present = await target.vector.existing(to_check) if to_check else set()
        for id_ in to_check:
            if id_ not in present:
                note("vectors_missing", id_)
        to_check.clear()

    async def copy_back() -> None:
        nonlocal repaired
        assert _repair is not None
        copier, copy, failed = _repair
        repaired += len(to_copy)
        movable = portable(to_copy, failed)
        if movable:
            failed.update(await copier.write(movable, await _vectors_of(source, movable, copy)))
        to_copy.clear()

    async for a, b in _merged(source, target):
        source_count += a is not None
        target_count += b is not None
        if b is None:
            assert a is not None  # the merge yields at least one side
            if _repair is not None and a.id not in _repair[2]:
                to_copy.append(a)
            else:
                note("missing", a.id)
        elif a is None:
            note("extra", b.id)
        else:
            compared += 1
            fields = _differences(a, b)
            if fields and _repair is not None:
                to_copy.append(a)
            elif fields:
                note("mismatched", {"id": a.id, "fields": fields})
            elif target.wants_vector(b):
                to_check.append(b.id)
            # reservoir sample of the common ids
            if sample_size is None or len(sample) < sample_size:
                sample.append(a.id)
            elif (j := rng.randrange(compared)) < sample_size:
                sample[j] = a.id
        if len(to_check) >= 500:
            await check_vectors()
        if _repair is not None and len(to_copy) >= 500:
            await copy_back()
    await check_vectors()
    if to_copy:
        await copy_back()
    vector_mismatches = await _compare_vectors(source, target, sample)
    ok = not (counts["missing"] or counts["mismatched"] or counts["vectors_missing"] or vector_mismatches)
    return {
        "ok": ok,
        "exact": ok and not counts["extra"],
        "source_count": source_count,
        "target_count": target_count,
        "compared": compared,
        **{kind: counts[kind] for kind in ("missing", "extra", "mismatched", "vectors_missing")},
        "missing_ids": found["missing"],
        "extra_ids": found["extra"],
        "mismatches": found["mismatched"],
        "vectors_missing_ids": found["vectors_missing"],
        "sampled": len(sample),
        "vector_mismatches": vector_mismatches,
        "seconds": round(time.perf_counter() - started, 3),
        **({"repaired": repaired} if _repair is not None else {}),
    }


async def _compare_vectors(source: SemanticStore, target: SemanticStore, ids: list[str]) -> int:
    """How many sampled entries have a different vector on the two sides (same space only)."""
    if not ids or not same_space(source, target):
        return 0
    import numpy as np

    differ = 0
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        a, b = await asyncio.gather(source.vector.fetch(part), target.vector.fetch(part))
        for id_ in part:
            if id_ in a and id_ in b and float(np.dot(a[id_], b[id_])) < 0.999:
                differ += 1
    return differ
