"""OpenTelemetry spans and metrics (the ``otel`` extra: ``opentelemetry-api``).

The hooks are decorators on the store's operations (``traced``), on embedding
(``traced_embed``) and on vector writes (``traced_upsert``). Without ``opentelemetry``
installed they return the function itself: nothing is wrapped, nothing is imported, a call
costs what it cost before. With it, ``opentelemetry`` is imported when the first store opens
(or the first traced call runs) and the global tracer and meter providers are used, so an
application configures its exporters as usual (or ``configure`` hands in providers, as the
tests do); until one is set, a call goes straight through.

Attributes follow the database and GenAI semantic conventions: the system, collection,
operation, batch size and model. Never a text, a query, a metadata value, a DSN or a key; an
error is recorded by its class name only (a message may quote data).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

__all__ = ["ENABLED", "configure", "traced", "traced_batch", "traced_embed", "traced_upsert", "watch"]

P = ParamSpec("P")
T = TypeVar("T")

SCOPE = "promethean_persistence"
log = logging.getLogger("promethean_persistence.telemetry")
#: vector and primary driver names whose ``db.system.name`` is another word
_SYSTEMS = {"pgvector": "postgresql", "chromadb": "chroma"}


def _installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # a parent set to None in sys.modules, or no spec
        return False


ENABLED = _installed()  #: whether ``opentelemetry`` can be imported (decided once, at import)


class _Instruments:
    """The tracer and the metric instruments, from the given (else the global) providers."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from opentelemetry import metrics, trace

        try:
            release = version("promethean-persistence")
        except PackageNotFoundError:  # a source tree that was never installed
            release = ""
        self.trace = trace
        self.metrics = metrics
        #: providers handed in, or a global one set (for good: the globals are set once)
        self.live = tracer_provider is not None or meter_provider is not None
        self.tracer = trace.get_tracer(SCOPE, release, tracer_provider)
        meter = metrics.get_meter(SCOPE, release, meter_provider)
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of store operations and vector writes"
        )
        self.embed_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of embedding calls"
        )
        self.embedded = meter.create_counter(
            "promethean_persistence.embedding.texts", unit="{text}", description="Texts embedded"
        )
        self.failures = meter.create_counter(
            "promethean_persistence.failures", unit="{failure}", description="Failed operations, by error class"
        )
        meter.create_observable_gauge(
            "promethean_persistence.outbox.backlog",
            callbacks=[self._backlog],
            unit="{write}",
            description="The stored outbox of each open store, every process's writes: pending, failed, tombstones",
        )
        meter.create_observable_gauge(
            "promethean_persistence.outbox.oldest_pending_age",
            callbacks=[self._oldest],
            unit="s",
            description="Age of the oldest write waiting for its vector, in the stored outbox",
        )
        meter.create_observable_gauge(
            "promethean_persistence.queue.backlog",
            callbacks=[self._queued],
            unit="{write}",
            description="Vector writes in this process's queue (pending) and failed here",
        )

    def check_live(self) -> bool:
        """Whether an application has set a global tracer or meter provider (the API's proxies
        stand in until then, and every span and measurement would go nowhere)."""
        proxy_meter = type(self.metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
        self.live = not proxy_meter or not isinstance(self.trace.get_tracer_provider(), self.trace.ProxyTracerProvider)
        return self.live

    def _backlog(self, options: Any) -> Iterator[Any]:
        """The stored outbox's figures as last read, and a new read for the next collection:
        a callback runs in the exporter's thread, the store's reads on its event loop."""
        from opentelemetry.metrics import Observation

        for store, watched in _open_stores():
            if watched.stored is not None:
                base = _store_attributes(store)
                for state in ("pending", "failed", "tombstones"):
                    if (value := watched.stored.get(state)) is not None:
                        yield Observation(value, {**base, STATE: state})
            watched.refresh(store)

    def _oldest(self, options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for store, watched in _open_stores():
            if watched.stored is not None and (age := watched.stored.get("oldest_pending_ms")) is not None:
                yield Observation(age / 1000, _store_attributes(store))

    def _queued(self, options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for store, _ in _open_stores():
            stats = store.get_queue_stats()  # in-process counters: no I/O
            base = _store_attributes(store)
            yield Observation(stats["pending"], {**base, STATE: "pending"})
            yield Observation(stats["failed"], {**base, STATE: "failed"})


class _Watched:
    """An open store the gauges report: its event loop and its stored outbox's figures
    (``get_outbox_stats``) as last read; each collection starts the next read."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.stored: dict[str, Any] | None = None
        self.reading = False

    def refresh(self, store: Any) -> None:
        loop = self.loop
        if self.reading or loop is None or loop.is_closed() or not hasattr(store, "get_outbox_stats"):
            return
        self.reading = True
        try:  # the task is made on the loop's own thread: nothing is left unawaited if it stops
            loop.call_soon_threadsafe(self._read, weakref.ref(store))
        except RuntimeError:  # closed meanwhile
            self.reading = False

    def _read(self, ref: weakref.ref[Any]) -> None:
        store = ref()
        if store is None or getattr(store, "_closed", False):
            self.reading = False
            return
        asyncio.get_running_loop().create_task(store.get_outbox_stats()).add_done_callback(self._done)

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self.reading = False
        # a failed read reports nothing rather than stale figures
        self.stored = None if task.cancelled() or task.exception() is not None else task.result()


_instruments: _Instruments | None = None
_stores: weakref.WeakKeyDictionary[Any, _Watched] = weakref.WeakKeyDictionary()
STATE = "promethean_persistence.outbox.state"


def _open_stores() -> list[tuple[Any, _Watched]]:
    return [(s, w) for s, w in list(_stores.items()) if not getattr(s, "_closed", False)]


def _live() -> _Instruments | None:
    """The instruments, or None while no provider is configured: then a call goes straight
    through (opentelemetry-api often comes with other packages, unused)."""
    global _instruments
    tel = _instruments
    if tel is None:
        tel = _instruments = _Instruments()
    return tel if tel.live or tel.check_live() else None


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Trace with ``tracer_provider`` and measure with ``meter_provider`` from now on (None:
    the global provider, what ``opentelemetry`` applications configure). For tests and
    applications that keep their providers out of the globals. Returns None; raises
    ``MissingDependencyError`` when ``opentelemetry`` is not installed."""
    global _instruments
    if not ENABLED:
        from ._deps import missing

        raise missing("opentelemetry", extra="otel", driver="otel")
    _instruments = _Instruments(tracer_provider, meter_provider)


def _watch(store: Any) -> None:
    """Report ``store`` in the backlog gauges while it is open (held weakly)."""
    global _instruments
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # built outside a loop: its in-process figures only
        loop = None
    _stores[store] = _Watched(loop)
    if _instruments is None:  # the gauges exist from the first store on, traced call or not
        _instruments = _Instruments()


def _ignore(store: Any) -> None:
    return None


#: report ``store``'s outbox backlog in the gauge while it lives (does nothing without otel)
watch: Callable[[Any], None] = _watch if ENABLED else _ignore


def _system(driver_name: str) -> str:
    return _SYSTEMS.get(driver_name, driver_name)


def _store_attributes(store: Any) -> dict[str, Any]:
    system = _system(store.primary.name)
    return {"db.system.name": system, "db.system": system, "db.collection.name": store.name}


def _count(items: Any) -> int | None:
    if isinstance(items, (str, bytes, Mapping)):
        return 1
    return len(items) if isinstance(items, Sequence) else None


async def _run(
    tel: _Instruments,
    fn: Callable[..., Awaitable[T]],
    args: Any,
    kwargs: Any,
    name: str,
    attributes: dict[str, Any],
    histogram: str,
    extra: dict[str, Any] | None = None,
    on_success: Callable[[_Instruments, T], None] | None = None,
) -> T:
    """``fn(*args, **kwargs)`` in a client span ``name`` with ``attributes`` (and the span
    only, ``extra``: counts have no place among a metric's dimensions), timed into the
    ``histogram`` instrument; a failure sets status ERROR and ``error.type`` (its class name)."""
    started = time.perf_counter()
    with tel.tracer.start_as_current_span(
        name,
        kind=tel.trace.SpanKind.CLIENT,
        attributes={**attributes, **extra} if extra else attributes,
        record_exception=False,  # it would record the message, which may quote data
        set_status_on_exception=False,
    ) as span:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            kind = type(exc).__name__
            span.set_attribute("error.type", kind)
            span.add_event("exception", {"exception.type": kind})
            span.set_status(tel.trace.StatusCode.ERROR)  # no description: a message may quote data
            failed = {**attributes, "error.type": kind}
            tel.failures.add(1, failed)
            getattr(tel, histogram).record(time.perf_counter() - started, failed)
            raise
        getattr(tel, histogram).record(time.perf_counter() - started, attributes)
        if on_success is not None:
            on_success(tel, result)
        return result


_Described = tuple[str, dict[str, Any], dict[str, Any]]  #: span name, attributes, span-only attributes


def _described(describe: Callable[[tuple[Any, ...]], _Described]) -> Callable[[tuple[Any, ...]], _Described | None]:
    """``describe`` returning None where it fails (a driver without a ``name``, arguments
    passed by keyword): the call then runs untraced, never broken by its telemetry."""

    def safe(args: tuple[Any, ...]) -> _Described | None:
        try:
            return describe(args)
        except Exception:  # noqa: BLE001 - telemetry must not fail the operation
            log.debug("not traced: could not describe the call", exc_info=True)
            return None

    return safe


def _wrapped(
    fn: Callable[P, Awaitable[T]],
    describe: Callable[[tuple[Any, ...]], _Described | None],
    on_success: Callable[[_Instruments, T], None] | None = None,
) -> Callable[P, Awaitable[T]]:
    """``fn`` in a span that ``describe`` names, timed into ``duration``; untraced while no
    provider is configured or ``describe`` fails."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if (tel := _live()) is None or (described := describe(args)) is None:
            return await fn(*args, **kwargs)
        name, attributes, extra = described
        return await _run(tel, fn, args, kwargs, name, attributes, "duration", extra, on_success)

    return wrapper


def traced(
    operation: str, *, of: int = 0, items: int | None = None, read: bool = False
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Trace an async store operation as ``operation`` (``db.operation.name``).

    ``of``: the position of the store among the positional arguments (0: ``self``).
    ``items``: the position of the argument whose length is ``db.operation.batch.size``
    (None: no batch size; as the conventions say, set only for two or more). ``read``: the
    operation returns entries, counted as ``db.response.returned_rows``. Returns a
    decorator; without ``opentelemetry`` it returns the function unchanged. Raises nothing."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        if not ENABLED:
            return fn

        @_described
        def describe(args: tuple[Any, ...]) -> tuple[str, dict[str, Any], dict[str, Any]]:
            store: Any = args[of]
            attributes = {**_store_attributes(store), "db.operation.name": operation}
            extra = {}
            if items is not None and len(args) > items and (n := _count(args[items])) and n > 1:
                extra["db.operation.batch.size"] = n  # the conventions: never 1, only batches
            return f"{operation} {store.name}", attributes, extra

        return _wrapped(fn, describe, _rows if read else None)

    return decorate


def _rows(tel: _Instruments, result: Any) -> None:
    if isinstance(result, list):
        tel.trace.get_current_span().set_attribute("db.response.returned_rows", len(result))


def traced_embed(purpose: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Trace an async call that embeds the texts of its second positional argument with the
    embedder that is its first (or the first's ``embedder``) as a GenAI ``embeddings`` span;
    counts the texts embedded. ``purpose``: ``"document"`` or ``"query"``. Returns a
    decorator; without ``opentelemetry`` it returns the function unchanged. Raises nothing."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        if not ENABLED:
            return fn

        @_described
        def describe(args: tuple[Any, ...]) -> tuple[str, dict[str, Any], dict[str, Any]]:
            embedder: Any = getattr(args[0], "embedder", args[0])
            model = embedder.model
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": embedder.name,
                "gen_ai.system": embedder.name,
                "promethean_persistence.embedding.purpose": purpose,
            }
            if model:
                attributes["gen_ai.request.model"] = model
            if embedder.dimensions:
                attributes["gen_ai.embeddings.dimension.count"] = embedder.dimensions
            name = f"embeddings {model}" if model else "embeddings"
            return name, attributes, {"promethean_persistence.embedding.texts": _count(args[1]) or 0}

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if (tel := _live()) is None or (described := describe(args)) is None:
                return await fn(*args, **kwargs)
            name, attributes, extra = described

            def counted(tel: _Instruments, result: Any) -> None:
                tel.embedded.add(extra["promethean_persistence.embedding.texts"], attributes)

            return await _run(tel, fn, args, kwargs, name, attributes, "embed_duration", extra, counted)

        return wrapper

    return decorate


def _traced_write(
    fn: Callable[P, Awaitable[T]], operation: str, driver: Callable[[Any], Any]
) -> Callable[P, Awaitable[T]]:
    """Trace ``fn``, whose first positional argument has the ``collection`` written and, through
    ``driver``, the vector driver, and whose second the items written, as ``operation``."""
    if not ENABLED:
        return fn

    @_described
    def describe(args: tuple[Any, ...]) -> _Described:
        owner: Any = args[0]
        system = _system(driver(owner).name)
        attributes: dict[str, Any] = {
            "db.system.name": system,
            "db.system": system,
            "db.collection.name": owner.collection,
            "db.operation.name": operation,
        }
        extra = {"db.operation.batch.size": n} if (n := _count(args[1])) and n > 1 else {}
        return f"{operation} {owner.collection}", attributes, extra

    return _wrapped(fn, describe)


def traced_batch(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Trace a vector write queue's batch (``fn``, a method of the queue taking the batch's
    jobs) as ``vector_batch``: the root span of its embedding and upsert spans, on the vector
    store's system and the queue's collection. Returns the wrapper; without
    ``opentelemetry`` ``fn`` itself. Raises nothing."""
    return _traced_write(fn, "vector_batch", lambda queue: queue.vector)


def traced_upsert(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Trace an async vector write whose first positional argument is the vector driver and
    whose second the records written (``fn``) as ``upsert`` on the driver's system and
    collection. Returns the wrapper; without ``opentelemetry`` ``fn`` itself. Raises nothing."""
    return _traced_write(fn, "upsert", lambda vector: vector)
