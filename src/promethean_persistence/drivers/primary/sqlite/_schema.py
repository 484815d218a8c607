"""The SQLite primary's schema, made on open: the catalog and its schema version check, the
collection's table (with the columns of earlier versions added), its tombstones, indexes
and full-text index."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, ClassVar

from ...._types import SCHEMA_VERSION
from ..._sql import OUTBOX_PREDICATE
from ..._sqlite import quote, table_base
from ..._sqlite_filter import index_sql, key_digest
from ..._sqlite_lexical import FtsIndex
from .._sql_layout import CATALOG, check_schema
from ._rows import NAMES

if TYPE_CHECKING:
    from ...base import Capabilities


class Schema:
    """Mixin of ``SQLitePrimary``: the tables and indexes of its collection."""

    if TYPE_CHECKING:  # set by SQLitePrimary.__init__
        name: ClassVar[str]
        path: str
        collection: str
        capabilities: Capabilities
        _indexed: tuple[tuple[str, ...], ...]
        _table: str
        _tombstones: str
        _fts: FtsIndex | None

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CATALOG} (collection TEXT PRIMARY KEY, "
            "schema_version INTEGER NOT NULL, manifest TEXT)"
        )
        row = conn.execute(f"SELECT schema_version FROM {CATALOG} WHERE collection = ?", (self.collection,)).fetchone()
        check_schema(row[0] if row else None, self.collection, f"in {self.path!r}", self.name)
        # its own tables even where SQLite's case-blind names would meet another's (Notes/notes)
        base = table_base(conn, CATALOG, self.collection, NAMES)
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
        conn.execute(f"CREATE INDEX IF NOT EXISTS {idx} ON {t} (vector_next_at) WHERE {OUTBOX_PREDICATE}")
        idx = quote(f"{base}__expires")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at) WHERE expires_at IS NOT NULL")
        for path in self._indexed:  # the newest entries of a filter, too, come from these
            conn.execute(index_sql(t, quote(f"{base}__meta_{key_digest(path)}"), path, then="timestamp"))
        if self.capabilities.lexical:
            self._fts = FtsIndex(base)
            self._fts.create(conn)
