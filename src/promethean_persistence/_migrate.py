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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._entries import check_limit, content_hash, now_ms
from ._errors import BackendUnavailable, EmbeddingMismatchError, MigrationError, SemanticStoreError, ValidationError
from ._progress import Progress, progress_callback
from ._queue import backoff_ms, embed_records, upsert_records
from ._types import Manifest, Record

if TYPE_CHECKING:
    from ._store import SemanticStore

__all__ = ["Copier", "migrate", "validate"]

log = logging.getLogger("promethean_persistence.migrate")
_LISTED = 100  #: ids listed per kind in reports; counts are always complete
_COMPARED = ("text", "timestamp", "metadata", "extra")


# -- writing entries to a target -------------------------------------------------------------


class Copier:
    """Writes copies of records into ``target``: vectors first (given ones as they are, the
    rest embedded by the target's embedder), then the records, marked synced where their
    vector landed and pending otherwise, so the target's own outbox finishes the rest.

    A batch that fails is retried (connection errors, with backoff), then split to find the
    entries that fail on their own; those are returned, never dropped. A target that stays
    unreachable raises ``MigrationError``: what was written stays, and a rerun resumes."""

    def __init__(self, target: SemanticStore, *, max_retries: int | None = None) -> None:
        self.target = target
        self.max_retries = target.config.vector_max_retries if max_retries is None else max_retries
        self.retry_delay_ms = min(target.config.vector_retry_delay_ms, 1_000)
        self.counts = {"copied": 0, "vectors_copied": 0, "embedded": 0, "skipped": 0, "vectors_pending": 0}

    async def write(self, records: Sequence[Record], vectors: Mapping[str, Any]) -> dict[str, str]:
        """Store copies of ``records``; ``vectors`` holds ready vectors by id. Returns the
        error of each entry that could not be stored."""
        target = self.target
        now = now_ms()
        copies = [_copy_of(r, now) for r in records]
        wanted = [r for r in copies if _wants_vector(target, r)]
        for r in copies:
            if not _wants_vector(target, r):
                r.vector_status = "skipped"
        ready = {r.id: vectors[r.id] for r in wanted if r.id in vectors}
        errors: dict[str, str] = {}
        todo = [r for r in wanted if r.id not in ready]
        if todo:
            ready.update(await self._embed(todo, errors))
        landed: set[str] = set()
        if ready:
            landed = await self._upsert([r for r in wanted if r.id in ready], ready, errors)
        model = target.embedder.model
        for r in wanted:
            if r.id in landed:
                r.vector_status, r.vector_synced_at, r.embedding_model, r.vector_attempts = "synced", now, model, 1
            else:  # the target's outbox worker writes it later
                r.vector_next_at, r.vector_error = now, errors.get(r.id)
        failed = await self._put(copies)
        if failed:
            lost = [i for i in failed if i in landed]
            try:
                await target.vector.delete(lost)
            except SemanticStoreError:  # an orphan vector; repair removes it
                log.warning("could not delete the vectors of %d entries that failed to copy", len(lost))
        stored = [r for r in copies if r.id not in failed]
        c = self.counts
        c["copied"] += len(stored)
        c["skipped"] += sum(r.vector_status == "skipped" for r in stored)
        c["vectors_pending"] += sum(r.vector_status == "pending" for r in stored)
        c["vectors_copied"] += sum(r.id in landed and r.id in vectors for r in stored)
        c["embedded"] += sum(r.id in landed and r.id not in vectors for r in stored)
        return failed

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        for attempt in range(1, self.max_retries + 2):
            try:
                return await call()
            except BackendUnavailable:
                if attempt > self.max_retries:
                    raise
                await asyncio.sleep(backoff_ms(attempt, self.retry_delay_ms) / 1000)

    async def _embed(self, records: list[Record], errors: dict[str, str]) -> dict[str, Any]:
        target = self.target

        async def embed(part: list[Record]) -> list[Any]:
            return await self._retrying(lambda: embed_records(target.embedder, part, images=target.supports_images))

        try:
            return dict(zip((r.id for r in records), await embed(records)))
        except EmbeddingMismatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - find the entries that fail on their own
            if len(records) == 1 or isinstance(exc, BackendUnavailable):
                errors.update((r.id, _describe(exc)) for r in records)
                return {}
        out: dict[str, Any] = {}
        for r in records:
            out.update(await self._embed([r], errors))
        return out

    async def _upsert(self, records: list[Record], vectors: dict[str, Any], errors: dict[str, str]) -> set[str]:
        vector = self.target.vector
        try:
            await self._retrying(lambda: upsert_records(vector, records, np.stack([vectors[r.id] for r in records])))
            return {r.id for r in records}
        except Exception as exc:  # noqa: BLE001 - the records still go in, pending
            if len(records) == 1 or isinstance(exc, BackendUnavailable):
                errors.update((r.id, _describe(exc)) for r in records)
                return set()
        landed: set[str] = set()
        for r in records:
            landed |= await self._upsert([r], vectors, errors)
        return landed

    async def _put(self, records: list[Record]) -> dict[str, str]:
        primary = self.target.primary
        try:
            await self._retrying(lambda: primary.put(records))
            return {}
        except BackendUnavailable as exc:
            raise MigrationError(
                f"The target store {self.target.name!r} is unreachable ({exc}); what was copied stays, "
                "and running the same migration again resumes from there",
                operation="migrate", driver=self.target.config.primary_driver,
            ) from exc
        except Exception as exc:  # noqa: BLE001 - find the entries that fail on their own
            if len(records) == 1:
                return {records[0].id: _describe(exc)}
        failed: dict[str, str] = {}
        for r in records:
            failed.update(await self._put([r]))
        return failed


