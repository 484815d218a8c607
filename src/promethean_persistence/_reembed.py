"""Re-embedding a collection into another embedding space, side by side (``reembed``).

The new vectors go to a second vector collection while the store keeps answering searches
from the old one. The run walks every record in id order and checkpoints in the collection
manifest after each batch, so an interrupted run resumes where it stopped. Writes made
meanwhile are caught up by rescanning for records whose version is not the one written
(a cheap read next to embedding; records an interrupted run wrote count as current unless
their vector state changed after it began). Then the manifest is switched in one
write: model, dimension and vector collection together. Records that changed during the last
scan are re-queued for the new model, the rest are marked as written with it, and the old
vector collection is dropped (unless ``keep_old``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._entries import now_ms
from ._errors import EmbeddingError, EmbeddingMismatchError
from ._open import vector_for
from ._policy import supports_images, wants_vector
from ._types import Manifest, Record, VectorState
from .drivers.base import ProbingEmbedder
from .outbox.vectors import embed_records, upsert_records

if TYPE_CHECKING:
    from ._store import SemanticStore
    from .drivers.base import Embedder

log = logging.getLogger("promethean_persistence.reembed")

CLOCK_SKEW_MS = 60_000  #: writers' clocks may lag ours: after a resume, rescan a little more
MAX_CATCH_UP_ROUNDS = 5  #: beyond that, writes still racing the run are re-queued after the switch
_SCAN_BATCH = 1000

Progress = Callable[[int, int], None]


def target_collection(store: SemanticStore, model: str, dims: int) -> str:
    """The name of ``store``'s side collection for the embedding space of ``model`` and
    ``dims``: ``{name}__re_{hash}``, the same for every run into that space (so a run
    resumes). Returns the name; raises nothing."""
    digest = hashlib.blake2b(f"{model}\0{dims}".encode(), digest_size=4).hexdigest()
    return f"{store.name}__re_{digest}"


async def run(
    store: SemanticStore,
    embedder: Embedder,
    driver: str,
    *,
    batch_size: int = 256,
    keep_old: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Move ``store`` to ``embedder``'s vector space; see the module docstring.

    ``driver``: the embedding driver name recorded in the manifest. ``batch_size``: entries
    embedded per batch. ``keep_old``: keep the old vector collection after the switch.
    ``progress``: called with ``(embedded, total)`` after each batch.

    Returns the report of ``SemanticStore.reembed``. Raises ``EmbeddingError`` when the
    store has no manifest yet or the model fails, ``EmbeddingMismatchError`` when the vector
    store cannot hold the new dimension, and ``BackendUnavailable`` or ``BackendRejected``
    (an interrupted run resumes)."""

    started = time.perf_counter()
    primary = store.primary
    await store.flush()
    manifest = await primary.get_manifest()
    if manifest is None:
        raise EmbeddingError(
            f"{store.name}: the embedder has not told its dimension yet; nothing to move", operation="reembed"
        )
    dims = embedder.dimensions
    if dims is None:
        dims = await cast(ProbingEmbedder, embedder).probe()
    if (embedder.model, dims) == (manifest.embedding_model, manifest.dimensions):
        return {"status": "unchanged", "model": embedder.model, "dimensions": dims, "embedded": 0}
    images = supports_images(embedder, store.config)

    target = target_collection(store, embedder.model, dims)
    checkpoint = manifest.reembed
    resumed = bool(checkpoint and checkpoint.get("vector_collection") == target)
    if checkpoint and not resumed:  # another run's half-built collection
        abandoned = vector_for(store.vector, store.config, checkpoint["vector_collection"])
        await abandoned.open()
        await abandoned.drop()
        await abandoned.aclose()
    if not resumed:
        checkpoint = {
            "vector_collection": target,
            "embedding_driver": driver,
            "embedding_model": embedder.model,
            "dimensions": dims,
            "after": None,
            "embedded": 0,
            "since": now_ms() - CLOCK_SKEW_MS,
        }
    assert checkpoint is not None
    side = vector_for(store.vector, store.config, target)
    await side.open()
    try:
        if not resumed:
            await side.drop()  # whatever an older run to this space left there
        fixed = side.dims  # e.g. a Pinecone index has one dimension for good
        if fixed not in (None, dims):
            raise EmbeddingMismatchError(
                f"{side!r} can only hold {fixed}-dimensional vectors; {embedder.model!r} makes {dims}. "
                "Re-embedding into another dimension needs another index: migrate to a store on a new one.",
                driver=side.name,
                operation="reembed",
            )
        if not resumed:
            await primary.set_manifest(manifest.copy(reembed=checkpoint))
        total = await primary.count()

        def wanted(r: Record) -> bool:
            return wants_vector(r, enabled=store.config.dual_write_enabled, images=images)

        def current(r: Record) -> bool:
            """Its vector in the new collection is up to date."""
            if r.id in done:
                return done[r.id] == r.version
            # not written by this run: by an interrupted one, if unchanged since it began
            return bool((r.vector_updated_at or 0) < checkpoint["since"])

        async def write(records: list[Record]) -> int:
            for start in range(0, len(records), batch_size):
                chunk = [r for r in records[start : start + batch_size] if wanted(r)]
                if chunk:
                    await upsert_records(
                        side, chunk, await embed_records(embedder, chunk, images=images), embedder.model
                    )
            done.update((r.id, r.version) for r in records)
            return sum(map(wanted, records))

        done: dict[str, int] = {}  #: id -> version this run wrote
        async for batch in primary.iterate(batch_size, after=checkpoint["after"]):
            checkpoint["embedded"] += await write(batch)
            checkpoint["after"] = batch[-1].id
            await primary.set_manifest(manifest.copy(reembed=checkpoint))
            if progress:
                progress(checkpoint["embedded"], total)

        # Catch up with writes made meanwhile (behind the cursor, or by an interrupted run's time).
        caught_up = 0
        for _ in range(MAX_CATCH_UP_ROUNDS):
            ids: set[str] = set()
            changed: list[Record] = []
            async for batch in primary.iterate(_SCAN_BATCH):
                ids.update(r.id for r in batch)
                changed += [r for r in batch if not current(r)]
            caught_up += await write(changed)
            async for vector_ids in side.iter_ids(_SCAN_BATCH):  # deleted meanwhile
                if gone := [i for i in vector_ids if i not in ids]:
                    await side.delete(gone)
            if not changed:
                break

        # The switch: one manifest write.
        switched = Manifest(driver, embedder.model, dims, normalized=embedder.normalize, vector_collection=target)
        await primary.set_manifest(switched)
    except BaseException:
        await side.aclose()
        raise
    old_vector, old_embedder = store.vector, store.embedder
    await store.switch_embedding(embedder, side, driver, target)

    now, marked, requeued = now_ms(), 0, 0
    async for batch in primary.iterate(_SCAN_BATCH):
        states = []
        for r in batch:
            if not wanted(r):
                if r.vector_status != "skipped":
                    states.append(VectorState(r.id, r.version, "skipped", 0, None, None, now))
            elif current(r):
                states.append(VectorState(r.id, r.version, "synced", 1, None, None, now, now, embedder.model))
                marked += 1
            else:
                states.append(VectorState(r.id, r.version, "pending", 0, None, now, now))
                requeued += 1
        await primary.set_vector_state(states)
    if requeued:
        store.wake_outbox()
    if not keep_old:
        try:
            await old_vector.drop()
        except Exception:  # noqa: BLE001 - the switch stands; the old copy is only garbage
            log.exception("%s: could not drop the old vector collection", store.name)
    await old_vector.aclose()
    if old_embedder is not embedder:
        await old_embedder.aclose()
    return {
        "status": "switched",
        "from": {"model": manifest.embedding_model, "dimensions": manifest.dimensions},
        "to": {"model": embedder.model, "dimensions": dims},
        "vector_collection": target,
        "resumed": resumed,
        "embedded": checkpoint["embedded"],
        "caught_up": caught_up,
        "marked": marked,
        "requeued": requeued,
        "old_collection_dropped": not keep_old,
        "seconds": round(time.perf_counter() - started, 3),
    }
