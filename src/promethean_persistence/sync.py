"""Blocking API: ``SemanticStore`` and ``ContextStore`` with every method of the async classes,
under the same names, with the same signatures, results and errors, blocking.

>>> from promethean_persistence import sync
>>> with sync.SemanticStore.create("notes", config={"primaryDriver": "memory",
...         "vectorDriver": "memory", "embeddingDriver": "hashing"}) as store:
...     id_ = store.insert({"text": "hello world"})
...     [e["text"] for e in store.get_most_relevant("hello")]
['hello world']

Each store opened here runs its async store on a private event loop in a daemon thread (the
integrations' ``Runner``), so it works from plain scripts, from several threads at once and
from inside a running event loop (a Jupyter cell). The methods are generated from the async
classes, so the two APIs cannot diverge: coroutines block until done, the async iterator
``iter_entries`` is a plain iterator (fetched a chunk at a time), plain methods run on the
store's loop, properties and attributes (``name``, ``config``...) are the async store's.
``close()``/``cleanup()`` (or leaving a ``with`` block) closes the store and stops its thread;
a store never closed is closed at interpreter exit.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, ClassVar

from ._config import StoreConfig
from ._context import ContextStore as AsyncContextStore
from ._context import StoreFactory
from ._errors import SemanticStoreError
from ._scope import ScopedStore as AsyncScopedStore
from ._store import SemanticStore as AsyncSemanticStore
from .integrations._bridge import Runner

__all__ = ["ContextStore", "ScopedStore", "SemanticStore"]

_CHUNK = 256  #: entries fetched per round trip to the store's loop by a sync iterator


class _Blocking:
    """An async object (``_target``) driven from sync code through ``_runner``'s loop."""

    _async_class: ClassVar[type]
    _target: Any
    _runner: Runner
    _finalizer: weakref.finalize[[Any, Runner], None] | None
    _views: dict[int, tuple[Any, _Blocking]]

    @classmethod
    def _over(cls, target: Any, runner: Runner, *, owns_runner: bool) -> Any:
        """A sync object over ``target``; it stops ``runner`` when it closes if ``owns_runner``."""
        self = object.__new__(cls)
        self._bind(target, runner, owns_runner=owns_runner)
        return self

    def _bind(self, target: Any, runner: Runner, *, owns_runner: bool) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_views", {})
        # closes the store and stops its loop thread on close(), or at exit if never closed
        finalizer = weakref.finalize(self, _shutdown, target, runner) if owns_runner else None
        object.__setattr__(self, "_finalizer", finalizer)

    def _check_alive(self, operation: str) -> None:
        if self._runner.loop.is_closed():
            raise SemanticStoreError(f"{self!r} is closed", operation=operation)

    def _call(self, make: Callable[[], Awaitable[Any]], operation: str) -> Any:
        self._check_alive(operation)
        return self._wrap(self._runner.call(make))

    def _wrap(self, value: Any) -> Any:
        """An async store (or scoped view) in a result becomes a sync one on the same loop (one per store)."""
        if isinstance(value, AsyncScopedStore):
            return ScopedStore._over(value, self._runner, owns_runner=False)
        if not isinstance(value, AsyncSemanticStore):
            return value
        kept = self._views.get(id(value))
        if kept is None or kept[0] is not value:
            kept = self._views[id(value)] = (value, SemanticStore._over(value, self._runner, owns_runner=False))
        return kept[1]

    def _iterate(self, agen: AsyncIterator[Any], operation: str) -> Iterator[Any]:
        """The items of ``agen`` (which lives on the store's loop), ``_CHUNK`` per round trip."""

        async def take() -> tuple[list[Any], bool]:
            items: list[Any] = []
            try:
                while len(items) < _CHUNK:
                    items.append(await agen.__anext__())
            except StopAsyncIteration:
                return items, True
            return items, False

        done = False
        try:
            while not done:
                items, done = self._call(take, operation)
                yield from items
        finally:
            if not done and not self._runner.loop.is_closed():
                self._runner.call(agen.aclose)  # type: ignore[attr-defined]

    def _close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # once: later calls do nothing
        elif not self._runner.loop.is_closed():
            self._runner.call(self._target.cleanup)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __repr__(self) -> str:
        return f"sync.{self._target!r}"

    def __getattr__(self, name: str) -> Any:
        """Attributes not generated from the async class (``name``, ``config``...) are the async object's."""
        target = self.__dict__.get("_target")
        if target is None or name.startswith("__"):
            raise AttributeError(name)
        value = getattr(target, name)
        if inspect.iscoroutinefunction(value):  # forwarded dynamically (a scoped view's shared methods)
            return functools.wraps(value)(lambda *args, **kwargs: self._call(lambda: value(*args, **kwargs), name))
        return self._wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting a public attribute sets it on the async object (``name`` and ``value`` as for ``setattr``)."""
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._target, name, value)


def _shutdown(target: Any, runner: Runner) -> None:
    """Close ``target`` on ``runner``'s loop, end what still runs there, stop the loop thread."""
    if threading.current_thread() is runner._thread:  # collected on the loop thread: not from here
        threading.Thread(target=_shutdown, args=(target, runner), daemon=True).start()
        return
    try:
        if runner.loop.is_running():
            runner.call(target.cleanup)
            runner.call(_quiesce)
    finally:
        runner.close()