def _copy_of(record: Record, now: int) -> Record:
    """The record as a new entry of the target: same id, text, time, metadata and extra fields."""
    return Record(
        id=record.id, text=record.text, timestamp=record.timestamp, metadata=record.metadata,
        extra=record.extra, content_hash=content_hash(record.text), vector_updated_at=now,
    )


def _wants_vector(store: SemanticStore, record: Record) -> bool:
    if not store.config.dual_write_enabled or record.is_empty:
        return False
    return store.supports_images or record.metadata.get("type") != "image"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- migrate ---------------------------------------------------------------------------------


def same_space(a: SemanticStore | Manifest, b: SemanticStore | Manifest) -> bool:
    """Whether vectors of ``a`` can be used as they are by ``b`` (same model and size)."""
    return _space(a) == _space(b) and None not in _space(a)


def _space(side: Any) -> tuple[str | None, int | None]:
    if isinstance(side, Manifest):
        return side.embedding_model, side.dimensions
    return side.embedder.model, side.embedder.dimensions


def _copy_mode(source: SemanticStore, target: SemanticStore, reembed: Any) -> bool:
    """True when vectors are copied as they are, False when the target re-embeds."""
    if reembed not in ("auto", "always", "never", True, False):
        raise ValidationError(f"reembed must be 'auto', True or False, got {reembed!r}", field="reembed")
    same = same_space(source, target)
    if reembed in (True, "always"):
        return False
    if not same or not hasattr(source.vector, "fetch"):
        if reembed in (False, "never"):
            why = (f"{source.embedder.model!r} ({source.embedder.dimensions} dims) and "
                   f"{target.embedder.model!r} ({target.embedder.dimensions} dims) differ") if not same else (
                f"the {source.config.vector_driver!r} vector driver cannot read its vectors back")
            raise MigrationError(f"Cannot copy vectors as they are: {why}; use reembed='auto' or True",
                                 operation="migrate")
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
    await store._reading()
    if store.embedder.dimensions is None:
        await store.embedder.probe()
        await store._settle_manifest()


async def _checkpoint(target: SemanticStore, state: dict[str, Any] | None) -> None:
    manifest = await target.primary.get_manifest() or target._manifest()
    await target.primary.set_manifest(manifest.copy(migration=state))


