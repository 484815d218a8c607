"""``semantic-store mcp``: one open store served to AI agents over the Model Context Protocol.

Seven tools, each one library call: ``remember`` (insert), ``recall`` (get_most_relevant),
``recent`` (get_most_recent), ``get``, ``forget`` (delete), ``report``
(get_consistency_report) and ``context`` (ContextStore.compile_context). Our errors become
tool error results carrying their one-line message; anything else becomes a generic one-line
error, logged here with its traceback. Transports: stdio, or streamable HTTP (with a bearer
token from ``SEMANTIC_STORE_MCP_TOKEN``, required off loopback). Needs the ``mcp`` extra,
imported at first use only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from ._context import ContextStore
from ._errors import MissingDependencyError, SemanticStoreError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TOKEN_ENV", "MemoryTools", "build_server", "is_loopback", "parse_bind", "require_mcp", "serve"]

#: the environment variable holding the HTTP transport's bearer token
TOKEN_ENV = "SEMANTIC_STORE_MCP_TOKEN"

log = logging.getLogger("promethean_persistence.mcp")

Opener = Callable[[str], Awaitable[Any]]


def require_mcp() -> None:
    """Raise MissingDependencyError naming ``pip install 'promethean-persistence[mcp]'`` when the
    ``mcp`` package is not installed (nothing is imported)."""
    if importlib.util.find_spec("mcp") is None:
        raise MissingDependencyError(
            "semantic-store mcp needs the 'mcp' package, which is not installed. "
            "Install it with: pip install 'promethean-persistence[mcp]'",
            operation="mcp",
        )


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (what JSON cannot hold becomes its str)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


class MemoryTools:
    """What the tools do, on one open store: each method is one library call and returns plain
    JSON data; our errors (``SemanticStoreError``) propagate."""

    def __init__(
        self,
        store: Any,
        opener: Opener,
        name: str,
        text_key: str = "text",
        time_key: str = "createdAt",
        scope: dict[str, Any] | None = None,
    ) -> None:
        """``store`` is the open store served (a SemanticStore, or its ``scope(**scope)`` view;
        closed by its owner, not here) and ``name`` its name; ``opener`` opens another collection
        by name for ``context`` (kept open until ``aclose``, and seen through the same ``scope``
        when one is given); ``text_key`` and ``time_key`` are the stores' entry keys.
        """
        self.store = store
        self.name = name
        self.text_key = text_key
        self.time_key = time_key
        self.scope = dict(scope or {})
        self._opener = opener
        self._others: dict[str, tuple[Any, Any]] = {}  # name -> (the store opened, the view used)
        self._lock = asyncio.Lock()

    async def remember(
        self,
        text: str,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
        timestamp: int | str | None = None,
    ) -> str:
        """Insert the entry of ``text`` with ``metadata``, ``id`` (None: derived by the store) and
        ``timestamp`` (epoch ms or ISO-8601; None: now). Returns its id."""
        entry: dict[str, Any] = {self.text_key: text}
        if metadata is not None:
            entry["metadata"] = metadata
        if id is not None:
            entry["id"] = id
        if timestamp is not None:
            entry[self.time_key] = timestamp
        return str(await self.store.insert(entry))

    async def recall(
        self, query: str | list[str], limit: int = 5, where: dict[str, Any] | None = None, mode: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``limit`` entries most relevant to ``query`` (one text or several) matching the
        metadata filter ``where``, ranked by ``mode`` (None: the store's default). Returns them."""
        return _plain(await self.store.get_most_relevant(query, limit, where, mode=mode))  # type: ignore[no-any-return]

    async def recent(
        self, limit: int = 10, filter: dict[str, Any] | None = None, since: int | str | None = None
    ) -> list[dict[str, Any]]:
        """The ``limit`` newest entries matching the metadata filter ``filter``, from ``since``
        (epoch ms or ISO-8601, inclusive) on. Returns them, newest first."""
        return _plain(await self.store.get_most_recent(limit, filter, since=since))  # type: ignore[no-any-return]

    async def get(self, id: str) -> dict[str, Any] | None:
        """The entry ``id``, or None when there is none."""
        return _plain(await self.store.get(id))  # type: ignore[no-any-return]

    async def forget(self, id: str) -> bool:
        """Delete the entry ``id`` and its vector. Returns whether it existed."""
        return bool(await self.store.delete(id))

    async def report(self) -> dict[str, Any]:
        """The consistency report of every entry (``get_consistency_report(None)``)."""
        return _plain(await self.store.get_consistency_report(None))  # type: ignore[no-any-return]

    async def context(
        self,
        queries: list[str],
        collections: list[str] | None = None,
        recent_limit: int = 10,
        query_limit: int = 5,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """The chat messages ContextStore compiles for ``queries`` from ``collections`` (None or
        empty: the served store's), with ``recent_limit``, ``query_limit`` and ``limit`` as for
        ``ContextStore.compile_context``. Returns the messages, oldest first."""
        names = list(dict.fromkeys(collections or [self.name]))
        context = ContextStore(store_factory=self._collection)
        for name in names:
            await context.get_or_create_collection(name, self.text_key, self.time_key)
        messages = await context.compile_context(list(queries), recent_limit, query_limit, limit)
        return _plain(messages)  # type: ignore[no-any-return]

    async def _collection(self, name: str, text_key: str, time_key: str) -> Any:
        """The served store for its own name, else another collection kept open, scoped like the
        served one (ContextStore's factory)."""
        if name == self.name:
            return self.store
        async with self._lock:
            if name not in self._others:
                opened = await self._opener(name)
                try:
                    view = opened.scope(**self.scope) if self.scope else opened
                except BaseException:
                    await opened.cleanup()
                    raise
                self._others[name] = (opened, view)
            return self._others[name][1]

    async def aclose(self) -> None:
        """Close the other collections ``context`` opened (not the served store)."""
        others, self._others = list(self._others.values()), {}
        for opened, _ in others:
            await opened.cleanup()


_Limit = Annotated[int, Field(ge=1, le=1000)]
_Filter = Annotated[
    dict[str, Any] | None,
    Field(
        description='Metadata filter, e.g. {"type": "note"} or {"tag": {"$in": ["a", "b"]}}; '
        "operators $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not. Omit for all entries."
    ),
]
_Time = Annotated[int | str | None, Field(description="Epoch milliseconds or an ISO-8601 string.")]
_Id = Annotated[str, Field(min_length=1, description="The entry's id (as returned by remember).")]
_ENTRY = "Each entry: id, text, timestamp (epoch ms), metadata (the stored fields plus vectorStatus)."


def build_server(tools: MemoryTools) -> MCPServer[Any]:
    """The MCP server whose seven tools call ``tools``. Raises MissingDependencyError without ``mcp``."""
    require_mcp()
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: MCPServer[Any] = MCPServer(
        "semantic-store",
        instructions="Long-term memory: remember texts, recall them by meaning, list recent ones, "
        f"compile chat context. Store: {tools.name!r}"
        + (f", confined to {tools.scope} (every write carries these metadata fields)." if tools.scope else "."),
        log_level="WARNING",
    )

    async def guard(op: str, call: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await call
        except SemanticStoreError as exc:
            raise ToolError(" ".join(str(exc).split())) from None
        except Exception:
            log.exception("MCP tool %s failed", op)
            raise ToolError(f"{op} failed: internal error (logged by the server)") from None

    @server.tool(
        description="Store a text in long-term memory (it is embedded for semantic recall). "
        "Returns the entry's id. Remembering again with the same id replaces that entry."
    )
    async def remember(
        text: Annotated[str, Field(description="The text to remember.")],
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description='JSON object of fields to keep with it, e.g. {"type": "note", "userName": "Ada"}.'),
        ] = None,
        id: Annotated[str | None, Field(description="Entry id; omitted: one derived from the content.")] = None,
        timestamp: Annotated[
            int | str | None, Field(description="When it happened: epoch ms or ISO-8601; omitted: now.")
        ] = None,
    ) -> str:
        return str(await guard("remember", tools.remember(text, metadata, id, timestamp)))

    @server.tool(
        description="Search memory by meaning: the entries most relevant to the query, best first. "
        f"{_ENTRY} Plus score (higher is better), vector_score and lexical_score."
    )
    async def recall(
        query: Annotated[str | list[str], Field(description="What to look for: one text or several.")],
        limit: Annotated[_Limit, Field(description="How many entries at most.")] = 5,
        where: _Filter = None,
        mode: Annotated[
            Literal["vector", "lexical", "hybrid"] | None,
            Field(description="vector: by meaning; lexical: by words; hybrid: both fused. Omit: the store's default."),
        ] = None,
    ) -> list[dict[str, Any]]:
        return await guard("recall", tools.recall(query, limit, where, mode))  # type: ignore[no-any-return]

    @server.tool(description=f"The newest entries in memory, newest first. {_ENTRY}")
    async def recent(
        limit: Annotated[_Limit, Field(description="How many entries at most.")] = 10,
        filter: _Filter = None,
        since: Annotated[_Time, Field(description="Only entries at or after this time.")] = None,
    ) -> list[dict[str, Any]]:
        return await guard("recent", tools.recent(limit, filter, since))  # type: ignore[no-any-return]

    @server.tool(description=f"One entry by id, or null when there is none. {_ENTRY}")
    async def get(id: _Id) -> dict[str, Any] | None:
        return await guard("get", tools.get(id))  # type: ignore[no-any-return]

    @server.tool(description="Delete an entry (and its embedding) by id. Returns true if it existed, false if not.")
    async def forget(id: _Id) -> bool:
        return bool(await guard("forget", tools.forget(id)))

    @server.tool(
        description="The store's consistency report: total_documents, consistent_documents, "
        "inconsistent_documents, missing_vectors, pending, failed, stale_vectors, orphaned_vectors, "
        "vector_write_failures..."
    )
    async def report() -> dict[str, Any]:
        return await guard("report", tools.report())  # type: ignore[no-any-return]

    @server.tool(
        description="Compile chat context for an LLM from memory: recent entries plus those related to the "
        "queries, as messages {role: user|assistant|system, content, images?}, oldest first."
    )
    async def context(
        queries: Annotated[list[str], Field(description="Texts to find related entries for (may be empty).")],
        collections: Annotated[
            list[str] | None, Field(description="Store names to draw from; omitted: this server's store.")
        ] = None,
        recent_limit: Annotated[int, Field(ge=1, le=1000, description="Newest entries per collection.")] = 10,
        query_limit: Annotated[int, Field(ge=0, le=100, description="How many queries to run at most.")] = 5,
        limit: Annotated[_Limit, Field(description="Related entries per collection.")] = 20,
    ) -> list[dict[str, Any]]:
        call = tools.context(queries, collections, recent_limit, query_limit, limit)
        return await guard("context", call)  # type: ignore[no-any-return]

    return server


