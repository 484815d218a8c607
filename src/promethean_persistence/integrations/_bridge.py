"""What the framework adapters share: running a store's coroutines from sync code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from .._entries import now_ms
from .._errors import SemanticStoreError

T = TypeVar("T")


class _Closable(Protocol):
    """A store an adapter closes: ``SemanticStore`` (not imported: the adapters' shared layer stays below it)."""

    async def cleanup(self) -> None: ...


class Runner:
    """Runs coroutines on the event loop a store lives on.

    Frameworks call sync methods from plain threads and async methods from their own loop.
    ``Runner()`` starts a private loop in a daemon thread for a store opened by the adapter;
    ``Runner(loop)`` uses the caller's loop. Async calls on that loop are awaited directly;
    from any other loop they are handed over without blocking it."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop`` is the event loop the store lives on; None starts a private one in a daemon thread."""
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="semantic-store", daemon=True)
            self._thread.start()
        self.loop = loop

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """From sync code: run the coroutine ``make`` returns on the store's loop and wait for it.

        Returns its result.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or not self.loop.is_running():
            raise SemanticStoreError(
                "This store lives on the running event loop: use the async methods (a-prefixed) there, "
                "or open the adapter with its sync constructor to use the sync methods",
                operation="call",
            )
        return asyncio.run_coroutine_threadsafe(_awaited(make), self.loop).result()

    async def acall(self, make: Callable[[], Awaitable[T]]) -> T:
        """From async code on any loop: await the coroutine ``make`` returns on the store's loop; returns its result."""
        if asyncio.get_running_loop() is self.loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_awaited(make), self.loop))

    @classmethod
    def opening(cls, make: Callable[[], Awaitable[T]]) -> tuple[Runner, T]:
        """A runner with a private loop and what the coroutine ``make`` returns run on it (a
        store it opens); the loop is stopped again if that raises."""
        runner = cls()
        try:
            return runner, runner.call(make)
        except BaseException:
            runner.close()
            raise

    def close_store(self, store: _Closable) -> None:
        """From sync code: close ``store`` (its ``cleanup``) on its loop, then stop the private loop."""
        self.call(store.cleanup)
        self.close()

    async def aclose_store(self, store: _Closable) -> None:
        """From async code: close ``store`` (its ``cleanup``) on its loop, then stop the private loop."""
        await self.acall(store.cleanup)
        self.close()

    def close(self) -> None:
        """Stop the private loop and its thread, if this runner started one."""
        if self._thread is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()
            self._thread = None


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class WriteClock:
    """Strictly increasing write times (epoch ms) for an adapter's documents, so they read
    back in the order they were written (reads order by time, then id)."""

    def __init__(self) -> None:
        """A clock that has not ticked yet."""
        self.last = 0

    def tick(self) -> int:
        """The next write time: now, or 1 ms after the last one. Returns epoch ms."""
        self.last = max(now_ms(), self.last + 1)
        return self.last