async def _quiesce() -> None:
    """End the tasks, async generators and executor threads left on the running loop."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


# -- generating the sync methods from the async class ---------------------------------------


def _blocking(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda: getattr(self._target, name)(*args, **kwargs), name)

    return method


def _iterating(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._check_alive(name)
        return self._iterate(getattr(self._target, name)(*args, **kwargs), name)

    signature = inspect.signature(fn)
    returns = (
        str(signature.return_annotation).replace("AsyncIterator", "Iterator").replace("AsyncGenerator", "Generator")
    )
    method.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return method


def _forwarding(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self._target, name)
        try:
            on_loop = asyncio.get_running_loop() is self._runner.loop
        except RuntimeError:
            on_loop = False
        if on_loop or self._runner.loop.is_closed():
            return self._wrap(bound(*args, **kwargs))

        async def run() -> Any:  # on the store's loop: its state is not thread-safe
            return bound(*args, **kwargs)

        return self._call(run, name)

    return method


def _constructor(name: str, fn: Callable[..., Any]) -> classmethod[Any, Any, Any]:
    @functools.wraps(fn)
    def make(cls: type[_Blocking], *args: Any, **kwargs: Any) -> Any:
        runner = Runner()
        try:
            target = runner.call(lambda: getattr(cls._async_class, name)(*args, **kwargs))
        except BaseException:
            runner.close()
            raise
        return cls._over(target, runner, owns_runner=True)

    return classmethod(make)


def _mirror(sync_class: type[_Blocking]) -> None:
    """Give ``sync_class`` every public member of its async class that it does not define itself."""
    async_class = sync_class._async_class
    for name in dir(async_class):
        if name.startswith("_") or name in sync_class.__dict__:
            continue
        member = inspect.getattr_static(async_class, name)
        made: Any
        if isinstance(member, classmethod) and inspect.iscoroutinefunction(member.__func__):
            made = _constructor(name, member.__func__)
        elif isinstance(member, property) and member.fget is not None:
            made = property(functools.wraps(member.fget)(lambda self, _n=name: getattr(self._target, _n)))
        elif inspect.isasyncgenfunction(member):
            made = _iterating(name, member)
        elif inspect.iscoroutinefunction(member):
            made = _blocking(name, member)
        elif inspect.isfunction(member):
            made = _forwarding(name, member)
        else:
            continue  # data (``reranker``...): read through __getattr__
        setattr(sync_class, name, made)


# -- the public classes ----------------------------------------------------------------------


class SemanticStore(_Blocking):
    """The blocking ``promethean_persistence.SemanticStore``: the same methods, names,
    signatures, results and errors, blocking (see the module's docstring). Open one with
    ``SemanticStore.create(...)`` or ``SemanticStore.from_drivers(...)``, which take the async
    ones' parameters; ``ContextStore`` collections are SemanticStores too."""

    _async_class = AsyncSemanticStore

    def cleanup(self) -> None:
        """Close the store as the async ``cleanup`` does (flush, bounded by
        ``vector_timeout_ms``, then close the drivers) and stop its loop thread. Calling it again
        does nothing. Returns None; raises nothing (failures while closing are logged)."""
        self._close()

    close = cleanup


class ContextStore(_Blocking):
    """The blocking ``promethean_persistence.ContextStore``: the same methods, names,
    signatures, results and errors, blocking; its collections are sync ``SemanticStore``\\ s."""

    _async_class = AsyncContextStore

    def __init__(
        self,
        format_time: Callable[[int], str] | None = None,
        assistant_name: str = "Duck",
        store_factory: StoreFactory | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> None:
        """As the async ``ContextStore``: ``format_time`` renders entry timestamps in messages
        (default: ``iso_time``); ``assistant_name`` is the ``userName`` whose entries are the
        assistant's own; ``store_factory`` opens a collection as
        ``await store_factory(name, text_key, time_key)``, on this store's loop (an async
        factory, as there; default: the async ``SemanticStore.create`` with ``config``);
        ``config`` is the store settings used by the default factory. Starts the loop thread."""
        self._bind(AsyncContextStore(format_time, assistant_name, store_factory, config), Runner(), owns_runner=True)

    @property
    def collections(self) -> dict[str, SemanticStore]:
        """Collection name -> its sync store, in creation order (a new dict on each read)."""
        return {name: self._wrap(store) for name, store in self._target.collections.items()}

    def cleanup(self) -> None:
        """Close every collection's store and stop this store's loop thread. Calling it again
        does nothing. Returns None."""
        self._close()

    close = cleanup

    def __repr__(self) -> str:
        return f"sync.ContextStore(collections={list(self._target.collections)!r})"


class ScopedStore(_Blocking):
    """The blocking view of ``SemanticStore.scope(**fields)`` (``sync.SemanticStore.scope``
    returns one): the scoped store's methods, blocking. Closing the store closes it."""

    _async_class = AsyncScopedStore


_mirror(SemanticStore)
_mirror(ContextStore)
_mirror(ScopedStore)
