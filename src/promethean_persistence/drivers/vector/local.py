"""Embedded vector store: vectors kept durably as float32 blobs in a SQLite file (by default
the primary's own file), searched in memory.

The in-memory index is rebuilt from the durable table on open and whenever another
connection (another store or process) changed it, detected through a per-collection
generation counter bumped in the same transaction as every vector write.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..._errors import ValidationError
from ..._filters import Node
from ..._types import VectorHit
from .._sqlite import SQLiteConnection, quote
from ._exact import ExactIndex, as_matrix

GENERATIONS = "_semantic_store_vector_generations"


class LocalVector:
    """Vector driver on a local SQLite file with an in-memory exact index."""

    name: ClassVar[str] = "local"

    def __init__(self, path: str, collection: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 30_000):
        self.path = path
        self.collection = collection
        self._table = quote(f"{collection}__vectors")
        self._db = SQLiteConnection(path, driver=self.name, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self._index = ExactIndex(self.name)
        self._generation = -1

    @classmethod
    def from_config(cls, config, collection: str) -> LocalVector:
        s = config.sqlite
        return cls(
            config.local.path or config.sqlite_path,
            collection,
            synchronous=s.synchronous,
            busy_timeout_ms=s.busy_timeout_ms,
        )

    def __repr__(self) -> str:
        return f"LocalVector(path={self.path!r}, collection={self.collection!r})"

    async def open(self) -> None:
        await self._db.open()

        def create(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} "
                "(id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {GENERATIONS} (collection TEXT PRIMARY KEY, generation INTEGER NOT NULL)"
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {GENERATIONS} VALUES (?, 0)", (self.collection,)
            )

        await self._db.run(self._db.transaction, create, operation="open")
        await self._refresh()

    async def aclose(self) -> None:
        await self._db.close()

    def _read_generation(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(f"SELECT generation FROM {GENERATIONS} WHERE collection = ?", (self.collection,)).fetchone()
        return row[0] if row else 0

    async def _refresh(self) -> None:
        """Reload the index if the durable table changed behind our back."""

        def load() -> tuple[int, list[tuple]] | None:
            conn = self._db.conn
            generation = self._read_generation(conn)
            if generation == self._generation:
                return None
            conn.execute("BEGIN")
            try:
                generation = self._read_generation(conn)
                rows = conn.execute(f"SELECT id, vector, metadata FROM {self._table}").fetchall()
            finally:
                conn.execute("COMMIT")
            return generation, rows

        loaded = await self._db.run(load, operation="load")
        if loaded is None:
            return
        generation, rows = loaded
        index = ExactIndex(self.name)
        if rows:
            dims = len(rows[0][1]) // 4
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
            index.upsert([r[0] for r in rows], matrix, [json.loads(r[2]) for r in rows])
        self._index, self._generation = index, generation

    async def _write(self, fn) -> None:
        """Run a durable write and bump the generation in the same transaction."""

        def write(conn: sqlite3.Connection) -> bool:
            before = self._read_generation(conn)
            fn(conn)
            conn.execute(
                f"UPDATE {GENERATIONS} SET generation = generation + 1 WHERE collection = ?", (self.collection,)
            )
            return before == self._generation

        in_step = await self._db.run(self._db.transaction, write, operation="write")
        self._generation = self._generation + 1 if in_step else -1  # -1: reload on next read

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        ids = list(ids)
        metas = [dict(m) for m in metadata]
        await self._refresh()
        if vectors is None:
            missing = [i for i in ids if i not in self._index]
            if missing:
                raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name)
            rows = [(json.dumps(m, ensure_ascii=False), i) for i, m in zip(ids, metas)]
            await self._write(lambda c: c.executemany(f"UPDATE {self._table} SET metadata = ? WHERE id = ?", rows))
            self._index.set_metadata(ids, metas)
            return
        matrix = as_matrix(vectors, self._index.dims, self.name)
        if len(matrix) != len(ids) or len(metas) != len(ids):
            raise ValidationError("ids, vectors and metadata must have the same length", driver=self.name)
        rows = [(i, v.tobytes(), json.dumps(m, ensure_ascii=False)) for i, v, m in zip(ids, matrix, metas)]
        await self._write(lambda c: c.executemany(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?, ?)", rows))
        self._index.upsert(ids, matrix, metas)

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        await self._refresh()
        return self._index.search(vector, limit, where)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        await self._refresh()
        return {i for i in ids if i in self._index}

    async def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        await self._refresh()
        await self._write(lambda c: c.executemany(f"DELETE FROM {self._table} WHERE id = ?", [(i,) for i in ids]))
        self._index.delete(ids)

    async def count(self) -> int:
        await self._refresh()
        return len(self._index)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        await self._refresh()
        ids = sorted(self._index.ids())
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]

    async def drop(self) -> None:
        await self._write(lambda c: c.execute(f"DELETE FROM {self._table}"))
        self._index = ExactIndex(self.name)
