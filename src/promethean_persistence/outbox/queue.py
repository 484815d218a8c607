"""The vector write queue: group commit of embed + upsert/delete calls.

A batch starts as soon as the vector side is idle; writes that arrive meanwhile join the
next batch (up to ``vector_batch_size``). A lone write never waits for a timer unless
``vector_flush_interval_ms`` asks for one. Each write's outcome goes to the outbox writer
(``outbox.writer.OutboxWriter``) before the caller's future resolves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .._entries import content_hash, fingerprint, now_ms
from .._errors import (
    BackendUnavailable,
    DriverError,
    EmbeddingError,
    EmbeddingMismatchError,
    SemanticStoreError,
)
from .._types import FINGERPRINT_KEY, Record
from ..drivers.base import DocumentVector, Embedder, ImageEmbedder, VectorDriver, Warmable
from .planner import Job, Planner
from .writer import OutboxWriter

log = logging.getLogger("promethean_persistence.queue")
T = TypeVar("T")


class VectorWriteQueue:
    """Embed + upsert/delete batches for one store; outcomes go to the outbox ``writer`` as
    vector states decided by the ``planner``."""

    def __init__(
        self,
        *,
        writer: OutboxWriter,
        planner: Planner,
        vector: VectorDriver,
        embedder: Embedder,
        batch_size: int,
        flush_interval_ms: int,
        timeout_ms: int,
        collection: str,
    ) -> None:
        self.writer = writer
        self.planner = planner
        self.vector = vector
        self.embedder = embedder
        self.batch_size = batch_size
        self.flush_interval_ms = flush_interval_ms
        self.timeout_ms = timeout_ms
        self.collection = collection
        self._jobs: deque[Job] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._processing = False
        self._batch: list[Job] = []  #: the batch being processed
        self._renewal: asyncio.TimerHandle | None = None
        self._failed_ids: set[str] = set()
        self.total_written = 0
        self.total_failed = 0
        self.batches = 0
        self.last_flush_at: int | None = None
        self._healthy = True  #: warn once per outage, not once per write

    # -- public --------------------------------------------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        """Queue jobs without waiting for them."""
        self._jobs.extend(jobs)
        self._idle.clear()
        self._start()

    def _start(self) -> None:
        if self._jobs and (self._runner is None or self._runner.done()):
            self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"vector-queue:{self.collection}")
        if self._renewal is None:
            self._renewal = asyncio.get_running_loop().call_later(self.planner.lease_ms / 3000, self._renew_leases)

    def _lease(self, jobs: list[Job], until: int) -> None:
        now = now_ms()
        self.writer.add_states(
            [
                self.planner.lease(r, until, now)
                for j in jobs
                if (r := j.record) is not None
                and not j.future.done()
                and r.vector_status in ("pending", "failed", "deleting")
            ]
        )

    def _renew_leases(self) -> None:
        """Extend the outbox lease of every write still queued or running here, so that no
        other claimer (this process's worker included) takes work that is only slow."""
        self._renewal = None
        jobs = [*self._batch, *self._jobs]
        if jobs:
            self._lease(jobs, now_ms() + self.planner.lease_ms)
            self._renewal = asyncio.get_running_loop().call_later(self.planner.lease_ms / 3000, self._renew_leases)

    async def run(self, jobs: list[Job], timeout_s: float) -> None:
        """Submit jobs and wait at most ``timeout_s`` for their first attempt.

        The wait bounds the caller only: work still running when it ends goes on, and its
        outcome is recorded when it comes (slow is not failed)."""
        self.submit(jobs)
        await asyncio.wait([j.future for j in jobs], timeout=timeout_s)

    def outstanding(self) -> int:
        """Writes queued or in the batch being processed."""
        return len(self._jobs) + len(self._batch)

    async def flush(self) -> None:
        """Wait until every submitted write had its attempt."""
        await self._idle.wait()

    async def close(self, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except TimeoutError:
            if outstanding := self.outstanding():
                log.warning(
                    "vector queue of %s: %d writes left pending at close; the next open resumes them",
                    self.collection,
                    outstanding,
                )
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        left = [j for j in (*self._batch, *self._jobs) if not j.future.done()]
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        # still durable as pending records: release their leases so the next claimer (another
        # process, or the next open) takes them at once
        self._lease(left, now_ms())
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(BackendUnavailable("store closed before the vector write ran"))
        self._jobs.clear()
        self._idle.set()

    def stats(self) -> dict[str, Any]:
        return {
            "queue_length": len(self._jobs),
            "processing": self._processing,
            "pending": self.outstanding(),
            "failed": len(self._failed_ids),
            "total_written": self.total_written,
            "total_failed": self.total_failed,
            "batches": self.batches,
            "last_flush_at": self.last_flush_at,
            "config": {
                "batch_size": self.batch_size,
                "flush_interval_ms": self.flush_interval_ms,
                "max_retries": self.planner.max_retries,
                "retry_delay_ms": self.planner.retry_delay_ms,
                "enabled": self.planner.enabled,
            },
        }

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self._jobs:
                if self.flush_interval_ms and len(self._jobs) < self.batch_size:
                    await asyncio.sleep(self.flush_interval_ms / 1000)
                batch = self._batch = [self._jobs.popleft() for _ in range(min(self.batch_size, len(self._jobs)))]
                self._processing = True
                try:
                    await self._process(batch)
                except BaseException as exc:  # never leave a caller waiting
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(
                                exc if isinstance(exc, Exception) else BackendUnavailable("cancelled")
                            )
                    if not isinstance(exc, Exception):
                        raise
                    log.exception("vector queue of %s: batch failed unexpectedly", self.collection)
                finally:
                    self._processing = False
                    self._batch = []
        finally:
            if not self._jobs:
                self._idle.set()

    async def _timed(self, awaitable: Awaitable[T], what: str) -> T:
        """A remote vector backend call, bounded like a client timeout: a hanging backend
        fails. In-process work is slow at worst, and its result is always kept."""
        if self.vector.capabilities.in_process:
            return await awaitable
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):  # no extra task, unlike wait_for
                return await awaitable
        except TimeoutError:
            error = BackendUnavailable(f"{what} timed out after {self.timeout_ms} ms", operation=what)
            error.timed_out = True  # the backend may still have applied the write
            raise error from None

    async def _process(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        latest: dict[str, Job] = {}
        for job in batch:  # a later write of the same id supersedes an earlier one
            latest[job.id] = job
        upserts = [j for j in latest.values() if j.kind == "upsert"]
        full = [j for j in upserts if j.embed]
        meta_only = [j for j in upserts if not j.embed]
        deletes = [j.id for j in latest.values() if j.kind == "delete"]

        outcomes: dict[str, BaseException | None] = {}
        if full:
            outcomes.update(await self._upsert(full, embed=True))
        if meta_only:
            done = await self._upsert(meta_only, embed=False)
            retry = [j for j in meta_only if done[j.id] is not None]
            if retry:  # the vector may be gone: fall back to a full write
                done.update(await self._upsert(retry, embed=True))
            outcomes.update(done)
        follow = await self._moved_on([j for j in upserts if outcomes.get(j.id) is None])
        if deletes:
            error: BaseException | None = None
            try:
                await self._timed(self.vector.delete(deletes), "vector delete")
            except Exception as exc:  # noqa: BLE001 - recorded per job
                error = exc
            outcomes.update(dict.fromkeys(deletes, error))

        self._record(upserts + [j for j in latest.values() if j.kind == "delete" and j.record], outcomes)
        errors = [e for e in outcomes.values() if e is not None]
        if errors and self._healthy:
            log.warning(
                "vector writes of %s are failing (%s); they stay in the outbox and are retried",
                self.collection,
                errors[0],
            )
        elif not errors and not self._healthy:
            log.warning("vector writes of %s recovered", self.collection)
        self._healthy = not errors
        self.batches += 1
        self.last_flush_at = now_ms()
        log.debug("vector batch of %d in %.1f ms", len(batch), (time.perf_counter() - started) * 1000)
        for job in batch:
            error = outcomes.get(job.id)
            if job.future.done():
                continue
            if error is None:
                job.future.set_result(None)
            else:
                job.future.set_exception(error)
        if follow:
            for job in follow:
                job.future.add_done_callback(consume)
            self.submit(follow)

    async def _moved_on(self, jobs: list[Job]) -> list[Job]:
        """Follow-up writes for records that changed while their vector was being written.

        The vector just written may have overwritten a newer one (another store or process
        on the same primary wrote the id meanwhile), and its ``synced`` state will not apply
        (the version moved on), so the record's current version is written again; a deleted
        or emptied record gets its vector deleted. Runs after the upsert, so whichever write
        lands last sees the newest version."""
        if not jobs:
            return []
        try:
            current = await self.writer.primary.get([j.id for j in jobs])
        except Exception:  # noqa: BLE001 - the report and repair still see any drift
            log.debug("could not re-read records after a vector write", exc_info=True)
            return []
        moved = [(job, now) for job, now in zip(jobs, current) if now is None or now.version != job.upserted.version]
        if not moved:
            return []
        queued = {j.id: j.record.version for j in self._jobs if j.record is not None}
        follow = []
        for job, now in moved:
            if now is not None and queued.get(now.id, -1) >= now.version:
                continue  # the newer version's own write is queued here already
            if now is None or now.vector_status == "skipped":
                follow.append(self.planner.remove(job.id))
            else:
                follow.append(
                    self.planner.rewrite(now, embed=content_hash(now.text) != content_hash(job.upserted.text))
                )
        return follow

    async def _upsert(self, jobs: list[Job], *, embed: bool) -> dict[str, BaseException | None]:
        """Embed (unless metadata only) and upsert; the outcome of each job by id."""
        records = [j.upserted for j in jobs]
        try:
            vectors = None
            if embed:
                await self.warm()
                try:
                    # never abandoned: in-process models are slow, not failed, on a busy machine,
                    # and HTTP embedders fail on their own client timeout
                    vectors = await self._embed(records)
                except (EmbeddingMismatchError, DriverError):
                    raise  # the server or the vector space, not one input
                except Exception as exc:
                    if len(jobs) > 1:  # one bad input (an unreadable image, a refused text) must not sink the batch
                        return await self._one_by_one(jobs)
                    if isinstance(exc, SemanticStoreError):
                        raise
                    raise EmbeddingError(f"embedding failed: {exc}", driver=self.embedder.name) from exc
            await self._timed(upsert_records(self.vector, records, vectors, self.planner.model), "vector upsert")
        except Exception as exc:  # noqa: BLE001 - recorded per job
            return dict.fromkeys((j.id for j in jobs), exc)
        return dict.fromkeys((j.id for j in jobs), None)

    async def _one_by_one(self, jobs: list[Job]) -> dict[str, BaseException | None]:
        outcomes: dict[str, BaseException | None] = {}
        for job in jobs:
            outcomes.update(await self._upsert([job], embed=True))
        return outcomes

    async def warm(self) -> None:
        """Load the embedder's model if it has one to load (outside any timeout)."""
        if self.embedder.capabilities.warm:
            await cast(Warmable, self.embedder).warm()

    async def _embed(self, records: list[Record]) -> Any:
        return await embed_records(self.embedder, records, images=self.planner.images)

    def _record(self, jobs: list[Job], outcomes: dict[str, BaseException | None]) -> None:
        now = now_ms()
        states = []
        for job in jobs:
            error = outcomes.get(job.id)
            state = self.planner.outcome(job, error, now, describe_error)
            if state.status == "synced":
                self.total_written += 1
                self._failed_ids.discard(job.id)
            elif state.status == "failed":
                self.total_failed += 1
                self._failed_ids.add(job.id)
            states.append(state)
        self.writer.add_states(states)


async def embed_records(embedder: Embedder, records: list[Record], *, images: bool) -> Any:
    """One vector per record; ``metadata.type == "image"`` ones through ``embed_images``."""
    if not images:
        return await embedder.embed([r.text for r in records])
    is_image = [r.metadata.get("type") == "image" for r in records]
    texts = [r.text for r, img in zip(records, is_image) if not img]
    paths = [r.text for r, img in zip(records, is_image) if img]
    text_vectors = iter(await embedder.embed(texts) if texts else [])
    image_vectors = iter(await cast(ImageEmbedder, embedder).embed_images(paths) if paths else [])
    return [next(image_vectors) if img else next(text_vectors) for img in is_image]


def vector_metadata(record: Record, model: str | None) -> dict[str, Any]:
    """The metadata a vector is stored with: the record's, plus the fingerprint of what was
    embedded (from the text itself, which may have changed under a stale ``content_hash``)."""
    return {**record.metadata, FINGERPRINT_KEY: fingerprint(content_hash(record.text), model)}


async def upsert_records(vector: VectorDriver, records: list[Record], vectors: Any, model: str | None) -> None:
    """Upsert records' vectors (None: metadata only), with what the driver keeps besides."""
    ids, metadata = [r.id for r in records], [vector_metadata(r, model) for r in records]
    if vector.capabilities.stores_documents:  # e.g. Chroma keeps the text too
        await cast(DocumentVector, vector).upsert(
            ids, vectors, metadata, documents=[r.text for r in records], timestamps=[r.timestamp for r in records]
        )
    else:
        await vector.upsert(ids, vectors, metadata)


def consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a background job's outcome so asyncio does not report it as lost."""
    if not future.cancelled():
        future.exception()


def describe_error(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:2000]


class QueueProgress:
    """Reports ``(done, total)`` of a queue's work to ``progress`` while a flush runs."""

    def __init__(self, queue: VectorWriteQueue, progress: Callable[[int, int], None] | None) -> None:
        self._queue = queue
        self._progress = progress
        self._start = queue.total_written + queue.total_failed
        self._total = queue.outstanding()
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
        """End the reports with a full bar."""
        if self._task is not None:
            self._task.cancel()
            if self._progress is not None and self._total:
                self._progress(self._total, self._total)
