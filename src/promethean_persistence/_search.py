"""Searches by relevance (SPEC §3 and §13): by the vectors nearest to the queries, by the
primary store's lexical index, or both fused by reciprocal rank; optionally reranked, or
diversified by maximal marginal relevance. Hits always come from the primary store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import _filters
from ._entries import check_limit, shown, text_problem
from ._errors import ValidationError
from ._lexical import MODES, fetch_depth, rrf
from ._mmr import check_mmr, mmr_order
from ._telemetry import traced, traced_embed
from ._types import VectorHit
from .drivers.base import LexicalPrimary, QueryEmbedder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._config import StoreConfig
    from .drivers.base import Embedder, PrimaryDriver, Reranker, VectorDriver

_ASK_COUNT = 1000  #: a ranking deeper than this is cut to the collection's size first


def _check_min_score(min_score: Any, operation: str) -> None:
    if min_score is None:
        return
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or min_score != min_score:  # NaN
        raise ValidationError(
            f"min_score must be a number (not NaN) or None, got {type(min_score).__name__} {shown(min_score)}",
            field="min_score",
            operation=operation,
        )


def _positive(value: Any, field: str, operation: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(
            f"{field} must be an int >= 1 or None, got {shown(value)}", field=field, operation=operation
        )
    return value


def _query_vector(vector: Any, operation: str) -> np.ndarray:
    """``vector`` as a flat array of finite float32 values, or ValidationError."""
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.ndim != 1 or not array.size:
        raise ValidationError("vector must be a flat sequence of numbers", field="vector", operation=operation)
    if not (np.isfinite(array).all() and np.abs(array).max() <= np.finfo(np.float32).max):
        raise ValidationError(
            "vector values must be finite and within the float32 range", field="vector", operation=operation
        )
    return array.astype(np.float32)


def _queries(query_texts: Any, operation: str) -> list[str]:
    """The distinct, non-blank queries of ``query_texts`` (a str or a list of str), or ValidationError."""
    queries = [query_texts] if isinstance(query_texts, str) else query_texts
    if not isinstance(queries, Sequence) or not all(isinstance(q, str) for q in queries):
        raise ValidationError("query_texts must be a str or a list of str", field="query_texts", operation=operation)
    for n, q in enumerate(queries):
        problem = text_problem(q.replace("\x00", " "))  # a query is never stored: only encodability counts
        if problem is not None:
            raise ValidationError(f"query_texts[{n}]: query {problem}", field="query_texts", operation=operation)
    return [q for q in dict.fromkeys(queries) if q.strip()]


def _best(per_query: Sequence[Sequence[VectorHit]]) -> dict[str, float]:
    """Each id's best score over the queries' hits."""
    best: dict[str, float] = {}
    for hit in (h for hits in per_query for h in hits):
        if hit.score > best.get(hit.id, float("-inf")):
            best[hit.id] = hit.score
    return best


async def _ready(vectors: Any) -> Any:
    """``vectors``, awaited when a future of them."""
    return await vectors if isinstance(vectors, asyncio.Future) else vectors


async def _cancelled(*work: Any) -> None:
    """Cancel those of ``work`` that are futures still pending, and wait for them to end."""
    pending = [w for w in work if isinstance(w, asyncio.Future) and not w.done()]
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _order(scores: Mapping[str, float]) -> list[str]:
    return sorted(scores, key=lambda i: (-scores[i], i))


class Search:
    """The relevance searches of ``SemanticStore`` (a mixin of it)."""

    reranker: Reranker | None = None  #: rescores the top ``fetch_k`` of every text search

    if TYPE_CHECKING:
        config: StoreConfig
        primary: PrimaryDriver
        vector: VectorDriver
        embedder: Embedder

        async def settle(self) -> None: ...

    @traced("search", items=1, read=True)
    async def get_most_relevant(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        mode: str | None = None,
        distinct_texts: bool = True,
        fetch_k: int | None = None,
        rrf_k: int | None = None,
    ) -> list[dict[str, Any]]:
        """Entries most relevant to any of the queries, best first; read from the primary store.

        ``query_texts``: one query or a list of them (blank and repeated ones are ignored;
        none left returns ``[]``). ``limit``: how many entries at most (an int ≥ 1; one
        above ``MAX_LIMIT`` means every match). ``where``: a metadata filter (e.g.
        ``{"type": "note"}``; see the filter language in the README), None for all.
        ``min_score``: leave out entries whose ``score`` is below it (a number, not NaN).
        ``mode``: ``"vector"`` (nearest embeddings), ``"lexical"`` (the primary store's
        full-text index: entries holding the queries' words, BM25-style) or ``"hybrid"``
        (both rankings fused by reciprocal rank); None: the store's ``search_mode``.
        ``distinct_texts``: leave out entries with the same text as a better one (default
        True). ``fetch_k``: how deep each ranking of a hybrid search (and a reranker) reads
        (None: the store's ``fetch_k``, else ``max(4 * limit, 50)``). ``rrf_k``: the fusion's
        damping constant (None: the store's ``rrf_k``, 60).

        Returns the entries as dicts, each with ``score`` (the mode's: cosine similarity,
        the engine's lexical score, or the fused score; a reranker's score when the store
        has one, also as ``rerank_score``), ``vector_score`` and ``lexical_score`` (None where
        that ranking did not find the entry). Raises ``ValidationError`` for a bad query,
        limit, filter, ``min_score``, ``mode``, ``fetch_k`` or ``rrf_k`` (or a lexical mode on
        a primary store without a lexical index), ``EmbeddingError`` when the model fails, and
        ``BackendUnavailable``/``BackendRejected`` when a backend does."""
        await self.settle()
        op = "get_most_relevant"
        limit = check_limit(limit, operation=op)
        _check_min_score(min_score, op)
        mode = self._mode(mode, op)
        fetch = fetch_depth(limit, _positive(fetch_k, "fetch_k", op) or self.config.fetch_k)
        fuse_k = _positive(rrf_k, "rrf_k", op) or self.config.rrf_k
        node = _filters.parse(where)
        queries = _queries(query_texts, op)
        if not queries:
            return []
        if self.reranker is None:
            return await self._ranked(queries, None, limit, node, min_score, distinct_texts, mode, fetch, fuse_k)
        candidates = await self._ranked(queries, None, fetch, node, None, distinct_texts, mode, fetch, fuse_k)
        return await self._rerank(queries, candidates, limit, min_score)

    def _mode(self, mode: Any, operation: str) -> str:
        mode = self.config.search_mode if mode is None else mode
        if mode not in MODES:
            raise ValidationError(
                f"mode must be one of {', '.join(map(repr, MODES))} or None, got {shown(mode)}",
                field="mode",
                operation=operation,
            )
        if mode != "vector" and not self.primary.capabilities.lexical:
            why = "lexical_index is off" if not self.config.lexical_index else "the driver keeps none"
            raise ValidationError(
                f"mode {mode!r} needs the primary store's lexical index: {self.primary.name!r} has none ({why})",
                field="mode",
                operation=operation,
            )
        return cast(str, mode)

    @traced_embed("query")
    async def _embed(self, queries: list[str]) -> Any:
        # an embedder may embed queries differently from documents (e.g. LangChain models)
        if self.embedder.capabilities.query_embedding:
            return await cast(QueryEmbedder, self.embedder).embed_queries(queries)
        return await self.embedder.embed(queries)

    async def _embedding(self, queries: list[str]) -> Any:
        """The vectors of ``queries`` where the embedder computes in this process, else a
        future of them: a lexical ranking then runs while a remote model answers, and after
        a local one, which computes on every core (a core fewer for it, beside the ranking,
        measured 1.51-1.57x the vector mode's time against 1.44-1.47x, 100k entries)."""
        capabilities = self.embedder.capabilities
        if capabilities.in_process or capabilities.warm:
            return await self._embed(queries)
        return asyncio.ensure_future(self._embed(queries))

    async def _ranked(
        self,
        queries: list[str],
        vectors: Any,
        limit: int,
        node: _filters.Node | None,
        min_score: float | None,
        distinct: bool,
        mode: str,
        fetch: int,
        fuse_k: int,
    ) -> list[dict[str, Any]]:
        """The ``limit`` best entries for ``queries`` by ``mode``; ``vectors``: their vectors, a
        future of them (awaited only where needed) or None (embedded here)."""
        lexical = cast(LexicalPrimary, self.primary)  # asked only in the lexical modes
        if mode == "lexical":
            return await self._widening(
                lambda k: asyncio.gather(*(lexical.lexical_query(q, k, node) for q in queries)),
                self.primary.count,
                limit,
                min_score,
                distinct,
                "lexical",
            )
        if mode == "vector":
            vectors = await self._embed(queries) if vectors is None else await _ready(vectors)
            return await self._nearest(vectors, limit, node, min_score, distinct)
        by_words = await self._depth(fetch, self.primary.count)
        vectors = await self._embedding(queries) if vectors is None else vectors
        # the lexical ranking runs on the primary's thread while the vectors are searched (and
        # a remote model embeds)
        words = asyncio.ensure_future(asyncio.gather(*(lexical.lexical_query(q, by_words, node) for q in queries)))
        try:
            vectors = await _ready(vectors)
            by_vector = await self._depth(fetch, self.vector.count)
            # gathered (a task), even for one vector: the lexical queries reach the primary's
            # thread first where the embedder never yielded (the search below holds this one)
            near = await asyncio.gather(*(self.vector.query(v, by_vector, node) for v in vectors))
            vector_best, lexical_best = _best(near), _best(await words)
        finally:
            await _cancelled(words, vectors)
        fused = rrf((_order(vector_best), _order(lexical_best)), fuse_k)
        return await self._rank(fused, limit, min_score, distinct, vector_best, lexical_best)

    @staticmethod
    async def _depth(k: int, count: Callable[[], Awaitable[int]]) -> int:
        # a huge limit means "everything": never ask a backend for more than it holds
        return max(1, min(k, await count())) if k > _ASK_COUNT else k

    async def _widening(
        self,
        ask: Callable[[int], Awaitable[Sequence[Sequence[VectorHit]]]],
        count: Callable[[], Awaitable[int]],
        limit: int,
        min_score: float | None,
        distinct: bool,
        kind: str,
    ) -> list[dict[str, Any]]:
        """The ``limit`` best entries of the ranking ``ask(k)`` (each query's ``k`` best), asking
        4 times deeper while filters, orphans or repeated texts leave too few."""
        k = await self._depth(limit, count)
        while True:
            per_query = await ask(k)
            best = _best(per_query)
            vector, lexical = (best, None) if kind == "vector" else (None, best)
            results = await self._rank(best, limit, min_score, distinct, vector, lexical)
            deeper = await self._depth(4 * k, count)
            if len(results) >= limit or all(len(h) < k for h in per_query) or deeper <= k:
                return results
            k = deeper

    async def _nearest(
        self, vectors: Sequence[Any], limit: int, node: _filters.Node | None, min_score: float | None, distinct: bool
    ) -> list[dict[str, Any]]:
        async def ask(k: int) -> Sequence[Sequence[VectorHit]]:
            if len(vectors) == 1:  # one query (the usual): no task to gather
                return [await self.vector.query(vectors[0], k, node)]
            return await asyncio.gather(*(self.vector.query(v, k, node) for v in vectors))

        return await self._widening(
            ask,
            self.vector.count,
            limit,
            min_score,
            distinct,
            "vector",
        )

    async def _rank(
        self,
        scores: dict[str, float],
        limit: int,
        min_score: float | None,
        distinct: bool,
        vector: Mapping[str, float] | None,
        lexical: Mapping[str, float] | None,
    ) -> list[dict[str, Any]]:
        """The entries of the ids of ``scores``, best first, each with its ``score`` and its
        ``vector_score``/``lexical_score`` from those rankings."""
        ids = _order(scores)
        if min_score is not None:
            ids = [i for i in ids if scores[i] >= min_score]
        results: list[dict[str, Any]] = []
        seen_texts: set[str] = set()
        # the best ids first (a fused ranking holds several times more than it returns), the
        # rest only where orphans or repeated texts left too few
        head = limit + limit // 4 + 2
        for part in (ids[:head], ids[head:]):
            for record in await self.primary.get(part) if part else ():
                if record is None or (distinct and record.text in seen_texts):  # orphan vector, or same text
                    continue
                seen_texts.add(record.text)
                entry = record.to_entry()
                entry["score"] = scores[record.id]
                entry["vector_score"] = vector.get(record.id) if vector is not None else None
                entry["lexical_score"] = lexical.get(record.id) if lexical is not None else None
                results.append(entry)
                if len(results) == limit:
                    return results
        return results

    async def _rerank(
        self, queries: list[str], candidates: list[dict[str, Any]], limit: int, min_score: float | None
    ) -> list[dict[str, Any]]:
        """``candidates`` in the reranker's order (its best score over the queries)."""
        if not candidates:
            return []
        reranker = cast("Reranker", self.reranker)
        texts = [c["text"] for c in candidates]
        per_query = await asyncio.gather(*(reranker.rerank(q, texts) for q in queries))
        scores = np.max(np.asarray(per_query, dtype=np.float64), axis=0)
        results = []
        for i in sorted(range(len(candidates)), key=lambda i: -scores[i]):  # stable: ties keep the mode's order
            if min_score is not None and scores[i] < min_score:
                continue
            entry = candidates[i]
            entry["score"] = entry["rerank_score"] = float(scores[i])
            results.append(entry)
            if len(results) == limit:
                break
        return results

    @traced("max_marginal_relevance", items=1, read=True)
    async def max_marginal_relevance(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        mode: str | None = None,
    ) -> list[dict[str, Any]]:
        """Relevant and diverse entries: the ``fetch_k`` best for the queries by ``mode``, of
        which ``limit`` are picked by maximal marginal relevance (each the most similar to the
        queries once its similarity to those already picked is taken off; similarities are
        the cosines of the stored vectors, whatever the mode).

        ``query_texts``, ``limit``, ``where`` and ``mode``: as for ``get_most_relevant``.
        ``fetch_k``: the candidates (raised to ``limit``). ``lambda_mult``: from 0 (most
        diverse) to 1 (the mode's candidates in order of similarity).

        Returns the entries in the order picked, with the mode's scores. Raises
        ``ValidationError`` for a bad query, limit, filter, ``fetch_k``, ``lambda_mult`` or
        ``mode``, and what ``get_most_relevant`` raises."""
        await self.settle()
        op = "max_marginal_relevance"
        limit = check_limit(limit, operation=op)
        fetch = check_mmr(limit, fetch_k, lambda_mult, op)
        mode = self._mode(mode, op)
        node = _filters.parse(where)
        queries = _queries(query_texts, op)
        if not queries:
            return []
        embedding = await self._embedding(queries)  # MMR needs the vectors in every mode
        try:
            depth = fetch_depth(fetch, self.config.fetch_k)
            hits = await self._ranked(queries, embedding, fetch, node, None, True, mode, depth, self.config.rrf_k)
            vectors = await _ready(embedding)
        finally:
            await _cancelled(embedding)
        return await self._diverse(vectors, hits, limit, lambda_mult)

    async def max_marginal_relevance_by_vector(
        self,
        vector: Sequence[float],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
    ) -> list[dict[str, Any]]:
        """``max_marginal_relevance`` for a query ``vector`` of this store's embedding space;
        ``limit``, ``where``, ``fetch_k`` and ``lambda_mult`` as there. Returns the entries
        in the order picked; raises ``ValidationError`` for a bad vector or argument, and what
        ``search_by_vector`` raises."""
        await self.settle()
        op = "max_marginal_relevance_by_vector"
        limit = check_limit(limit, operation=op)
        fetch = check_mmr(limit, fetch_k, lambda_mult, op)
        query = _query_vector(vector, op)
        hits = await self._nearest([query], fetch, _filters.parse(where), None, True)
        return await self._diverse([query], hits, limit, lambda_mult)

    async def _diverse(
        self, vectors: Sequence[Any], hits: list[dict[str, Any]], limit: int, lambda_mult: float
    ) -> list[dict[str, Any]]:
        stored = await self.vector.fetch([h["id"] for h in hits])
        hits = [h for h in hits if h["id"] in stored]  # no vector (yet, or deleted meanwhile)
        if not hits:
            return []
        candidates = np.stack([np.asarray(stored[h["id"]], dtype=np.float32) for h in hits])
        queries = np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
        return [hits[i] for i in mmr_order(queries, candidates, limit, lambda_mult)]

    @traced("search_by_vector", read=True)
    async def search_by_vector(
        self,
        vector: Sequence[float],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries nearest to a vector of this store's embedding space, best first, each
        with its ``score`` (cosine similarity; also as ``vector_score``).

        ``vector``: the query vector (this store's dimension). ``limit``, ``where`` and
        ``min_score``: as for ``get_most_relevant``. ``distinct_texts``: leave out entries
        with the same text as a better one (default False here).

        Returns the entries as dicts. Raises ``ValidationError`` for a bad limit or filter, a
        vector that is not a flat sequence of finite numbers or one of another dimension, and
        ``BackendUnavailable``/``BackendRejected`` when a backend fails."""
        await self.settle()
        op = "search_by_vector"
        limit = check_limit(limit, operation=op)
        _check_min_score(min_score, op)
        query = _query_vector(vector, op)
        return await self._nearest([query], limit, _filters.parse(where), min_score, distinct_texts)
