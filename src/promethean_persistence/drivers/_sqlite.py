"""Shared plumbing for drivers on stdlib sqlite3: one connection owned by one thread, so
async callers never block the event loop, plus the filter language translated to SQL
(``_sqlite_filter``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from .._errors import BackendRejected, BackendUnavailable, ValidationError
from ._names import digest
from ._sqlite_filter import filter_sql as filter_sql  # re-exported: the drivers' one import
from ._sqlite_filter import json_path as json_path

T = TypeVar("T")

# OperationalError messages of statements that fail the same way every time: not retried
_PERMANENT = (
    "expression tree is too large",
    "parser stack overflow",
    "too many sql variables",
    "too many terms",
    "too many arguments",
    "too many columns",
    "pattern too complex",
    "string or blob too big",
    "malformed json",
    "json path error",
)


def quote(identifier: str) -> str:
    """Quote the SQL ``identifier``; collection names are data, never spliced raw."""
    if not identifier or "\x00" in identifier or len(identifier) > 255:
        raise ValidationError(
            f"Invalid collection name {identifier[:80]!r}: SQLite table names here are 1-255 characters without NUL",
            field="name",
        )
    return '"' + identifier.replace('"', '""') + '"'


def table_base(conn: sqlite3.Connection, registry: str, collection: str, suffixes: tuple[str, ...]) -> str:
    """The name the tables and indexes of ``collection`` start with: they are
    ``{base}{suffix}`` for each of ``suffixes`` (``""`` for a table named ``base``).

    SQLite matches names ignoring ASCII case, and one file holds every collection's tables,
    so ``Notes`` and ``notes`` (or ``a`` and ``a__tombstones``) would meet. A collection
    keeps its own name, as earlier versions did, unless that is taken: then it gets
    ``{collection}~{digest}`` (``_names.digest``, stable). ``registry`` is the table (column
    ``collection``) that lists the driver's collections; a listed collection keeps the name
    it was given. Call on ``conn`` inside the transaction that registers the collection.
    Returns the base name; raises ``sqlite3.Error``.
    """
    moved = f"{collection}~{digest(collection)}"
    if conn.execute(f"SELECT 1 FROM {registry} WHERE collection = ?", (collection,)).fetchone():
        return moved if _taken(conn, moved + suffixes[0]) else collection  # this driver's own first table
    names = [collection + suffix for suffix in suffixes]
    if collection.lower().startswith("sqlite_") or any(_taken(conn, n) for n in names):
        return moved
    return collection


def _taken(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE"
    return conn.execute(sql, (name,)).fetchone() is not None


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
        self._reader: sqlite3.Connection | None = None  #: read-only, of the thread in ``_reader_thread``
        self._reader_thread: int | None = None
        self._reader_uri: str | None = None  #: set by ``open``
        # work handed to the thread: each counter has one writer, so none needs a lock
        self._submitted = self._finished = self._skipped = 0

    async def open(self) -> None:
        """Start the connection's thread and connect (WAL mode); raises BackendUnavailable when the
        file cannot be opened.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.driver}-sqlite")
        # the reader's address, fixed now: the same file even if the working directory changes
        self._reader_uri = None if self.path == ":memory:" else Path(self.path).resolve().as_uri() + "?mode=ro"
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
        self._close_reader()
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def run(self, fn: Callable[..., T], *args: Any, operation: str = "query") -> T:
        """Run ``fn(*args)`` on the connection's thread, mapping sqlite3 errors to ours.

        ``operation`` names the work in errors. Returns what ``fn`` returns; raises
        BackendUnavailable (locked, I/O) or BackendRejected (a statement or value beyond
        SQLite's limits, and everything else).
        """
        if self._executor is None:
            raise BackendUnavailable(
                f"SQLite database {self.path!r} is closed", driver=self.driver, operation=operation
            )

        def job() -> T:
            try:
                return fn(*args)
            finally:
                self._finished += 1  # only ever on the connection's one thread

        try:
            future = self._executor.submit(job)
            self._submitted += 1
            future.add_done_callback(self._skipped_if_cancelled)
            return await asyncio.wrap_future(future)
        except sqlite3.OperationalError as exc:
            # SQLite reports a statement beyond its limits as an "operational" error too
            permanent = any(p in str(exc).lower() for p in _PERMANENT)
            raise (BackendRejected if permanent else BackendUnavailable)(
                f"SQLite {operation} failed on {self.path!r}: {exc}", driver=self.driver, operation=operation
            ) from exc
        except (sqlite3.Error, OverflowError, UnicodeEncodeError) as exc:  # the last two: a value sqlite3 cannot bind
            raise BackendRejected(
                f"SQLite {operation} failed on {self.path!r}: {exc}", driver=self.driver, operation=operation
            ) from exc

    def _skipped_if_cancelled(self, future: Future[Any]) -> None:
        if future.cancelled():  # cancelled before it started: ``job`` never runs (called where cancelled)
            self._skipped += 1

    @property
    def idle(self) -> bool:
        """Whether no work of ``run`` is queued or running on the connection's thread (ask on
        the event loop's thread: nothing can start there until it yields)."""
        return self._submitted == self._finished + self._skipped

    def read_here(self, fn: Callable[[sqlite3.Connection], T]) -> T | None:
        """What ``fn`` returns for a read-only connection of the calling thread, or None where that
        cannot answer at once (an in-memory database, another thread's reader, a busy or
        failing file): the caller then reads through ``run``, which maps the errors.

        For small reads (a few rows by key): a hop to the connection's thread and back costs
        more than they do. The reader never waits for a lock (WAL readers do not block), and
        each call is its own snapshot of what was committed, as on the connection's thread.
        """
        if self._executor is None or self._reader_uri is None:
            return None
        reader = self._reader
        if reader is None or self._reader_thread != threading.get_ident():
            if reader is not None:
                return None  # another thread's: one event loop reads here
            try:
                # read-only: a file removed meanwhile is not created anew
                reader = sqlite3.connect(self._reader_uri, timeout=0, isolation_level=None, uri=True)
            except (sqlite3.Error, OSError, ValueError):
                return None
            self._reader, self._reader_thread = reader, threading.get_ident()
        try:
            return fn(reader)
        except (sqlite3.Error, OverflowError, UnicodeEncodeError):
            return None

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except sqlite3.Error:  # created on another thread: the garbage collector closes it
                pass

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
