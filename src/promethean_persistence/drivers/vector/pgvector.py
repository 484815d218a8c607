"""pgvector: vectors in a PostgreSQL table with an HNSW index (cosine), filters pushed into
SQL, and iterative index scans so a filter never silently shortens the result."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._errors import ValidationError
from ..._filters import Node
from ..._types import FINGERPRINT_KEY, VectorHit
from .._postgres import PoolUser, conninfo, filter_sql
from ..base import Capabilities
from ._ef import MAX_EF, ef_for
from ._exact import as_matrix

if TYPE_CHECKING:
    from ..._config import StoreConfig

_MAX_EF_SEARCH = MAX_EF  #: the largest hnsw.ef_search pgvector accepts


_FORMATS: dict[int, str] = {}  #: a vector literal's format by dimension


def _literal(vector: np.ndarray) -> str:
    # 9 significant digits give every float32 back exactly; one % is three times faster than a join
    fmt = _FORMATS.get(len(vector))
    if fmt is None:
        fmt = _FORMATS[len(vector)] = "[" + ",".join(["%.9g"] * len(vector)) + "]"
    return fmt % tuple(vector.tolist())


#: the search settings last set on each pooled connection (by any driver of this process): a
#: query sets them only where they differ, instead of a transaction with ``SET LOCAL`` each time
_SESSIONS: weakref.WeakKeyDictionary[Any, tuple[int, str | None]] = weakref.WeakKeyDictionary()
#: tables this small are searched exactly: a scan costs about a graph search, and pgvector's
#: graph can leave a row unreachable (near-duplicate vectors), which no ``ef_search`` finds
EXACT_ROWS = 1000
_SIZE_TTL = 30.0  #: seconds a collection's size estimate (for ``ef_search``) is reused


def _version(text: str) -> tuple[int, ...]:
    """``"0.8.1"`` as ``(0, 8, 1)`` (a part that is not a number ends it)."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


