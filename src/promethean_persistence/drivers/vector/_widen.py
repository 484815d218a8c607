"""Filtered search for vector stores whose native filters cannot express our whole filter
language: the store filters with a superset of the filter (or not at all), we check the exact
filter on each hit's exact metadata, and widen the search until ``limit`` matches are found
or the collection is exhausted, so a filter never silently shortens the result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..._filters import Node, evaluate
from ..._types import VectorHit

Rows = list[tuple[str, float, Mapping[str, Any] | None]]


async def widening_search(
    search: Callable[[int], Awaitable[Rows]],
    limit: int,
    where: Node | None,
    count: Callable[[], Awaitable[int]],
) -> list[VectorHit]:
    """The ``limit`` best hits of ``search`` that match ``where``, widening ``k`` until they
    are found or the collection is exhausted.

    ``search``: ``search(k)`` returns up to ``k`` rows ``(id, score, metadata)``, best
    first (the store's own search, perhaps with a broader native filter). ``limit``: how
    many hits. ``where``: the exact parsed filter checked on each row's metadata (None: no
    filter, one search). ``count``: returns how many vectors the collection holds (asked
    once, when a search comes back full but short of matches). Returns the hits, best
    first; raises what ``search`` and ``count`` raise."""
    k = limit if where is None else 4 * limit
    total: int | None = None
    while True:
        rows = await search(k)
        hits = [VectorHit(i, s) for i, s, meta in rows if where is None or evaluate(where, meta or {})]
        if len(hits) < limit and len(rows) == k:
            total = total if total is not None else await count()
            if k < total:
                k = min(4 * k, total)
                continue
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]
