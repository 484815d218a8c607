"""Shared plumbing for drivers on stdlib sqlite3: one connection owned by one thread, so
async callers never block the event loop, plus the filter language translated to SQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from .._errors import BackendRejected, BackendUnavailable, ValidationError
from .._filters import And, Cmp, Node, Or

T = TypeVar("T")


def quote(identifier: str) -> str:
    """Quote the SQL ``identifier``; collection names are data, never spliced raw."""
    if not identifier or "\x00" in identifier or len(identifier) > 200:
        raise ValidationError(f"Invalid collection name {identifier!r}", field="name")
    return '"' + identifier.replace('"', '""') + '"'


class SQLiteConnection:
    """A sqlite3 connection driven from its own thread."""

    def __init__(self, path: str, *, driver: str, synchronous: str = "FULL", busy_timeout_ms: int = 30_000):
        """``path`` is the database file; ``driver`` names the driver in errors and thread names;
        ``synchronous`` is SQLite's ``PRAGMA synchronous`` for durable commits; ``busy_timeout_ms``
        how long a write waits for another process's lock. Nothing opens before ``open``.
        """
        self.path = path
        self.driver = driver
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Start the connection's thread and connect (WAL mode); raises BackendUnavailable when the
        file cannot be opened.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.driver}-sqlite")
        await self.run(self._connect)

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        if self.path != ":memory:":
            self._enable_wal(conn)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL takes an exclusive lock that the busy timeout does not
        # cover: two processes opening a fresh store at once must take turns.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    async def close(self) -> None:
        """Close the connection and stop its thread; closing twice does nothing."""
        if self._executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def run(self, fn: Callable[..., T], *args: Any, operation: str = "query") -> T:
        """Run ``fn(*args)`` on the connection's thread, mapping sqlite3 errors to ours.

        ``operation`` names the work in errors. Returns what ``fn`` returns; raises
        BackendUnavailable (locked, I/O) or BackendRejected (everything else).
        """
        if self._executor is None:
            raise BackendUnavailable(
                f"SQLite database {self.path!r} is closed", driver=self.driver, operation=operation
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise BackendUnavailable(
                f"SQLite {operation} failed on {self.path!r}: {exc}", driver=self.driver, operation=operation
            ) from exc
        except sqlite3.Error as exc:
            raise BackendRejected(
                f"SQLite {operation} failed on {self.path!r}: {exc}", driver=self.driver, operation=operation
            ) from exc

    @property
    def conn(self) -> sqlite3.Connection:
        """The open sqlite3 connection (only for use on its thread)."""
        assert self._conn is not None, "connection is closed"
        return self._conn

    def transaction(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Call on the connection thread: run ``fn`` inside BEGIN IMMEDIATE ... COMMIT.

        ``durable`` False commits without waiting for the disk (synchronous=NORMAL) for
        writes that may be lost in a power cut without harm (vector state, leases): in WAL
        mode a later durable commit still persists them, in order.
        ``fn`` must not return a cursor: freeing it on another thread would touch the
        connection concurrently. Returns what ``fn`` returns; rolls back and re-raises when it
        raises.
        """
        conn = self.conn
        relax = not durable and self._synchronous in ("FULL", "EXTRA")
        if relax:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                if isinstance(result, sqlite3.Cursor):
                    result = cast(T, None)  # a cursor is never handed out (see above)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if relax:
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return result

    def quick_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``transaction(fn, durable=False)``: for ``fn``'s writes that may be lost in a power cut."""
        return self.transaction(fn, durable=False)


def json_path(path: tuple[str, ...]) -> str:
    """The SQLite JSON path of the key segments ``path`` (``$."a"."b"``)."""
    return "$" + "".join(f'."{p}"' for p in path)


def _typed(type_sql: str, value_sql: str, value: Any, op: str) -> str:
    """SQL for ``value_sql <op> ?`` that matches only values of the parameter's kind."""
    if isinstance(value, bool):
        return f"({type_sql} = {'true' if value else 'false'!r})"
    if isinstance(value, str):
        return f"({type_sql} = 'text' AND {value_sql} {op} ?)"
    return f"({type_sql} IN ('integer', 'real') AND {value_sql} {op} ?)"


def filter_sql(node: Node, column: str = "metadata", columns: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    """Translate a parsed filter ``node`` to an SQL boolean over the JSON ``column``.

    ``columns`` maps single-segment keys to plain TEXT columns (e.g. vectorStatus).
    Every comparison is wrapped in COALESCE(..., 0) so NOT never meets NULL. Returns the SQL
    and its parameters.
    """
    params: list[Any] = []
    sql = _node_sql(node, column, columns or {}, params)
    return sql, params


def _node_sql(node: Node, column: str, columns: dict[str, str], params: list[Any]) -> str:
    if isinstance(node, (And, Or)):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_node_sql(n, column, columns, params) for n in node.items) + ")"
    assert isinstance(node, Cmp)
    plain = columns.get(node.path[0]) if len(node.path) == 1 else None
    if plain is not None:
        type_sql = f"(CASE WHEN {plain} IS NULL THEN NULL ELSE 'text' END)"
        value_sql = plain
    else:
        path = json_path(node.path)
        type_sql = f"json_type({column}, '{_sql_str(path)}')"
        value_sql = f"json_extract({column}, '{_sql_str(path)}')"

    def eq(value: Any) -> str:
        if value is None:
            return f"({type_sql} IS NULL OR {type_sql} = 'null')"
        if not isinstance(value, bool):
            params.append(value)
        return _typed(type_sql, value_sql, value, "=")

    op, value = node.op, node.value
    if op == "eq":
        expr = eq(value)
    elif op == "ne":
        expr = f"NOT {_coalesce(eq(value))}"
    elif op in ("in", "nin"):
        expr = "(" + " OR ".join(_coalesce(eq(v)) for v in value) + ")" if value else "0"
        if op == "nin":
            expr = f"NOT {expr}"
    elif op == "exists":
        expr = f"({type_sql} IS {'NOT ' if value else ''}NULL)"
    else:
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        params.append(value)
        expr = _typed(type_sql, value_sql, value, sym)
    return _coalesce(expr)


def _coalesce(expr: str) -> str:
    return f"COALESCE({expr}, 0)"


def _sql_str(text: str) -> str:
    # Paths come from validated keys (no quotes or control characters); double any ' anyway.
    return text.replace("'", "''")
