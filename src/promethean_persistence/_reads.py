"""Reads (SPEC §3): by id, newest first, and by similarity (every query's nearest vectors,
merged by id and text); entries always come from the primary store (the source of truth)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _filters
from ._entries import check_limit, to_epoch_ms, validate_id
from ._errors import ValidationError
from .drivers.base import QueryEmbedder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .drivers.base import Embedder, PrimaryDriver, VectorDriver


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
            raise ValidationError("get_many takes a sequence of ids", field="ids")
        for i in ids:
            validate_id(i)
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

        ``limit``: how many entries at most (an int ≥ 1). ``filter``: a metadata filter
        (e.g. ``{"type": "note"}``; see the filter language in the README), None for all.
        ``order``: ``"desc"`` (newest first) or ``"asc"`` (oldest first). ``since`` and
        ``until``: inclusive bounds on the time (epoch ms, a datetime or an ISO-8601
        string). ``include_empty``: also entries with empty text.

        Returns the entries as dicts. Raises ``ValidationError`` for a bad limit, order,
        filter or time, and the primary store's ``BackendUnavailable``/``BackendRejected``."""
        await self.settle()
        limit = check_limit(limit)
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}", field="order")
        records = await self.primary.most_recent(
            limit,
            _filters.parse(filter),
            order=order,  # type: ignore[arg-type]
            since=None if since is None else to_epoch_ms(since, "since"),
            until=None if until is None else to_epoch_ms(until, "until"),
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
        batch_size = check_limit(batch_size, "batch_size")
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
        none left returns ``[]``). ``limit``: how many entries at most (an int ≥ 1).
        ``where``: a metadata filter (e.g. ``{"type": "note"}``; see the filter language in
        the README), None for all. ``min_score``: leave out entries scoring below it.
        ``distinct_texts``: leave out entries with the same text as a better one (default
        True).

        Returns the entries as dicts. Raises ``ValidationError`` for a bad query, limit or
        filter, ``EmbeddingError`` when the model fails, and ``BackendUnavailable``/
        ``BackendRejected`` when a backend does."""
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
        """Entries nearest to a vector of this store's embedding space, best first, each
        with its ``score``.

        ``vector``: the query vector (this store's dimension). ``limit``, ``where`` and
        ``min_score``: as for ``get_most_relevant``. ``distinct_texts``: leave out entries
        with the same text as a better one (default False here).

        Returns the entries as dicts. Raises ``ValidationError`` for a bad limit or filter or
        a vector of another dimension, and ``BackendUnavailable``/``BackendRejected`` when a
        backend fails."""
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
