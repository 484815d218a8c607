"""The outbox seen from the store: queue statistics, flushing outstanding vector work, and
counts of entries by vector state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _filters
from ._entries import now_ms
from ._report import ID_CHUNK
from ._telemetry import traced

if TYPE_CHECKING:
    from ._config import StoreConfig
    from ._types import Record
    from .drivers.base import OutboxStatsPrimary, PrimaryDriver
    from .outbox.planner import Early, Job, Planner
    from .outbox.queue import VectorWriteQueue
    from .outbox.worker import OutboxWorker
    from .outbox.writer import OutboxWriter

_PENDING = _filters.parse({"vectorStatus": "pending"})
#: records that must be embedded, at least, for a write to embed them while the primary
#: write runs: fewer are left to the queue, whose group commit batches concurrent writes
EARLY_MIN = 32


class QueueProgress:
    """Reports ``(done, total)`` of a queue's work to ``progress`` while a flush runs."""

    def __init__(self, queue: VectorWriteQueue, progress: Callable[[int, int], None] | None) -> None:
        """Start reporting ``queue``'s work to ``progress`` (None: nothing is reported) every
        quarter second, on the running loop, until ``stop``. Raises nothing."""
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
        """End the reports with a full bar. Returns None."""
        if self._task is not None:
            self._task.cancel()
            if self._progress is not None and self._total:
                self._progress(self._total, self._total)


