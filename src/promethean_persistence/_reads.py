"""Reads (SPEC §3): by id, newest first, and by similarity (every query's nearest vectors,
merged by id and text); entries always come from the primary store (the source of truth)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import _filters
from ._entries import check_limit, shown, text_problem, to_epoch_ms, validate_id
from ._errors import ValidationError
from ._mmr import check_mmr, mmr_order
from .drivers.base import QueryEmbedder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .drivers.base import Embedder, PrimaryDriver, VectorDriver


_ASK_COUNT = 1000  #: searches for more nearest vectors than this are cut to the collection's size


def _check_min_score(min_score: Any, operation: str) -> None:
    if min_score is None:
        return
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or min_score != min_score:  # NaN
        raise ValidationError(
            f"min_score must be a number (not NaN) or None, got {type(min_score).__name__} {shown(min_score)}",
            field="min_score",
            operation=operation,
        )


def _query_vector(vector: Any) -> np.ndarray:
    """``vector`` as a flat array of finite float32 values, or ValidationError."""
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.ndim != 1 or not array.size:
        raise ValidationError("vector must be a flat sequence of numbers", field="vector", operation="search_by_vector")
    if not (np.isfinite(array).all() and np.abs(array).max() <= np.finfo(np.float32).max):
        raise ValidationError(
            "vector values must be finite and within the float32 range", field="vector", operation="search_by_vector"
        )
    return array.astype(np.float32)


class Reads:
    """The reads of ``SemanticStore`` (a mixin of it)."""

    if TYPE_CHECKING:
        primary: PrimaryDriver
        vector: VectorDriver
        embedder: Embedder

        async def settle(self) -> None: ...

    async def get(self, id_: str) -> dict[str, Any] | None:
        """The entry with the id ``id_`` as a dict of ``id``, ``text``, ``timestamp`` (epoch
        ms) and ``metadata`` (with its ``vectorStatus``), or None. Raises ``ValidationError``
        for an id that is not a non-empty str, and the primary store's
        ``BackendUnavailable``/``BackendRejected``."""
        return (await self.get_many([id_]))[0]

    async def get_many(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The entries of ``ids`` (a sequence of ids, not a str), aligned with them; None
        where missing. Raises ``ValidationError`` for a bad id or a non-sequence, and the
        primary store's ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("get_many takes a sequence of ids", field="ids", operation="get")
        for i in ids:
            validate_id(i, operation="get")
        records = await self.primary.get(list(ids))
        return [r.to_entry() if r else None for r in records]

    async def get_most_recent(
        self,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        *,
        order: str = "desc",
        since: Any = None,
        until: Any = None,
        include_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """The newest entries first, ties broken by id.

        ``limit``: how many entries at most (an int ≥ 1; one above ``MAX_LIMIT``, 2**31 - 1,
        means every match). ``filter``: a metadata filter
        (e.g. ``{"type": "note"}``; see the filter language in the README), None for all.
        ``order``: ``"desc"`` (newest first) or ``"asc"`` (oldest first). ``since`` and
        ``until``: inclusive bounds on the time (epoch ms, a datetime or an ISO-8601
        string). ``include_empty``: also entries with empty text.

        Returns the entries as dicts. Raises ``ValidationError`` for a bad limit, order,
        filter or time, and the primary store's ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        op = "get_most_recent"
        limit = check_limit(limit, operation=op)
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {shown(order)}", field="order", operation=op)
        records = await self.primary.most_recent(
            limit,
            _filters.parse(filter),
            order=order,  # type: ignore[arg-type]
            since=None if since is None else to_epoch_ms(since, "since", op),
            until=None if until is None else to_epoch_ms(until, "until", op),
            include_empty=bool(include_empty),
        )
        return [r.to_entry() for r in records]

    async def count(self) -> int:
        """Number of entries in the primary store (an int). Raises the primary store's
        ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        return await self.primary.count()

    async def iter_entries(self, batch_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every entry once, in ascending id order, read ``batch_size`` (an int ≥ 1) at a
        time. An async iterator of entry dicts; raises ``ValidationError`` for a bad
        ``batch_size``, and the primary store's ``BackendUnavailable``/``BackendRejected``
        while iterating."""
        await self.settle()
        batch_size = check_limit(batch_size, "batch_size", "iter_entries")
        async for batch in self.primary.iterate(batch_size):
            for record in batch:
                yield record.to_entry()

    async def get_most_relevant(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = True,
    ) -> list[dict[str, Any]]:
        """Entries most similar to any of the queries, best first, each with its ``score``
        (cosine similarity, higher is closer); read from the primary store.

        ``query_texts``: one query or a list of them (blank and repeated ones are ignored;
        none left returns ``[]``). ``limit``: how many entries at most (an int ≥ 1; one
        above ``MAX_LIMIT`` means every match). ``where``: a metadata filter (e.g.
        ``{"type": "note"}``; see the filter language in the README), None for all.
        ``min_score``: leave out entries scoring below it (a number, not NaN; None for all).
        ``distinct_texts``: leave out entries with the same text as a better one (default
        True).

        Returns the entries as dicts. Raises ``ValidationError`` for a bad query, limit,
        filter or ``min_score``, ``EmbeddingError`` when the model fails, and ``BackendUnavailable``/
        ``BackendRejected`` when a backend does."""
        await self.settle()
        op = "get_most_relevant"
        limit = check_limit(limit, operation=op)
        _check_min_score(min_score, op)
        node = _filters.parse(where)
        vectors = await self._embed_queries(query_texts, op)
        return await self._nearest(vectors, limit, node, min_score, distinct_texts) if len(vectors) else []

    async def _embed_queries(self, query_texts: str | Sequence[str], operation: str) -> Any:
        """The vectors of the distinct, non-blank queries (none: an empty list), or ValidationError."""
        queries = [query_texts] if isinstance(query_texts, str) else query_texts
        if not isinstance(queries, Sequence) or not all(isinstance(q, str) for q in queries):
            raise ValidationError(
                "query_texts must be a str or a list of str", field="query_texts", operation=operation
            )
        for n, q in enumerate(queries):
            problem = text_problem(q.replace("\x00", " "))  # a query is never stored: only encodability counts
            if problem is not None:
                raise ValidationError(f"query_texts[{n}]: query {problem}", field="query_texts", operation=operation)
        queries = [q for q in dict.fromkeys(queries) if q.strip()]
        if not queries:
            return []
        # an embedder may embed queries differently from documents (e.g. LangChain models)
        if self.embedder.capabilities.query_embedding:
            return await cast(QueryEmbedder, self.embedder).embed_queries(queries)
        return await self.embedder.embed(queries)

    async def max_marginal_relevance(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        mode: str = "vector",
    ) -> list[dict[str, Any]]:
        """Relevant and diverse entries: the ``fetch_k`` nearest to the queries, of which
        ``limit`` are picked by maximal marginal relevance (each the most similar to the
        queries once its similarity to those already picked is taken off). Each carries its
        ``score`` (cosine similarity to the closest query).

        ``query_texts``, ``limit`` and ``where``: as for ``get_most_relevant``. ``fetch_k``:
        the candidates (raised to ``limit``). ``lambda_mult``: from 0 (most diverse) to 1
        (plain relevance order). ``mode``: ``"vector"`` (the only one until the store keeps a
        lexical index).

        Returns the entries in the order picked. Raises ``ValidationError`` for a bad query,
        limit, filter, ``fetch_k``, ``lambda_mult`` or ``mode``, and what
        ``get_most_relevant`` raises."""
        await self.settle()
        op = "max_marginal_relevance"
        limit = check_limit(limit, operation=op)
        fetch = check_mmr(limit, fetch_k, lambda_mult, mode, op)
        node = _filters.parse(where)
        vectors = await self._embed_queries(query_texts, op)
        return await self._diverse(vectors, limit, fetch, node, lambda_mult) if len(vectors) else []

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
        fetch = check_mmr(limit, fetch_k, lambda_mult, "vector", op)
        query = _query_vector(vector)
        return await self._diverse([query], limit, fetch, _filters.parse(where), lambda_mult)

    async def _diverse(
        self, vectors: Sequence[Any], limit: int, fetch: int, node: _filters.Node | None, lambda_mult: float
    ) -> list[dict[str, Any]]:
        hits = await self._nearest(vectors, fetch, node, None, True)
        stored = await self.vector.fetch([h["id"] for h in hits])
        hits = [h for h in hits if h["id"] in stored]  # a vector deleted meanwhile
        if not hits:
            return []
        candidates = np.stack([np.asarray(stored[h["id"]], dtype=np.float32) for h in hits])
        queries = np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
        return [hits[i] for i in mmr_order(queries, candidates, limit, lambda_mult)]

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
        with its ``score``.

        ``vector``: the query vector (this store's dimension). ``limit``, ``where`` and
        ``min_score``: as for ``get_most_relevant``. ``distinct_texts``: leave out entries
        with the same text as a better one (default False here).

        Returns the entries as dicts. Raises ``ValidationError`` for a bad limit or filter, a
        vector that is not a flat sequence of finite numbers or one of another dimension, and
        ``BackendUnavailable``/``BackendRejected`` when a backend fails."""
        await self.settle()
        limit = check_limit(limit, operation="search_by_vector")
        _check_min_score(min_score, "search_by_vector")
        query = _query_vector(vector)
        return await self._nearest([query], limit, _filters.parse(where), min_score, distinct_texts)

    async def _nearest(
        self, vectors: Sequence[Any], limit: int, node: _filters.Node | None, min_score: float | None, distinct: bool
    ) -> list[dict[str, Any]]:
        k, total = limit, None
        while True:
            if k > _ASK_COUNT and total is None:
                # a huge limit means "everything": never ask a vector store for more than it holds
                total = await self.vector.count()
            if total is not None:
                k = max(1, min(k, total))
            hits = await asyncio.gather(*(self.vector.query(v, k, node) for v in vectors))
            best: dict[str, float] = {}
            for hit in (h for per_query in hits for h in per_query):
                if hit.score > best.get(hit.id, float("-inf")):
                    best[hit.id] = hit.score
            results = await self._rank(best, limit, min_score, distinct)
            exhausted = all(len(h) < k for h in hits) or (total is not None and k >= total)
            if len(results) >= limit or exhausted:
                return results
            k *= 4

    async def _rank(
        self, best: dict[str, float], limit: int, min_score: float | None, distinct: bool
    ) -> list[dict[str, Any]]:
        ids = sorted(best, key=lambda i: (-best[i], i))
        if min_score is not None:
            ids = [i for i in ids if best[i] >= min_score]
        records = await self.primary.get(ids)
        results: list[dict[str, Any]] = []
        seen_texts: set[str] = set()
        for record in records:
            if record is None or (distinct and record.text in seen_texts):  # orphan vector, or same text
                continue
            seen_texts.add(record.text)
            entry = record.to_entry()
            entry["score"] = best[record.id]
            results.append(entry)
            if len(results) == limit:
                break
        return results
