"""The vector write queue: group commit of embed + upsert/delete calls.

A batch starts as soon as the vector side is idle; writes that arrive meanwhile join the
next batch (up to ``vector_batch_size``). A lone write never waits for a timer unless
``vector_flush_interval_ms`` asks for one. Each write's outcome goes to the outbox writer
(``outbox.writer.OutboxWriter``) before the caller's future resolves.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from typing import Any, cast

import numpy as np

from .._entries import content_hash, now_ms
from .._errors import (
    BackendUnavailable,
    DriverError,
    EmbeddingError,
    EmbeddingMismatchError,
    SemanticStoreError,
)
from .._telemetry import traced_batch
from .._types import Record
from ..drivers.base import Embedder, VectorDriver, Warmable
from .planner import Early, Job, Planner
from .vectors import consume, describe_error, embed_records, upsert_records
from .writer import OutboxWriter

log = logging.getLogger("promethean_persistence.queue")
VERIFY_EVERY = 256  #: written upserts re-read together at most (see ``VectorWriteQueue._verify``)
VERIFY_DELAY_S = 0.02  #: how long an idle queue waits for more work before re-reading
#: batches embedded together when work is queued in bulk: measured, length-sorted windows of
#: 1,024 texts reach 0.9x of the embedder alone where 64-text batches in input order reach 0.45x
WINDOW_BATCHES = 16


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
        collection: str,
    ) -> None:
        """``writer``: the outbox writer that records outcomes. ``planner``: decides jobs and
        states. ``vector`` and ``embedder``: the store's drivers (replaced on a model
        switch). ``batch_size``: jobs per batch. ``flush_interval_ms``: how long a partial
        batch waits for more (0: not at all). ``collection``: the store's name, for logs and
        task names. No call is timed here: slow work is kept, and each remote driver bounds
        its calls with its own client timeout. Raises nothing."""
        self.writer = writer
        self.planner = planner
        self.vector = vector
        self.embedder = embedder
        self.batch_size = batch_size
        self.flush_interval_ms = flush_interval_ms
        self.collection = collection
        self._jobs: deque[Job] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._processing = False
        self._batch: list[Job] = []  #: the batch being processed
        self._renewal: asyncio.TimerHandle | None = None
        #: upserts written but not yet re-read (see ``_verify``), by id
        self._unverified: dict[str, Job] = {}
        self._arrived = asyncio.Event()  #: new jobs (or a flush) while the runner waits to verify
        self._flushing = 0  #: callers of ``flush`` waiting: the re-read does not wait for more work
        self._failed_ids: set[str] = set()
        self.total_written = 0
        self.total_failed = 0
        self.batches = 0
        self.last_flush_at: int | None = None
        self._healthy = True  #: warn once per outage, not once per write
        self._waiters: list[_Waiter] = []  #: callers of ``run`` waiting for their jobs

    # -- public --------------------------------------------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` without waiting for them (their futures resolve later). Returns None;
        raises nothing (call it on the running event loop)."""
        self._jobs.extend(jobs)
        self._idle.clear()
        self._arrived.set()
        self._start()

    def _start(self) -> None:
        if self._jobs and (self._runner is None or self._runner.done()):
            # a fresh context: a batch serves many callers, its trace spans are no one caller's children
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"vector-queue:{self.collection}", context=contextvars.Context()
            )
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
        """Submit ``jobs`` and wait at most ``timeout_s`` seconds for their first attempt.

        The wait bounds the caller only: work still running when it ends goes on, and its
        outcome is recorded when it comes (slow is not failed). Returns None; outcomes are
        in the jobs' futures, never raised here."""
        self.submit(jobs)
        # one waiter for them all: a wait on each future costs a callback per job (measured
        # 0.7-1 ms per 500-job batch); the queue wakes it as it settles jobs (``_wake``)
        waiter = _Waiter(jobs)
        if waiter.check():
            return
        self._waiters.append(waiter)
        try:
            await asyncio.wait([waiter.done], timeout=timeout_s)
        finally:
            self._waiters.remove(waiter)

    def prefetch(self, records: list[Record]) -> list[Early]:
        """Start embedding ``records`` now (in the windows the queue embeds), so that the work
        overlaps the primary write their jobs wait for; each job takes its vector from the
        ``Early`` returned for its record (one per record, in order). An embedding failure is
        met by the jobs, as one of the queue's own. Returns the list; raises nothing."""
        early: list[Early] = []
        size = self.batch_size * WINDOW_BATCHES
        for start in range(0, len(records), size):
            part = records[start : start + size]
            task = asyncio.ensure_future(self._embed(part, warm=True))
            task.add_done_callback(consume)
            early += [Early(task, i, self.embedder) for i in range(len(part))]
        return early

    def outstanding(self) -> int:
        """How many writes are queued or in the batch being processed. Returns an int."""
        return len(self._jobs) + len(self._batch)

    async def flush(self) -> None:
        """Wait until every submitted write had its attempt. Returns None; raises nothing
        (failures are recorded per job)."""
        # the re-read of written vectors waits for more work (``_verify``): none is coming
        # from a caller that flushes, so it runs now instead of after its wait
        self._flushing += 1
        self._arrived.set()
        try:
            await self._idle.wait()
        finally:
            self._flushing -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Flush for at most ``timeout`` seconds (None: no bound), then stop: work left is
        still pending in the outbox, its leases released so the next claimer takes it at
        once, and its waiting futures fail with ``BackendUnavailable``. Returns None; raises
        nothing."""
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
        # still durable as pending records: release their leases so the next claimer (another
        # process, or the next open) takes them at once; before the cancellation, which fails
        # the running batch's futures
        self._lease([j for j in (*self._batch, *self._jobs) if not j.future.done()], now_ms())
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(BackendUnavailable("store closed before the vector write ran"))
        self._jobs.clear()
        self._idle.set()
        self._wake()

    def stats(self) -> dict[str, Any]:
        """Counters and settings: ``queue_length``, ``processing``, ``pending``, ``failed``,
        ``total_written``, ``total_failed``, ``batches``, ``last_flush_at`` and ``config``.
        Returns a dict; raises nothing."""
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
            while self._jobs or self._unverified:
                if not self._jobs or len(self._unverified) >= VERIFY_EVERY:
                    await self._verify()
                    continue
                if self.flush_interval_ms and len(self._jobs) < self.batch_size:
                    await asyncio.sleep(self.flush_interval_ms / 1000)
                batch = self._batch = [self._jobs.popleft() for _ in range(self._window())]
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
                    self._wake()
        finally:
            if not self._jobs and not self._unverified:
                self._idle.set()

    def _wake(self) -> None:
        """Wake the callers of ``run`` whose jobs are all settled now."""
        for waiter in self._waiters:
            waiter.check()

    def _window(self) -> int:
        """Jobs to take now: one batch, or for bulk work up to ``WINDOW_BATCHES`` batches,
        embedded in one call so that the embedder sorts them by length (padding each run of
        the model to its own longest text) and upserted a batch at a time."""
        if len(self._jobs) <= self.batch_size:
            return len(self._jobs)
        return min(len(self._jobs), self.batch_size * WINDOW_BATCHES)

    @traced_batch  # the root span of the batch's embedding and upserts
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
        self._unverified.update((j.id, j) for j in upserts if outcomes.get(j.id) is None)
        if deletes:
            error: BaseException | None = None
            try:
                await self.vector.delete(deletes)
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

    async def _verify(self) -> None:
        """Re-read the records whose vectors were written and queue follow-up writes for
        those that changed meanwhile.

        A vector just written may have overwritten a newer one (another store or process on
        the same primary wrote the id meanwhile), and its ``synced`` state will not apply (the
        version moved on), so the record's current version is written again; a deleted or
        emptied record gets its vector deleted. The re-read comes after the upsert, so
        whichever write lands last sees the newest version. Upserts are re-read together:
        when the queue has nothing else to do, after a short wait for more work (none while a
        caller flushes), or every ``VERIFY_EVERY`` writes, so sequential inserts do not pay a
        read each."""
        if not self._jobs and not self._flushing:
            self._arrived.clear()
            try:
                async with asyncio.timeout(VERIFY_DELAY_S):
                    await self._arrived.wait()
                    if self._jobs and len(self._unverified) < VERIFY_EVERY:
                        return  # more work came: write it first, re-read them together
            except TimeoutError:
                pass
        jobs, self._unverified = list(self._unverified.values()), {}
        try:
            # versions first: the texts just written are not read back unless they moved on
            stored = await self.writer.primary.versions([j.id for j in jobs])
            moved = [j for j in jobs if stored.get(j.id) != j.upserted.version]
            current = await self.writer.primary.get([j.id for j in moved]) if moved else []
        except Exception:  # noqa: BLE001 - the report and repair still see any drift
            log.debug("could not re-read records after a vector write", exc_info=True)
            return
        follow = self._follow_ups(moved, current)
        for job in follow:
            job.future.add_done_callback(consume)
        if follow:
            self.submit(follow)

    def _follow_ups(self, jobs: list[Job], current: list[Record | None]) -> list[Job]:
        moved = [(job, now) for job, now in zip(jobs, current) if now is None or now.version != job.upserted.version]
        if not moved:
            return []
        queued = {j.id: j.record.version for j in self._jobs if j.record is not None}
        follow = []
        for job, now in moved:
            if now is not None and queued.get(now.id, -1) >= now.version:
                continue  # the newer version's own write is queued here already
            if now is not None and self.writer.written.get(now.id, -1) >= now.version:
                continue  # put by this process: its own write comes after ours (one queue, in order)
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
                    vectors = await self._vectors(jobs)
                except (EmbeddingMismatchError, DriverError):
                    raise  # the server or the vector space, not one input
                except Exception as exc:
                    if len(jobs) > 1:  # one bad input (an unreadable image, a refused text) must not sink the batch
                        return await self._one_by_one(jobs)
                    if isinstance(exc, SemanticStoreError):
                        raise
                    raise EmbeddingError(f"embedding failed: {exc}", driver=self.embedder.name) from exc
        except Exception as exc:  # noqa: BLE001 - recorded per job
            return dict.fromkeys((j.id for j in jobs), exc)
        outcomes: dict[str, BaseException | None] = {}
        for start in range(0, len(jobs), self.batch_size):  # a window is upserted a batch at a time
            part = slice(start, start + self.batch_size)
            error: BaseException | None = None
            try:
                await upsert_records(
                    self.vector, records[part], None if vectors is None else vectors[part], self.planner.model
                )
            except Exception as exc:  # noqa: BLE001 - recorded per job
                error = exc
            outcomes.update(dict.fromkeys((j.id for j in jobs[part]), error))
        return outcomes

    async def _one_by_one(self, jobs: list[Job]) -> dict[str, BaseException | None]:
        outcomes: dict[str, BaseException | None] = {}
        for job in jobs:
            job.early = None  # embedded with the batch that failed
            outcomes.update(await self._upsert([job], embed=True))
        return outcomes

    async def warm(self) -> None:
        """Load the embedder's model if it has one to load (outside any timeout). Returns
        None; raises ``EmbeddingError`` when the model cannot be loaded."""
        if self.embedder.capabilities.warm:
            await cast(Warmable, self.embedder).warm()

    async def _embed(self, records: list[Record], *, warm: bool = False) -> Any:
        if warm:
            await self.warm()
        return await embed_records(self.embedder, records, images=self.planner.images)

    async def _vectors(self, jobs: list[Job]) -> Any:
        """The vectors of ``jobs``' records: embedded early where a job has them (by this
        embedder), the others now. Raises what embedding raises."""
        early = [j.early if j.early is not None and j.early.embedder is self.embedder else None for j in jobs]
        if not any(early):
            return await self._embed([j.upserted for j in jobs])
        late = [j.upserted for j, e in zip(jobs, early) if e is None]
        fresh = iter(await self._embed(late) if late else [])
        # shielded: the task is shared by every job of its window
        return np.asarray(
            [next(fresh) if e is None else (await asyncio.shield(e.task))[e.index] for e in early], dtype=np.float32
        )

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


class _Waiter:
    """A caller of ``VectorWriteQueue.run`` waiting for its ``jobs``: ``done`` resolves once
    every job's future is. Each check resumes at the first job the last one found unsettled
    (futures never go back; jobs mostly settle in order, so that is about one look per job)."""

    __slots__ = ("done", "jobs", "seen")

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.seen = 0  #: jobs known to be settled: futures never go back
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(self) -> bool:
        """Resolve ``done`` if every job is settled now. Returns whether it is."""
        jobs = self.jobs
        while self.seen < len(jobs) and jobs[self.seen].future.done():
            self.seen += 1
        if self.seen < len(jobs):
            return False
        if not self.done.done():
            self.done.set_result(None)
        return True
