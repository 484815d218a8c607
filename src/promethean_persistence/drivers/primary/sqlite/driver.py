"""``SQLitePrimary``, composed of the package's parts (see the package docstring): configuration,
open and close, writes, reads, the lexical index, the manifest and the catalog."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

from ...._filters import Cmp, Node
from ...._lexical import query_terms
from ...._types import Manifest, Record, VectorHit, VectorState
from ..._sql import OUTBOX_PREDICATE, OUTBOX_STATES, window
from ..._sqlite import SQLiteConnection, filter_sql, quote
from ..._sqlite_filter import metadata_paths
from ..._sqlite_lexical import FtsIndex
from ...base import Capabilities, Order
from .._sql_layout import CATALOG, COLUMNS, FILTER_COLUMNS, dumps, now_ms, recent_sql
from ._outbox import Outbox
from ._rows import LIVE, UPDATES, record_of, row_of
from ._schema import Schema

if TYPE_CHECKING:
    from ...._config import StoreConfig

_READ_HERE = 64  #: ``get`` of at most this many ids reads on the caller's thread (``SQLiteConnection.read_here``)


class SQLitePrimary(Schema, Outbox):
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
            f"ON CONFLICT (id) DO UPDATE SET {UPDATES}"
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
            # new rows are indexed together (a replaced one by the update trigger)
            new = [r.id for r, p in zip(records, previous) if p is None]
            with self._fts.adding(conn, new) if self._fts is not None else nullcontext():
                conn.executemany(sql, [row_of(r) for r in records])
            # a record written again drops its tombstone; mostly there is none to look up
            if conn.execute(f"SELECT 1 FROM {self._tombstones} LIMIT 1").fetchone():
                conn.executemany(f"DELETE FROM {self._tombstones} WHERE id = ?", [(r.id,) for r in records])
            return previous

        return await self._db.run(self._db.transaction, put, operation="put") if records or states else []

    def _fetch(self, conn: sqlite3.Connection, ids: list[str], now: int | None = None) -> dict[str, Record]:
        """The records of ``ids`` found on ``conn``, by id; with ``now`` (epoch ms) only those
        not expired then (None: expired ones too, as ``put`` needs)."""
        found: dict[str, Record] = {}
        live = "" if now is None else f" AND {LIVE}"
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            params = chunk if now is None else [*chunk, now]
            for row in conn.execute(f"SELECT {COLUMNS} FROM {self._table} WHERE id IN ({marks}){live}", params):
                found[row[0]] = record_of(row)
        return found

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """See ``PrimaryDriver.get``."""
        ids = list(ids)
        now = now_ms()
        # a few rows by key (a search's hits) read here: cheaper than a hop to the connection's thread
        found = self._db.read_here(lambda conn: self._fetch(conn, ids, now)) if 0 < len(ids) <= _READ_HERE else None
        if found is None:
            found = await self._db.run(lambda: self._fetch(self._db.conn, ids, now), operation="get") if ids else {}
        return [found.get(i) for i in ids]

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """See ``PrimaryDriver.versions``."""
        ids, now = list(ids), now_ms()

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = f"SELECT id, version FROM {self._table} WHERE id IN ({','.join('?' * len(chunk))}) AND {LIVE}"
                found.update(conn.execute(sql, [*chunk, now]).fetchall())
            return found

        if not ids:
            return {}
        found = self._db.read_here(read)  # an indexed read of two columns: cheaper here than a hop
        return found if found is not None else await self._db.run(lambda: read(self._db.conn), operation="get")

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
            sql, p = filter_sql(where, columns=FILTER_COLUMNS, indexed=self._indexed)
            if isinstance(where, Cmp) and where.path == ("vectorStatus",) and where.value in OUTBOX_STATES:
                # the outbox index's predicate, stated: SQLite then counts outbox rows in it
                # (flush asks for the pending ones until none is left) instead of every row
                clauses.append(OUTBOX_PREDICATE)
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
        clauses.append(LIVE)
        params.append(now_ms())
        self._where(where, clauses, params)
        sql = recent_sql(self._table, clauses, order, "?")
        params.append(limit)
        rows = await self._db.run(lambda: self._db.conn.execute(sql, params).fetchall(), operation="most_recent")
        return [record_of(r) for r in rows]

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

        now = now_ms()

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
        sql = f"SELECT {COLUMNS} FROM {self._table} WHERE id > ? ORDER BY id LIMIT ?"
        last = "" if after is None else after
        while True:
            records = await self._db.run(
                lambda after: [record_of(r) for r in self._db.conn.execute(sql, (after, batch_size))],
                last,
                operation="iterate",
            )
            if not records:
                return
            now = now_ms()
            live = [r for r in records if r.expires_at is None or r.expires_at > now]
            if live:
                yield live
            last = records[-1].id

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        clauses: list[str] = [LIVE]
        params: list[Any] = [now_ms()]
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
        data = dumps(manifest.to_dict())
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