class PgvectorVector(PoolUser):
    """Vector driver on PostgreSQL + pgvector (HNSW, cosine).

    Connection trouble and timeouts are ``BackendUnavailable``, other database errors
    ``BackendRejected``. The table is created by the first vector write (its dimension is
    the column's)."""

    name: ClassVar[str] = "pgvector"
    capabilities: ClassVar[Capabilities] = Capabilities(transactions=True)

    def __init__(
        self,
        info: str,
        shown: str,
        secrets: list[str],
        collection: str,
        *,
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int | None = None,
        pool: Any = None,
    ) -> None:
        """``info``: the libpq connection string. ``shown``: the server as messages name it
        (no secrets). ``secrets``: strings redacted from messages. ``collection``: the
        table prefix. ``m``, ``ef_construction`` and ``ef_search``: the HNSW settings (``ef_search``
        None: from the limit and the table's size, ``_ef.auto_ef``).
        ``pool``: the pool settings (sizes, idle timeout; None: defaults). Raises nothing."""
        super().__init__(info, shown, secrets, collection, pool)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.call_timeout = 30.0  # its own client timeout: a hung server fails the vector write
        self.dims: int | None = None
        self._t = self._ident("__vectors")
        self._idx = self._ident("__vectors_hnsw")
        self._iterative: str | None = None  #: ``hnsw.iterative_scan`` mode (pgvector 0.8+), set by ``open``
        self._size: tuple[float, int] | None = None  #: (when, rows) the table's size estimate

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> PgvectorVector:
        """See ``VectorDriver.from_config`` (and ``for_collection``, the same here):
        ``config.pgvector``, falling back to ``config.postgresql`` for the connection."""
        info, shown, secrets = conninfo(config.pgvector, fallback=config.postgresql)
        h = config.pgvector.hnsw
        return cls(
            info,
            shown,
            secrets,
            collection,
            m=h.m,
            ef_construction=h.ef_construction,
            ef_search=h.ef_search,
            pool=config.postgresql.pool,
        )

    for_collection = from_config

    async def open(self) -> None:
        """See ``VectorDriver.open``: joins the shared pool and creates the ``vector``
        extension if needed."""
        await self._acquire()
        try:
            async with self._mapped("open"), self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('semantic-store:pgvector-extension'))")
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                row = await (
                    await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).fetchone()
            # iterative index scans (0.8+): a filter never shortens the result; relaxed order finds
            # more of the true nearest than strict order (hits are sorted here anyway)
            self._iterative = "relaxed_order" if row and _version(row[0]) >= (0, 8) else None
            await self._load_dims()
        except BaseException:
            await self.aclose()
            raise

    async def _load_dims(self) -> int | None:
        """The table's vector dimension, or None before the first vector (another store
        or process may have created it since)."""
        if self.dims is None:
            async with self._mapped("open"), self._pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
                        (self._t,),
                    )
                ).fetchone()
            self.dims = row[0] if row and row[0] > 0 else None
        return self.dims

    async def _ensure_table(self, conn: Any, dims: int) -> None:
        if self.dims is not None:
            return
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"semantic-store:{self._t}",))
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS {self._t} (id text COLLATE "C" PRIMARY KEY, '
            f"embedding vector({int(dims)}) NOT NULL, metadata jsonb NOT NULL)"
        )
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self._idx} ON {self._t} USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"
        )
        self.dims = dims

    async def _table_dims(self, conn: Any) -> int:
        row = await (
            await conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
                (self._t,),
            )
        ).fetchone()
        dims: int = row[0]
        return dims

    def _check(self, matrix: np.ndarray) -> None:
        if self.dims is not None and matrix.shape[1] != self.dims:
            raise ValidationError(
                f"vector dimension {matrix.shape[1]} does not match the collection's {self.dims}",
                field="vectors",
                driver=self.name,
            )

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert`` (one transaction)."""
        async with self._mapped("upsert"), self._pool.connection() as conn, conn.transaction():
            await self.upsert_in(conn, ids, vectors, metadata)

    async def upsert_in(
        self, conn: Any, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """See ``TransactionalVector.upsert_in``: ``upsert`` inside the caller's transaction
        on ``conn`` (same server)."""
        ids = list(ids)
        metas = [json.dumps(dict(m), ensure_ascii=False) for m in metadata]
        if vectors is None:
            if self.dims is None:
                raise ValidationError("metadata-only upsert before any vector", driver=self.name)
            existing = await self._existing(conn, ids)
            missing = [i for i in ids if i not in existing]
            if missing:
                raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name)
            async with conn.cursor() as cur:
                await cur.executemany(f"UPDATE {self._t} SET metadata = %s::jsonb WHERE id = %s", list(zip(metas, ids)))
            return
        matrix = as_matrix(vectors, self.dims, self.name)
        await self._ensure_table(conn, matrix.shape[1])
        self.dims = await self._table_dims(conn)
        self._check(matrix)
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {self._t} (id, embedding, metadata) VALUES (%s, %s::vector, %s::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding, metadata = excluded.metadata",
                [(i, _literal(v), m) for i, v, m in zip(ids, matrix, metas)],
            )
        self._grew(len(ids))

    async def delete_in(self, conn: Any, ids: Sequence[str]) -> None:
        """See ``TransactionalVector.delete_in``."""
        if ids and await self._load_dims() is not None:
            await conn.execute(f"DELETE FROM {self._t} WHERE id = ANY(%s)", (list(ids),))

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: the filter runs in SQL, with iterative index scans so
        it never shortens the result (pgvector 0.8+). One statement: the search settings stay
        on the pooled connection. A table of at most ``EXACT_ROWS`` rows, a ``limit`` beyond
        what a graph search promises, or a graph search that came back short is answered
        by an exact scan."""
        query = as_matrix(vector, await self._load_dims(), self.name)
        if self.dims is None:
            return []
        clause = ""
        params: list[Any] = []
        if where is not None:
            sql, params = filter_sql(where)
            clause = f"WHERE {sql}"
        size = await self._rows()
        ef = min(ef_for(self.ef_search, limit, size), _MAX_EF_SEARCH)
        exact = limit > _MAX_EF_SEARCH or size <= EXACT_ROWS
        args = [_literal(query[0]), *params, limit]
        async with self._mapped("query"), self._pool.connection() as conn:
            if _SESSIONS.get(conn) != (ef, self._iterative):
                await self._settings(conn, ef)
            rows = await (await conn.execute(self._statement(clause, exact), args)).fetchall()
            if len(rows) < limit and not exact:
                # short: fewer matches than ``limit``, or an iterative scan that gave up
                # (``hnsw.max_scan_tuples``) or a row the graph cannot reach; only a scan can tell
                exact = True
                rows = await (await conn.execute(self._statement(clause, exact), args)).fetchall()
        hits = [VectorHit(row[0], 1.0 - row[1]) for row in rows]
        if self._iterative == "relaxed_order" and not exact:
            hits.sort(key=lambda h: -h.score)  # relaxed: nearly in order
        return hits

    def _statement(self, clause: str, exact: bool) -> str:
        # ``+ 0``: an order the index cannot give, so PostgreSQL scans every row exactly
        distance = "(embedding <=> %s::vector) + 0" if exact else "embedding <=> %s::vector"
        return f"SELECT id, {distance} AS d FROM {self._t} {clause} ORDER BY d LIMIT %s"

    async def _settings(self, conn: Any, ef: int) -> None:
        """Set this driver's search settings on pooled connection ``conn`` (for its session:
        ``hnsw.*`` only steer pgvector's index scans, which only this driver runs)."""
        if self._iterative is None:
            await conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(ef)])
        else:
            await conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, false), set_config('hnsw.iterative_scan', %s, false)",
                [str(ef), self._iterative],
            )
        _SESSIONS[conn] = (ef, self._iterative)

    async def _rows(self) -> int:
        """An estimate of the table's rows (PostgreSQL's statistics, else a count), asked
        again after ``_SIZE_TTL`` seconds; this driver's writes keep it up to date meanwhile."""
        now = time.monotonic()
        if self._size is not None and now - self._size[0] < _SIZE_TTL:
            return self._size[1]
        async with self._mapped("query"), self._pool.connection() as conn:
            row = await (
                await conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (self._t,))
            ).fetchone()
            rows = int(row[0]) if row and row[0] is not None else 0
            if rows < 0 or rows < 10_000:  # never analysed, or small: counting is cheap and exact
                rows = (await (await conn.execute(f"SELECT count(*) FROM {self._t}")).fetchone())[0]
        self._size = (now, rows)
        return rows

    def _grew(self, rows: int) -> None:
        """Count up to ``rows`` written; a small table is counted again (exactly: it decides
        between an exact and a graph search)."""
        if self._size is not None:
            self._size = None if self._size[1] < 10_000 else (self._size[0], self._size[1] + rows)

    async def _existing(self, conn: Any, ids: Sequence[str]) -> set[str]:
        rows = await (await conn.execute(f"SELECT id FROM {self._t} WHERE id = ANY(%s)", (list(ids),))).fetchall()
        return {row[0] for row in rows}

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        if not ids or await self._load_dims() is None:
            return set()
        async with self._mapped("existing"), self._pool.connection() as conn:
            return await self._existing(conn, ids)

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        if not ids or await self._load_dims() is None:
            return {}
        async with self._mapped("fingerprints"), self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT id, metadata->>'{FINGERPRINT_KEY}' FROM {self._t} WHERE id = ANY(%s)", (list(ids),)
                )
            ).fetchall()
        return dict(rows)

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        if not ids or await self._load_dims() is None:
            return {}
        async with self._mapped("fetch"), self._pool.connection() as conn:
            rows = await (
                await conn.execute(f"SELECT id, embedding::text FROM {self._t} WHERE id = ANY(%s)", (list(ids),))
            ).fetchall()
        return {i: np.array(text[1:-1].split(","), dtype=np.float32) for i, text in rows}

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        if not ids or await self._load_dims() is None:
            return
        async with self._mapped("delete"), self._pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self._t} WHERE id = ANY(%s)", (list(ids),))

    async def count(self) -> int:
        """See ``VectorDriver.count``."""
        if await self._load_dims() is None:
            return 0
        async with self._mapped("count"), self._pool.connection() as conn:
            count: int = (await (await conn.execute(f"SELECT count(*) FROM {self._t}")).fetchone())[0]
            return count

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (in ascending id order)."""
        if await self._load_dims() is None:
            return
        last = ""
        while True:
            async with self._mapped("iter_ids"), self._pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        f"SELECT id FROM {self._t} WHERE id > %s ORDER BY id LIMIT %s", (last, batch_size)
                    )
                ).fetchall()
            if not rows:
                return
            yield [row[0] for row in rows]
            last = rows[-1][0]

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the rows are deleted, the table and index stay."""
        if await self._load_dims() is None:
            return
        async with self._mapped("drop"), self._pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self._t}")
        self._size = None
