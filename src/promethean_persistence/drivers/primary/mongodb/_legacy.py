"""Adopting the original package's documents: their BSON values and times read as ours,
legacy times normalised to epoch ms, the metadata keys its readers look at, the older
duplicates of an id it inserted twice hidden (and, on request, deleted), and legacy documents
that get a vector state given a version, hash and emptiness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ...._deps import require
from ...._entries import content_hash
from ...._types import VectorState
from ._layout import EXTRA, STATE, SUPERSEDED


def _plain(value: Any) -> Any:
    """BSON values as JSON values (legacy documents may hold dates, ObjectIds, ...)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return str(value)


def _epoch(value: Any) -> int | None:
    """A legacy timestamp (number, ISO string, date) as epoch ms; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return _epoch(parsed)
    return None


def _write_view(status: str, error: str | None, synced_at: int | None) -> dict[str, Any]:
    """The original's three metadata keys for a vector state (what its readers look at)."""
    return {
        "vectorWriteSuccess": True if status == "synced" else False if status == "failed" else None,
        "vectorWriteError": error,
        "vectorWriteTimestamp": synced_at if status == "synced" else None,
    }


def _later(a: Any, b: Any) -> bool:
    try:
        return cast(bool, a > b)
    except TypeError:  # an ObjectId and a caller-chosen _id: the string form decides
        return str(a) > str(b)


class Legacy:
    """The original package's documents in ``MongoPrimary`` (a mixin: the driver holds the
    state)."""

    if TYPE_CHECKING:  # the driver's state and the other mixins' methods used here
        name: ClassVar[str]
        text_key: str
        time_key: str
        _unique: bool
        _dups: bool
        _col: Any

        def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]: ...

    def _visible(self) -> dict[str, Any]:
        return {SUPERSEDED: {"$ne": True}} if self._dups else {}

    async def _hide_duplicates(self) -> None:
        """Mark all but the newest (last inserted) document of each duplicated id."""
        groups = await self._col.aggregate(
            [
                {"$match": {SUPERSEDED: {"$ne": True}}},
                {"$group": {"_id": "$id", "n": {"$sum": 1}, "keep": {"$max": "$_id"}}},
                {"$match": {"n": {"$gt": 1}}},
            ]
        )
        async for g in groups:
            await self._col.update_many({"id": g["_id"], "_id": {"$ne": g["keep"]}}, {"$set": {SUPERSEDED: True}})

    async def _normalise_timestamps(self) -> None:
        """Legacy ISO-string, date or missing times become epoch ms, as the original writes
        them today, so the time index orders every document."""
        K = self.time_key
        odd = {"$or": [{K: {"$not": {"$type": "number"}}}, {K: float("nan")}]}
        async for doc in self._col.find(odd, {K: 1, "metadata": 1}):
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
            ms = next((v for v in map(_epoch, (doc.get(K), meta.get(K), meta.get("timeStamp"))) if v is not None), None)
            if ms is None:
                generated = getattr(doc["_id"], "generation_time", None)
                ms = _epoch(generated) if generated else 0
            await self._col.update_one({"_id": doc["_id"]}, {"$set": {K: ms}})

    async def _adopt(self, states: Sequence[VectorState], session: Any) -> None:
        """Legacy documents that just got a vector state get version, hash and emptiness."""
        if not states:
            return
        query = {"id": {"$in": [s.id for s in states]}, f"{STATE}.v": {"$exists": False}, **self._visible()}
        async for doc in self._col.find(query, {"id": 1, self.text_key: 1}, session=session):
            text = doc.get(self.text_key)
            text = text if isinstance(text, str) else ""
            await self._col.update_one(
                {"_id": doc["_id"]},
                {"$set": {f"{STATE}.v": 1, f"{STATE}.hash": content_hash(text), f"{STATE}.empty": not text.strip()}},
                session=session,
            )

    async def dedupe(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete the older duplicates of ids the original inserted twice; return how many
        went per id (the vector of such an id may have come from an older copy). With
        ``dry_run``, only count them."""
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        async with self._mapped("dedupe"):
            await self._hide_duplicates()
            removed: dict[str, int] = {}
            async for doc in self._col.find({SUPERSEDED: True}, {"id": 1}):
                removed[str(doc.get("id"))] = removed.get(str(doc.get("id")), 0) + 1
            if dry_run:
                return removed
            await self._col.delete_many({SUPERSEDED: True})
            self._dups = False
            if not self._unique:
                try:
                    await self._col.create_index([("id", 1)], unique=True, name="semantic_store_id")
                    await self._col.drop_index("semantic_store_id_dups")
                    self._unique = True
                except errors.DuplicateKeyError:  # the original inserted another one meanwhile
                    pass
        return removed