async def _batches_with_vectors(source: SemanticStore, batch_size: int, after: str | None,
                                copy: bool) -> AsyncIterator[tuple[list[Record], dict[str, Any]]]:
    async for batch in source.primary.iterate(batch_size, after=after):
        yield batch, await _vectors_of(source, batch, copy)


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
) -> dict[str, Any]:
    """Copy every entry of ``source`` into ``target`` and return a report (SPEC §7).

    Ids, timestamps, metadata and extra fields are kept. Vectors are copied as they are when
    both stores use the same embedding model and dimension (``reembed="auto"``), otherwise
    the target embeds the texts. Progress is checkpointed in the target after every batch,
    so a run that was interrupted (even by ``kill -9``) resumes where it stopped. At the end
    the two stores are compared (``validate``); entries changed meanwhile are copied again.
    ``report["status"]`` is ``"ok"`` only if every entry arrived; failed ones are listed."""
    if source is target:
        raise MigrationError("source and target are the same store", operation="migrate")
    batch_size = check_limit(batch_size, "batch_size")
    started = time.perf_counter()
    await _ready(source)
    await _ready(target)
    copy = _copy_mode(source, target, reembed)
    identity = _identity(source)
    manifest = await target.primary.get_manifest()
    state = manifest.migration if manifest is not None else None
    resumed = bool(resume and state and state.get("source") == identity)
    if not resumed:
        state = {"source": identity, "after": None, "failed": {}, "started_at": now_ms()}
    total = await source.count()
    report_progress = progress_callback(progress, "migrate")
    done = state.get("done", 0) if resumed else 0
    copier = Copier(target)
    failed: dict[str, str] = dict(state["failed"])

    # Reading the next batch overlaps with writing this one.
    queue: asyncio.Queue = asyncio.Queue(maxsize=2)

    async def read() -> None:
        try:
            async for item in _batches_with_vectors(source, batch_size, state["after"], copy):
                await queue.put(item)
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
            failed.update(await copier.write(batch, vectors))
            done += len(batch)
            state.update(after=batch[-1].id, done=done, failed=_capped(failed))
            await _checkpoint(target, state)
            report_progress(min(done, total), total)

    reader = asyncio.create_task(read())
    try:
        await write()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    # One more try for the entries that failed, read afresh (gone from the source: not failed).
    for id_, record in zip(list(failed), await source.primary.get(list(failed)) if failed else []):
        error = None if record is None else (
            await copier.write([record], await _vectors_of(source, [record], copy))).get(id_)
        if error:
            failed[id_] = error
        else:
            del failed[id_]

    verification = None
    caught_up = 0
    if verify:
        await target.flush()  # vectors the target's outbox still owes
        verification = await validate(source, target, sample_size, _repair=(copier, copy, failed))
        caught_up = verification.pop("repaired")
        if caught_up:
            await target.flush()
            verification = await validate(source, target, sample_size)
    ok = not failed and (verification is None or verification["ok"])
    await _checkpoint(target, None if ok else {**state, "failed": _capped(failed)})
    seconds = time.perf_counter() - started
    return {
        "status": "ok" if ok else "failed",
        "source": describe(source),
        "target": describe(target),
        "mode": "copy vectors" if copy else "re-embed",
        "total": total,
        **copier.counts,
        "caught_up": caught_up,
        "resumed": resumed,
        "failed": len(failed),
        "failed_ids": sorted(failed)[:_LISTED],
        "errors": [{"id": i, "error": e} for i, e in sorted(failed.items())[:_LISTED]],
        "seconds": round(seconds, 3),
        "entries_per_second": round(copier.counts["copied"] / seconds, 1) if seconds else None,
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
    c = store.config
    return {"name": store.name, "primary": c.primary_driver, "vector": c.vector_driver,
            "embedding_model": store.embedder.model, "dimensions": store.embedder.dimensions}


# -- validate --------------------------------------------------------------------------------


async def _flat(store: SemanticStore, batch_size: int = 1000) -> AsyncIterator[Record]:
    last: str | None = None
    async for batch in store.primary.iterate(batch_size):
        for record in batch:
            if last is not None and record.id <= last:
                raise MigrationError(
                    f"The {store.config.primary_driver!r} driver of {store.name!r} did not iterate in ascending "
                    f"id order ({record.id!r} after {last!r})", operation="validate")
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
    """Compare two stores: every id, every entry's text, timestamp, metadata and extra fields,
    and the target's vector for every entry that should have one. For a random sample of
    ``sample_size`` entries (None: all) the vectors themselves are compared when both stores
    share the embedding space. ``report["ok"]`` is True when nothing is missing or different
    (``"exact"`` also requires no extra entries on the target)."""
    if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int)
                                    or sample_size < 0):
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
        copier, copy, failed = _repair
        repaired += len(to_copy)
        failed.update(await copier.write(to_copy, await _vectors_of(source, to_copy, copy)))
        to_copy.clear()

    async for a, b in _merged(source, target):
        source_count += a is not None
        target_count += b is not None
        if b is None:
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
            elif _wants_vector(target, b):
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
    if not ids or not same_space(source, target) or not all(hasattr(s.vector, "fetch") for s in (source, target)):
        return 0
    differ = 0
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        a, b = await asyncio.gather(source.vector.fetch(part), target.vector.fetch(part))
        for id_ in part:
            if id_ in a and id_ in b and float(np.dot(a[id_], b[id_])) < 0.999:
                differ += 1
    return differ
