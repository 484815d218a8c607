"""Background indexing of the local vector store: moving the in-memory delta into the HNSW
graph in chunks, so that reads stay responsive."""

from __future__ import annotations

import asyncio
import os
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..._sqlite import SQLiteConnection

INDEX_CHUNK = 2048  # delta rows moved into the graph per step (keeps reads responsive)


class _Indexing:
    """Mixin of ``LocalVector``: the background step that moves the delta into the graph."""

    if TYPE_CHECKING:  # set by LocalVector.__init__ / _reset
        m: int
        ef_construction: int
        ef_search: int | None
        exact_threshold: int
        dims: int | None
        _hnswlib: Any
        _db: SQLiteConnection
        _labels: dict[str, int]
        _graph: Any
        _delta: dict[int, np.ndarray]
        _delta_cache: tuple[list[int], np.ndarray] | None
        _indexing: asyncio.Task[None] | None
        _saving: asyncio.Task[None] | None
        _unsaved: int

        async def _checkpoint(self, closing: bool = False) -> None: ...

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
            await self._checkpoint()  # when due; indexing waits meanwhile (the fork shares its pages)

    async def _stop_background(self) -> None:
        """Stop background indexing and wait for a checkpoint being written."""
        for task, cancel in ((self._indexing, True), (self._saving, False)):
            if task is not None:
                if cancel:
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _index_step(self) -> None:
        labels = list(islice(self._delta, INDEX_CHUNK))
        if not labels:
            return
        matrix = np.stack([self._delta[label] for label in labels])
        if self._graph is None:
            self._graph = self._hnswlib.Index(space="ip", dim=self.dims)
            self._graph.init_index(
                max_elements=max(1024, 2 * len(self._labels)),
                ef_construction=self.ef_construction,
                M=self.m,
                allow_replace_deleted=True,
            )
        graph = self._graph
        needed = graph.element_count + len(labels)
        if needed > graph.max_elements:
            graph.resize_index(max(needed, 2 * graph.max_elements))
        graph.add_items(
            matrix, np.asarray(labels, dtype=np.int64), num_threads=min(2, os.cpu_count() or 1), replace_deleted=True
        )
        self._unsaved += len(labels)
        for label in labels:
            del self._delta[label]
        self._delta_cache = None

    async def wait_indexed(self) -> None:
        """Wait until the background step has moved the delta into the graph (benchmarks).
        Returns None; raises ``BackendUnavailable``/``BackendRejected`` when a step fails."""
        self._schedule_indexing()
        while self._indexing is not None and not self._indexing.done():
            await asyncio.shield(self._indexing)
            self._schedule_indexing()
