"""SemanticStore: one async API over a primary store and a vector store (SPEC §1-4)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from . import _filters, _registry
from ._config import StoreConfig
from ._entries import (
    TEXT_FINGERPRINT,
    build_record,
    check_limit,
    content_hash,
    fingerprint,
    now_ms,
    to_epoch_ms,
    validate_id,
)
from ._errors import (
    BackendUnavailable,
    DocumentNotFound,
    EmbeddingError,
    EmbeddingMismatchError,
    SemanticStoreError,
    ValidationError,
    VectorWriteError,
)
from ._group import OutboxWriter
from ._queue import Job, VectorWriteQueue, backoff_ms, consume, vector_metadata
from ._types import Manifest, Record
from ._worker import OutboxWorker
from .drivers.base import Embedder, PrimaryDriver, VectorDriver

__all__ = ["DualStoreManager", "SemanticStore", "SemanticStoreFactory"]

log = logging.getLogger("promethean_persistence")
_ID_CHUNK = 500
_PENDING = _filters.parse({"vectorStatus": "pending"})


class SemanticStore:
    """Documents in a primary store, their embeddings in a vector store, kept consistent.

    >>> store = await SemanticStore.create("notes", config={"primaryDriver": "memory",
    ...     "vectorDriver": "memory", "embeddingDriver": "hashing"})
    >>> id_ = await store.insert({"text": "hello world"})
    >>> [e["text"] for e in await store.get_most_relevant("hello")]
    ['hello world']
    >>> await store.cleanup()
    """

    def __init__(
        self,
        name: str,
        text_key: str,
        time_key: str,
        config: StoreConfig,
        primary: PrimaryDriver,
        vector: VectorDriver,
        embedder: Embedder,
    ) -> None:
        self.base_name = name
        self.name = config.collection_name(name)  #: ``{agent_name}_{name}``, as the original
        self.text_key = text_key
        self.time_key = time_key
        self.config = config
        self.primary = primary
        self.vector = vector
        self.embedder = embedder
        self.supports_images = supports_images(embedder, config)
        self._closed = False
        self._manifest_pending = False  #: the embedder could not tell its dimension at open
        self.vector_collection: str | None = None  #: set by a re-embedding run, else the store's name
        #: strict writes as one transaction when the vector store lives in the primary's database
        self._atomic = (
            config.consistency == "strict"
            and config.dual_write_enabled
            and bool(getattr(primary, "shares_transactions_with", lambda v: False)(vector))
        )
        self._writer = OutboxWriter(primary)
        #: how long an item handed to this process's queue is kept from other claimers (the
        #: queue renews it while the item waits or runs here)
        self._lease_ms = 2 * config.vector_timeout_ms + 1_000
        self._queue = VectorWriteQueue(
            writer=self._writer,
            vector=vector,
            embedder=embedder,
            batch_size=config.vector_batch_size,
            flush_interval_ms=config.vector_flush_interval_ms,
            max_retries=config.vector_max_retries,
            retry_delay_ms=config.vector_retry_delay_ms,
            timeout_ms=config.vector_timeout_ms,
            enabled=config.dual_write_enabled,
            images=self.supports_images,
            collection=self.name,
            lease_ms=self._lease_ms,
        )
        self._worker = OutboxWorker(
            primary, self._queue, lease_ms=self._lease_ms,
            poll_ms=max(50, min(1000, config.vector_retry_delay_ms)),
        )

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SemanticStore(name={self.name!r}, primary={c.primary_driver!r}, "
            f"vector={c.vector_driver!r}, embedding={self.embedder.model!r}, consistency={c.consistency!r})"
        )

    # -- construction ---------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        name: str,
        text_key: str = "text",
        time_key: str = "createdAt",
        config: StoreConfig | Mapping[str, Any] | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> SemanticStore:
        """Open (creating if needed) the store ``name``; config beats env beats defaults.
        ``embedder``: an embedder instance to use instead of the configured one."""
        _check_names(name, text_key, time_key)
        resolved = StoreConfig.resolve(config)
        collection = resolved.collection_name(name)
        return await cls.from_drivers(
            name, text_key, time_key, config=resolved,
            embedder=embedder or _registry.build("embedding", resolved),
            primary=_registry.build("primary", resolved, collection),
            vector=_registry.build("vector", resolved, collection),
        )

    @classmethod
    async def from_drivers(
        cls,
        name: str,
        text_key: str = "text",
        time_key: str = "createdAt",
        *,
        primary: PrimaryDriver,
        vector: VectorDriver,
        embedder: Embedder,
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> SemanticStore:
        """Open a store on driver instances you built yourself (custom clients, test doubles)."""
        _check_names(name, text_key, time_key)
        resolved = config if isinstance(config, StoreConfig) else StoreConfig.resolve(config)
        opened: list[Any] = [embedder]
        for driver in (primary, vector):  # drivers that keep the original's field names
            if hasattr(driver, "use_keys"):
                driver.use_keys(text_key, time_key)
        try:
            await primary.open()
            opened.append(primary)
            manifest = await primary.get_manifest()
            if manifest is not None and manifest.vector_collection not in (None, getattr(vector, "collection", None)):
                vector = vector_for(vector, resolved, manifest.vector_collection)  # re-embedded
            elif hasattr(primary, "vector_collection") and hasattr(vector, "use_collection"):
                # the original's collection_aliases: the vector collection may have another name
                target = await primary.vector_collection()
                if target:
                    vector.use_collection(target)
            await vector.open()
            opened.append(vector)
            store = cls(name, text_key, time_key, resolved, primary, vector, embedder)
            store.vector_collection = manifest.vector_collection if manifest else None
            await store._check_manifest(manifest)
            if resolved.dual_write_enabled:
                store._worker.start()  # resumes what a crashed or slow process left pending
        except BaseException:
            for driver in reversed(opened):
                try:
                    await driver.aclose()
                except Exception:  # noqa: BLE001 - keep the original error
                    log.exception("closing %r after a failed open", driver)
            raise
        return store

    def _manifest(self) -> Manifest:
        return Manifest(
            self.config.embedding_driver, self.embedder.model, self.embedder.dimensions,
            normalized=bool(getattr(self.embedder, "normalize", True)), vector_collection=self.vector_collection,
        )

    async def _check_manifest(self, stored: Manifest | None) -> None:
        """Refuse another embedding space than the collection's; record it on first use."""
        embedder = self.embedder
        dims = embedder.dimensions
        if stored is not None:
            if stored.embedding_model != embedder.model or dims not in (None, stored.dimensions):
                raise EmbeddingMismatchError.between(self.name, stored, embedder.model, dims)
            if dims is None:  # an HTTP model of unknown size: its answers must match the manifest
                embedder.expect_dimensions(stored.dimensions)
            return
        if dims is None:
            try:
                dims = await embedder.probe()
            except (BackendUnavailable, EmbeddingError) as exc:
                log.warning("%s: cannot ask %r for its dimension yet (%s); the collection manifest is "
                            "written once it answers", self.name, embedder, exc)
                self._manifest_pending = True
                return
        vector_dims = getattr(self.vector, "dims", None)  # vectors written before any manifest
        if isinstance(vector_dims, int) and vector_dims != dims:
            raise EmbeddingMismatchError(
                f"The vector collection of {self.name!r} holds {vector_dims}-dimensional vectors; this store's "
                f"embedding model {embedder.model!r} makes {dims}. Use the model that "
                "wrote them, or re-embed the collection (semantic-store reembed).",
                operation="open",
            )
        await self.primary.set_manifest(self._manifest())

    async def _settle_manifest(self) -> None:
        """Write the manifest deferred at open, once the embedder has told its dimension."""
        if self._manifest_pending and self.embedder.dimensions is not None:
            self._manifest_pending = False
            await self._check_manifest(await self.primary.get_manifest())

    async def __aenter__(self) -> SemanticStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()

    def _check_open(self) -> None:
        if self._closed:
            raise SemanticStoreError(f"Store {self.name!r} is closed", operation="use")

    async def _reading(self) -> None:
        """Before a read: this store's buffered outbox writes land first."""
        self._check_open()
        await self._writer.settle()
        if self._manifest_pending:
            await self._settle_manifest()

    # -- writes ---------------------------------------------------------------------------

    async def insert(self, entry: Mapping[str, Any]) -> str:
        """Validate and store one entry; return its id (SPEC §4 write path)."""
        return (await self.insert_many([entry]))[0]

    add_entry = insert

    async def insert_many(self, entries: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store entries in batches; ids come back in input order. All-or-nothing if strict."""
        self._check_open()
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise ValidationError("insert_many takes a sequence of entries", field="entries")
        now = now_ms()
        records = [
            build_record(
                e, text_key=self.text_key, time_key=self.time_key,
                max_text_bytes=self.config.max_text_bytes, now=now,
            )
            for e in entries
        ]
        if not records:
            return []
        unique = list({r.id: r for r in records}.values())  # the last write of an id wins
        for record in unique:
            self._set_initial_state(record, now)
        if self._atomic:
            await self._insert_atomic(unique, now)
            return [r.id for r in records]
        previous = await self._writer.put(unique)
        jobs = [j for j in (self._job_for(r, p) for r, p in zip(unique, previous)) if j is not None]
        errors = await self._run_jobs(jobs)
        if self._manifest_pending:
            try:
                await self._settle_manifest()
            except EmbeddingMismatchError:  # the write stands; reads raise it
                self._manifest_pending = True
                log.exception("%s: embedding space differs from the collection's", self.name)
        if errors and self.config.consistency == "strict":
            # An explicit failure left the vector side as it was; anything else may have landed.
            untouched = {i for i, e in errors.items() if not getattr(e, "timed_out", False)}
            await self._undo(unique, previous, untouched)
            first = next(iter(errors.values()))
            ids = ", ".join(list(errors)[:5])
            raise VectorWriteError(
                f"Vector store write failed for {len(errors)} of {len(unique)} entries ({ids}): {first}; "
                "nothing was stored",
                operation="insert",
                document_id=next(iter(errors)),
            ) from first
        return [r.id for r in records]

    async def _insert_atomic(self, records: list[Record], now: int) -> None:
        """Strict mode on one database: embed first, then records and vectors in one commit.
        Any failure rolls both back, so a raised insert left nothing behind."""
        await self._writer.settle()
        await self._queue.warm()
        before = {r.id: p for r, p in zip(records, await self.primary.get([r.id for r in records]))}
        embedded: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.config.vector_timeout_ms / 1000):
                await self._embed_into(embedded, [r for r in records if self._needs_embedding(r, before[r.id])])
                async with self.primary.transaction() as conn:
                    for r in records:
                        if r.vector_status != "skipped":
                            r.vector_status, r.vector_attempts, r.vector_next_at = "synced", 1, None
                            r.vector_synced_at, r.embedding_model = now, self.embedder.model
                    previous = await self.primary.put_in(conn, records)
                    changed = [r for r, p in zip(records, previous) if r.id not in embedded and self._needs_embedding(r, p)]
                    await self._embed_into(embedded, changed)  # someone changed them since we looked
                    full = [r for r in records if r.id in embedded]
                    if full:
                        await self.vector.upsert_in(conn, [r.id for r in full], [embedded[r.id] for r in full],
                                                    self._vector_metadata(full))
                    same = [r for r in records if r.vector_status == "synced" and r.id not in embedded]
                    if same:
                        try:
                            async with conn.transaction():  # a savepoint: the vector may be gone
                                await self.vector.upsert_in(conn, [r.id for r in same], None,
                                                            self._vector_metadata(same))
                        except ValidationError:
                            await self._embed_into(embedded, same)
                            await self.vector.upsert_in(conn, [r.id for r in same], [embedded[r.id] for r in same],
                                                        self._vector_metadata(same))
                    gone = [r.id for r, p in zip(records, previous)
                            if r.vector_status == "skipped" and p is not None and p.vector_status != "skipped"]
                    if gone:
                        await self.vector.delete_in(conn, gone)
        except (TimeoutError, Exception) as exc:
            reason = f"timed out after {self.config.vector_timeout_ms} ms" if isinstance(exc, TimeoutError) else exc
            raise VectorWriteError(
                f"Vector store write failed for {len(records)} entries ({', '.join(r.id for r in records[:5])}): "
                f"{reason}; nothing was stored (one transaction)",
                operation="insert", document_id=records[0].id,
            ) from exc
        self._queue.total_written += sum(r.vector_status == "synced" for r in records)

    def _vector_metadata(self, records: list[Record]) -> list[dict[str, Any]]:
        return [vector_metadata(r, self.embedder.model) for r in records]

    def _needs_embedding(self, record: Record, prev: Record | None) -> bool:
        return record.vector_status != "skipped" and not self._same_vector(record, prev)

    async def _embed_into(self, embedded: dict[str, Any], records: list[Record]) -> None:
        if records:
            for r, v in zip(records, await self.embedder.embed([r.text for r in records])):
                embedded[r.id] = v

    def _set_initial_state(self, record: Record, now: int) -> None:
        record.vector_updated_at = now
        if not self._wants_vector(record):
            record.vector_status = "skipped"
            return
        record.vector_status = "pending"
        # Leased to this process until its own attempt is over, so no worker claims it twice.
        record.vector_next_at = now + self._lease_ms

    def _wants_vector(self, record: Record) -> bool:
        return wants_vector(record, enabled=self.config.dual_write_enabled, images=self.supports_images)

    def _job_for(self, record: Record, prev: Record | None) -> Job | None:
        """The vector write a freshly stored record needs, given the one it replaced."""
        if record.vector_status == "skipped":
            return Job("delete", record.id) if prev is not None and prev.vector_status != "skipped" else None
        return Job("upsert", record.id, record, embed=not self._same_vector(record, prev))

    def _same_vector(self, record: Record, prev: Record | None) -> bool:
        """The stored vector already represents this text with this model."""
        return (
            prev is not None
            and prev.vector_status == "synced"
            and prev.content_hash == record.content_hash
            and prev.embedding_model == self.embedder.model
        )

    async def _run_jobs(self, jobs: list[Job]) -> dict[str, BaseException]:
        """Queue the jobs and wait (bounded) for their first attempt; return failures by id."""
        if not jobs:
            return {}
        if any(j.embed and j.kind == "upsert" for j in jobs):
            await self._queue.warm()  # a first model load is not a hanging backend
        await self._queue.run(jobs, self.config.vector_timeout_ms / 1000)
        errors: dict[str, BaseException] = {}
        for job in jobs:
            if job.future.done():
                if job.future.exception() is not None:
                    errors[job.id] = job.future.exception()
            else:
                job.future.add_done_callback(consume)
                errors[job.id] = error = VectorWriteError(
                    f"vector write still running after {self.config.vector_timeout_ms} ms",
                    operation="insert",
                    document_id=job.id,
                )
                error.timed_out = True
        for id_, error in errors.items():
            log.debug("vector write for %s in %s failed: %s", id_, self.name, error)
        return errors

    async def _undo(self, records: list[Record], previous: list[Record | None], untouched: set[str]) -> None:
        """Strict mode: put back what was there before. Vectors whose write may have landed
        (it timed out, or it succeeded as part of a failed call) are re-synced to match."""
        now = now_ms()
        gone = [r.id for r, prev in zip(records, previous) if prev is None]
        restore = [prev for prev in previous if prev is not None]
        touched = [i for i in gone if i not in untouched]
        if touched:  # their vector may exist: a tombstone makes sure it goes
            await self.primary.delete(touched, tombstone_at=now + self._lease_ms)
        if len(touched) < len(gone):
            await self.primary.delete([i for i in gone if i in untouched])
        if restore:
            await self._writer.put(restore)  # a new version: late state updates cannot touch it
        reconcile = [Job("delete", i, Record.tombstone(i, None, now)) for i in touched] + [
            Job("upsert", r.id, r.copy(vector_attempts=0), embed=True)
            for r in restore
            if r.vector_status != "skipped" and r.id not in untouched
        ]
        for job in reconcile:
            job.future.add_done_callback(consume)
        if reconcile:
            self._queue.submit(reconcile)

    async def delete(self, id_: str) -> bool:
        """Delete an entry and its vector; True if it existed (a missing id is not an error).

        If the vector delete fails, a tombstone in the outbox keeps retrying it."""
        self._check_open()
        validate_id(id_)
        now = now_ms()
        tombstone_at = now + self._lease_ms if self.config.dual_write_enabled else None
        existed = bool(await self.primary.delete([id_], tombstone_at=tombstone_at))
        if existed and tombstone_at is not None:
            await self._run_jobs([Job("delete", id_, Record.tombstone(id_, tombstone_at, now))])
        return existed

    # -- reads ----------------------------------------------------------------------------

    async def get(self, id_: str) -> dict[str, Any] | None:
        """The entry with this id, or None."""
        return (await self.get_many([id_]))[0]

    async def get_many(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Entries aligned with ``ids``; None where missing."""
        await self._reading()
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("get_many takes a sequence of ids", field="ids")
        for i in ids:
            validate_id(i)
        records = await self.primary.get(list(ids))
        return [r.to_entry() if r else None for r in records]

    async def get_most_recent(
        self,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        *,
        order: str = "desc",
        since: Any = None,
        until: Any = None,
        include_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """The newest entries first (``order="asc"`` for oldest first), ties broken by id."""
        await self._reading()
        limit = check_limit(limit)
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}", field="order")
        records = await self.primary.most_recent(
            limit,
            _filters.parse(filter),
            order=order,  # type: ignore[arg-type]
            since=None if since is None else to_epoch_ms(since, "since"),
            until=None if until is None else to_epoch_ms(until, "until"),
            include_empty=bool(include_empty),
        )
        return [r.to_entry() for r in records]

    async def get_most_relevant(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = True,
    ) -> list[dict[str, Any]]:
        """Entries most similar to any query, best first, each with ``score``. Entries with
        the same text as a better one are left out unless ``distinct_texts=False``."""
        await self._reading()
        limit = check_limit(limit)
        queries = [query_texts] if isinstance(query_texts, str) else query_texts
        if not isinstance(queries, Sequence) or not all(isinstance(q, str) for q in queries):
            raise ValidationError("query_texts must be a str or a list of str", field="query_texts")
        node = _filters.parse(where)
        queries = [q for q in dict.fromkeys(queries) if q.strip()]
        if not queries:
            return []
        # an embedder may embed queries differently from documents (e.g. LangChain models)
        vectors = await getattr(self.embedder, "embed_queries", self.embedder.embed)(queries)
        return await self._nearest(vectors, limit, node, min_score, distinct_texts)

    async def search_by_vector(
        self,
        vector: Sequence[float],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries nearest to a vector of this store's embedding space, best first."""
        await self._reading()
        limit = check_limit(limit)
        return await self._nearest([vector], limit, _filters.parse(where), min_score, distinct_texts)

    async def _nearest(self, vectors: Sequence[Any], limit: int, node: _filters.Node | None,
                       min_score: float | None, distinct: bool) -> list[dict[str, Any]]:
        k = limit
        while True:
            hits = await asyncio.gather(*(self.vector.query(v, k, node) for v in vectors))
            best: dict[str, float] = {}
            for hit in (h for per_query in hits for h in per_query):
                if hit.score > best.get(hit.id, float("-inf")):
                    best[hit.id] = hit.score
            results = await self._rank(best, limit, min_score, distinct)
            exhausted = all(len(h) < k for h in hits)
            if len(results) >= limit or exhausted:
                return results
            k *= 4

    async def _rank(self, best: dict[str, float], limit: int, min_score: float | None,
                    distinct: bool) -> list[dict[str, Any]]:
        ids = sorted(best, key=lambda i: (-best[i], i))
        if min_score is not None:
            ids = [i for i in ids if best[i] >= min_score]
        records = await self.primary.get(ids)
        results: list[dict[str, Any]] = []
        seen_texts: set[str] = set()
        for record in records:
            if record is None or (distinct and record.text in seen_texts):  # orphan vector, or same text
                continue
            seen_texts.add(record.text)
            entry = record.to_entry()
            entry["score"] = best[record.id]
            results.append(entry)
            if len(results) == limit:
                break
        return results

    async def count(self) -> int:
        """Number of entries in the primary store."""
        await self._reading()
        return await self.primary.count()

    async def iter_entries(self, batch_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every entry once, in ascending id order, read ``batch_size`` at a time."""
        await self._reading()
        batch_size = check_limit(batch_size, "batch_size")
        async for batch in self.primary.iterate(batch_size):
            for record in batch:
                yield record.to_entry()

    # -- consistency ----------------------------------------------------------------------

    async def _fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            found.update(await self.vector.fingerprints(ids[start : start + _ID_CHUNK]))
        return found

    def _is_stale(self, record: Record, stored: str | None) -> bool:
        """The vector was computed from another input or model than the record's current one."""
        text_hash = content_hash(record.text)
        if stored is None:  # written before fingerprints: what the record says it embedded
            return record.content_hash != text_hash or record.embedding_model not in (
                self.embedder.model, None if record.legacy else self.embedder.model)
        if stored.startswith(TEXT_FINGERPRINT):  # legacy vector: the text its backend kept
            return stored[len(TEXT_FINGERPRINT):] != text_hash
        return stored != fingerprint(text_hash, self.embedder.model)

    async def check_consistency(self, id_: str) -> dict[str, Any]:
        """Whether the entry and its vector exist, asking the vector store itself."""
        await self._reading()
        validate_id(id_)
        [record] = await self.primary.get([id_])
        has_vector = bool(await self.vector.existing([id_]))
        return {
            "has_document": record is not None,
            "has_vector": has_vector,
            "vector_status": record.vector_status if record else None,
            "vector_write_success": record.to_entry()["metadata"]["vectorWriteSuccess"] if record else None,
            "vector_write_error": record.vector_error if record else None,
        }

    async def _records(self, limit: int | None) -> AsyncIterator[list[Record]]:
        if limit is None:
            async for batch in self.primary.iterate(_ID_CHUNK):
                yield batch
        else:
            yield await self.primary.most_recent(check_limit(limit), include_empty=True)

    async def _scan(self, limit: int | None) -> dict[str, Any]:
        """Classify records against the vector store's actual contents."""
        report: dict[str, Any] = {
            "total_documents": 0, "consistent_documents": 0, "inconsistent_documents": 0,
            "missing_vectors": 0, "pending": 0, "failed": 0, "skipped": 0,
            "stale_vectors": 0, "orphaned_vectors": 0, "legacy": 0, "vector_write_failures": [],
            # strict writes commit record and vector together (same PostgreSQL database)
            "atomic_vector_writes": self._atomic,
        }
        ids: dict[str, list[Record]] = {k: [] for k in ("missing", "failed", "stale", "pending", "unwanted")}
        record_ids: set[str] = set()
        async for batch in self._records(limit):
            present = await self._fingerprints([r.id for r in batch])
            for r in batch:
                if limit is None:
                    record_ids.add(r.id)
                has = r.id in present
                report["total_documents"] += 1
                report["legacy"] += r.legacy  # written by the original package
                ok = False
                status = r.vector_status
                if r.legacy and status == "synced" and not self._wants_vector(r):
                    status = "skipped"  # e.g. an image the original skipped but called a success
                if status == "skipped":
                    report["skipped"] += 1
                    ok = not has
                    if has:
                        report["stale_vectors"] += 1
                        ids["unwanted"].append(r)
                elif status == "synced":
                    if not has:
                        report["missing_vectors"] += 1
                        ids["missing"].append(r)
                    elif self._is_stale(r, present[r.id]):
                        report["stale_vectors"] += 1
                        ids["stale"].append(r)
                    else:
                        ok = True
                elif status == "pending":
                    report["pending"] += 1
                    ids["pending"].append(r)
                else:
                    report["failed"] += 1
                    ids["failed"].append(r)
                    report["vector_write_failures"].append(
                        {"id": r.id, "error": r.vector_error, "timestamp": r.vector_updated_at,
                         "attempts": r.vector_attempts}
                    )
                report["consistent_documents"] += ok
        report["inconsistent_documents"] = report["total_documents"] - report["consistent_documents"]
        orphans: list[str] = []
        if limit is None:
            async for vector_ids in self.vector.iter_ids(_ID_CHUNK):
                orphans += [i for i in vector_ids if i not in record_ids]
            report["orphaned_vectors"] = len(orphans)
        return {"report": report, "ids": ids, "orphans": orphans}

    async def get_consistency_report(self, limit: int | None = 100) -> dict[str, Any]:
        """Check the ``limit`` newest entries (all if None) against the vector store."""
        await self._reading()
        return (await self._scan(limit))["report"]

    async def repair(self, dry_run: bool = False, dedupe: bool = False) -> dict[str, Any]:
        """Re-queue missing, failed, stale and stuck vectors; delete orphan vectors. With
        ``dedupe``, also delete older duplicates of an id (the original package inserted
        without upserting; reads already show only the newest)."""
        self._check_open()
        await self._queue.flush()
        await self._reading()
        duplicates: dict[str, int] = {}
        if dedupe and hasattr(self.primary, "dedupe"):
            duplicates = await self.primary.dedupe(dry_run=dry_run)
        scan = await self._scan(None)
        ids, orphans = scan["ids"], scan["orphans"]
        requeue = ids["missing"] + ids["failed"] + ids["stale"] + ids["pending"]
        queued = {r.id for r in requeue}  # a deduplicated id's vector may be an older copy's
        requeue += [r for r in await self.primary.get(sorted(duplicates)) if r is not None and r.id not in queued
                    and r.vector_status != "skipped"]
        if not dry_run:
            jobs = [Job("upsert", r.id, r.copy(vector_attempts=0), embed=True) for r in requeue]
            jobs += [Job("delete", i) for i in orphans + [r.id for r in ids["unwanted"]]]
            for job in jobs:
                job.future.add_done_callback(consume)
            if jobs:
                self._queue.submit(jobs)
        return {
            "dry_run": dry_run,
            "missing": len(ids["missing"]),
            "failed": len(ids["failed"]),
            "stale": len(ids["stale"]) + len(ids["unwanted"]),
            "pending": len(ids["pending"]),
            "requeued": len(requeue),
            "orphans_deleted": len(orphans) + len(ids["unwanted"]),
            "duplicates_removed": sum(duplicates.values()),
            "requeued_ids": [r.id for r in requeue],
            "deleted_ids": orphans + [r.id for r in ids["unwanted"]],
        }

    async def retry_vector_write(self, id_: str, max_retries: int = 3) -> bool:
        """Write this entry's vector now, up to ``max_retries`` attempts; True on success."""
        self._check_open()
        validate_id(id_)
        for attempt in range(1, max(max_retries, 0) + 1):
            await self._reading()
            [record] = await self.primary.get([id_])
            if record is None:
                raise DocumentNotFound(f"No entry with id {id_!r}", operation="retry_vector_write", document_id=id_)
            if record.vector_status == "skipped":
                return True
            if not await self._run_jobs([Job("upsert", id_, record, embed=True)]):
                return True
            if attempt < max_retries:
                await asyncio.sleep(backoff_ms(attempt, self.config.vector_retry_delay_ms) / 1000)
        if max_retries < 1 and (await self.primary.get([id_]))[0] is None:
            raise DocumentNotFound(f"No entry with id {id_!r}", operation="retry_vector_write", document_id=id_)
        return False

    # -- embedding space ------------------------------------------------------------------

    async def reembed(
        self,
        model: str | None = None,
        *,
        embedding_driver: str | None = None,
        embedder: Embedder | None = None,
        batch_size: int = 256,
        keep_old: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Re-embed every entry with another model into a new vector collection, side by side
        (searches keep using the old one meanwhile), then switch over in one manifest write.
        An interrupted run resumes when called again with the same model. Give a ``model``
        (and ``embedding_driver``, default the current one) or an ``embedder`` instance.

        Other processes with this store open keep the old model until they reopen it."""
        from ._reembed import run

        self._check_open()
        batch_size = check_limit(batch_size, "batch_size")
        driver = embedding_driver or self.config.embedding_driver
        if embedder is None:
            if model is None and embedding_driver is None:
                raise ValidationError("reembed needs a model, an embedding_driver or an embedder", field="model")
            config = StoreConfig(**{**self.config.model_dump(exclude_unset=True),
                                    "embedding_driver": driver, "embedding_function": model})
            embedder = _registry.build("embedding", config)
        try:
            return await run(self, embedder, driver, batch_size=batch_size, keep_old=keep_old, progress=progress)
        except BaseException:
            if embedder is not self.embedder:
                await embedder.aclose()
            raise

    async def _switch(self, embedder: Embedder, vector: VectorDriver, driver: str, collection: str) -> None:
        """Use another embedder and vector collection from now on (after a re-embedding run)."""
        await self._writer.settle()
        await self._queue.flush()
        self.embedder = self._queue.embedder = embedder
        self.vector = self._queue.vector = vector
        self.vector_collection = collection
        self.config = self.config.model_copy(update={"embedding_driver": driver, "embedding_function": embedder.model})
        self.supports_images = self._queue.images = supports_images(embedder, self.config)
        self._atomic = self._atomic and bool(self.primary.shares_transactions_with(vector))

    # -- queue and lifecycle --------------------------------------------------------------

    def get_queue_stats(self) -> dict[str, Any]:
        """Counters and settings of this store's vector write queue."""
        return self._queue.stats()

    get_chroma_queue_stats = get_queue_stats

    async def flush(self, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Wait until every queued vector write had its attempt, then give everything still
        outstanding in the outbox (pending writes, failed writes with retries left,
        tombstones) one attempt now, without waiting for its retry time.

        ``progress``: called with ``(done, total)`` writes as the work goes on."""
        self._check_open()
        tracker = _Tracker(self, progress)
        try:
            await self._queue.flush()
            if self.config.dual_write_enabled:
                attempted: set[str] = set()
                deadline = time.monotonic() + (self._lease_ms + self.config.vector_timeout_ms) / 1000
                while True:
                    if ran := await self._worker.run_once(force=True, skip=attempted):
                        attempted.update(ran)
                        continue
                    # Pending writes leased by another store or process: wait for their owner,
                    # or for the lease of an owner that died to run out.
                    await self._writer.settle()
                    if not await self.primary.count(_PENDING) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                await self._queue.flush()
            await self._writer.settle()
        finally:
            tracker.stop()

    async def vector_counts(self, ids: Sequence[str] | None = None) -> dict[str, int]:
        """Entries by vector state, read from the primary store: ``indexed`` (vector
        written), ``pending``, ``failed`` and ``skipped`` (no vector wanted).

        ``ids``: count only these entries (a bulk job's own); None counts the whole store."""
        await self._reading()
        names = {"synced": "indexed", "pending": "pending", "failed": "failed", "skipped": "skipped"}
        counts = dict.fromkeys(names.values(), 0)
        if ids is None:
            for status, key in names.items():
                counts[key] = await self.primary.count(_filters.parse({"vectorStatus": status}))
            return counts
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _ID_CHUNK):
            for record in await self.primary.get(unique[start : start + _ID_CHUNK]):
                if record is not None:
                    counts[names[record.vector_status]] += 1
        return counts

    async def drop(self) -> None:
        """Delete this store's data in both backends (the store stays usable, empty)."""
        self._check_open()
        await self._queue.flush()
        await self._writer.settle()
        await self.primary.drop()
        await self.vector.drop()
        if self.embedder.dimensions is None:
            self._manifest_pending = True
        else:
            await self.primary.set_manifest(self._manifest())

    async def cleanup(self) -> None:
        """Flush (bounded by vector_timeout_ms), stop this store's queue, close its drivers."""
        if self._closed:
            return
        self._closed = True
        if self._manifest_pending:
            try:
                await self._settle_manifest()
            except Exception:  # noqa: BLE001 - closing must go on
                log.exception("%s: could not write the collection manifest", self.name)
        await self._worker.stop()
        await self._queue.close(timeout=self.config.vector_timeout_ms / 1000)
        try:
            async with asyncio.timeout(self.config.vector_timeout_ms / 1000):
                await self._writer.settle()
        except Exception:  # noqa: BLE001 - the outbox still holds them as pending
            log.warning("could not write the last vector states of %s; they stay pending", self.name,
                        exc_info=True)
        for driver in (self.vector, self.primary, self.embedder):
            try:
                await driver.aclose()
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing %r", driver)

    close = cleanup


def supports_images(embedder: Embedder, config: StoreConfig) -> bool:
    """Image entries are embedded as images: the config says so, else the embedder does."""
    wanted = embedder.supports_images if config.supports_images is None else config.supports_images
    return bool(wanted) and hasattr(embedder, "embed_images")


def wants_vector(record: Record, *, enabled: bool, images: bool) -> bool:
    """An entry gets a vector unless vector writes are off, its text is empty, or it is an
    image and the embedder does not take images."""
    return enabled and not record.is_empty and (images or record.metadata.get("type") != "image")


def vector_for(vector: VectorDriver, config: StoreConfig, collection: str) -> VectorDriver:
    """A driver like ``vector`` (same class and settings) for another collection: the
    configured collection name or namespace is what it replaces, so it is left out."""
    unpinned = config.model_copy(update={
        "chromadb": config.chromadb.model_copy(update={"collection": None}),
        "qdrant": config.qdrant.model_copy(update={"collection": None}),
        "pinecone": config.pinecone.model_copy(update={"namespace": None}),
    })
    return type(vector).from_config(unpinned, collection)


def _check_names(name: Any, text_key: Any, time_key: Any) -> None:
    for field, value in (("name", name), ("text_key", text_key), ("time_key", time_key)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{field} must be a non-empty str, got {value!r}", field=field)
    if text_key == time_key:
        raise ValidationError("text_key and time_key must differ", field="time_key")


class _Tracker:
    """Reports a flush's progress from this process's queue while the flush runs."""

    def __init__(self, store: SemanticStore, progress: Callable[[int, int], None] | None) -> None:
        self._queue = store._queue
        self._progress = progress
        self._start = store._queue.total_written + store._queue.total_failed
        self._total = store._queue.outstanding()
        self._task = asyncio.get_running_loop().create_task(self._run()) if progress else None

    def _report(self) -> None:
        done = self._queue.total_written + self._queue.total_failed - self._start
        self._total = max(self._total, done + self._queue.outstanding())
        if self._progress is not None and self._total:
            self._progress(min(done, self._total), self._total)

    async def _run(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            if self._progress is not None and self._total:
                self._progress(self._total, self._total)


class SemanticStoreFactory:
    """The seed's factory: ``SemanticStoreFactory.create(name, text_key, time_key, config)``."""

    @staticmethod
    async def create(
        name: str,
        text_key: str = "text",
        time_key: str = "createdAt",
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> SemanticStore:
        return await SemanticStore.create(name, text_key, time_key, config)


DualStoreManager = SemanticStore
