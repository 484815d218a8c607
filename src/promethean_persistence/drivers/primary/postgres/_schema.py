"""The PostgreSQL primary's schema, made on open under an advisory lock: the catalog and its
schema version check, the collection's table (with the columns of earlier versions added),
its indexes, tombstones and full-text index (``_pg_lexical``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ...._types import SCHEMA_VERSION
from ..._sql import OUTBOX_PREDICATE
from .. import _pg_lexical
from .._sql_layout import CATALOG, check_schema

if TYPE_CHECKING:
    from ...base import Capabilities


class Schema:
    """Mixin of ``PostgresPrimary``: the tables and indexes of its collection."""

    if TYPE_CHECKING:  # set by PostgresPrimary.__init__ and PoolUser
        name: ClassVar[str]
        collection: str
        shown: str
        capabilities: Capabilities
        _t: str
        _tomb: str
        _ts_config: str

        def _ident(self, suffix: str = "") -> str: ...

    async def _create(self, conn: Any) -> None:
        """Make the collection's tables and indexes on ``conn``, in its open transaction."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"semantic-store:{self.collection}",))
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CATALOG} (collection text PRIMARY KEY, "
            "schema_version integer NOT NULL, manifest jsonb)"
        )
        row = await (
            await conn.execute(f"SELECT schema_version FROM {CATALOG} WHERE collection = %s", (self.collection,))
        ).fetchone()
        check_schema(row[0] if row else None, self.collection, f"at {self.shown}", self.name)
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
            f"CREATE INDEX IF NOT EXISTS {self._ident('__meta')} ON {self._t} USING gin (metadata jsonb_path_ops)"
        )
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self._ident('__outbox')} ON {self._t} (vector_next_at) "
            f"WHERE {OUTBOX_PREDICATE}"
        )
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS {self._tomb} (id text COLLATE "C" PRIMARY KEY, '
            "vector_attempts integer NOT NULL, vector_error text, vector_next_at bigint, "
            "vector_updated_at bigint)"
        )
        if self.capabilities.lexical:
            self._ts_config = await _pg_lexical.ensure(conn, self._t, self.collection, self._ident, self._ts_config)
