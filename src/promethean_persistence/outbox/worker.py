"""The outbox worker: resumes vector work left in the primary store (by a crash, a timeout,
a failed attempt or a failed delete) and hands it to the write queue.

Work is claimed with a lease in the primary store, so several stores or processes on the
same primary share it without taking the same item twice; a lease that runs out (its
holder died) makes the item claimable again.

Where the primary keeps expiry (``Capabilities.expiry``), the worker also purges expired
records when it starts and then every ``purge_every_ms``: each leaves a tombstone that is due
at once, so the same round deletes its vector.

A store opened with ``vector_writes="worker"`` does not start this loop; outbox worker
processes (``_workers``: ``run_worker``, ``semantic-store worker``) call ``run_once`` and
``purge_due`` of the stores they open instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from .._entries import now_ms
from .._retry import MAX_BACKOFF_MS
from ..drivers.base import ExpiringPrimary, PrimaryDriver
from .queue import VectorWriteQueue

log = logging.getLogger("promethean_persistence.worker")

PURGE_BATCH = 500  #: expired records purged per call of the primary driver
PURGE_EVERY_MS = 60_000  #: how often the worker purges expired records


class OutboxWorker:
    """The background loop of one store that claims due vector work from its primary store
    and runs it through its write queue (see the module docstring)."""

    def __init__(
        self,
        primary: PrimaryDriver,
        queue: VectorWriteQueue,
        *,
        lease_ms: int,
        poll_ms: int,
        purge_every_ms: int = PURGE_EVERY_MS,
    ) -> None:
        """``primary``: where work is claimed. ``queue``: the store's write queue that runs it.
        ``lease_ms``: how long claimed work is leased. ``poll_ms``: the pause between looks
        when there is no work. ``purge_every_ms``: how often expired records are purged
        (where the primary keeps expiry). Raises nothing."""
        self.primary = primary
        self.purge_every_ms = purge_every_ms
        self.purged = 0  #: expired records this worker has purged
        self._purged_at: int | None = None  #: when the last purge started (epoch ms)
        self.queue = queue
        self.lease_ms = lease_ms
        self.poll_ms = poll_ms
        self.claimed = 0  #: items this worker has taken from the outbox
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        """Start the loop as a task on the running event loop. Returns None; raises
        nothing (a failed claim is logged and retried at the next tick)."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"outbox:{self.queue.collection}")

    def wake(self) -> None:
        """Look for due work now instead of at the next tick. Returns None."""
        self._wake.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the loop finish its round, then end it; cancel only if that takes too long.

        ``timeout``: seconds to wait for the round. Returns None; raises nothing. Stopping
        by cancellation alone is not safe on 3.11: a cancel that lands as a timeout fires
        can be swallowed, and the loop would run for ever.
        """
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        while not self._stopping:
            await self.purge_due()
            try:
                taken = len(await self.run_once())
            except asyncio.CancelledError:
                raise
            except Exception:  # a primary outage: try again at the next tick
                log.warning("outbox worker of %s: claim failed", self.queue.collection, exc_info=True)
                taken = 0
            if taken >= self.queue.batch_size:
                continue
            if self._stopping:
                return
            self._wake.clear()
            tick = asyncio.get_running_loop().call_later(self.poll_ms / 1000, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                tick.cancel()

    async def purge_due(self) -> int:
        """Purge expired records if the primary keeps expiry and a purge is due (at the first
        round, then every ``purge_every_ms``). Returns the number purged; raises nothing (a
        failure is logged and tried again at the next due time)."""
        now = now_ms()
        due = self._purged_at is None or now >= self._purged_at + self.purge_every_ms
        if not due or not self.primary.capabilities.expiry:
            return 0
        self._purged_at = now
        primary = cast(ExpiringPrimary, self.primary)
        purged = 0
        try:
            while not self._stopping:
                ids = await primary.purge_expired(now_ms(), PURGE_BATCH)
                purged += len(ids)
                if len(ids) < PURGE_BATCH:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a primary outage: try again at the next due time
            log.warning("outbox worker of %s: purging expired entries failed", self.queue.collection, exc_info=True)
        self.purged += purged
        return purged

    async def run_once(self, *, force: bool = False, skip: set[str] | None = None) -> list[str]:
        """Claim one batch of due work, run it, and return the ids it ran (not in ``skip``).

        ``force`` also takes failed items whose retry time has not come yet (``flush``).
        Returns the ids; raises the primary store's ``BackendUnavailable``/
        ``BackendRejected`` from the claim (the jobs' own failures are recorded, not raised).
        """
        await self.queue.writer.settle()  # states still buffered would make done work look due
        now = now_ms()
        records = await self.primary.claim(
            self.queue.batch_size, now, self.lease_ms, due_by=now + MAX_BACKOFF_MS if force else None
        )
        jobs = [self.queue.planner.resume(r) for r in records if not skip or r.id not in skip]
        self.claimed += len(records)
        if jobs:
            self.queue.submit(jobs)
            await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)
        return [j.id for j in jobs]
