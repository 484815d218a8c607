"""In-process primary store. Each instance is its own empty database (for tests and demos)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..._filters import Node, evaluate
from ..._lexical import query_terms
from ..._types import TOMBSTONE_VERSION, Manifest, Record, VectorHit, VectorState
from .._tantivy import TextIndex, filtered_search
from ..base import Capabilities, Order

if TYPE_CHECKING:
    from ..._config import StoreConfig


def _filterable(record: Record) -> dict[str, Any]:
    return {**record.metadata, "vectorStatus": record.vector_status}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _live(record: Record | None, now: int) -> bool:
    """Whether ``record`` exists and has not expired at ``now`` (epoch ms)."""
    return record is not None and (record.expires_at is None or record.expires_at > now)


class MemoryPrimary:
    """Primary driver keeping records in a dict; nothing survives the process. Its lexical
    index is an in-process tantivy index (``_tantivy.TextIndex``) updated with every write."""

    name: ClassVar[str] = "memory"

    def __init__(self, collection: str = "memory", *, lexical: bool = True) -> None:
        """``collection`` is the name the driver reports; records live in this object only.
        ``lexical`` keeps the lexical index of the texts (``Capabilities.lexical``)."""
        self.collection = collection
        self.capabilities = Capabilities(lexical=lexical, expiry=True, outbox_stats=True)
        self._lexical = TextIndex() if lexical else None
        self._records: dict[str, Record] = {}
        self._tombstones: dict[str, Record] = {}
        self._manifest: Manifest | None = None
        self._workers: dict[str, dict[str, Any]] = {}  #: heartbeats by worker id (with ``dead_at``)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> MemoryPrimary:
        """See ``PrimaryDriver.from_config``."""
        return cls(collection, lexical=config.lexical_index)

    async def open(self) -> None:
        """See ``PrimaryDriver.open``."""
        pass

    async def aclose(self) -> None:
        """See ``PrimaryDriver.aclose``."""
        pass

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """See ``PrimaryDriver.put``."""
        await asyncio.sleep(0)  # yield like a real backend, so concurrent writers interleave
        await self.set_vector_state(states)
        previous = []
        for record in records:
            prev = self._records.get(record.id)
            record.version = prev.version + 1 if prev else 1
            previous.append(copy.deepcopy(prev))
            self._records[record.id] = copy.deepcopy(record)
            self._tombstones.pop(record.id, None)
            if self._lexical is not None:
                self._lexical.add(record.id, record.text)
        return previous

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """See ``PrimaryDriver.get``."""
        now = _now_ms()
        found = ((i, self._records.get(i)) for i in ids)
        return [copy.deepcopy(r) if _live(r, now) else None for i, r in found]

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """See ``PrimaryDriver.versions``."""
        now = _now_ms()
        return {i: r.version for i in ids if (r := self._records.get(i)) is not None and _live(r, now)}

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """See ``PrimaryDriver.delete``."""
        gone = [i for i in dict.fromkeys(ids) if self._records.pop(i, None) is not None]
        if tombstone_at is not None:
            for i in gone:
                self._tombstones[i] = Record.tombstone(i, tombstone_at, tombstone_at)
        if self._lexical is not None:
            self._lexical.remove(gone)
        return gone

    async def most_recent(
        self,
        limit: int,
        where: Node | None = None,
        *,
        order: Order = "desc",
        since: int | None = None,
        until: int | None = None,
        include_empty: bool = False,
    ) -> list[Record]:
        """See ``PrimaryDriver.most_recent``."""
        now = _now_ms()
        rows = [
            r
            for r in self._records.values()
            if _live(r, now)
            and (include_empty or not r.is_empty)
            and (since is None or r.timestamp >= since)
            and (until is None or r.timestamp <= until)
            and evaluate(where, _filterable(r))
        ]
        rows.sort(key=lambda r: (r.timestamp, r.id), reverse=order == "desc")
        return copy.deepcopy(rows[:limit])

    async def lexical_query(self, text: str, limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``LexicalPrimary.lexical_query``."""
        if self._lexical is None:
            return []

        now = _now_ms()
        expiring = any(r.expires_at is not None for r in self._records.values())

        async def keep(ids: list[str]) -> set[str]:
            found = ((i, self._records.get(i)) for i in ids)
            return {
                i
                for i, r in found
                if r is not None and _live(r, now) and not r.is_empty and evaluate(where, _filterable(r))
            }

        unfiltered = where is None and not expiring
        return await filtered_search(self._lexical, query_terms(text), limit, None if unfiltered else keep)

    async def lexical_backfill(self, batch_size: int) -> AsyncIterator[tuple[int, int]]:
        """See ``LexicalPrimary.lexical_backfill``: nothing to do, every write updates the index."""
        return
        yield  # an async generator that yields nothing

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """See ``PrimaryDriver.iterate``."""
        ids = sorted(i for i in self._records if after is None or i > after)
        for start in range(0, len(ids), batch_size):
            now = _now_ms()
            batch = [self._records.get(i) for i in ids[start : start + batch_size]]
            live = [r for r in batch if r is not None and _live(r, now)]
            if live:
                yield copy.deepcopy(live)

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        now = _now_ms()
        return sum(
            1 for r in self._records.values() if _live(r, now) and (where is None or evaluate(where, _filterable(r)))
        )

    async def purge_expired(self, now: int, limit: int) -> list[str]:
        """See ``ExpiringPrimary.purge_expired``: at most ``limit`` records expired at ``now``
        (epoch ms), soonest expiry first, deleted with a tombstone at ``now``."""
        await asyncio.sleep(0)
        expired = [r for r in self._records.values() if r.expires_at is not None and r.expires_at <= now]
        expired.sort(key=lambda r: (r.expires_at or 0, r.id))
        return await self.delete([r.id for r in expired[: max(limit, 0)]], tombstone_at=now)

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by

        def due(r: Record) -> bool:
            if r.vector_status == "pending" or (r.vector_status == "deleting" and not r.vector_attempts):
                return r.vector_next_at is None or r.vector_next_at <= now  # leased: never early
            if r.vector_status == "deleting":  # a failed delete: next_at is its retry time
                return r.vector_next_at is None or r.vector_next_at <= due_by
            return r.vector_status == "failed" and r.vector_next_at is not None and r.vector_next_at <= due_by

        work = [r for r in (*self._records.values(), *self._tombstones.values()) if due(r)]
        work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
        for r in work[:limit]:
            r.vector_next_at = now + lease_ms
        return copy.deepcopy(work[:limit])

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        applied = 0
        for s in states:
            if s.version == TOMBSTONE_VERSION:
                if s.id not in self._tombstones:
                    continue
                if s.status == "deleted":
                    del self._tombstones[s.id]
                else:
                    t = self._tombstones[s.id]
                    t.vector_attempts, t.vector_error = s.attempts, s.error
                    t.vector_next_at, t.vector_updated_at = s.next_at, s.updated_at
                applied += 1
                continue
            r = self._records.get(s.id)
            if r is None or r.version != s.version:
                continue
            r.vector_status = s.status
            r.vector_attempts = s.attempts
            r.vector_error = s.error
            r.vector_next_at = s.next_at
            r.vector_updated_at = s.updated_at
            if s.synced_at is not None:
                r.vector_synced_at = s.synced_at
            if s.embedding_model is not None:
                r.embedding_model = s.embedding_model
            applied += 1
        return applied

    async def get_manifest(self) -> Manifest | None:
        """See ``PrimaryDriver.get_manifest``."""
        return self._manifest

    async def set_manifest(self, manifest: Manifest) -> None:
        """See ``PrimaryDriver.set_manifest``."""
        self._manifest = manifest

    async def drop(self) -> None:
        """See ``PrimaryDriver.drop``."""
        self._records.clear()
        self._tombstones.clear()
        self._manifest = None
        if self._lexical is not None:
            self._lexical.clear()

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``)."""
        pending = [r for r in self._records.values() if r.vector_status == "pending"]
        failed = [r for r in self._records.values() if r.vector_status == "failed"]
        live = sorted(
            (w for w in self._workers.values() if w["dead_at"] > now), key=lambda w: (w["started_at"], w["id"])
        )
        return {
            "pending": len(pending),
            "leased": sum(1 for r in pending if r.vector_next_at is not None and r.vector_next_at > now),
            "failed": len(failed),
            "retrying": sum(1 for r in failed if r.vector_next_at is not None),
            "tombstones": len(self._tombstones),
            "oldest_pending_at": min((r.vector_updated_at or r.timestamp for r in pending), default=None),
            "workers": [{k: w[k] for k in ("id", "host", "pid", "started_at", "last_beat_at")} for w in live],
        }

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""
        for id_ in [i for i, w in self._workers.items() if w["dead_at"] < now - 86_400_000]:
            del self._workers[id_]
        self._workers[str(worker["id"])] = {
            "id": str(worker["id"]),
            "host": str(worker["host"]),
            "pid": int(worker["pid"]),
            "started_at": int(worker["started_at"]),
            "last_beat_at": now,
            "dead_at": dead_at,
        }

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""
        self._workers.pop(worker_id, None)

    @classmethod
    async def list_collections(cls, config: StoreConfig) -> list[str] | None:
        """See ``OutboxStatsPrimary.list_collections`` (``config``): None, every instance is its
        own database, invisible to other processes."""
        return None
