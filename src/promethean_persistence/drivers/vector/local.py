"""Embedded vector store: vectors kept durably in SQLite (by default the primary's own file),
searched through an HNSW index (hnswlib) kept in a file beside it as an accelerator.

Durability and crash safety
    Every write is one SQLite transaction that also bumps the collection's change counter
    (``seq``); each row remembers the ``seq`` that wrote it and every dropped HNSW label is
    logged with its ``seq``. The index file is a checkpoint: a sidecar names the file and
    the ``seq`` it covers. On open the checkpoint is loaded (a missing, unreadable or
    mismatched file is ignored) and every change after its ``seq`` is replayed; when
    another store or process writes, the same replay runs before the next read.

Never missing an acknowledged vector
    Vectors not yet in the HNSW graph (just written, replayed, or all of them while the
    collection is small) sit in an in-memory *delta* that is searched exactly and merged
    with the graph's results. A background step moves the delta into the graph. Small
    collections (``exact_threshold``) stay exact, which is faster at that size.

Filters are evaluated by SQLite on the stored metadata (the same translation as the
SQLite primary). Selective filters are answered by exact search over the matching
vectors; broad ones search the graph restricted to the matching labels.

Without hnswlib (``pip install 'promethean-persistence[local]'``) everything stays exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..._errors import ValidationError
from ..._filters import Node
from ..._types import FINGERPRINT_KEY, VectorHit
from .._sqlite import SQLiteConnection, filter_sql, quote
from ._exact import as_matrix

log = logging.getLogger("promethean_persistence.local")

GENERATIONS = "_semantic_store_vector_generations"
LABELS_PER_SEQ = 1 << 20  # labels are seq * LABELS_PER_SEQ + position: unique, never reused
INDEX_CHUNK = 2048  # delta rows moved into the graph per step (keeps reads responsive)


class LocalVector:
    """Vector driver on a local SQLite file with an HNSW accelerator."""

    name: ClassVar[str] = "local"
    in_process: ClassVar[bool] = True

    def __init__(
        self,
        path: str,
        collection: str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 128,
        exact_threshold: int = 5_000,
        index_dir: str | None = None,
    ) -> None:
        self.path = path
        self.collection = collection
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.exact_threshold = exact_threshold
        self._table = quote(f"{collection}__vectors")
        self._dropped = quote(f"{collection}__vector_drops")
        self._db = SQLiteConnection(path, driver=self.name, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        base = Path(index_dir) if index_dir else Path(path).expanduser().resolve().parent
        self._index_base = base / f"{Path(path).name}.{_safe(collection)}"
        self._hnswlib: Any = None
        self._reset()

    def _reset(self) -> None:
        self.dims: int | None = None
        self._seq = 0  # every change up to this seq is reflected in memory
        self._labels: dict[str, int] = {}  # id -> current label
        self._ids: dict[int, str] = {}  # label -> id, for labels in the graph or the delta
        self._graph: Any = None  # hnswlib.Index
        self._delta: dict[int, np.ndarray] = {}  # label -> vector, not yet in the graph
        self._delta_cache: tuple[list[int], np.ndarray] | None = None
        self._indexing: asyncio.Task | None = None
        self._checkpoint_seq = -1
        self._graph_changed = False  # the graph differs from the last checkpoint written or loaded

    @classmethod
    def from_config(cls, config, collection: str) -> LocalVector:
        s, local = config.sqlite, config.local
        return cls(
            local.path or config.sqlite_path,
            collection,
            synchronous=s.synchronous,
            busy_timeout_ms=s.busy_timeout_ms,
            m=local.hnsw.m,
            ef_construction=local.hnsw.ef_construction,
            ef_search=local.hnsw.ef_search,
            exact_threshold=local.exact_threshold,
        )

    def __repr__(self) -> str:
        return f"LocalVector(path={self.path!r}, collection={self.collection!r})"

    # -- open / close ---------------------------------------------------------------------

    async def open(self) -> None:
        try:
            import hnswlib  # noqa: F401 - optional accelerator
        except ImportError:
            log.info("hnswlib is not installed: local vector search stays exact "
                     "(pip install 'promethean-persistence[local]')")
        else:
            self._hnswlib = hnswlib
        await self._db.open()
        await self._db.run(self._db.transaction, self._create, operation="open")
        await self._db.run(self._load_checkpoint, operation="open")
        await self._refresh()

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} (id TEXT PRIMARY KEY, label INTEGER NOT NULL, "
            "vector BLOB NOT NULL, metadata TEXT NOT NULL, seq INTEGER NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(self.collection + '__vectors_seq')} ON {self._table} (seq)")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._dropped} (label INTEGER PRIMARY KEY, seq INTEGER NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(self.collection + '__drops_seq')} ON {self._dropped} (seq)")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {GENERATIONS} (collection TEXT PRIMARY KEY, generation INTEGER NOT NULL)")
        conn.execute(f"INSERT OR IGNORE INTO {GENERATIONS} VALUES (?, 0)", (self.collection,))

    async def aclose(self) -> None:
        if self._indexing is not None:
            self._indexing.cancel()
            await asyncio.gather(self._indexing, return_exceptions=True)
        if self._db._executor is not None:
            try:
                await self._db.run(self._save_checkpoint, operation="checkpoint")
            except Exception:  # noqa: BLE001 - the durable table is the truth; reopen replays
                log.warning("could not save the HNSW checkpoint of %s", self.collection, exc_info=True)
        await self._db.close()

    # -- checkpoints (run on the connection thread) --------------------------------------

    def _meta_path(self) -> Path:
        return Path(f"{self._index_base}.json")

    def _load_checkpoint(self) -> None:
        meta_path = self._meta_path()
        if self._hnswlib is None or not meta_path.exists():
            return
        try:
            meta = json.loads(meta_path.read_text())
            index_path = meta_path.parent / meta["file"]
            graph = self._hnswlib.Index(space="ip", dim=int(meta["dims"]))
            graph.load_index(str(index_path), allow_replace_deleted=True)
            labels = graph.get_ids_list()
            if len(labels) != int(meta["labels"]):
                raise ValueError(f"index holds {len(labels)} labels, checkpoint says {meta['labels']}")
            if len(labels) != graph.element_count:  # one label in two slots (written by older versions)
                raise ValueError(f"index has {graph.element_count} elements but {len(labels)} distinct labels")
            if int(meta["seq"]) > self._read_generation(self._db.conn):
                raise ValueError("checkpoint is newer than the database")
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint only costs a rebuild
            log.warning("ignoring the HNSW checkpoint of %s (%s); rebuilding from SQLite", self.collection, exc)
            return
        graph.set_ef(self.ef_search)
        self._graph, self.dims = graph, int(meta["dims"])
        self._checkpoint_seq = self._seq = int(meta["seq"])
        in_graph = set(labels)
        conn = self._db.conn
        conn.execute("BEGIN")  # one consistent view of the table
        try:
            # A label is written once and its vector never changes, so a row whose label is in
            # the graph is indexed whatever its seq (a metadata-only update bumps the row's seq
            # but keeps its label). Rows up to the checkpoint's seq that the graph lacks are
            # searched exactly until indexed; later ones are left to the replay.
            missing = []
            for id_, label, seq in conn.execute(f"SELECT id, label, seq FROM {self._table}"):
                if label in in_graph:
                    self._labels[id_], self._ids[label] = label, id_
                elif seq <= self._seq:
                    missing.append(id_)
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                rows = conn.execute(
                    f"SELECT id, label, vector FROM {self._table} WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                for id_, label, blob in rows:
                    self._add_delta(id_, label, np.frombuffer(blob, dtype=np.float32))
        finally:
            conn.execute("COMMIT")
        for label in in_graph - set(self._ids):  # rows deleted or replaced since
            self._mark_deleted(label)

    def _save_checkpoint(self) -> None:
        """Write the graph and a sidecar naming the seq it covers (atomic renames)."""
        if self._graph is None or not self._graph_changed:
            return
        # Memory reflects every change up to self._seq: each live row written by then is in
        # the graph or waits in the delta, and every label dropped by then is marked deleted
        # in the graph. The delta is not saved; on load the rows up to seq that the graph
        # lacks are read back from SQLite. (Naming an earlier seq, as if the graph held
        # nothing newer, is wrong: an index step takes a chunk of the delta, which can end in
        # the middle of a write, and the replay would add those labels to the graph again.)
        seq = self._seq
        labels = len(self._graph.get_ids_list())
        if labels != self._graph.element_count:
            log.warning("not saving the HNSW checkpoint of %s: %d elements but %d labels",
                        self.collection, self._graph.element_count, labels)
            return
        meta_path = self._meta_path()
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        name = f"{self._index_base.name}.{seq}.{os.getpid()}.hnsw"
        tmp = meta_path.parent / (name + ".tmp")
        self._graph.save_index(str(tmp))
        _fsync(tmp)
        os.replace(tmp, meta_path.parent / name)
        meta = {"file": name, "seq": seq, "dims": self.dims, "labels": labels}
        tmp_meta = Path(f"{meta_path}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        _fsync(tmp_meta)
        os.replace(tmp_meta, meta_path)
        self._checkpoint_seq, self._graph_changed = seq, False
        for old in meta_path.parent.glob(f"{self._index_base.name}.*.hnsw"):
            if old.name != name:
                try:
                    old.unlink()
                except OSError:
                    pass

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
                self._add_delta(id_, label, np.frombuffer(blob, dtype=np.float32))
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
            self._graph_changed = True

    def _add_delta(self, id_: str, label: int, vector: np.ndarray) -> None:
        self.dims = self.dims or len(vector)
        self._labels[id_], self._ids[label] = label, id_
        self._delta[label] = vector
        self._delta_cache = None

    async def _refresh(self) -> None:
        await self._db.run(self._replay, operation="replay")
        self._schedule_indexing()

    # -- background indexing --------------------------------------------------------------

    def _schedule_indexing(self) -> None:
        if (
            self._hnswlib is not None
            and self._delta
            and len(self._labels) > self.exact_threshold
            and (self._indexing is None or self._indexing.done())
        ):
            self._indexing = asyncio.get_running_loop().create_task(self._index_delta())

    async def _index_delta(self) -> None:
        while self._delta and len(self._labels) > self.exact_threshold:
            await self._db.run(self._index_step, operation="index")

    def _index_step(self) -> None:
        labels = list(islice(self._delta, INDEX_CHUNK))
        if not labels:
            return
        matrix = np.stack([self._delta[label] for label in labels])
        if self._graph is None:
            self._graph = self._hnswlib.Index(space="ip", dim=self.dims)
            self._graph.init_index(
                max_elements=max(1024, 2 * len(self._labels)), ef_construction=self.ef_construction,
                M=self.m, allow_replace_deleted=True,
            )
            self._graph.set_ef(self.ef_search)
        graph = self._graph
        needed = graph.element_count + len(labels)
        if needed > graph.max_elements:
            graph.resize_index(max(needed, 2 * graph.max_elements))
        graph.add_items(matrix, np.asarray(labels, dtype=np.int64), num_threads=min(2, os.cpu_count() or 1),
                        replace_deleted=True)
        self._graph_changed = True
        for label in labels:
            del self._delta[label]
        self._delta_cache = None

    async def wait_indexed(self) -> None:
        """Wait until the background step has moved the delta into the graph (benchmarks)."""
        self._schedule_indexing()
        while self._indexing is not None and not self._indexing.done():
            await asyncio.shield(self._indexing)
            self._schedule_indexing()

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, fn) -> None:
        """Run ``fn(conn, seq)`` in one transaction that takes the next seq; ``fn`` returns
        the change to make in memory, applied only once the transaction committed."""

        def write(conn: sqlite3.Connection):
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
        ids = list(ids)
        metas = [json.dumps(dict(m), ensure_ascii=False, separators=(",", ":")) for m in metadata]
        if len(metas) != len(ids):
            raise ValidationError("ids and metadata must have the same length", driver=self.name)
        if vectors is None:
            def update(conn: sqlite3.Connection, seq: int):
                missing = [i for i in ids if i not in self._labels]
                if missing:
                    raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name)
                conn.executemany(f"UPDATE {self._table} SET metadata = ?, seq = ? WHERE id = ?",
                                 [(m, seq, i) for m, i in zip(metas, ids)])
                return lambda: None

            await self._write(update)
            return
        matrix = as_matrix(vectors, self.dims, self.name)
        if len(matrix) != len(ids):
            raise ValidationError("ids and vectors must have the same length", driver=self.name)
        latest = {id_: k for k, id_ in enumerate(ids)}  # a repeated id: the last one wins

        def insert(conn: sqlite3.Connection, seq: int):
            if self.dims is not None and matrix.shape[1] != self.dims:
                raise ValidationError(f"vector dimension {matrix.shape[1]} does not match the collection's {self.dims}",
                                      driver=self.name)
            rows, drops = [], []
            for pos, (id_, k) in enumerate(latest.items()):
                old = self._labels.get(id_)
                if old is not None:
                    drops.append((old, seq))
                rows.append((id_, seq * LABELS_PER_SEQ + pos, matrix[k].tobytes(), metas[k], seq))
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
        ids = list(dict.fromkeys(ids))

        def remove(conn: sqlite3.Connection, seq: int):
            gone = [(self._labels[i], seq) for i in ids if i in self._labels]
            conn.executemany(f"DELETE FROM {self._table} WHERE id = ?", [(i,) for i in ids])
            conn.executemany(f"INSERT OR REPLACE INTO {self._dropped} VALUES (?, ?)", gone)
            return lambda: [self._forget(label) for label, _ in gone]

        await self._write(remove)

    async def drop(self) -> None:
        if self._indexing is not None:
            self._indexing.cancel()
            await asyncio.gather(self._indexing, return_exceptions=True)

        def clear(conn: sqlite3.Connection, seq: int):
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

    # -- reads ----------------------------------------------------------------------------

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        if self.dims is not None:
            query = as_matrix(vector, self.dims, self.name)[0]
        else:
            query = as_matrix(vector, None, self.name)[0]
        return await self._db.run(self._search, query, limit, where, operation="query")

    def _search(self, query: np.ndarray, limit: int, where: Node | None) -> list[VectorHit]:
        self._replay()
        if not self._labels:
            return []
        if self.dims is not None and len(query) != self.dims:
            raise ValidationError(f"query dimension {len(query)} does not match the collection's {self.dims}",
                                  field="vector", driver=self.name)
        if where is None:
            graph_hits = self._search_graph(query, limit, None, len(self._labels) - len(self._delta))
            if graph_hits is None:  # the graph could not answer: search everything exactly
                return self._exact(query, list(self._ids), limit)
            return _best(self._search_delta(query, limit, None) + graph_hits, limit)
        sql, params = filter_sql(where)
        allowed = [r[0] for r in self._db.conn.execute(f"SELECT label FROM {self._table} WHERE {sql}", params)]
        if not allowed:
            return []
        in_graph = len(allowed) - sum(1 for label in allowed if label in self._delta)
        if in_graph == 0 or len(allowed) <= max(self.exact_threshold, 20 * limit):
            return self._exact(query, allowed, limit)
        allowed_set = set(allowed)
        graph_hits = self._search_graph(query, limit, allowed_set, in_graph)
        if graph_hits is None:  # over-fetching in the graph did not find enough: go exact
            return self._exact(query, allowed, limit)
        return _best(self._search_delta(query, limit, allowed_set) + graph_hits, limit)

    def _search_delta(self, query: np.ndarray, limit: int, allowed: set[int] | None) -> list[VectorHit]:
        if not self._delta:
            return []
        if self._delta_cache is None:
            labels = list(self._delta)
            self._delta_cache = (labels, np.stack([self._delta[label] for label in labels]))
        labels, matrix = self._delta_cache
        scores = matrix @ query
        if allowed is not None:
            rows = [r for r, label in enumerate(labels) if label in allowed]
            return _top([labels[r] for r in rows], scores[rows], limit, self._ids)
        return _top(labels, scores, limit, self._ids)

    def _search_graph(
        self, query: np.ndarray, limit: int, allowed: set[int] | None, in_graph: int
    ) -> list[VectorHit] | None:
        """The graph's best ``limit`` of the ``in_graph`` candidates it holds; None if it cannot tell."""
        graph = self._graph
        if graph is None or in_graph <= 0:
            return []
        k = min(limit, in_graph)
        graph.set_ef(max(self.ef_search, k))
        try:
            found, dist = graph.knn_query(query, k=k, filter=allowed.__contains__ if allowed is not None else None)
        except RuntimeError:  # fewer than k reachable
            return None
        return [VectorHit(self._ids[int(label)], 1.0 - float(d)) for label, d in zip(found[0], dist[0])
                if int(label) in self._ids]

    def _exact(self, query: np.ndarray, labels: list[int], limit: int) -> list[VectorHit]:
        vectors = []
        for start in range(0, len(labels), 500):
            chunk = labels[start : start + 500]
            marks = ",".join("?" * len(chunk))
            vectors += self._db.conn.execute(
                f"SELECT label, vector FROM {self._table} WHERE label IN ({marks})", chunk
            ).fetchall()
        if not vectors:
            return []
        matrix = np.frombuffer(b"".join(v for _, v in vectors), dtype=np.float32).reshape(len(vectors), -1)
        return _top([label for label, _ in vectors], matrix @ query, limit, self._ids)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        await self._refresh()
        return {i for i in ids if i in self._labels}

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The ``FINGERPRINT_KEY`` value stored in each vector's metadata (None where absent);
        ids without a vector are left out."""
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
        ids = list(dict.fromkeys(ids))

        def read() -> dict[str, np.ndarray]:
            found = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._db.conn.execute(
                    f"SELECT id, vector FROM {self._table} WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                found.update((i, np.frombuffer(blob, dtype=np.float32)) for i, blob in rows)
            return found

        return await self._db.run(read, operation="fetch") if ids else {}

    async def count(self) -> int:
        await self._refresh()
        return len(self._labels)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        sql = f"SELECT id FROM {self._table} WHERE id > ? ORDER BY id LIMIT ?"
        last = ""
        while True:
            rows = await self._db.run(lambda after: self._db.conn.execute(sql, (after, batch_size)).fetchall(),
                                      last, operation="iter_ids")
            if not rows:
                return
            yield [r[0] for r in rows]
            last = rows[-1][0]


def _top(labels: Sequence[int], scores: np.ndarray, limit: int, ids: dict[int, str]) -> list[VectorHit]:
    k = min(limit, len(scores))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    return [VectorHit(ids[labels[r]], float(scores[r])) for r in top if labels[r] in ids]


def _best(hits: list[VectorHit], limit: int) -> list[VectorHit]:
    best: dict[str, VectorHit] = {}
    for hit in hits:
        if hit.id not in best or hit.score > best[hit.id].score:
            best[hit.id] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.id))[:limit]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
