"""Similarity search (SPEC §3): every query's nearest vectors, merged by id and text, the
entries read from the primary store (the source of truth)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _filters
from ._entries import check_limit
from ._errors import ValidationError
from .drivers.base import QueryEmbedder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .drivers.base import Embedder, PrimaryDriver, VectorDriver


class Search:
    """The relevance half of ``SemanticStore``'s reads (a mixin of it)."""

    if TYPE_CHECKING:
        primary: PrimaryDriver
        vector: VectorDriver
        embedder: Embedder

        async def settle(self) -> None: ...

    async def get_most_relevant(
        self,
        query_texts: str | Sequence[str],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = True,
    ) -> list[dict[str, Any]]:
        """Entries most similar to any query, best first, each with ``score``. Entries with
        the same text as a better one are left out unless ``distinct_texts=False``."""
        await self.settle()
        limit = check_limit(limit)
        queries = [query_texts] if isinstance(query_texts, str) else query_texts
        if not isinstance(queries, Sequence) or not all(isinstance(q, str) for q in queries):
            raise ValidationError("query_texts must be a str or a list of str", field="query_texts")
        node = _filters.parse(where)
        queries = [q for q in dict.fromkeys(queries) if q.strip()]
        if not queries:
            return []
        # an embedder may embed queries differently from documents (e.g. LangChain models)
        if self.embedder.capabilities.query_embedding:
            vectors: Any = await cast(QueryEmbedder, self.embedder).embed_queries(queries)
        else:
            vectors = await self.embedder.embed(queries)
        return await self._nearest(vectors, limit, node, min_score, distinct_texts)

    async def search_by_vector(
        self,
        vector: Sequence[float],
        limit: int = 10,
        where: Mapping[str, Any] | None = None,
        *,
        min_score: float | None = None,
        distinct_texts: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries nearest to a vector of this store's embedding space, best first."""
        await self.settle()
        limit = check_limit(limit)
        return await self._nearest([vector], limit, _filters.parse(where), min_score, distinct_texts)

    async def _nearest(
        self, vectors: Sequence[Any], limit: int, node: _filters.Node | None, min_score: float | None, distinct: bool
    ) -> list[dict[str, Any]]:
        k = limit
        while True:
            hits = await asyncio.gather(*(self.vector.query(v, k, node) for v in vectors))
            best: dict[str, float] = {}
            for hit in (h for per_query in hits for h in per_query):
                if hit.score > best.get(hit.id, float("-inf")):
                    best[hit.id] = hit.score
            results = await self._rank(best, limit, min_score, distinct)
            exhausted = all(len(h) < k for h in hits)
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
