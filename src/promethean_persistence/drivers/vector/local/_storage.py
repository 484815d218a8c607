"""SQLite storage of the local vector store: the tables, the seq / generation bookkeeping,
the replay that brings memory (labels, delta) up to the database, writes and stored reads."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...._errors import ValidationError
from ...._types import FINGERPRINT_KEY
from ..._sqlite import quote, table_base
from ..._sqlite_filter import index_sql, key_digest
from .._exact import as_matrix
from ._codec import as_stored, decode, encode

if TYPE_CHECKING:
    from pathlib import Path

    from ..._sqlite import SQLiteConnection

GENERATIONS = "_semantic_store_vector_generations"
#: a collection's tables and indexes
_NAMES = ("__vectors", "__vector_drops", "__vectors_seq", "__drops_seq", "__vectors_label_id")
LABELS_PER_SEQ = 1 << 20  # labels are seq * LABELS_PER_SEQ + position: unique, never reused


class _Storage:
    """Mixin of ``LocalVector``: the durable tables and the in-memory state that mirrors them."""

    if TYPE_CHECKING:  # set by LocalVector.__init__ / _reset, or defined by the other mixins
        name: ClassVar[str]
        collection: str
        dims: int | None
        _table: str
        _dropped: str
        _db: SQLiteConnection
        _seq: int
        _labels: dict[str, int]
        _ids: dict[int, str]
        _graph: Any
        _delta: dict[int, np.ndarray]
        _delta_cache: tuple[list[int], np.ndarray] | None
        _indexing: asyncio.Task[None] | None
        _checkpoint_seq: int
        _unsaved: int
        _indexed: tuple[tuple[str, ...], ...]
        vector_dtype: str

        def _reset(self) -> None: ...
        def _meta_path(self) -> Path: ...
        def _schedule_indexing(self) -> None: ...
        async def _stop_background(self) -> None: ...

    # -- tables ---------------------------------------------------------------------------

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {GENERATIONS} (collection TEXT PRIMARY KEY, generation INTEGER NOT NULL)"
        )
        # its own tables even where SQLite's case-blind names would meet another's (Notes/notes)
        base = table_base(conn, GENERATIONS, self.collection, _NAMES)
        self._table, self._dropped = quote(f"{base}__vectors"), quote(f"{base}__vector_drops")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} (id TEXT PRIMARY KEY, label INTEGER NOT NULL, "
            "vector BLOB NOT NULL, metadata TEXT NOT NULL, seq INTEGER NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(base + '__vectors_seq')} ON {self._table} (seq)")
        # exact searches read the vectors of filtered or not yet indexed labels by label, and
        # opening reads every (label, id) pair from this index alone, not from the table's
        # pages full of vectors (3x faster); it replaces the label-only index of older versions
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(base + '__vectors_label_id')} ON {self._table} (label, id)")
        conn.execute(f"DROP INDEX IF EXISTS {quote(base + '__vectors_label')}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._dropped} (label INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(base + '__drops_seq')} ON {self._dropped} (seq)")
        for path in self._indexed:
            conn.execute(index_sql(self._table, quote(f"{base}__vectors_meta_{key_digest(path)}"), path))
        conn.execute(f"INSERT OR IGNORE INTO {GENERATIONS} VALUES (?, 0)", (self.collection,))

    # -- replay ---------------------------------------------------------------------------

    def _read_generation(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(f"SELECT generation FROM {GENERATIONS} WHERE collection = ?", (self.collection,)).fetchone()
        return row[0] if row else 0

    def _replay(self) -> None:
        """Bring memory up to the database's current seq (connection thread)."""
        conn = self._db.conn
        if self._read_generation(conn) == self._seq:
            return
        conn.execute("BEGIN")
        try:
            self._catch_up(conn)
        finally:
            conn.execute("COMMIT")

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Apply every change after our seq (inside a transaction, for a consistent view)."""
        generation = self._read_generation(conn)
        if generation == self._seq:
            return
        rows = conn.execute(
            f"SELECT id, label, vector FROM {self._table} WHERE seq > ? ORDER BY seq", (self._seq,)
        ).fetchall()
        for (label,) in conn.execute(f"SELECT label FROM {self._dropped} WHERE seq > ?", (self._seq,)):
            self._forget(label)
        for id_, label, blob in rows:
            old = self._labels.get(id_)
            if old is not None and old != label:
                self._forget(old)
            if label not in self._ids:
                self._add_delta(id_, label, decode(blob))
        self._seq = generation

    def _forget(self, label: int) -> None:
        id_ = self._ids.pop(label, None)
        if id_ is not None and self._labels.get(id_) == label:
            del self._labels[id_]
        if self._delta.pop(label, None) is not None:
            self._delta_cache = None
        else:
            self._mark_deleted(label)

    def _mark_deleted(self, label: int) -> None:
        if self._graph is not None:
            try:
                self._graph.mark_deleted(label)
            except RuntimeError:
                return  # not in the graph, or already deleted
            self._unsaved += 1

    def _add_delta(self, id_: str, label: int, vector: np.ndarray) -> None:
        self.dims = self.dims or len(vector)
        self._labels[id_], self._ids[label] = label, id_
        self._delta[label] = vector
        self._delta_cache = None

    async def _refresh(self) -> None:
        await self._db.run(self._replay, operation="replay")

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection, int], Callable[[], None]]) -> None:
        """Run ``fn(conn, seq)`` in one transaction that takes the next seq; ``fn`` returns
        the change to make in memory, applied only once the transaction committed."""

        def write(conn: sqlite3.Connection) -> tuple[int, Callable[[], None]]:
            self._catch_up(conn)  # so this write's seq follows ours
            seq = self._read_generation(conn) + 1
            conn.execute(f"UPDATE {GENERATIONS} SET generation = ? WHERE collection = ?", (seq, self.collection))
            return seq, fn(conn, seq)

        def run() -> None:
            seq, apply = self._db.transaction(write)
            apply()
            self._seq = seq

        await self._db.run(run, operation="write")
        self._schedule_indexing()

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``: one SQLite transaction; a repeated id's last vector
        wins."""
        ids = list(ids)
        metas = [json.dumps(dict(m), ensure_ascii=False, separators=(",", ":")) for m in metadata]
        if len(metas) != len(ids):
            raise ValidationError("ids and metadata must have the same length", driver=self.name)
        if vectors is None:

            def update(conn: sqlite3.Connection, seq: int) -> Callable[[], None]:
                missing = [i for i in ids if i not in self._labels]
                if missing:
                    raise ValidationError(
                        f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name
                    )
                conn.executemany(
                    f"UPDATE {self._table} SET metadata = ?, seq = ? WHERE id = ?",
                    [(m, seq, i) for m, i in zip(metas, ids)],
                )
                return lambda: None

            await self._write(update)
            return
        matrix = as_stored(as_matrix(vectors, self.dims, self.name), self.vector_dtype)
        if len(matrix) != len(ids):
            raise ValidationError("ids and vectors must have the same length", driver=self.name)
        latest = {id_: k for k, id_ in enumerate(ids)}  # a repeated id: the last one wins

        def insert(conn: sqlite3.Connection, seq: int) -> Callable[[], None]:
            if self.dims is not None and matrix.shape[1] != self.dims:
                raise ValidationError(
                    f"vector dimension {matrix.shape[1]} does not match the collection's {self.dims}", driver=self.name
                )
            rows, drops = [], []
            for pos, (id_, k) in enumerate(latest.items()):
                old = self._labels.get(id_)
                if old is not None:
                    drops.append((old, seq))
                rows.append((id_, seq * LABELS_PER_SEQ + pos, encode(matrix[k], self.vector_dtype), metas[k], seq))
            conn.executemany(
                f"INSERT INTO {self._table} VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "label = excluded.label, vector = excluded.vector, metadata = excluded.metadata, seq = excluded.seq",
                rows,
            )
            conn.executemany(f"INSERT OR REPLACE INTO {self._dropped} VALUES (?, ?)", drops)

            def apply() -> None:
                for label, _ in drops:
                    self._forget(label)
                for id_, label, _, _, _ in rows:
                    self._add_delta(id_, label, matrix[latest[id_]])

            return apply

        await self._write(insert)

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        ids = list(dict.fromkeys(ids))

        def remove(conn: sqlite3.Connection, seq: int) -> Callable[[], None]:
            gone = [(self._labels[i], seq) for i in ids if i in self._labels]
            conn.executemany(f"DELETE FROM {self._table} WHERE id = ?", [(i,) for i in ids])
            conn.executemany(f"INSERT OR REPLACE INTO {self._dropped} VALUES (?, ?)", gone)

            def apply() -> None:
                for label, _ in gone:
                    self._forget(label)

            return apply

        await self._write(remove)

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the rows and the HNSW checkpoint go."""
        await self._stop_background()

        def clear(conn: sqlite3.Connection, seq: int) -> Callable[[], None]:
            conn.execute(f"DELETE FROM {self._table}")
            conn.execute(f"DELETE FROM {self._dropped}")

            def apply() -> None:
                self._reset()
                self._checkpoint_seq = seq

            return apply

        await self._write(clear)
        try:
            self._meta_path().unlink()
        except FileNotFoundError:
            pass

    # -- stored reads ---------------------------------------------------------------------

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        await self._refresh()
        return {i for i in ids if i in self._labels}

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``: the ``FINGERPRINT_KEY`` value stored in each
        vector's metadata (None where absent); ids without a vector are left out."""
        await self._refresh()
        ids = list(dict.fromkeys(ids))
        sql = f"SELECT id, json_extract(metadata, '$.\"{FINGERPRINT_KEY}\"') FROM {self._table} WHERE id IN "

        def read() -> dict[str, str | None]:
            found: dict[str, str | None] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for id_, fp in self._db.conn.execute(sql + f"({','.join('?' * len(chunk))})", chunk):
                    found[id_] = fp if fp is None or isinstance(fp, str) else str(fp)
            return found

        return await self._db.run(read, operation="fingerprints") if ids else {}

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))

        def read() -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._db.conn.execute(
                    f"SELECT id, vector FROM {self._table} WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update((i, decode(blob)) for i, blob in rows)
            return found

        return await self._db.run(read, operation="fetch") if ids else {}

    async def count(self) -> int:
        """See ``VectorDriver.count``."""
        await self._refresh()
        return len(self._labels)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (in ascending id order)."""
        sql = f"SELECT id FROM {self._table} WHERE id > ? ORDER BY id LIMIT ?"
        last = ""
        while True:
            rows = await self._db.run(
                lambda after: self._db.conn.execute(sql, (after, batch_size)).fetchall(), last, operation="iter_ids"
            )
            if not rows:
                return
            yield [r[0] for r in rows]
            last = rows[-1][0]
