"""Outbox workers: processes that write the vectors other processes left in the outbox
(``semantic-store worker``, ``run_worker``).

A store opened with ``vector_writes="worker"`` commits its records as pending and embeds
nothing; any number of workers, on any number of machines, drain the outboxes of one or more
stores with the claims and leases every store already uses (PostgreSQL ``FOR UPDATE SKIP
LOCKED``, MongoDB claim tokens, SQLite's write lock for processes of one machine). An item is
leased to the worker that claimed it, renewed while the work runs; when a worker dies its
items become claimable again once their lease ends (2 x ``vector_timeout_ms`` + 1 s).

Each worker, once its embedders are warm (a model loaded), beats every ``heartbeat_ms`` in the
primary store (``OutboxStatsPrimary``): a worker whose beat is older than ``DEAD_AFTER_BEATS``
beats counts as dead in ``get_outbox_stats()``. After a batch it claims again at once; it
waits ``poll_ms`` only when a claim found nothing. On stop (SIGTERM/SIGINT, or the ``stop``
event) a worker claims no more, finishes the batch in hand, releases the leases of anything
it holds unstarted (so it is claimable at once), removes its heartbeat and returns; a second
signal stops at once, releasing the leases of the batch too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from . import _registry
from ._config import StoreConfig
from ._entries import now_ms
from ._errors import ConfigurationError, SemanticStoreError
from ._store import SemanticStore
from .drivers.base import OutboxStatsPrimary

log = logging.getLogger("promethean_persistence.worker")

HEARTBEAT_MS = 5_000  #: how often a worker beats
DEAD_AFTER_BEATS = 3  #: beats missed before a worker counts as dead
RESCAN_MS = 30_000  #: how often a worker of every store looks for new stores


def _inline(config: StoreConfig | Mapping[str, Any] | None, batch_size: int | None) -> StoreConfig:
    """``config`` resolved as ``SemanticStore.create`` does, with the worker's own vector
    writes inline (it is the one that embeds) and ``batch_size`` items per claim."""
    if isinstance(config, StoreConfig):
        given: dict[str, Any] = config.model_dump(exclude_unset=True)
    else:
        given = dict(config or {})
    given["vector_writes"] = "inline"
    if batch_size is not None:
        given["vector_batch_size"] = batch_size
    return StoreConfig.resolve(given)


async def store_names(config: StoreConfig) -> list[str]:
    """The names of every store of ``config``'s agent (``agent_name``) in its primary store.
    Returns them sorted; raises ``ConfigurationError`` where the primary driver cannot list its
    collections (``memory``: each process has its own), and the primary's
    ``BackendUnavailable``/``BackendRejected``."""
    driver = _registry.load("primary", config.primary_driver)
    # capabilities belong to instances (they depend on settings); the listing is the class's
    lister = getattr(driver, "list_collections", None)
    found = await lister(config) if lister is not None else None
    if found is None:
        raise ConfigurationError(
            f"The {config.primary_driver!r} primary store cannot list its stores "
            f"(the memory driver keeps each in its own process): name them (--store a,b)",
            operation="worker",
        )
    prefix = config.collection_name("")
    return sorted(name[len(prefix) :] for name in found if name.startswith(prefix) and len(name) > len(prefix))


class _Run:
    """One worker: its identity, stores, drain tasks and heartbeats."""

    def __init__(
        self,
        stores: list[SemanticStore],
        *,
        poll_ms: int,
        once: bool,
        heartbeat_ms: int,
        stop: asyncio.Event,
        opener: Any = None,
    ) -> None:
        self.stores = stores
        self.poll_ms = poll_ms
        self.once = once
        self.heartbeat_ms = heartbeat_ms
        self.stop = stop
        self.opener = opener  #: opens newly found stores (a worker of every store), or None
        self.identity = {
            "id": uuid.uuid4().hex[:16],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now_ms(),
        }
        self.claimed = 0
        self.halted = False  #: stopped at once (a second signal), not after the batch in hand
        self._start = {id(s): (s._queue.total_written, s._queue.total_failed) for s in stores}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Drain every store until stopped (or, ``once``, until nothing is due); a worker of
        every store looks for new stores every ``RESCAN_MS`` meanwhile, even while it has none."""
        await self._ready(self.stores)
        await self.beat()
        beats = asyncio.get_running_loop().create_task(self._beats(), name="worker-heartbeat")
        rescans = self.opener is not None and not self.once
        scanned = time.monotonic()
        try:
            for store in self.stores:
                self._spawn(store)
            while True:
                self._tasks = {k: t for k, t in self._tasks.items() if not t.done()}
                if not self._tasks and (not rescans or self.stop.is_set()):
                    return
                timeout = max(0.0, scanned + RESCAN_MS / 1000 - time.monotonic()) if rescans else None
                if self._tasks:
                    done, _ = await asyncio.wait(
                        set(self._tasks.values()), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        task.result()  # a drain ends by stopping, or with an error to raise
                else:
                    try:
                        await asyncio.wait_for(self.stop.wait(), timeout)
                    except TimeoutError:
                        pass
                if rescans and not self.stop.is_set() and time.monotonic() >= scanned + RESCAN_MS / 1000:
                    scanned = time.monotonic()
                    await self._rescan()
        finally:
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)
            await self._forget()

    def _spawn(self, store: SemanticStore) -> None:
        self._start.setdefault(id(store), (store._queue.total_written, store._queue.total_failed))
        self._tasks[id(store)] = asyncio.get_running_loop().create_task(self._drain(store), name=f"drain:{store.name}")

    async def _rescan(self) -> None:
        try:
            opened = await self.opener({s.base_name for s in self.stores})
        except Exception:  # noqa: BLE001 - the stores already served go on
            log.warning("outbox worker: looking for new stores failed", exc_info=True)
            return
        await self._ready(opened)
        for store in opened:
            self.stores.append(store)
            self._spawn(store)
            await self._beat_one(store, now_ms())

    async def _ready(self, stores: list[SemanticStore]) -> None:
        # a worker beats, then claims, only once its embedders are warm: a first model load
        # (seconds) must not stall its first batch while it holds their leases
        for store in stores:
            try:
                await store._queue.warm()
            except Exception:  # noqa: BLE001 - its batches record the failure, as they always do
                log.warning("outbox worker: warming the embedder of %s failed", store.name, exc_info=True)

    async def _drain(self, store: SemanticStore) -> None:
        worker = store._worker
        while not self.stop.is_set():
            await worker.purge_due()
            try:
                ran = await worker.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a primary outage: try again after a pause
                log.warning("outbox worker: claiming from %s failed", store.name, exc_info=True)
                ran = []
            self.claimed += len(ran)
            # after any work, look again at once: what was written during the batch is due now,
            # and a partial batch must not cost a poll interval (1 s by default) per batch
            if ran:
                continue
            if self.once:
                return
            try:
                await asyncio.wait_for(self.stop.wait(), self.poll_ms / 1000)
            except TimeoutError:
                pass

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000)
            await self.beat()

    async def beat(self) -> None:
        """Beat for every store served (a failure is logged: the work goes on)."""
        now = now_ms()
        for store in list(self.stores):
            await self._beat_one(store, now)

    async def _beat_one(self, store: SemanticStore, now: int) -> None:
        if not store.primary.capabilities.outbox_stats:
            return
        dead_at = now + DEAD_AFTER_BEATS * self.heartbeat_ms
        try:
            await cast(OutboxStatsPrimary, store.primary).beat_worker(self.identity, now, dead_at)
        except Exception:  # noqa: BLE001 - stats only; the work goes on
            log.warning("outbox worker: heartbeat to %s failed", store.name, exc_info=True)

    async def _forget(self) -> None:
        for store in self.stores:
            if store.primary.capabilities.outbox_stats and not store._closed:
                try:
                    await cast(OutboxStatsPrimary, store.primary).forget_worker(str(self.identity["id"]))
                except Exception:  # noqa: BLE001 - it will count as dead soon anyway
                    log.warning("outbox worker: removing the heartbeat from %s failed", store.name, exc_info=True)

    async def halt(self) -> None:
        """Stop at once: cancel the drains; the stores' close releases the leases."""
        self.stop.set()
        self.halted = True
        for task in self._tasks.values():
            task.cancel()

    def summary(self) -> dict[str, Any]:
        """What this worker did: ``worker_id``, ``stores``, ``claimed``, ``written``, ``failed``."""
        written = sum(s._queue.total_written - self._start.get(id(s), (0, 0))[0] for s in self.stores)
        failed = sum(s._queue.total_failed - self._start.get(id(s), (0, 0))[1] for s in self.stores)
        return {
            "worker_id": self.identity["id"],
            "stores": [s.base_name for s in self.stores],
            "claimed": self.claimed,
            "written": written,
            "failed": failed,
        }


