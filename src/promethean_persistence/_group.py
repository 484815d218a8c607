"""Group commit for primary writes: calls that arrive while a write is running are merged
into the next one, so concurrent inserts share one transaction (one disk sync)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Wraps ``write(items) -> results`` (one result per item, in order).

    Each caller's items stay together in one call of ``write``, so a caller's batch is
    still atomic. If a merged write fails, each caller's batch is retried alone, so one
    bad batch cannot fail the others.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._write = write
        self._waiting: list[tuple[list[T], asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def put(self, items: Sequence[T]) -> list[R]:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((list(items), future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = list(await self._write([item for items, _ in group for item in items]))
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][1], exc=exc)
                    continue
                for items, future in group:
                    try:
                        _settle(future, list(await self._write(items)))
                    except Exception as single:  # noqa: BLE001 - handed to its caller
                        _settle(future, exc=single)
                continue
            start = 0
            for items, future in group:
                _settle(future, results[start : start + len(items)])
                start += len(items)


def _settle(future: asyncio.Future, result=None, *, exc: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled; the write itself stands
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
