"""SQLite primary store: one file, one table per collection, WAL, metadata as JSON text
queried with SQLite's JSON functions."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import BackendRejected
from ..._filters import Node
from ..._lexical import query_terms
from ..._types import SCHEMA_VERSION, TOMBSTONE_VERSION, Manifest, Record, VectorHit, VectorState
from .._outbox_sql import (
    FORGET_AFTER_MS,
    WORKERS,
    backlog_sql,
    beat_params,
    beat_sql,
    create_workers,
    forget_sql,
    live_workers_sql,
    prune_sql,
    stats_of,
)
from .._sql import due_records, due_tombstones, window
from .._sqlite import SQLiteConnection, filter_sql, quote, table_base
from .._sqlite_filter import index_sql, key_digest, metadata_paths
from .._sqlite_lexical import SUFFIXES, FtsIndex
from ..base import Capabilities, Order

if TYPE_CHECKING:
    from ..._config import StoreConfig

CATALOG = "_semantic_store_collections"
_COLUMNS = (
    "id, text, timestamp, metadata, extra, version, vector_status, vector_attempts, vector_error, "
    "vector_next_at, vector_updated_at, vector_synced_at, content_hash, embedding_model, expires_at"
)
_FILTER_COLUMNS = {"vectorStatus": "vector_status"}
_TRIGGERS = ("__lexical_ai", "__lexical_ad", "__lexical_au")
_NAMES = ("", "__tombstones", "__time", "__outbox", "__expires", *SUFFIXES, *_TRIGGERS)  #: the names a collection takes
_UPDATES = (
    ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ") if c != "id") + ", is_empty = excluded.is_empty"
)
_LIVE = "(expires_at IS NULL OR expires_at > ?)"  #: a record not expired at the parameter (epoch ms)
_READ_HERE = 64  #: ``get`` of at most this many ids reads on the caller's thread (``SQLiteConnection.read_here``)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row(record: Record) -> tuple[Any, ...]:
    return (
        record.id,
        record.text,
        record.timestamp,
        int(record.is_empty),
        _dumps(record.metadata),
        _dumps(record.extra),
        record.version,
        record.vector_status,
        record.vector_attempts,
        record.vector_error,
        record.vector_next_at,
        record.vector_updated_at,
        record.vector_synced_at,
        record.content_hash,
        record.embedding_model,
        record.expires_at,
    )


def _record(row: tuple[Any, ...]) -> Record:
    """A Record from a row of ``_COLUMNS`` (in the dataclass's field order, ``legacy`` False
    before ``expires_at``: positional is the cheapest way to build a hundred thousand of them
    for a whole-store report)."""
    r = row
    extra = _decode(r[4]) if r[4] != "{}" else {}
    return Record(
        r[0], r[1], r[2], _decode(r[3]), extra, r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], False, r[14]
    )


_decode = json.JSONDecoder().decode


class SQLitePrimary:
    """Primary driver on a SQLite file (stdlib sqlite3, one connection on its own thread)."""

    name: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str,
        collection: str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        lexical: bool = True,
        metadata_indexes: Sequence[str] = (),
    ):
        """``path`` is the database file (created on ``open``); ``collection`` names the table;
        ``synchronous`` is SQLite's ``PRAGMA synchronous`` for durable commits; ``busy_timeout_ms``
        how long a write waits for another process's lock before failing; ``lexical`` keeps the
        full-text index (FTS5) of the texts; ``metadata_indexes`` are metadata keys (dotted:
        nested) to index for filters.
        """
        self.path = path
        self._indexed = tuple(metadata_paths(metadata_indexes))
        self.collection = collection
        self.capabilities = Capabilities(lexical=lexical, expiry=True, outbox_stats=True)
        self._table = quote(collection)
        self._tombstones = quote(f"{collection}__tombstones")
        self._fts: FtsIndex | None = None
        self._db = SQLiteConnection(path, driver=self.name, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> SQLitePrimary:
        """See ``PrimaryDriver.from_config``."""
        s = config.sqlite
        return cls(
            config.sqlite_path,
            collection,
            synchronous=s.synchronous,
            busy_timeout_ms=s.busy_timeout_ms,
            lexical=config.lexical_index,
            metadata_indexes=config.metadata_indexes,
        )

    def __repr__(self) -> str:
        return f"SQLitePrimary(path={self.path!r}, collection={self.collection!r})"

    async def open(self) -> None:
        """See ``PrimaryDriver.open``."""
        await self._db.open()
        await self._db.run(self._db.transaction, self._create, operation="open")

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CATALOG} (collection TEXT PRIMARY KEY, "
            "schema_version INTEGER NOT NULL, manifest TEXT)"
        )
        row = conn.execute(f"SELECT schema_version FROM {CATALOG} WHERE collection = ?", (self.collection,)).fetchone()
        if row and row[0] > SCHEMA_VERSION:
            raise BackendRejected(
                f"Collection {self.collection!r} in {self.path!r} has schema version {row[0]}; "
                f"this version of promethean-persistence reads up to {SCHEMA_VERSION}. Upgrade the package.",
                driver=self.name,
                operation="open",
            )
        # its own tables even where SQLite's case-blind names would meet another's (Notes/notes)
        base = table_base(conn, CATALOG, self.collection, _NAMES)
        t = self._table = quote(base)
        self._tombstones = quote(f"{base}__tombstones")
        if row is None:
            conn.execute(
                f"INSERT INTO {CATALOG} (collection, schema_version) VALUES (?, ?)",
                (self.collection, SCHEMA_VERSION),
            )
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id TEXT NOT NULL UNIQUE,
                text TEXT NOT NULL,
                timestamp INTEGER NOT NULL,
                is_empty INTEGER NOT NULL,
                metadata TEXT NOT NULL,
                extra TEXT NOT NULL,
                version INTEGER NOT NULL,
                vector_status TEXT NOT NULL,
                vector_attempts INTEGER NOT NULL,
                vector_error TEXT,
                vector_next_at INTEGER,
                vector_updated_at INTEGER,
                vector_synced_at INTEGER,
                content_hash TEXT NOT NULL,
                embedding_model TEXT,
                expires_at INTEGER)"""
        )
        if not any(c[1] == "expires_at" for c in conn.execute(f"PRAGMA table_info({t})")):
            conn.execute(f"ALTER TABLE {t} ADD COLUMN expires_at INTEGER")  # a table of an earlier version
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {self._tombstones} (
                id TEXT PRIMARY KEY,
                vector_attempts INTEGER NOT NULL,
                vector_error TEXT,
                vector_next_at INTEGER,
                vector_updated_at INTEGER)"""
        )
        idx = quote(f"{base}__time")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {idx} ON {t} (timestamp, id)")
        idx = quote(f"{base}__outbox")
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {idx} ON {t} (vector_next_at) WHERE vector_status IN ('pending', 'failed')"
        )
        idx = quote(f"{base}__expires")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at) WHERE expires_at IS NOT NULL")
        for path in self._indexed:  # the newest entries of a filter, too, come from these
            conn.execute(index_sql(t, quote(f"{base}__meta_{key_digest(path)}"), path, then="timestamp"))
        if self.capabilities.lexical:
            self._fts = FtsIndex(base)
            self._fts.create(conn)

    async def aclose(self) -> None:
        """See ``PrimaryDriver.aclose``."""
        await self._db.close()

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """See ``PrimaryDriver.put``."""
        records = list(records)
        apply_states = self._state_writer(states)
        # an upsert, not INSERT OR REPLACE: a replaced row keeps its rowid and fires the
        # update trigger that keeps the lexical index (REPLACE's delete fires no trigger)
        sql = (
            f"INSERT INTO {self._table} (id, text, timestamp, is_empty, metadata, extra, version, "
            "vector_status, vector_attempts, vector_error, vector_next_at, vector_updated_at, "
            "vector_synced_at, content_hash, embedding_model, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            f"ON CONFLICT (id) DO UPDATE SET {_UPDATES}"
        )

        def put(conn: sqlite3.Connection) -> list[Record | None]:
            apply_states(conn)
            current = self._fetch(conn, list({r.id for r in records}))
            previous = []
            for r in records:  # in order, so a repeated id sees its earlier write
                prev = current.get(r.id)
                r.version = prev.version + 1 if prev else 1
                previous.append(prev)
                current[r.id] = r
            conn.executemany(sql, [_row(r) for r in records])
            conn.executemany(f"DELETE FROM {self._tombstones} WHERE id = ?", [(r.id,) for r in records])
            return previous

        return await self._db.run(self._db.transaction, put, operation="put") if records or states else []

    def _fetch(self, conn: sqlite3.Connection, ids: list[str], now: int | None = None) -> dict[str, Record]:
        """The records of ``ids`` found on ``conn``, by id; with ``now`` (epoch ms) only those
        not expired then (None: expired ones too, as ``put`` needs)."""
        found: dict[str, Record] = {}
        live = "" if now is None else f" AND {_LIVE}"
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            params = chunk if now is None else [*chunk, now]
            for row in conn.execute(f"SELECT {_COLUMNS} FROM {self._table} WHERE id IN ({marks}){live}", params):
                found[row[0]] = _record(row)
        return found

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """See ``PrimaryDriver.get``."""
        ids = list(ids)
        now = _now_ms()
        # a few rows by key (a search's hits) read here: cheaper than a hop to the connection's thread
        found = self._db.read_here(lambda conn: self._fetch(conn, ids, now)) if 0 < len(ids) <= _READ_HERE else None
        if found is None:
            found = await self._db.run(lambda: self._fetch(self._db.conn, ids, now), operation="get") if ids else {}
        return [found.get(i) for i in ids]

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """See ``PrimaryDriver.delete``."""
        ids = list(dict.fromkeys(ids))

        def remove(conn: sqlite3.Connection) -> list[str]:
            gone = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                gone += [
                    r[0] for r in conn.execute(f"DELETE FROM {self._table} WHERE id IN ({marks}) RETURNING id", chunk)
                ]
            if tombstone_at is not None:
                conn.executemany(
                    f"INSERT OR REPLACE INTO {self._tombstones} VALUES (?, 0, NULL, ?, ?)",
                    [(i, tombstone_at, tombstone_at) for i in gone],
                )
            return gone

        return await self._db.run(self._db.transaction, remove, operation="delete") if ids else []

    def _where(self, where: Node | None, clauses: list[str], params: list[Any]) -> None:
        if where is not None:
            sql, p = filter_sql(where, columns=_FILTER_COLUMNS, indexed=self._indexed)
            clauses.append(sql)
            params.extend(p)

    async def most_recent(
        self,
        limit: int,
        where: Node | None = None,
        *,
        order: Order = "desc",
        since: int | None = None,
        until: int | None = None,
        include_empty: bool = False,
    ) -> list[Record]:
        """See ``PrimaryDriver.most_recent``."""
        clauses, params = window(since, until, include_empty, mark="?", non_empty="is_empty = 0")
        clauses.append(_LIVE)
        params.append(_now_ms())
        self._where(where, clauses, params)
        direction = "DESC" if order == "desc" else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM {self._table}"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + f" ORDER BY timestamp {direction}, id {direction} LIMIT ?"
        )
        params.append(limit)
        rows = await self._db.run(lambda: self._db.conn.execute(sql, params).fetchall(), operation="most_recent")
        return [_record(r) for r in rows]

    async def lexical_query(self, text: str, limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``LexicalPrimary.lexical_query``."""
        terms = query_terms(text)
        if self._fts is None or not terms:
            return []
        fts = self._fts
        clauses: list[str] = []
        params: list[Any] = []
        self._where(where, clauses, params)
        where_sql = " AND ".join(clauses) or None

        now = _now_ms()

        def search() -> list[tuple[str, float]]:
            return fts.search(self._db.conn, terms, limit, where_sql, params, now=now)

        return [VectorHit(i, s) for i, s in await self._db.run(search, operation="lexical_query")]

    async def lexical_backfill(self, batch_size: int) -> AsyncIterator[tuple[int, int]]:
        """See ``LexicalPrimary.lexical_backfill``."""
        fts = self._fts
        if fts is None:
            return
        total = await self._db.run(lambda: fts.missing(self._db.conn), operation="lexical_backfill")
        done, after = 0, 0
        while done < total:
            step = fts.backfill_step(batch_size, after)
            n, after = await self._db.run(self._db.transaction, step, operation="lexical_backfill")
            if not n:
                return
            done += n
            yield min(done, total), total

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """See ``PrimaryDriver.iterate``."""
        # expired rows are read too (and skipped here): a batch of them must not end the iteration
        sql = f"SELECT {_COLUMNS} FROM {self._table} WHERE id > ? ORDER BY id LIMIT ?"
        last = "" if after is None else after
        while True:
            records = await self._db.run(
                lambda after: [_record(r) for r in self._db.conn.execute(sql, (after, batch_size))],
                last,
                operation="iterate",
            )
            if not records:
                return
            now = _now_ms()
            live = [r for r in records if r.expires_at is None or r.expires_at > now]
            if live:
                yield live
            last = records[-1].id

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        clauses: list[str] = [_LIVE]
        params: list[Any] = [_now_ms()]
        self._where(where, clauses, params)
        sql = f"SELECT COUNT(*) FROM {self._table} WHERE " + " AND ".join(clauses)
        return await self._db.run(lambda: self._db.conn.execute(sql, params).fetchone()[0], operation="count")

    async def purge_expired(self, now: int, limit: int) -> list[str]:
        """See ``ExpiringPrimary.purge_expired``: at most ``limit`` records expired at ``now``
        (epoch ms), soonest expiry first, deleted with a tombstone at ``now`` in one transaction."""
        select = (
            f"SELECT id FROM {self._table} WHERE expires_at IS NOT NULL AND expires_at <= ? "
            "ORDER BY expires_at, id LIMIT ?"
        )

        def purge(conn: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(select, (now, limit))]
            conn.executemany(f"DELETE FROM {self._table} WHERE id = ?", [(i,) for i in ids])
            conn.executemany(
                f"INSERT OR REPLACE INTO {self._tombstones} VALUES (?, 0, NULL, ?, ?)", [(i, now, now) for i in ids]
            )
            return ids

        return await self._db.run(self._db.transaction, purge, operation="purge_expired") if limit > 0 else []

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by
        records_sql = due_records(self._table, _COLUMNS, mark="?")
        tombstones_sql = due_tombstones(self._tombstones, mark="?")
        lease_until = now + lease_ms

        def claim(conn: sqlite3.Connection) -> list[Record]:
            work = [_record(r) for r in conn.execute(records_sql, (now, due_by, limit))]
            work += [
                Record.tombstone(i, n, u or 0, a, e)
                for i, a, e, n, u in conn.execute(tombstones_sql, (now, due_by, limit))
            ]
            work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
            work = work[:limit]
            conn.executemany(
                f"UPDATE {self._table} SET vector_next_at = ? WHERE id = ?",
                [(lease_until, r.id) for r in work if r.version != TOMBSTONE_VERSION],
            )
            conn.executemany(
                f"UPDATE {self._tombstones} SET vector_next_at = ? WHERE id = ?",
                [(lease_until, r.id) for r in work if r.version == TOMBSTONE_VERSION],
            )
            for r in work:
                r.vector_next_at = lease_until
            return work

        return await self._db.run(self._db.quick_transaction, claim, operation="claim")

    def _state_writer(self, states: Sequence[VectorState]) -> Callable[[sqlite3.Connection], int]:
        """A function applying ``states`` on the connection thread; it returns the row count."""
        sql = (
            f"UPDATE {self._table} SET vector_status = ?, vector_attempts = ?, vector_error = ?, "
            "vector_next_at = ?, vector_updated_at = ?, "
            "vector_synced_at = COALESCE(?, vector_synced_at), "
            "embedding_model = COALESCE(?, embedding_model) WHERE id = ? AND version = ?"
        )
        rows = [
            (s.status, s.attempts, s.error, s.next_at, s.updated_at, s.synced_at, s.embedding_model, s.id, s.version)
            for s in states
            if s.version != TOMBSTONE_VERSION
        ]
        deleted = [(s.id,) for s in states if s.version == TOMBSTONE_VERSION and s.status == "deleted"]
        retry = [
            (s.attempts, s.error, s.next_at, s.updated_at, s.id)
            for s in states
            if s.version == TOMBSTONE_VERSION and s.status != "deleted"
        ]

        def apply(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            if rows:
                conn.executemany(sql, rows)
            if deleted:
                conn.executemany(f"DELETE FROM {self._tombstones} WHERE id = ?", deleted)
            if retry:
                conn.executemany(
                    f"UPDATE {self._tombstones} SET vector_attempts = ?, vector_error = ?, vector_next_at = ?, "
                    "vector_updated_at = ? WHERE id = ?",
                    retry,
                )
            return conn.total_changes - before

        return apply

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        if not states:
            return 0
        return await self._db.run(self._db.quick_transaction, self._state_writer(states), operation="set_vector_state")

    async def get_manifest(self) -> Manifest | None:
        """See ``PrimaryDriver.get_manifest``."""
        row = await self._db.run(
            lambda: self._db.conn.execute(
                f"SELECT manifest FROM {CATALOG} WHERE collection = ?", (self.collection,)
            ).fetchone(),
            operation="get_manifest",
        )
        return Manifest.from_dict(json.loads(row[0])) if row and row[0] else None

    async def set_manifest(self, manifest: Manifest) -> None:
        """See ``PrimaryDriver.set_manifest``."""
        data = _dumps(manifest.to_dict())
        await self._db.run(
            self._db.transaction,
            lambda c: c.execute(f"UPDATE {CATALOG} SET manifest = ? WHERE collection = ?", (data, self.collection)),
            operation="set_manifest",
        )

    async def drop(self) -> None:
        """See ``PrimaryDriver.drop``."""

        def drop(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {self._table}")
            conn.execute(f"DELETE FROM {self._tombstones}")
            conn.execute(f"UPDATE {CATALOG} SET manifest = NULL WHERE collection = ?", (self.collection,))

        await self._db.run(self._db.transaction, drop, operation="drop")

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``)."""

        def read() -> dict[str, Any]:
            conn = self._db.conn
            rows = conn.execute(backlog_sql(self._table, "?"), (now,)).fetchall()
            tombstones = conn.execute(f"SELECT COUNT(*) FROM {self._tombstones}").fetchone()[0]
            workers = []
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (WORKERS,)).fetchone():
                workers = conn.execute(live_workers_sql("?"), (self.collection, now)).fetchall()
            return stats_of(rows, tombstones, workers)

        return await self._db.run(read, operation="outbox_stats")

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""

        def beat(conn: sqlite3.Connection) -> None:
            conn.execute(create_workers())
            conn.execute(beat_sql("?"), beat_params(self.collection, worker, now, dead_at))
            conn.execute(prune_sql("?"), (now - FORGET_AFTER_MS,))

        await self._db.run(self._db.quick_transaction, beat, operation="beat_worker")

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""

        def forget(conn: sqlite3.Connection) -> None:
            conn.execute(create_workers())
            conn.execute(forget_sql("?"), (self.collection, worker_id))

        await self._db.run(self._db.quick_transaction, forget, operation="forget_worker")

    @classmethod
    async def list_collections(cls, config: StoreConfig) -> list[str] | None:
        """See ``OutboxStatsPrimary.list_collections`` (``config``): the collections listed in the
        file's catalog (none when the file does not exist yet)."""
        from pathlib import Path

        path = config.sqlite_path
        if path == ":memory:" or not Path(path).expanduser().exists():
            return [] if path != ":memory:" else None
        db = SQLiteConnection(path, driver=cls.name, busy_timeout_ms=config.sqlite.busy_timeout_ms)
        await db.open()
        try:

            def names() -> list[str]:
                if not db.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (CATALOG,)).fetchone():
                    return []
                return [r[0] for r in db.conn.execute(f"SELECT collection FROM {CATALOG} ORDER BY collection")]

            return await db.run(names, operation="list_collections")
        finally:
            await db.close()
