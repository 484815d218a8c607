"""The HNSW checkpoint of the local vector store: the index file and the sidecar naming the
seq it covers, written with atomic renames and loaded (or ignored) on open.

The rows written after a checkpoint's seq are its log: opening replays them into the exact
searched delta, which the background step indexes. So a checkpoint is written only once the
graph changed enough since the last one (``CHECKPOINT_MIN``, ``CHECKPOINT_SHARE``): a close
after a few changes leaves the file as it is, and while writing continues, checkpoints in the
background bound the tail a crash leaves to replay."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._codec import decode
from ._storage import LABELS_PER_SEQ

if TYPE_CHECKING:
    import sqlite3

    import numpy as np

    from ..._sqlite import SQLiteConnection

log = logging.getLogger("promethean_persistence.local")

# Changes to the graph (labels indexed or deleted) since the last checkpoint that make the
# next one due: max(CHECKPOINT_MIN, CHECKPOINT_SHARE * graph size). Writing a checkpoint
# costs about 11 µs a vector (1.1 s at 100k, 384 dims); a replayed tail costs an exact search
# over it until the background step has indexed it again, about 0.5 ms a vector. At 10% the
# rewrites cost under 1/4 of the indexing they save, and a crash leaves at most a tenth of the
# graph to index again (its exact search at open: under a second at 1M). Below 20,000 a
# replay takes seconds in the background: not worth rewriting a small graph again and again
# while it grows (5 checkpoints on the way to 100k, not 10 as with 10,000).
CHECKPOINT_MIN = 20_000
CHECKPOINT_SHARE = 0.1
SAVE_LIMIT_S = 1800.0  #: a writing child still busy after this is killed (a million vectors: about 10 s)


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
        _unsaved: int
        _saving: asyncio.Task[None] | None
        _delta: dict[int, np.ndarray]

        def _read_generation(self, conn: sqlite3.Connection) -> int: ...
        def _add_delta(self, id_: str, label: int, vector: np.ndarray) -> None: ...
        def _mark_deleted(self, label: int) -> None: ...

    def _meta_path(self) -> Path:
        return Path(f"{self._index_base}.json")

    # -- loading (on the connection thread) ----------------------------------------------

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
        self._checkpoint_seq = self._seq = seq = int(meta["seq"])
        in_graph = set(labels)
        saved = _saved_ids(meta_path.parent, meta)
        conn = self._db.conn
        conn.execute("BEGIN")  # one consistent view of the table
        try:
            # Every live (label, id) pair: as the checkpoint saved them at its seq (the replay
            # then applies every later change), else read from the table's (label, id) index.
            # The saved ones are 10x faster to read: at 1M the scan takes seconds.
            ids = dict(zip(*saved)) if saved else dict(conn.execute(f"SELECT label, id FROM {self._table}").fetchall())
            # rows deleted or replaced since; the saved graph marked those dropped by its seq deleted
            gone = set() if saved else in_graph.difference(ids)
            # A label is written once and its vector never changes, so a row whose label is in
            # the graph is indexed whatever its seq (a metadata-only update bumps the row's seq
            # but keeps its label). Rows up to the checkpoint's seq that the graph lacks are
            # searched exactly until indexed; later ones are left to the replay. A label
            # encodes the seq that wrote it, never above the row's: later labels need no read.
            not_in_graph = ids.keys() - in_graph
            missing = [label for label in not_in_graph if label < (seq + 1) * LABELS_PER_SEQ]
            by_id = dict(zip(ids.values(), ids.keys()))
            for label in not_in_graph:
                del by_id[ids.pop(label)]
            self._ids, self._labels = ids, by_id
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                rows = conn.execute(
                    f"SELECT id, label, vector, seq FROM {self._table} WHERE label IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for id_, label, blob, row_seq in rows:
                    if row_seq <= seq:
                        self._add_delta(id_, label, decode(blob))
        finally:
            conn.execute("COMMIT")
        for label in gone:
            self._mark_deleted(label)

    # -- saving ----------------------------------------------------------------------------

    def _checkpoint_due(self, closing: bool) -> bool:
        """While indexing, once the graph's changes since the last checkpoint pass the
        threshold. ``closing``: once the tail the next open replays passes it (the graph's
        changes and the delta), so that sessions too short to index much still save what
        they indexed and the tail cannot grow without bound."""
        graph = self._graph
        if graph is None or self._unsaved == 0:
            return False
        tail = self._unsaved + (len(self._delta) if closing else 0)
        return tail >= max(CHECKPOINT_MIN, CHECKPOINT_SHARE * int(graph.element_count))

    async def _checkpoint(self, closing: bool = False) -> None:
        """Wait for the checkpoint being written, if any, then write one if it is due
        (``closing``: see ``_checkpoint_due``). A failure is only logged: the durable table
        is the truth, and a reopen replays it."""
        if self._saving is None or self._saving.done():
            if not self._checkpoint_due(closing):
                return
            self._saving = asyncio.get_running_loop().create_task(self._save(closing))
        await asyncio.shield(self._saving)  # a cancelled caller leaves the save to finish

    async def _save(self, closing: bool) -> None:
        try:
            began = time.perf_counter()
            started = await self._db.run(self._start_save, closing, operation="checkpoint")
            if started is None:
                return
            child, tmp, meta, unsaved = started
            forked = time.perf_counter() - began
            ok = True if child is None else await asyncio.get_running_loop().run_in_executor(None, _exited_ok, child)
            await self._db.run(self._finish_save, tmp, meta, unsaved, ok, operation="checkpoint")
            log.info(
                "saved the HNSW checkpoint of %s: %d labels in %.2f s (writes waited %.3f s)",
                self.collection,
                meta["labels"],
                time.perf_counter() - began,
                forked,
            )
        except Exception:  # noqa: BLE001 - see _checkpoint
            log.warning("could not save the HNSW checkpoint of %s", self.collection, exc_info=True)

    def _start_save(self, closing: bool) -> tuple[int | None, Path, dict[str, Any], int] | None:
        """Start writing the graph (connection thread): returns the writing child's pid (None:
        written already), the file, its sidecar and the changes it covers; None if not due."""
        graph = self._graph
        if graph is None or not self._checkpoint_due(closing):
            return None
        # Memory reflects every change up to self._seq: each live row written by then is in
        # the graph or waits in the delta, and every label dropped by then is marked deleted
        # in the graph. The delta is not saved; on load the rows up to seq that the graph
        # lacks are read back from SQLite. (Naming an earlier seq, as if the graph held
        # nothing newer, is wrong: an index step takes a chunk of the delta, which can end in
        # the middle of a write, and the replay would add those labels to the graph again.)
        seq = self._seq
        labels = len(graph.get_ids_list())
        if labels != graph.element_count:
            log.warning(
                "not saving the HNSW checkpoint of %s: %d elements but %d labels",
                self.collection,
                graph.element_count,
                labels,
            )
            return None
        meta_path = self._meta_path()
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        name = f"{self._index_base.name}.{seq}.{os.getpid()}.hnsw"
        tmp = meta_path.parent / (name + ".tmp")
        # the ids of the live labels too (the graph's and the delta's), as they are at seq
        meta = {"file": name, "ids": f"{name}.ids", "live": len(self._ids), "seq": seq, "dims": self.dims}
        meta["labels"] = labels
        return _write_files(graph, self._ids, tmp), tmp, meta, self._unsaved

    def _finish_save(self, tmp: Path, meta: dict[str, Any], unsaved: int, ok: bool) -> None:
        """Publish the written graph, ids and sidecar (connection thread), or drop failed ones."""
        ids_tmp = Path(f"{tmp}.ids")
        if not ok:
            tmp.unlink(missing_ok=True)
            ids_tmp.unlink(missing_ok=True)
            raise OSError(f"writing {tmp.name} failed")
        meta_path = self._meta_path()
        os.replace(tmp, meta_path.parent / meta["file"])
        os.replace(ids_tmp, meta_path.parent / meta["ids"])
        tmp_meta = Path(f"{meta_path}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        _fsync(tmp_meta)
        os.replace(tmp_meta, meta_path)
        # changes made while the file was written are not in it
        self._checkpoint_seq, self._unsaved = meta["seq"], self._unsaved - unsaved
        # older checkpoints, and files a killed process left half written
        for old in meta_path.parent.glob(f"{self._index_base.name}.*.hnsw*"):
            if old.name not in (meta["file"], meta["ids"]):
                try:
                    old.unlink()
                except OSError:
                    pass


def _write_files(graph: Any, ids: dict[int, str], path: Path) -> int | None:
    """Write ``graph`` to ``path`` and ``ids`` (label -> id) to ``path.ids``, fsynced.
    hnswlib holds the GIL while it saves (about 10 s a million vectors), which would stop the
    event loop too; so where the platform can fork, a child writes the snapshot the fork took
    and this returns its pid at once (while it writes, the parent only marks a few deletions:
    few pages to copy). Elsewhere they are written here and this returns None."""
    fork = getattr(os, "fork", None)
    if fork is None:
        _write(graph, ids, path)
        return None
    with warnings.catch_warnings():  # Python 3.12+ warns on forking a threaded process; the child only writes a file
        warnings.simplefilter("ignore", DeprecationWarning)
        pid: int = fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup
        code = 1
        try:
            _write(graph, ids, path)
            code = 0
        finally:
            os._exit(code)
    return pid


def _write(graph: Any, ids: dict[int, str], path: Path) -> None:
    graph.save_index(str(path))
    _fsync(path)
    ids_path = Path(f"{path}.ids")
    ids_path.write_text(json.dumps({"labels": list(ids), "ids": list(ids.values())}))
    _fsync(ids_path)


def _saved_ids(folder: Path, meta: dict[str, Any]) -> tuple[list[int], list[str]] | None:
    """The live labels and their ids a checkpoint saved, or None where it has none (older
    versions) or they do not check out (the table is read instead)."""
    try:
        saved = json.loads((folder / meta["ids"]).read_text())
        labels, ids = saved["labels"], saved["ids"]
        if not len(labels) == len(ids) == int(meta["live"]):
            raise ValueError(f"{len(labels)} labels and {len(ids)} ids, checkpoint says {meta['live']}")
        return labels, ids
    except Exception as exc:  # noqa: BLE001 - reading the table instead only costs time
        if "ids" in meta:
            log.warning("ignoring the saved ids of the HNSW checkpoint (%s); reading them from SQLite", exc)
        return None


def _exited_ok(pid: int, limit_s: float = SAVE_LIMIT_S) -> bool:
    """Whether the writing child ``pid`` exited cleanly; one still writing after ``limit_s``
    seconds is killed (a save must never hold a close forever) and counts as failed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