def parse_bind(value: str) -> tuple[str, int]:
    """``value`` (``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT``; no host: 127.0.0.1) as
    ``(host, port)``. Raises ValueError for anything else."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, got {value!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _BearerAuth:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>`` (compared
    in constant time), else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            body = b'{"error": "unauthorized: send Authorization: Bearer <SEMANTIC_STORE_MCP_TOKEN>"}'
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def _serve_http(server: MCPServer[Any], host: str, port: int, token: str | None) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises a caught SIGINT/SIGTERM after its shutdown, which would kill the process
        # before the store is closed: catch them without re-raising.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    app: ASGIApp = server.streamable_http_app(host=host)
    if token:
        app = _BearerAuth(app, token)
    shown = f"[{host}]" if ":" in host else host
    auth = "bearer token required" if token else "no token"
    print(f"semantic-store mcp: serving http://{shown}:{port}/mcp ({auth})", file=sys.stderr, flush=True)
    await Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")).serve()


async def serve(
    store: Any,
    opener: Opener,
    *,
    name: str,
    text_key: str = "text",
    time_key: str = "createdAt",
    scope: dict[str, Any] | None = None,
    http: tuple[str, int] | None = None,
    token: str | None = None,
    close: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Serve ``store`` (open; closed by the caller) until stdin ends (stdio) or SIGINT/SIGTERM.

    ``opener`` opens other collections for ``context``; ``name`` is the store's name,
    ``text_key``/``time_key`` its entry keys; ``scope``: the metadata fields ``store`` is a
    ``scope(**scope)`` view of (None: none), applied to ``context``'s other collections too;
    ``http`` is ``(host, port)`` for streamable HTTP (None: stdio); ``token`` is the bearer token
    every HTTP request must carry (None: none); ``close`` closes ``store`` when a signal ends a stdio
    server (which then exits at once: 0 for SIGTERM, 130 for SIGINT). Raises MissingDependencyError
    without ``mcp``."""
    tools = MemoryTools(store, opener, name, text_key, time_key, scope)
    server = build_server(tools)
    try:
        if http is not None:
            await _serve_http(server, http[0], http[1], token)
            return
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        async def stop(code: int) -> None:
            # The stdio transport reads stdin in a thread that a cancellation cannot interrupt, so a
            # signal closes what is open here and ends the process (stdin's EOF ends it normally).
            try:
                await tools.aclose()
                if close is not None:
                    await close()
            finally:
                sys.stderr.flush()
                os._exit(code)

        def on_signal(code: int) -> None:
            stopping.append(loop.create_task(stop(code)))

        for sig, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
            loop.add_signal_handler(sig, on_signal, code)
        try:
            await server.run_stdio_async()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    finally:
        await tools.aclose()
