"""SemanticStore: one async API over a primary store and a vector store (SPEC §1-4).

The store is a front: construction, writes and lifecycle. Opening and manifest checks live
in ``_open``; reads in ``_reads``, the consistency report and repairs in ``_report``, flush
and counts in ``_outbox_front`` and re-embedding in ``_switching`` (mixins of the store);
the write path in the ``outbox`` package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _open, _registry
from ._config import StoreConfig
from ._entries import build_record, now_ms, validate_id
from ._errors import EmbeddingMismatchError, SemanticStoreError, ValidationError, VectorWriteError
from ._expiry import Expiry, check_expiring, check_ttl
from ._outbox_front import OutboxFront
from ._policy import supports_images
from ._reads import Reads
from ._report import Consistency
from ._switching import EmbeddingSpace
from ._telemetry import traced, watch
from ._types import Manifest, Record
from .drivers.base import Embedder, PrimaryDriver, VectorDriver
from .outbox.planner import Job, Planner
from .outbox.queue import VectorWriteQueue
from .outbox.strict import StrictWrites, shares_transactions
from .outbox.vectors import consume
from .outbox.worker import OutboxWorker
from .outbox.writer import OutboxWriter

if TYPE_CHECKING:
    from ._scope import ScopedStore

__all__ = ["DualStoreManager", "SemanticStore", "SemanticStoreFactory"]

log = logging.getLogger("promethean_persistence")


class SemanticStore(Reads, EmbeddingSpace, OutboxFront, Consistency, Expiry):
    """Documents in a primary store, their embeddings in a vector store, kept consistent.

    >>> store = await SemanticStore.create("notes", config={"primaryDriver": "memory",
    ...     "vectorDriver": "memory", "embeddingDriver": "hashing"})
    >>> id_ = await store.insert({"text": "hello world"})
    >>> [e["text"] for e in await store.get_most_relevant("hello")]
    ['hello world']
    >>> await store.cleanup()

    Every method raises ``SemanticStoreError`` once the store is closed (``cleanup``), and
    ``BackendUnavailable`` or ``BackendRejected`` (``DriverError``) when a backend fails; the
    methods name their other errors.
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
        """Use ``create`` or ``from_drivers``: they open the drivers and check the manifest.

        ``name``: the store's name (its collection is ``{agent_name}_{name}``). ``text_key``
        and ``time_key``: the entry keys of the text and the time. ``config``: the resolved
        ``StoreConfig``. ``primary``, ``vector`` and ``embedder``: opened drivers. Raises
        nothing."""
        self.base_name = name
        self.name = config.collection_name(name)  #: ``{agent_name}_{name}``, as the original
        self.text_key = text_key
        self.time_key = time_key
        self.config = config
        self.primary = primary
        self.vector = vector
        self.embedder = embedder
        self._closed = False
        self._manifest_pending = False  #: the embedder could not tell its dimension at open
        self.vector_collection: str | None = None  #: set by a re-embedding run, else the store's name
        #: strict writes as one transaction when the vector store lives in the primary's database
        self._atomic = (
            config.consistency == "strict" and config.dual_write_enabled and shares_transactions(primary, vector)
        )
        #: ``vector_writes="worker"``: writes stay pending in the outbox for outbox workers
        self._deferred = config.vector_writes == "worker" and config.dual_write_enabled
        self._writer = OutboxWriter(primary)
        self._planner = Planner(
            enabled=config.dual_write_enabled,
            images=supports_images(embedder, config),
            model=embedder.model,
            # how long an item handed to this process's queue is kept from other claimers
            # (the queue renews it while the item waits or runs here)
            lease_ms=2 * config.vector_timeout_ms + 1_000,
            max_retries=config.vector_max_retries,
            retry_delay_ms=config.vector_retry_delay_ms,
        )
        self._queue = VectorWriteQueue(
            writer=self._writer,
            planner=self._planner,
            vector=vector,
            embedder=embedder,
            batch_size=config.vector_batch_size,
            flush_interval_ms=config.vector_flush_interval_ms,
            collection=self.name,
        )
        self._strict = StrictWrites(
            primary=primary,
            writer=self._writer,
            queue=self._queue,
            planner=self._planner,
            timeout_ms=config.vector_timeout_ms,
        )
        self._worker = OutboxWorker(
            primary,
            self._queue,
            lease_ms=self._planner.lease_ms,
            poll_ms=max(50, min(1000, config.vector_retry_delay_ms)),
        )
        watch(self)  # its outbox backlog in the OpenTelemetry gauge (a no-op without the otel extra)

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
        background: bool = True,
    ) -> SemanticStore:
        """Open (creating if needed) the store ``name``; config beats env beats defaults.

        ``name``: the store's name (its collection is ``{agent_name}_{name}``). ``text_key``
        and ``time_key``: the entry keys of the text and the time (they must differ).
        ``config``: a ``StoreConfig``, a mapping of settings, or None (environment and
        defaults). ``embedder``: an embedder instance to use instead of the configured one.
        ``background``: start the outbox worker that resumes vector work left pending (False,
        for short-lived readers: only this store's own writes run, so the model is not loaded
        for earlier work; ``flush`` still runs it).

        Returns the open store. Raises ``ValidationError`` for an empty name or key,
        ``ConfigurationError`` (``UnknownDriverError``, ``MissingDependencyError``) for bad
        settings or a driver whose package is missing, ``EmbeddingMismatchError`` when the
        collection was built with another model or dimension, and ``BackendUnavailable`` or
        ``BackendRejected`` when a backend cannot be opened."""
        _open.check_names(name, text_key, time_key)
        resolved = StoreConfig.resolve(config)
        collection = resolved.collection_name(name)
        return await cls.from_drivers(
            name,
            text_key,
            time_key,
            config=resolved,
            embedder=embedder or _registry.build("embedding", resolved),
            primary=_registry.build("primary", resolved, collection),
            vector=_registry.build("vector", resolved, collection),
            background=background,
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
        background: bool = True,
    ) -> SemanticStore:
        """Open a store on driver instances you built yourself (custom clients, test doubles).

        ``name``, ``text_key``, ``time_key``, ``config`` and ``background`` are as for
        ``create``; ``primary``, ``vector`` and ``embedder`` are unopened drivers (closed again
        if opening fails).

        Returns the open store. Raises ``ValidationError`` for an empty name or key,
        ``ConfigurationError`` for bad settings, ``EmbeddingMismatchError`` when the collection
        was built with another model or dimension, and ``BackendUnavailable`` or
        ``BackendRejected`` when a driver cannot be opened."""
        _open.check_names(name, text_key, time_key)
        resolved = config if isinstance(config, StoreConfig) else StoreConfig.resolve(config)
        opened: list[Any] = [embedder]
        try:
            vector, manifest = await _open.open_drivers(primary, vector, resolved, text_key, time_key, opened)
            store = cls(name, text_key, time_key, resolved, primary, vector, embedder)
            check_ttl(resolved, primary)
            if resolved.reranker is not None:
                store.reranker = _registry.build("reranker", resolved)
                opened.append(store.reranker)
            store.vector_collection = manifest.vector_collection if manifest else None
            await _open.check_manifest(store, manifest)
            if resolved.dual_write_enabled and background and not store._deferred:
                store._worker.start()  # resumes what a crashed or slow process left pending
        except BaseException:
            for driver in reversed(opened):
                try:
                    await driver.aclose()
                except Exception:  # noqa: BLE001 - keep the original error
                    log.exception("closing %r after a failed open", driver)
            raise
        return store

    @property
    def supports_images(self) -> bool:
        """Whether image entries are embedded as images (the config, else the embedder, says
        so; see ``_policy.supports_images``)."""
        return self._planner.images

    def manifest(self) -> Manifest:
        """The collection manifest of this store's current embedding space (embedding driver,
        model, dimension, vector collection). Returns a ``Manifest``; the embedder's
        dimension must be known (it is once the store is open, unless an HTTP model of
        unknown size has not answered yet). Raises nothing."""
        return _open.manifest_of(self)

    def wants_vector(self, record: Record) -> bool:
        """Whether ``record`` gets a vector in this store: not when vector writes are off,
        its text is empty, or it is an image the embedder does not take. Returns a bool;
        raises nothing."""
        return self._planner.wants_vector(record)

    async def __aenter__(self) -> SemanticStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()

    def _check_open(self) -> None:
        if self._closed:
            raise SemanticStoreError(f"Store {self.name!r} is closed", operation="use")

    async def settle(self) -> None:
        """Let this store's buffered outbox writes (and a deferred manifest) land, so reads
        see every acknowledged write. Every read does this first.

        Returns None. Raises ``SemanticStoreError`` once the store is closed,
        ``EmbeddingMismatchError`` when the deferred manifest check finds another embedding
        space, and the primary store's ``BackendUnavailable``/``BackendRejected``."""
        self._check_open()
        await self._writer.settle()
        if self._manifest_pending:
            await _open.settle_manifest(self)

    # -- writes ---------------------------------------------------------------------------

    @traced("insert", items=1)
    async def insert(self, entry: Mapping[str, Any]) -> str:
        """Validate and store one ``entry`` (SPEC §4 write path) and return its id.

        ``entry``: a mapping with the text under ``text_key``; optionally an ``id`` (else a
        UUID is made; an existing id is replaced), the time under ``time_key`` (epoch ms, a
        datetime or an ISO-8601 string; default now), ``expires_at`` (as the time; default
        ``ttl_ms`` after the write, else never), ``metadata`` (a JSON-serialisable mapping)
        and other top-level fields, kept as they are.

        Returns the entry's id. Raises ``ValidationError`` for bad input (nothing written),
        in strict mode ``VectorWriteError`` when the vector write failed (nothing stored),
        and the primary store's ``BackendUnavailable``/``BackendRejected``."""
        return (await self.insert_many([entry]))[0]

    add_entry = insert

    @traced("insert_many", items=1)
    async def insert_many(self, entries: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store ``entries`` (a sequence of mappings, each as for ``insert``) in batches.
        Every entry is validated before anything is written; all-or-nothing in strict mode.
        A repeated id is stored once, its last entry winning.

        Returns the ids in input order. Raises ``ValidationError`` for a bad entry or a
        non-sequence (nothing written), in strict mode ``VectorWriteError`` when a vector
        write failed (nothing stored), and the primary store's ``BackendUnavailable``/
        ``BackendRejected``."""
        self._check_open()
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise ValidationError("insert_many takes a sequence of entries", field="entries")
        now = now_ms()
        records = [
            build_record(
                e,
                text_key=self.text_key,
                time_key=self.time_key,
                max_text_bytes=self.config.max_text_bytes,
                now=now,
                ttl_ms=self.config.ttl_ms,
            )
            for e in entries
        ]
        check_expiring(records, self.primary)
        if not records:
            return []
        unique = list({r.id: r for r in records}.values())  # the last write of an id wins
        for record in unique:
            self._planner.start(record, now)
            if self._deferred and record.vector_status == "pending":
                record.vector_next_at = now  # not leased to this process: due for a worker at once
        if self._atomic:
            await self._strict.atomic(unique, now)
            return [r.id for r in records]
        early = await self._embed_early(unique)
        try:
            previous = await self._writer.put(unique)
        except BaseException:
            for task in {e.task for e in early.values()}:
                task.cancel()
            raise
        jobs = [j for j in (self._planner.job(r, p) for r, p in zip(unique, previous)) if j is not None]
        if self._deferred:  # embedding is the workers' (a vector delete needs no embedder)
            jobs = [j for j in jobs if j.kind == "delete"]
        self._use_early(jobs, early)
        errors = await self._run_jobs(jobs)
        if self._manifest_pending:
            try:
                await _open.settle_manifest(self)
            except EmbeddingMismatchError:  # the write stands; reads raise it
                self._manifest_pending = True
                log.exception("%s: embedding space differs from the collection's", self.name)
        if errors and self.config.consistency == "strict":
            await self._strict.undo(unique, previous, errors)
            first = next(iter(errors.values()))
            ids = ", ".join(list(errors)[:5])
            raise VectorWriteError(
                f"Vector store write failed for {len(errors)} of {len(unique)} entries ({ids}): {first}; "
                "nothing was stored",
                operation="insert",
                document_id=next(iter(errors)),
            ) from first
        return [r.id for r in records]

    async def _run_jobs(self, jobs: list[Job]) -> dict[str, BaseException]:
        """Queue the jobs and wait (bounded) for their first attempt; return failures by id."""
        if not jobs:
            return {}
        if any(j.embed and j.kind == "upsert" for j in jobs):
            await self._queue.warm()  # a first model load is not a hanging backend
        await self._queue.run(jobs, self.config.vector_timeout_ms / 1000)
        errors: dict[str, BaseException] = {}
        for job in jobs:
            if not job.future.done():
                job.future.add_done_callback(consume)
                late = VectorWriteError(
                    f"vector write still running after {self.config.vector_timeout_ms} ms",
                    operation="insert",
                    document_id=job.id,
                )
                late.timed_out = True
                errors[job.id] = late
            elif (failure := job.future.exception()) is not None:
                errors[job.id] = failure
        for id_, failure in errors.items():
            log.debug("vector write for %s in %s failed: %s", id_, self.name, failure)
        return errors

    async def delete(self, id_: str) -> bool:
        """Delete the entry ``id_`` and its vector. If the vector delete fails, a tombstone in
        the outbox keeps retrying it.

        Returns True if the entry existed (a missing id is not an error). Raises
        ``ValidationError`` for an id that is not a non-empty str, and the primary store's
        ``BackendUnavailable``/``BackendRejected``."""
        self._check_open()
        validate_id(id_, operation="delete")
        now = now_ms()
        tombstone_at = now + self._planner.lease_ms if self.config.dual_write_enabled else None
        existed = bool(await self.primary.delete([id_], tombstone_at=tombstone_at))
        if existed and tombstone_at is not None:
            await self._run_jobs([self._planner.remove(id_, Record.tombstone(id_, tombstone_at, now))])
        return existed

    def scope(self, **fields: Any) -> ScopedStore:
        """A view of this store confined to the entries whose metadata holds ``fields``
        (e.g. ``user="ada"``: str, int, float or bool values): its writes carry them, its
        reads and deletes see only them; ``drop_scope()`` deletes them (see ``ScopedStore``).
        Returns a ``ScopedStore``; raises ``ValidationError`` for no or bad fields."""
        from ._scope import ScopedStore

        return ScopedStore(self, fields)

    # -- queue and lifecycle --------------------------------------------------------------

    async def drop(self) -> None:
        """Delete this store's data in both backends (the store stays usable, empty).
        Returns None; raises ``SemanticStoreError`` once closed, and ``BackendUnavailable``
        or ``BackendRejected`` when a backend fails."""
        self._check_open()
        await self._queue.flush()
        await self._writer.settle()
        await self.primary.drop()
        await self.vector.drop()
        if self.embedder.dimensions is None:
            self._manifest_pending = True
        else:
            await self.primary.set_manifest(self.manifest())

    async def cleanup(self) -> None:
        """Flush (bounded by ``vector_timeout_ms``), stop this store's queue and close its
        drivers; writes still pending stay in the outbox for the next open. Calling it again
        does nothing. Returns None; raises nothing (failures while closing are logged)."""
        if self._closed:
            return
        self._closed = True
        if self._manifest_pending:
            try:
                await _open.settle_manifest(self)
            except Exception:  # noqa: BLE001 - closing must go on
                log.exception("%s: could not write the collection manifest", self.name)
        await self._worker.stop()
        await self._queue.close(timeout=self.config.vector_timeout_ms / 1000)
        try:
            async with asyncio.timeout(self.config.vector_timeout_ms / 1000):
                await self._writer.settle()
        except Exception:  # noqa: BLE001 - the outbox still holds them as pending
            log.warning("could not write the last vector states of %s; they stay pending", self.name, exc_info=True)
        drivers: list[Any] = [self.vector, self.primary, self.embedder, *([self.reranker] if self.reranker else [])]
        for driver in drivers:
            try:
                await driver.aclose()
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing %r", driver)

    close = cleanup


class SemanticStoreFactory:
    """The seed's factory: ``SemanticStoreFactory.create(name, text_key, time_key, config)``."""

    @staticmethod
    async def create(
        name: str,
        text_key: str = "text",
        time_key: str = "createdAt",
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> SemanticStore:
        """``SemanticStore.create(name, text_key, time_key, config)``: ``name``,
        ``text_key``, ``time_key`` and ``config`` as there. Returns the open store and raises
        what ``SemanticStore.create`` raises."""
        return await SemanticStore.create(name, text_key, time_key, config)


DualStoreManager = SemanticStore