class OutboxFront:
    """Flush and counts of ``SemanticStore`` (a mixin of it)."""

    if TYPE_CHECKING:
        primary: PrimaryDriver
        config: StoreConfig
        _queue: VectorWriteQueue
        _worker: OutboxWorker
        _writer: OutboxWriter
        _planner: Planner
        _deferred: bool

        def _check_open(self) -> None: ...
        async def settle(self) -> None: ...

    def get_queue_stats(self) -> dict[str, Any]:
        """Counters and settings of this store's vector write queue: ``queue_length``,
        ``processing``, ``pending``, ``failed``, ``total_written``, ``total_failed``,
        ``batches``, ``last_flush_at`` and ``config``. Returns a dict; raises nothing."""
        return self._queue.stats()

    get_chroma_queue_stats = get_queue_stats

    async def _embed_early(self, records: list[Record]) -> dict[str, Early]:
        """Start embedding those of ``records`` (about to be written) that will need a vector
        (new or changed texts, judged from the versions stored now), so that the embedding
        overlaps their primary write; by id. Returns {} when too few need one, when workers
        embed, for an in-process embedder, or when the stored versions cannot be read (the
        write then meets the backend's error itself)."""
        wanted = [r for r in records if r.vector_status == "pending"]
        # an in-process embedder computes on the cores the write needs: overlapping them only
        # makes them contend (measured 0.86-1.0x with the local model on 2 cores), while a
        # remote one leaves them idle (1.12x on PostgreSQL with a 50 ms embedding server)
        caps = self._queue.embedder.capabilities
        if self._deferred or len(wanted) < EARLY_MIN or caps.warm or caps.in_process:
            return {}
        try:
            stored = await self.primary.get([r.id for r in wanted])
        except Exception:  # noqa: BLE001 - only an optimisation
            return {}
        # by the text alone: a stored state may be one the writer has not recorded yet, and
        # a record whose text is unchanged is left to its job (which embeds it if it must)
        wanted = [r for r, prev in zip(wanted, stored) if prev is None or prev.content_hash != r.content_hash]
        if len(wanted) < EARLY_MIN:
            return {}
        return dict(zip((r.id for r in wanted), self._queue.prefetch(wanted)))

    @staticmethod
    def _use_early(jobs: list[Job], early: dict[str, Early]) -> None:
        """Hand each embedding job of ``jobs`` its vector from ``early`` (by id), if any."""
        for job in jobs:
            if job.kind == "upsert" and job.embed and (e := early.get(job.id)) is not None:
                job.early = e

    @traced("flush")
    async def flush(self, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Wait until every queued vector write had its attempt, then give everything still
        outstanding in the outbox (pending writes, failed writes with retries left,
        tombstones) one attempt now, without waiting for its retry time.

        ``progress``: called with ``(done, total)`` writes as the work goes on.

        With ``vector_writes="worker"`` nothing runs here: it waits (at most the lease plus
        ``vector_timeout_ms``) until the outbox workers have left nothing pending.

        Returns None once every write had its attempt (some may have failed: see
        ``vector_counts``). Raises ``SemanticStoreError`` once the store is closed, and the
        primary store's ``BackendUnavailable``/``BackendRejected``."""
        self._check_open()
        tracker = QueueProgress(self._queue, progress)
        try:
            await self._queue.flush()
            if self._deferred:  # vector_writes="worker": the workers write them, not this process
                await self._writer.settle()
                deadline = time.monotonic() + (self._planner.lease_ms + self.config.vector_timeout_ms) / 1000
                while await self.primary.count(_PENDING) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            elif self.config.dual_write_enabled:
                attempted: set[str] = set()
                deadline = time.monotonic() + (self._planner.lease_ms + self.config.vector_timeout_ms) / 1000
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

    async def get_outbox_stats(self) -> dict[str, Any]:
        """What the stored outbox holds, read from the primary store: every process's writes,
        not only this one's (``get_queue_stats`` is this process's queue).

        Keys: ``pending`` (entries waiting for their vector, being worked on included),
        ``in_progress`` (of those, leased to a writer or worker now), ``failed`` (entries whose
        last vector write failed) and ``retrying`` (of those, with a retry scheduled),
        ``tombstones`` (vector deletes outstanding), ``oldest_pending_ms`` (age in ms of the
        oldest pending entry's write; None when nothing is pending), ``by_status`` (counts per
        outbox status: ``pending``, ``failed``, ``deleting``), ``workers`` (how many outbox
        workers serving this store beat within their threshold), ``worker_list`` (those
        workers: ``id``, ``host``, ``pid``, ``started_at``, ``last_beat_at``), ``vector_writes``
        (this store's setting) and ``checked_at`` (epoch ms). Cheap: the outbox index answers
        it (the cost grows with the backlog, not the store; ``vector_counts`` counts the whole
        store). A primary driver without ``Capabilities.outbox_stats`` answers with counts:
        ``in_progress``, ``retrying``, ``tombstones`` and ``oldest_pending_ms`` are then None
        and ``workers`` 0.

        Returns the dict. Raises ``SemanticStoreError`` once the store is closed, and the
        primary store's ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        now = now_ms()
        if self.primary.capabilities.outbox_stats:
            raw = await cast("OutboxStatsPrimary", self.primary).outbox_stats(now)
        else:
            raw = {
                "pending": await self.primary.count(_PENDING),
                "failed": await self.primary.count(_filters.parse({"vectorStatus": "failed"})),
                "leased": None,
                "retrying": None,
                "tombstones": None,
                "oldest_pending_at": None,
                "workers": [],
            }
        oldest = raw["oldest_pending_at"]
        return {
            "pending": raw["pending"],
            "in_progress": raw["leased"],
            "failed": raw["failed"],
            "retrying": raw["retrying"],
            "tombstones": raw["tombstones"],
            "oldest_pending_ms": None if oldest is None else max(0, now - oldest),
            "by_status": {"pending": raw["pending"], "failed": raw["failed"], "deleting": raw["tombstones"]},
            "workers": len(raw["workers"]),
            "worker_list": raw["workers"],
            "vector_writes": self.config.vector_writes,
            "checked_at": now,
        }

    async def vector_counts(self, ids: Sequence[str] | None = None) -> dict[str, int]:
        """Entries by vector state, read from the primary store: ``indexed`` (vector
        written), ``pending``, ``failed`` and ``skipped`` (no vector wanted).

        ``ids``: count only these entries (a bulk job's own); None counts the whole store.

        Returns a dict of the four counts. Raises the primary store's
        ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        names = {"synced": "indexed", "pending": "pending", "failed": "failed", "skipped": "skipped"}
        counts = dict.fromkeys(names.values(), 0)
        if ids is None:
            for status, key in names.items():
                counts[key] = await self.primary.count(_filters.parse({"vectorStatus": status}))
            return counts
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            for record in await self.primary.get(unique[start : start + ID_CHUNK]):
                if record is not None:
                    counts[names[record.vector_status]] += 1
        return counts
