"""A model that loads (seconds, once) and runs in one worker thread of its own driver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar


class ThreadedModel:
    """Mixin of a driver whose model loads and runs in ``_executor``, a single thread named
    ``_THREAD``: the first calls share one load; after a failed load that raised one of
    ``_RETRY``, a later call loads again (else the failure is kept and raised again)."""

    _THREAD: ClassVar[str]
    _RETRY: ClassVar[tuple[type[BaseException], ...]] = ()
    _executor: ThreadPoolExecutor | None = None
    _loading: asyncio.Future[Any] | None = None

    async def _load_in_thread(self, load: Callable[[], object]) -> Any:
        """What ``load`` returns, run once in the worker thread (started here if need be)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._THREAD)
        if self._loading is None:
            self._loading = asyncio.get_running_loop().run_in_executor(self._executor, load)
        loading = self._loading
        try:
            return await asyncio.shield(loading)  # a cancelled caller leaves the load to the others
        except self._RETRY:
            if self._loading is loading:
                self._loading = None
            raise

    def _stop_thread(self) -> None:
        """Stop the worker thread (a load still queued is cancelled) and forget the load."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._loading = None
