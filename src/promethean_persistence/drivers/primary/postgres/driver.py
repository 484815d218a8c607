"""``PostgresPrimary``, composed of the package's parts (see the package docstring):
configuration, open, writes (alone or in a caller's transaction), reads, the lexical index,
the manifest and the catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...._errors import BackendRejected
from ...._filters import Node
from ...._lexical import query_terms
from ...._types import Manifest, Record, VectorHit, VectorState
from ..._postgres import PoolUser, conninfo, filter_sql, table_name
from ..._sql import window
from ...base import Capabilities, Order
from .. import _pg_lexical
from .._sql_layout import CATALOG, COLUMNS, FILTER_COLUMNS, dumps, now_ms, recent_sql
from ._outbox import Outbox
from ._rows import LIVE, WRITTEN, record_of, row_of
from ._schema import Schema

if TYPE_CHECKING:
    from ...._config import StoreConfig

_PRUNED_LIMIT = 1000  #: deeper lexical searches rank every match


class PostgresPrimary(PoolUser, Schema, Outbox):
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
        values = ", ".join("%s::jsonb" if c in ("metadata", "extra") else "%s" for c in WRITTEN)
        self._insert = (
            f"INSERT INTO {self._t} ({', '.join(WRITTEN)}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in WRITTEN[1:])
        )
        self._update = (
            f"UPDATE {self._t} SET "
            + ", ".join(f"{c} = {v}" for c, v in zip(WRITTEN[1:], values.split(", ")[1:]))
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
                await self._create(conn)
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
            f"SELECT {COLUMNS} FROM {self._t} WHERE id = ANY(%s) FOR UPDATE", (list({r.id for r in records}),)
        )
        current = {row[0]: record_of(row) for row in await cur.fetchall()}
        previous = []
        for r in records:
            prev = current.get(r.id)
            r.version = prev.version + 1 if prev else 1
            previous.append(prev)
            current[r.id] = r
        rows = [row_of(r) for r in records]
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
            f"SELECT {COLUMNS} FROM {self._t} WHERE id = ANY(%s) AND {LIVE}", (list(set(ids)), now_ms()), "get"
        )
        found = {row[0]: record_of(row) for row in rows}
        return [found.get(i) for i in ids]

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """See ``PrimaryDriver.versions``."""
        if not ids:
            return {}
        sql = f"SELECT id, version FROM {self._t} WHERE id = ANY(%s) AND {LIVE}"
        return dict(await self._fetch(sql, (list(set(ids)), now_ms()), "get"))

    def _where(self, where: Node | None, clauses: list[str], params: list[Any]) -> None:
        if where is not None:
            sql, p = filter_sql(where, columns=FILTER_COLUMNS)
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
        clauses.append(LIVE)
        params.append(now_ms())
        self._where(where, clauses, params)
        sql = recent_sql(self._t, clauses, order, "%s")
        return [record_of(r) for r in await self._fetch(sql, [*params, limit], "most_recent")]

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """See ``PrimaryDriver.iterate``."""
        # expired rows are read too (and skipped here): a batch of them must not end the iteration
        last = "" if after is None else after
        sql = f"SELECT {COLUMNS} FROM {self._t} WHERE id > %s ORDER BY id LIMIT %s"
        while True:
            rows = await self._fetch(sql, (last, batch_size), "iterate")
            if not rows:
                return
            now = now_ms()
            live = [record_of(r) for r in rows if r[14] is None or r[14] > now]
            if live:
                yield live
            last = rows[-1][0]

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        clauses: list[str] = [LIVE]
        params: list[Any] = [now_ms()]
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
        clauses: list[str] = [LIVE]
        params: list[Any] = [now_ms()]
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
                (dumps(manifest.to_dict()), self.collection),
            )

    async def drop(self) -> None:
        """See ``PrimaryDriver.drop``."""
        async with self._mapped("drop"), self._pool.connection() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {self._t}")
            await conn.execute(f"DELETE FROM {self._tomb}")
            await conn.execute(f"UPDATE {CATALOG} SET manifest = NULL WHERE collection = %s", (self.collection,))

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
