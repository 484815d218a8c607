"""PostgreSQL primary store (psycopg 3, async pool): one table per collection with JSONB
metadata, a GIN index for metadata filters, outbox claims with ``FOR UPDATE SKIP LOCKED``, and
a full-text index kept by a trigger (``_pg_lexical``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
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
from .._postgres import PoolUser, conninfo, filter_sql, table_name
from .._sql import due_records, due_tombstones, window
from ..base import Capabilities, Order
from . import _pg_lexical

if TYPE_CHECKING:
    from ..._config import StoreConfig

CATALOG = "_semantic_store_collections"
_COLUMNS = (
    "id, text, timestamp, metadata, extra, version, vector_status, vector_attempts, vector_error, "
    "vector_next_at, vector_updated_at, vector_synced_at, content_hash, embedding_model, expires_at"
)
_FILTER_COLUMNS = {"vectorStatus": "vector_status"}
_WRITTEN = ("id", "text", "timestamp", "is_empty", *_COLUMNS.split(", ")[3:])  #: what put writes, in order
_LIVE = "(expires_at IS NULL OR expires_at > %s)"  #: a record not expired at the parameter (epoch ms)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _record(row: tuple[Any, ...]) -> Record:
    return Record(
        id=row[0],
        text=row[1],
        timestamp=row[2],
        metadata=row[3],
        extra=row[4],
        version=row[5],
        vector_status=row[6],
        vector_attempts=row[7],
        vector_error=row[8],
        vector_next_at=row[9],
        vector_updated_at=row[10],
        vector_synced_at=row[11],
        content_hash=row[12],
        embedding_model=row[13],
        expires_at=row[14],
    )


_PRUNED_LIMIT = 1000  #: deeper lexical searches rank every match


class PostgresPrimary(PoolUser):
    """Primary driver on PostgreSQL; pools are shared per server and reference counted."""

    name: ClassVar[str] = "postgresql"
    capabilities: Capabilities  #: ``lexical`` unless the store keeps no full-text index

    def __init__(
        self,
        info: str,
        shown: str,
        secrets: list[str],
        collection: str,
        *,
        pool: Any = None,
        lexical: bool = True,
        text_search_config: str = "english",
    ) -> None:
        """``info`` is the libpq connection string, ``shown`` the same with the password hidden (for
        messages), ``secrets`` the strings never to show; ``collection`` names the table;
        ``pool`` the pool settings (min, max, idle_timeout; None: the defaults). ``lexical``: keep
        the full-text index (column, trigger, indexes), with the text search configuration
        ``text_search_config``. Nothing connects before ``open``.
        """
        super().__init__(info, shown, secrets, collection, pool)
        self._t = self._ident()
        self._common_words = _pg_lexical.CommonWords(table_name(collection))
        self._tomb = self._ident("__tombstones")
        values = ", ".join("%s::jsonb" if c in ("metadata", "extra") else "%s" for c in _WRITTEN)
        self._insert = (
            f"INSERT INTO {self._t} ({', '.join(_WRITTEN)}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN[1:])
        )
        self._update = (
            f"UPDATE {self._t} SET "
            + ", ".join(f"{c} = {v}" for c, v in zip(_WRITTEN[1:], values.split(", ")[1:]))
            + " WHERE id = %s"
        )
        self.capabilities = Capabilities(transactions=True, lexical=lexical, expiry=True, outbox_stats=True)
        self._workers_ready = False  #: the heartbeat table exists (made by the first beat)
        self._ts_config = text_search_config  #: its canonical name once open

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> PostgresPrimary:
        """See ``PrimaryDriver.from_config``."""
        info, shown, secrets = conninfo(config.postgresql)
        return cls(
            info,
            shown,
            secrets,
            collection,
            pool=config.postgresql.pool,
            lexical=config.lexical_index,
            text_search_config=config.postgresql.text_search_config,
        )

    async def open(self) -> None:
        """See ``PrimaryDriver.open``."""
        await self._acquire()
        try:
            async with self._mapped("open"), self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"semantic-store:{self.collection}",))
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {CATALOG} (collection text PRIMARY KEY, "
                    "schema_version integer NOT NULL, manifest jsonb)"
                )
                row = await (
                    await conn.execute(
                        f"SELECT schema_version FROM {CATALOG} WHERE collection = %s", (self.collection,)
                    )
                ).fetchone()
                if row and row[0] > SCHEMA_VERSION:
                    raise BackendRejected(
                        f"Collection {self.collection!r} at {self.shown} has schema version {row[0]}; this "
                        f"version of promethean-persistence reads up to {SCHEMA_VERSION}. Upgrade the package.",
                        driver=self.name,
                        operation="open",
                    )
                if row is None:
                    await conn.execute(
                        f"INSERT INTO {CATALOG} (collection, schema_version) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (self.collection, SCHEMA_VERSION),
                    )
                await conn.execute(
                    f"""CREATE TABLE IF NOT EXISTS {self._t} (
                        id text COLLATE "C" PRIMARY KEY, text text NOT NULL, timestamp bigint NOT NULL,
                        is_empty boolean NOT NULL, metadata jsonb NOT NULL, extra jsonb NOT NULL,
                        version bigint NOT NULL, vector_status text NOT NULL, vector_attempts integer NOT NULL,
                        vector_error text, vector_next_at bigint, vector_updated_at bigint,
                        vector_synced_at bigint, content_hash text NOT NULL, embedding_model text,
                        expires_at bigint)"""
                )
                # a table of an earlier version (taking the lock only when the column is missing)
                missing = await (
                    await conn.execute(
                        "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
                        "AND attname = 'expires_at' AND NOT attisdropped)",
                        (self._t,),
                    )
                ).fetchone()
                if missing and missing[0]:
                    await conn.execute(f"ALTER TABLE {self._t} ADD COLUMN IF NOT EXISTS expires_at bigint")
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {self._ident('__expires')} ON {self._t} (expires_at) "
                    "WHERE expires_at IS NOT NULL"
                )
                await conn.execute(f"CREATE INDEX IF NOT EXISTS {self._ident('__time')} ON {self._t} (timestamp, id)")
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {self._ident('__meta')} ON {self._t} "
                    "USING gin (metadata jsonb_path_ops)"
                )
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {self._ident('__outbox')} ON {self._t} (vector_next_at) "
                    "WHERE vector_status IN ('pending', 'failed')"
                )
                await conn.execute(
                    f'CREATE TABLE IF NOT EXISTS {self._tomb} (id text COLLATE "C" PRIMARY KEY, '
                    "vector_attempts integer NOT NULL, vector_error text, vector_next_at bigint, "
                    "vector_updated_at bigint)"
                )
                if self.capabilities.lexical:
                    self._ts_config = await _pg_lexical.ensure(
                        conn, self._t, self.collection, self._ident, self._ts_config
                    )
        except BaseException:
            await self.aclose()
            raise

    # -- writes ---------------------------------------------------------------------------

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """See ``PrimaryDriver.put``."""
        async with self._mapped("put"), self._pool.connection() as conn, conn.transaction():
            return await self.put_in(conn, records, states=states)

    def transaction(self) -> _Transaction:
        """A connection in an open transaction, for drivers that can join it (pgvector)."""
        return _Transaction(self)

    def shares_transactions_with(self, vector: Any) -> bool:
        """True when ``vector`` can write inside this driver's transactions (same server)."""
        return getattr(vector, "_info", None) == self._info and hasattr(vector, "upsert_in")

    async def put_in(
        self, conn: Any, records: Sequence[Record], *, states: Sequence[VectorState] = ()
    ) -> list[Record | None]:
        """``put`` inside the caller's transaction on ``conn``.

        See ``TransactionalPrimary.put_in``.
        """
        records = list(records)
        await self._apply_states(conn, states)
        if not records:
            return []
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM {self._t} WHERE id = ANY(%s) FOR UPDATE", (list({r.id for r in records}),)
        )
        current = {row[0]: _record(row) for row in await cur.fetchall()}
        previous = []
        for r in records:
            prev = current.get(r.id)
            r.version = prev.version + 1 if prev else 1
            previous.append(prev)
            current[r.id] = r
        rows = [
            (
                r.id,
                r.text,
                r.timestamp,
                r.is_empty,
                _dumps(r.metadata),
                _dumps(r.extra),
                r.version,
                r.vector_status,
                r.vector_attempts,
                r.vector_error,
                r.vector_next_at,
                r.vector_updated_at,
                r.vector_synced_at,
                r.content_hash,
                r.embedding_model,
                r.expires_at,
            )
            for r in records
        ]
        # new ids are inserted (ON CONFLICT: one a concurrent writer just inserted) and existing ones
        # updated: an upsert fires the lexical trigger's INSERT branch too, parsing each replaced
        # text once in vain. An id's first occurrence is its insert: inserts first keep the order.
        async with conn.cursor() as cur:
            new = [row for row, prev in zip(rows, previous) if prev is None]
            if new:
                await cur.executemany(self._insert, new)
            old = [(*row[1:], row[0]) for row, prev in zip(rows, previous) if prev is not None]
            if old:
                await cur.executemany(self._update, old)
        await conn.execute(f"DELETE FROM {self._tomb} WHERE id = ANY(%s)", ([r.id for r in records],))
        return previous

    async def _apply_states(self, conn: Any, states: Sequence[VectorState]) -> int:
        records = [s for s in states if s.version != TOMBSTONE_VERSION]
        done = [s.id for s in states if s.version == TOMBSTONE_VERSION and s.status == "deleted"]
        retry = [s for s in states if s.version == TOMBSTONE_VERSION and s.status != "deleted"]
        applied = 0
        async with conn.cursor() as cur:
            if records:
                await cur.executemany(
                    f"UPDATE {self._t} SET vector_status = %s, vector_attempts = %s, vector_error = %s, "
                    "vector_next_at = %s, vector_updated_at = %s, vector_synced_at = COALESCE(%s, vector_synced_at), "
                    "embedding_model = COALESCE(%s, embedding_model) WHERE id = %s AND version = %s",
                    [
                        (
                            s.status,
                            s.attempts,
                            s.error,
                            s.next_at,
                            s.updated_at,
                            s.synced_at,
                            s.embedding_model,
                            s.id,
                            s.version,
                        )
                        for s in records
                    ],
                    returning=False,
                )
                applied += max(cur.rowcount, 0)
            if done:
                await cur.execute(f"DELETE FROM {self._tomb} WHERE id = ANY(%s)", (done,))
                applied += max(cur.rowcount, 0)
            if retry:
                await cur.executemany(
                    f"UPDATE {self._tomb} SET vector_attempts = %s, vector_error = %s, vector_next_at = %s, "
                    "vector_updated_at = %s WHERE id = %s",
                    [(s.attempts, s.error, s.next_at, s.updated_at, s.id) for s in retry],
                )
                applied += max(cur.rowcount, 0)
        return applied

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        if not states:
            return 0
        async with self._mapped("set_vector_state"), self._pool.connection() as conn, conn.transaction():
            return await self._apply_states(conn, states)

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """See ``PrimaryDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        async with self._mapped("delete"), self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"DELETE FROM {self._t} WHERE id = ANY(%s) RETURNING id", (ids,))
            gone = [row[0] for row in await cur.fetchall()]
            if tombstone_at is not None and gone:
                async with conn.cursor() as c:
                    await c.executemany(
                        f"INSERT INTO {self._tomb} VALUES (%s, 0, NULL, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                        "vector_attempts = 0, vector_error = NULL, vector_next_at = excluded.vector_next_at, "
                        "vector_updated_at = excluded.vector_updated_at",
                        [(i, tombstone_at, tombstone_at) for i in gone],
                    )
            return gone

    # -- reads ----------------------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[Any], operation: str) -> list[tuple[Any, ...]]:
        async with self._mapped(operation), self._pool.connection() as conn:
            rows: list[tuple[Any, ...]] = await (await conn.execute(sql, params)).fetchall()
            return rows

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """See ``PrimaryDriver.get``."""
        ids = list(ids)
        if not ids:
            return []
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM {self._t} WHERE id = ANY(%s) AND {_LIVE}", (list(set(ids)), _now_ms()), "get"
        )
        found = {row[0]: _record(row) for row in rows}
        return [found.get(i) for i in ids]

    def _where(self, where: Node | None, clauses: list[str], params: list[Any]) -> None:
        if where is not None:
            sql, p = filter_sql(where, columns=_FILTER_COLUMNS)
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
        clauses, params = window(since, until, include_empty, mark="%s", non_empty="NOT is_empty")
        clauses.append(_LIVE)
        params.append(_now_ms())
        self._where(where, clauses, params)
        direction = "DESC" if order == "desc" else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM {self._t}"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + f" ORDER BY timestamp {direction}, id {direction} LIMIT %s"
        )
        return [_record(r) for r in await self._fetch(sql, [*params, limit], "most_recent")]

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """See ``PrimaryDriver.iterate``."""
        # expired rows are read too (and skipped here): a batch of them must not end the iteration
        last = "" if after is None else after
        sql = f"SELECT {_COLUMNS} FROM {self._t} WHERE id > %s ORDER BY id LIMIT %s"
        while True:
            rows = await self._fetch(sql, (last, batch_size), "iterate")
            if not rows:
                return
            now = _now_ms()
            live = [_record(r) for r in rows if r[14] is None or r[14] > now]
            if live:
                yield live
            last = rows[-1][0]

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        clauses: list[str] = [_LIVE]
        params: list[Any] = [_now_ms()]
        self._where(where, clauses, params)
        sql = f"SELECT count(*) FROM {self._t} WHERE " + " AND ".join(clauses)
        found: int = (await self._fetch(sql, params, "count"))[0][0]
        return found

    async def purge_expired(self, now: int, limit: int) -> list[str]:
        """See ``ExpiringPrimary.purge_expired``: at most ``limit`` records expired at ``now``
        (epoch ms), soonest expiry first (rows another transaction holds are left for the next
        purge), deleted with a tombstone at ``now`` in one transaction."""
        if limit <= 0:
            return []
        async with self._mapped("purge_expired"), self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"DELETE FROM {self._t} WHERE id IN (SELECT id FROM {self._t} WHERE expires_at <= %s "
                "ORDER BY expires_at, id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, expires_at",
                (now, limit),
            )
            gone = [i for i, _ in sorted(await cur.fetchall(), key=lambda row: (row[1], row[0]))]
            if gone:
                await conn.execute(
                    f"INSERT INTO {self._tomb} SELECT unnest(%s::text[]), 0, NULL, %s, %s ON CONFLICT (id) DO UPDATE "
                    "SET vector_attempts = 0, vector_error = NULL, vector_next_at = excluded.vector_next_at, "
                    "vector_updated_at = excluded.vector_updated_at",
                    (gone, now, now),
                )
            return gone

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by
        until = now + lease_ms
        async with self._mapped("claim"), self._pool.connection() as conn, conn.transaction():
            lock = " FOR UPDATE SKIP LOCKED"
            rows = await (
                await conn.execute(due_records(self._t, _COLUMNS, mark="%s", lock=lock), (now, due_by, limit))
            ).fetchall()
            tombs = await (
                await conn.execute(due_tombstones(self._tomb, mark="%s", lock=lock), (now, due_by, limit))
            ).fetchall()
            work = [_record(r) for r in rows] + [Record.tombstone(i, n, u or 0, a, e) for i, a, e, n, u in tombs]
            work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
            work = work[:limit]
            records = [r.id for r in work if r.version != TOMBSTONE_VERSION]
            stones = [r.id for r in work if r.version == TOMBSTONE_VERSION]
            if records:
                await conn.execute(f"UPDATE {self._t} SET vector_next_at = %s WHERE id = ANY(%s)", (until, records))
            if stones:
                await conn.execute(f"UPDATE {self._tomb} SET vector_next_at = %s WHERE id = ANY(%s)", (until, stones))
        for r in work:
            r.vector_next_at = until
        return work

    # -- lexical index (Capabilities.lexical) --------------------------------------------------

    async def lexical_query(self, text: str, limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``LexicalPrimary.lexical_query`` (``text``, ``limit``, ``where``)."""
        if not self.capabilities.lexical:
            raise BackendRejected(
                f"Collection {self.collection!r} keeps no lexical index (lexical_index is false)",
                driver=self.name,
                operation="lexical_query",
            )
        terms = query_terms(text)
        if not terms:
            return []
        clauses: list[str] = [_LIVE]
        params: list[Any] = [_now_ms()]
        self._where(where, clauses, params)
        # the terms are letters and digits only, so " | " joins them into a valid tsquery
        sql, every = _pg_lexical.query_sql(self._t, clauses), " | ".join(terms)
        rare, common = await self._common_words.split(self._fetch, self._ts_config, terms)
        if rare and common and limit <= _PRUNED_LIMIT:
            cfg = self._ts_config
            rows = await self._fetch(sql, [cfg, " | ".join(rare), cfg, every, *params, limit], "lexical_query")
            if len(rows) == limit:  # else too few rows hold a rare word: rank every match
                return [VectorHit(row[0], float(row[1])) for row in rows]
        rows = await self._fetch(sql, [self._ts_config, every, self._ts_config, every, *params, limit], "lexical_query")
        return [VectorHit(row[0], float(row[1])) for row in rows]

    def lexical_backfill(self, batch_size: int) -> AsyncIterator[tuple[int, int]]:
        """See ``LexicalPrimary.lexical_backfill`` (``batch_size``)."""
        return _pg_lexical.backfill(self._fetch, self._t, batch_size, self.capabilities.lexical)

    async def get_manifest(self) -> Manifest | None:
        """See ``PrimaryDriver.get_manifest``."""
        rows = await self._fetch(
            f"SELECT manifest FROM {CATALOG} WHERE collection = %s", (self.collection,), "manifest"
        )
        return Manifest.from_dict(rows[0][0]) if rows and rows[0][0] else None

    async def set_manifest(self, manifest: Manifest) -> None:
        """See ``PrimaryDriver.set_manifest``."""
        async with self._mapped("manifest"), self._pool.connection() as conn:
            await conn.execute(
                f"UPDATE {CATALOG} SET manifest = %s::jsonb WHERE collection = %s",
                (_dumps(manifest.to_dict()), self.collection),
            )

    async def drop(self) -> None:
        """See ``PrimaryDriver.drop``."""
        async with self._mapped("drop"), self._pool.connection() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {self._t}")
            await conn.execute(f"DELETE FROM {self._tomb}")
            await conn.execute(f"UPDATE {CATALOG} SET manifest = NULL WHERE collection = %s", (self.collection,))

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``)."""
        async with self._mapped("outbox_stats"), self._pool.connection() as conn:
            rows = await (await conn.execute(backlog_sql(self._t, "%s"), (now,))).fetchall()
            tombstones = (await (await conn.execute(f"SELECT count(*) FROM {self._tomb}")).fetchone())[0]
            workers = []
            if (await (await conn.execute("SELECT to_regclass(%s)", (WORKERS,))).fetchone())[0] is not None:
                cur = await conn.execute(live_workers_sql("%s"), (self.collection, now))
                workers = await cur.fetchall()
        return stats_of(rows, tombstones, workers)

    async def _workers_table(self, conn: Any) -> None:
        if not self._workers_ready:  # two first beats at once must not race on CREATE TABLE
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"semantic-store:{WORKERS}",))
            await conn.execute(create_workers("bigint"))
            self._workers_ready = True

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""
        async with self._mapped("beat_worker"), self._pool.connection() as conn, conn.transaction():
            await self._workers_table(conn)
            await conn.execute(beat_sql("%s"), beat_params(self.collection, worker, now, dead_at))
            await conn.execute(prune_sql("%s"), (now - FORGET_AFTER_MS,))

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""
        async with self._mapped("forget_worker"), self._pool.connection() as conn, conn.transaction():
            await self._workers_table(conn)
            await conn.execute(forget_sql("%s"), (self.collection, worker_id))

    @classmethod
    async def list_collections(cls, config: StoreConfig) -> list[str] | None:
        """See ``OutboxStatsPrimary.list_collections`` (``config``): the collections in the
        database's catalog."""
        probe = cls.from_config(config, "catalog")
        await probe._acquire()
        try:
            if (await probe._fetch("SELECT to_regclass(%s)", (CATALOG,), "list_collections"))[0][0] is None:
                return []
            rows = await probe._fetch(f"SELECT collection FROM {CATALOG} ORDER BY collection", (), "list_collections")
            return [str(r[0]) for r in rows]
        finally:
            await probe.aclose()


class _Transaction:
    def __init__(self, driver: PostgresPrimary) -> None:
        self.driver = driver

    async def __aenter__(self) -> Any:
        self._mapping = self.driver._mapped("transaction")
        await self._mapping.__aenter__()
        self._conn_cm = self.driver._pool.connection()
        conn = await self._conn_cm.__aenter__()
        self._tx = conn.transaction()
        await self._tx.__aenter__()
        return conn

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._tx.__aexit__(*exc)
        finally:
            try:
                await self._conn_cm.__aexit__(*exc)
            finally:
                await self._mapping.__aexit__(*exc)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