async def _worker(
    stores: Sequence[str | SemanticStore] | str | None,
    config: StoreConfig | Mapping[str, Any] | None,
    *,
    text_key: str,
    time_key: str,
    batch_size: int | None,
    poll_ms: int,
    once: bool,
    heartbeat_ms: int,
    stop: asyncio.Event | None,
    handle_signals: bool,
) -> dict[str, Any]:
    if isinstance(stores, str):
        stores = [s.strip() for s in stores.split(",") if s.strip()]
    given = list(stores or [])
    objects = [s for s in given if not isinstance(s, str)]
    names = [s for s in given if isinstance(s, str)]
    if objects and names:
        raise ConfigurationError("run_worker takes store names or open stores, not both", operation="worker")
    if poll_ms < 1 or heartbeat_ms < 1:
        raise ConfigurationError("poll_ms and heartbeat_ms must be positive", operation="worker")
    stop = stop or asyncio.Event()
    owned: list[SemanticStore] = []
    cfg = _inline(config, batch_size)
    every = not given
    if every:
        names = await store_names(cfg)
    elif names and cfg.primary_driver == "memory":
        raise ConfigurationError(
            "A worker cannot reach the stores of the memory primary (each process has its own): "
            "pass open stores to run_worker instead",
            operation="worker",
        )

    async def open_new(known: set[str]) -> list[SemanticStore]:
        opened = []
        for name in await store_names(cfg):
            if name in known:
                continue
            try:
                store = await SemanticStore.create(name, text_key, time_key, config=cfg, background=False)
            except SemanticStoreError:
                log.warning("outbox worker: cannot open store %r; skipped", name, exc_info=True)
                continue
            owned.append(store)
            opened.append(store)
        return opened

    try:
        for name in names:
            try:
                owned.append(await SemanticStore.create(name, text_key, time_key, config=cfg, background=False))
            except SemanticStoreError:
                if not every:
                    raise
                log.warning("outbox worker: cannot open store %r; skipped", name, exc_info=True)
        served = owned or objects
        run = _Run(
            list(served),
            poll_ms=poll_ms,
            once=once,
            heartbeat_ms=heartbeat_ms,
            stop=stop,
            opener=open_new if every else None,
        )
        log.info("outbox worker %s serving %s", run.identity["id"], ", ".join(s.name for s in served) or "no store")
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:

            def on_signal() -> None:
                if stop.is_set():
                    loop.create_task(run.halt())
                else:
                    log.info("outbox worker: stopping after the batch in hand (signal again to stop now)")
                    stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, on_signal)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                    pass
        try:
            await run.run()
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        if run.halted:  # stopped at once: release the leases of the batch (cleanup does the rest)
            for store in run.stores:
                if store in owned:
                    await store._queue.close(timeout=0)
        return run.summary()
    finally:
        for store in owned:
            await store.cleanup()


