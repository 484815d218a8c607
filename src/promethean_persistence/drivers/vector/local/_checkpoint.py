"""The HNSW checkpoint of the local vector store: the index file and the sidecar naming the
seq it covers, written with atomic renames and loaded (or ignored) on open."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import sqlite3

    from ..._sqlite import SQLiteConnection

log = logging.getLogger("promethean_persistence.local")


class _Checkpoint:
    """Mixin of ``LocalVector``: saving and loading the HNSW checkpoint."""

    if TYPE_CHECKING:  # set by LocalVector.__init__ / _reset, or defined by the other mixins
        collection: str
        ef_search: int | None
        dims: int | None
        _index_base: Path
        _hnswlib: Any
        _db: SQLiteConnection
        _table: str
        _seq: int
        _labels: dict[str, int]
        _ids: dict[int, str]
        _graph: Any
        _checkpoint_seq: int
        _graph_changed: bool

        def _read_generation(self, conn: sqlite3.Connection) -> int: ...
        def _add_delta(self, id_: str, label: int, vector: np.ndarray) -> None: ...
        def _mark_deleted(self, label: int) -> None: ...

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
                    f"SELECT id, label, vector FROM {self._table} WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
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
            log.warning(
                "not saving the HNSW checkpoint of %s: %d elements but %d labels",
                self.collection,
                self._graph.element_count,
                labels,
            )
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
