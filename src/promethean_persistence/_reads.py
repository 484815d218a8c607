"""Reads (SPEC §3): by id and newest first; searches by relevance are in ``_search``. Entries
always come from the primary store (the source of truth)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _filters
from ._entries import check_limit, shown, to_epoch_ms, validate_id
from ._errors import ValidationError
from ._search import Search

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .drivers.base import PrimaryDriver


class Reads(Search):
    """The reads of ``SemanticStore`` (a mixin of it): by id, newest first, and (``Search``)
    by relevance."""

    if TYPE_CHECKING:
        primary: PrimaryDriver

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