def run_worker(
    stores: Sequence[str | SemanticStore] | str | None = None,
    config: StoreConfig | Mapping[str, Any] | None = None,
    *,
    text_key: str = "text",
    time_key: str = "createdAt",
    batch_size: int | None = None,
    poll_ms: int = 1000,
    once: bool = False,
    heartbeat_ms: int = HEARTBEAT_MS,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> Any:
    """Drain the outboxes of ``stores``: embed and write the vectors that writers (opened with
    ``vector_writes="worker"``) or crashed processes left pending, beside any number of other
    workers (see the module docstring).

    ``stores``: store names (a list, or one string ``"a,b"``), opened here with ``config`` and
    closed at the end; or open ``SemanticStore`` objects (this process's own, e.g. on the
    ``memory`` primary), left open; None or empty: every store of ``config``'s agent in its
    primary store, looked for again every 30 s (not possible on ``memory``). ``config``: as for
    ``SemanticStore.create``; its ``vector_writes`` is ignored (a worker writes inline).
    ``text_key`` and ``time_key``: the stores' entry keys. ``batch_size``: items claimed at a
    time (default ``vector_batch_size``). ``poll_ms``: the pause when there is no work.
    ``once``: return when nothing is due instead of waiting for more. ``heartbeat_ms``: how
    often the worker beats (it counts as dead after 3 missed beats). ``stop``: an
    ``asyncio.Event`` that ends the worker after its batch in hand. ``handle_signals``:
    SIGTERM and SIGINT set ``stop`` (a second one stops at once).

    Inside a running event loop it returns a coroutine to await; called where no loop runs,
    it runs one and blocks (as ``asyncio.run``). Either way the result is a dict:
    ``worker_id``, ``stores`` (names), ``claimed``, ``written``, ``failed``. Raises
    ``ConfigurationError`` for bad settings or a primary store whose stores cannot be listed
    or reached from another process, ``EmbeddingMismatchError`` and the backends' errors when a
    named store cannot be opened (a store found by listing that cannot be opened is skipped
    with a warning)."""
    work = _worker(
        stores,
        config,
        text_key=text_key,
        time_key=time_key,
        batch_size=batch_size,
        poll_ms=poll_ms,
        once=once,
        heartbeat_ms=heartbeat_ms,
        stop=stop,
        handle_signals=handle_signals,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    return work
