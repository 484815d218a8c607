"""Search in the local vector store: exact search of the delta and of stored vectors, graph
search (optionally restricted to filtered labels), and merging of the results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from ...._errors import ValidationError
from ...._filters import Node
from ...._types import VectorHit
from ..._sqlite import filter_sql
from .._ef import ef_for
from .._exact import as_matrix
from ._codec import decode_matrix

if TYPE_CHECKING:
    import sqlite3

    from ..._sqlite import SQLiteConnection

HERE_LIMIT = 256  #: larger unfiltered searches always run on the connection's thread
HERE_DELTA = 8192  #: as do searches while more vectors than this wait for the graph (or stay exact)
HERE_STACK = 256  #: or while more than this wait and their matrix must be stacked anew (after a write)
#: A filter's matches are searched exactly up to sqrt(EXACT_SCALE x the vectors held): an exact
#: search costs about 10 us a match, a graph search restricted to a share s of the vectors
#: about 1.7 ms x 1/s (measured: 200k vectors with 3% matching, 53 against 50 ms; 500k with 1%,
#: 57 against 196 ms), so exact wins while matches^2 < 170 x vectors (13,000 matches at 1M)
EXACT_SCALE = 170


class _Search:
    """Mixin of ``LocalVector``: queries over the delta, the graph and the stored vectors."""

    if TYPE_CHECKING:  # set by LocalVector.__init__ / _reset, or defined by the other mixins
        name: ClassVar[str]
        ef_search: int | None
        exact_threshold: int
        dims: int | None
        _seq: int
        _db: SQLiteConnection
        _indexed: tuple[tuple[str, ...], ...]
        _table: str
        _labels: dict[str, int]
        _ids: dict[int, str]
        _graph: Any
        _delta: dict[int, np.ndarray]
        _delta_cache: tuple[list[int], np.ndarray] | None

        def _replay(self) -> None: ...
        def _read_generation(self, conn: sqlite3.Connection) -> int: ...

    # -- reads ----------------------------------------------------------------------------

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: the filter runs in SQLite; selective filters search
        the matching vectors exactly, broad ones the graph restricted to them, merged with
        the exact search of vectors not indexed yet. An unfiltered search runs on the
        caller's thread when nothing changed since the last (see ``_search_here``)."""
        query = as_matrix(vector, self.dims, self.name)[0]
        hits = self._search_here(query, limit) if where is None else None
        if hits is not None:
            return hits
        return await self._db.run(self._search, query, limit, where, operation="query")

    def _search_here(self, query: np.ndarray, limit: int) -> list[VectorHit] | None:
        """The unfiltered search without a hop to the connection's thread, or None where that
        thread must answer: work of it queued or running, memory behind the database (a
        write here or in another process since), a large delta or ``limit``, a graph that
        cannot tell. The hop costs about what a graph search of 100k vectors does; memory is
        only changed on that thread, so while it is idle a search here sees a settled state."""
        delta = len(self._delta)
        if limit > HERE_LIMIT or delta > HERE_DELTA or not self._db.idle:
            return None
        if self._delta_cache is None and delta > HERE_STACK:  # stacking it is the thread's work
            return None
        if self._db.read_here(self._read_generation) != self._seq:
            return None
        return self._unfiltered(query, limit, here=True)

    def _search(self, query: np.ndarray, limit: int, where: Node | None) -> list[VectorHit]:
        self._replay()
        if where is None:
            return cast("list[VectorHit]", self._unfiltered(query, limit, here=False))
        if not self._check(query):
            return []
        sql, params = filter_sql(where, indexed=self._indexed)
        allowed = [r[0] for r in self._db.conn.execute(f"SELECT label FROM {self._table} WHERE {sql}", params)]
        if not allowed:
            return []
        in_graph = len(allowed) - sum(1 for label in allowed if label in self._delta)
        exact_up_to = max(self.exact_threshold, 20 * limit, int((EXACT_SCALE * len(self._labels)) ** 0.5))
        if in_graph == 0 or len(allowed) <= exact_up_to:
            return self._exact(query, allowed, limit)
        allowed_set = set(allowed)
        graph_hits = self._search_graph(query, limit, allowed_set, in_graph)
        if graph_hits is None:  # over-fetching in the graph did not find enough: go exact
            return self._exact(query, allowed, limit)
        return _best(self._search_delta(query, limit, allowed_set) + graph_hits, limit)

    def _check(self, query: np.ndarray) -> bool:
        """Whether the collection holds vectors; ValidationError for a query of another dimension."""
        if not self._labels:
            return False
        if self.dims is not None and len(query) != self.dims:
            raise ValidationError(
                f"query dimension {len(query)} does not match the collection's {self.dims}",
                field="vector",
                driver=self.name,
            )
        return True

    def _unfiltered(self, query: np.ndarray, limit: int, here: bool) -> list[VectorHit] | None:
        """The best ``limit`` of the graph and the delta; where the graph cannot answer, an
        exact search of everything (None ``here``: that reads the connection)."""
        if not self._check(query):
            return []
        graph_hits = self._search_graph(query, limit, None, len(self._labels) - len(self._delta))
        if graph_hits is None:
            return None if here else self._exact(query, list(self._ids), limit)
        return _best(self._search_delta(query, limit, None) + graph_hits, limit)

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
        graph.set_ef(ef_for(self.ef_search, k, len(self._labels)))
        try:
            found, dist = graph.knn_query(query, k=k, filter=allowed.__contains__ if allowed is not None else None)
        except RuntimeError:  # fewer than k reachable
            return None
        ids = self._ids
        return [VectorHit(ids[label], 1.0 - d) for label, d in zip(found[0].tolist(), dist[0].tolist()) if label in ids]

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
        matrix = decode_matrix([v for _, v in vectors])
        return _top([label for label, _ in vectors], matrix @ query, limit, self._ids)


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
