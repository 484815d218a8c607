"""The outbox: claims of due records and tombstones under a lease, vector states (mirrored
into the original's metadata keys), tombstones, the manifest and the original's alias of the
vector collection."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from ...._deps import require
from ...._types import SCHEMA_VERSION, TOMBSTONE_VERSION, Manifest, Record, VectorState
from ._layout import EXTRA, MANIFESTS, STATE
from ._legacy import _write_view

if TYPE_CHECKING:
    from ...._config import StoreConfig

_T = TypeVar("_T")
WORKERS = "semantic_store_workers"  #: worker heartbeats: one document per (collection, worker)
FORGET_AFTER_MS = 86_400_000  #: a worker dead this long is removed at the next beat
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

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``): counts on the outbox index
        (status, next) and the tombstones' (collection, next)."""
        status = f"{STATE}.status"
        count = self._col.count_documents
        async with self._mapped("outbox_stats"):
            pending = await count({status: "pending"})
            leased = await count({status: "pending", f"{STATE}.next": {"$gt": now}}) if pending else 0
            failed = await count({status: "failed"})
            retrying = await count({status: "failed", f"{STATE}.next": {"$ne": None}}) if failed else 0
            tombstones = await self._tomb.count_documents({"collection": self.collection})
            oldest = None
            if pending:
                projection = {f"{STATE}.updated": 1, self.time_key: 1}
                async for d in self._col.find({status: "pending"}, projection).sort(f"{STATE}.updated", 1).limit(1):
                    oldest = (d.get(STATE) or {}).get("updated") or d.get(self.time_key)
            cursor = self._col.database[WORKERS].find({"collection": self.collection, "dead_at": {"$gt": now}})
            workers = [
                {
                    "id": str(w["worker_id"]),
                    "host": str(w["host"]),
                    "pid": int(w["pid"]),
                    "started_at": int(w["started_at"]),
                    "last_beat_at": int(w["beat_at"]),
                }
                async for w in cursor.sort([("started_at", 1), ("worker_id", 1)])
            ]
        return {
            "pending": pending,
            "leased": leased,
            "failed": failed,
            "retrying": retrying,
            "tombstones": tombstones,
            "oldest_pending_at": int(oldest) if isinstance(oldest, (int, float)) else None,
            "workers": workers,
        }

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""
        beats = self._col.database[WORKERS]
        doc = {
            "collection": self.collection,
            "worker_id": str(worker["id"]),
            "host": str(worker["host"]),
            "pid": int(worker["pid"]),
            "started_at": int(worker["started_at"]),
            "beat_at": now,
            "dead_at": dead_at,
        }
        async with self._mapped("beat_worker"):
            await beats.replace_one({"_id": f"{self.collection}\x00{worker['id']}"}, doc, upsert=True)
            await beats.delete_many({"dead_at": {"$lt": now - FORGET_AFTER_MS}})

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""
        async with self._mapped("forget_worker"):
            await self._col.database[WORKERS].delete_one({"_id": f"{self.collection}\x00{worker_id}"})

    @classmethod
    async def list_collections(cls, config: StoreConfig) -> list[str] | None:
        """See ``OutboxStatsPrimary.list_collections`` (``config``): the collections with a
        manifest in the configured database (every store opened by this package has one)."""
        pymongo = require("pymongo", extra=EXTRA, driver=cls.name)
        probe = cast(Any, cls).from_config(config, "catalog")
        options = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, **probe.options}
        client = pymongo.AsyncMongoClient(probe._uri, **options)
        try:
            async with probe._mapped("list_collections"):
                names = await client[probe.database][MANIFESTS].distinct("_id")
        finally:
            await client.close()
        return sorted(str(n) for n in names)
