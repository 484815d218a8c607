"""The outbox: claims of due records and tombstones under a lease, vector states (mirrored
into the original's metadata keys), tombstones, the manifest and the original's alias of the
vector collection."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ...._deps import require
from ...._types import SCHEMA_VERSION, TOMBSTONE_VERSION, Manifest, Record, VectorState
from ._layout import EXTRA, STATE
from ._legacy import _write_view

_T = TypeVar("_T")
#: a place ``claim`` looks for work (its comment there names the fields)
_Source = tuple[
    Any, dict[str, Any], list[tuple[str, int]], dict[str, int] | None, str, Callable[[Any], tuple[Any, ...]]
]


class Outbox:
    """Outbox, tombstones and manifest of ``MongoPrimary`` (a mixin: the driver holds the
    state)."""

    if TYPE_CHECKING:  # the driver's state and the other mixins' methods used here
        name: ClassVar[str]
        collection: str
        time_key: str
        _col: Any
        _tomb: Any
        _manifests: Any
        _alias: dict[str, Any] | None

        def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]: ...
        async def _tx(self, operation: str, work: Callable[[Any], Awaitable[_T]]) -> _T: ...
        def _visible(self) -> dict[str, Any]: ...
        async def _adopt(self, states: Sequence[VectorState], session: Any) -> None: ...
        def _record(self, doc: Mapping[str, Any]) -> Record: ...

    def _tomb_id(self, id_: str) -> str:
        return f"{self.collection}\x00{id_}"

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by
        lease_until = now + lease_ms
        token = uuid.uuid4().hex
        # one indexed query per kind of work (an $or of them defeats the outbox index)
        due_records: list[dict[str, Any]] = [
            {f"{STATE}.status": "pending", f"{STATE}.next": {"$not": {"$gt": now}}},
            {f"{STATE}.status": "failed", f"{STATE}.next": {"$lte": due_by}},  # null never compares
        ]
        due_tombs: list[dict[str, Any]] = [  # tombstones always carry a time
            {"collection": self.collection, "attempts": 0, "next": {"$lte": now}},
            {"collection": self.collection, "attempts": {"$gt": 0}, "next": {"$lte": due_by}},
        ]
        K = self.time_key
        # (collection, due filter, sort, projection, prefix of the lease fields, sort key of a hit)
        sources: list[_Source] = [
            (
                self._col,
                due,
                [(f"{STATE}.updated", 1), (K, 1), ("id", 1)],
                {"id": 1, f"{STATE}.updated": 1, K: 1},
                f"{STATE}.",
                lambda d: ((d.get(STATE) or {}).get("updated") or 0, d.get(K) or 0, d.get("id", "")),
            )
            for due in due_records
        ]
        sources += [
            (self._tomb, due, [("updated", 1), ("id", 1)], None, "", lambda d: (d.get("updated") or 0, 0, d["id"]))
            for due in due_tombs
        ]
        work: list[Record] = []
        async with self._mapped("claim"):
            found = []  # (sort key, source, _id): the least recently touched across all sources
            for n, (target, due, sort, projection, _, key) in enumerate(sources):
                async for d in target.find(due, projection).sort(sort).limit(limit):
                    found.append((key(d), n, d["_id"]))
            found.sort(key=lambda f: f[0])
            for n, (target, due, _, _, prefix, _) in enumerate(sources):
                keys = [_id for _, source, _id in found[:limit] if source == n]
                if not keys:
                    continue
                lease = {f"{prefix}next": lease_until, f"{prefix}claim": token}
                await target.update_many({"_id": {"$in": keys}, **due}, {"$set": lease})  # re-checks due
                async for d in target.find({"_id": {"$in": keys}, f"{prefix}claim": token}):
                    work.append(
                        self._record(d)
                        if target is self._col
                        else Record.tombstone(d["id"], d["next"], d.get("updated") or 0, d["attempts"], d.get("error"))
                    )
        work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
        return work

    async def _apply_states(self, states: Sequence[VectorState], session: Any) -> int:
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)
        ops, tomb_ops = [], []
        for s in states:
            if s.version == TOMBSTONE_VERSION:
                key = {"_id": self._tomb_id(s.id)}
                tomb_ops.append(
                    pymongo.DeleteOne(key)
                    if s.status == "deleted"
                    else pymongo.UpdateOne(
                        key,
                        {
                            "$set": {
                                "attempts": s.attempts,
                                "error": s.error,
                                "next": s.next_at,
                                "updated": s.updated_at,
                            }
                        },
                    )
                )
                continue
            matches = [{"id": s.id, f"{STATE}.v": s.version, **self._visible()}]
            if s.version == 1:  # a legacy document has no version yet: it counts as 1
                matches.append({"id": s.id, STATE: {"$exists": False}, **self._visible()})
            fields = {
                f"{STATE}.{k}": v
                for k, v in (
                    ("status", s.status),
                    ("attempts", s.attempts),
                    ("error", s.error),
                    ("next", s.next_at),
                    ("updated", s.updated_at),
                )
            }
            if s.synced_at is not None:
                fields[f"{STATE}.synced"] = s.synced_at
            if s.embedding_model is not None:
                fields[f"{STATE}.model"] = s.embedding_model
            view = _write_view(s.status, s.error, s.synced_at)
            if s.status == "synced" and s.synced_at is None:
                del view["vectorWriteTimestamp"]
            fields.update({f"metadata.{k}": v for k, v in view.items()})
            ops += [pymongo.UpdateOne(m, {"$set": fields, "$unset": {f"{STATE}.claim": ""}}) for m in matches]
        applied = 0
        if ops:
            result = await self._col.bulk_write(ops, ordered=False, session=session)
            applied += result.matched_count
            await self._adopt([s for s in states if s.version == 1], session)
        if tomb_ops:
            result = await self._tomb.bulk_write(tomb_ops, ordered=False, session=session)
            applied += result.matched_count + result.deleted_count
        return applied

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        if not states:
            return 0
        return await self._tx("set_vector_state", lambda session: self._apply_states(states, session))

    # -- manifest, aliases ----------------------------------------------------------------

    async def get_manifest(self) -> Manifest | None:
        """See ``PrimaryDriver.get_manifest``."""
        async with self._mapped("get_manifest"):
            doc = await self._manifests.find_one({"_id": self.collection})
        if doc and doc.get("manifest"):
            return Manifest.from_dict(doc["manifest"])
        embed = (self._alias or {}).get("embed")
        if isinstance(embed, Mapping) and embed.get("fn") and embed.get("dims"):
            # the original recorded its embedder on the alias: vectors there are in that space
            return Manifest(str(embed.get("driver") or "ollama"), str(embed["fn"]), int(embed["dims"]))
        return None

    async def set_manifest(self, manifest: Manifest) -> None:
        """See ``PrimaryDriver.set_manifest``."""
        async with self._mapped("set_manifest"):
            await self._manifests.update_one(
                {"_id": self.collection},
                {"$set": {"manifest": manifest.to_dict(), "schema_version": SCHEMA_VERSION}},
                upsert=True,
            )

    async def vector_collection(self) -> str | None:
        """The original's alias lookup: ``collection_aliases[{agent}_{name}].target``."""
        target = (self._alias or {}).get("target")
        return str(target) if target else None
