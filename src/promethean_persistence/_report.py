"""The consistency report and its repairs (SPEC §4, §13): every record compared with what
the vector store really holds, by fingerprint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._entries import TEXT_FINGERPRINT, check_limit, content_hash, fingerprint, validate_id
from ._errors import DocumentNotFound
from ._retry import backoff_ms
from ._types import Record
from .drivers.base import Dedupe
from .outbox.queue import consume

if TYPE_CHECKING:
    from .drivers.base import Embedder, PrimaryDriver, VectorDriver
    from .outbox.planner import Job, Planner
    from .outbox.queue import VectorWriteQueue

ID_CHUNK = 500  #: ids per vector-store round trip


class Consistency:
    """The report, repair and retry half of ``SemanticStore`` (a mixin of it)."""

    if TYPE_CHECKING:
        primary: PrimaryDriver
        vector: VectorDriver
        embedder: Embedder
        config: Any
        _atomic: bool
        _planner: Planner
        _queue: VectorWriteQueue

        def _check_open(self) -> None: ...
        async def settle(self) -> None: ...
        async def _run_jobs(self, jobs: list[Job]) -> dict[str, BaseException]: ...

    async def _fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), ID_CHUNK):
            found.update(await self.vector.fingerprints(ids[start : start + ID_CHUNK]))
        return found

    def _is_stale(self, record: Record, stored: str | None) -> bool:
        """The vector was computed from another input or model than the record's current one."""
        text_hash = content_hash(record.text)
        if stored is None:  # written before fingerprints: what the record says it embedded
            return record.content_hash != text_hash or record.embedding_model not in (
                self.embedder.model,
                None if record.legacy else self.embedder.model,
            )
        if stored.startswith(TEXT_FINGERPRINT):  # legacy vector: the text its backend kept
            return stored[len(TEXT_FINGERPRINT) :] != text_hash
        return stored != fingerprint(text_hash, self.embedder.model)

    async def check_consistency(self, id_: str) -> dict[str, Any]:
        """Whether the entry and its vector exist, asking the vector store itself."""
        await self.settle()
        validate_id(id_)
        [record] = await self.primary.get([id_])
        has_vector = bool(await self.vector.existing([id_]))
        return {
            "has_document": record is not None,
            "has_vector": has_vector,
            "vector_status": record.vector_status if record else None,
            "vector_write_success": record.to_entry()["metadata"]["vectorWriteSuccess"] if record else None,
            "vector_write_error": record.vector_error if record else None,
        }

    async def _records(self, limit: int | None) -> AsyncIterator[list[Record]]:
        if limit is None:
            async for batch in self.primary.iterate(ID_CHUNK):
                yield batch
        else:
            yield await self.primary.most_recent(check_limit(limit), include_empty=True)

    async def _scan(self, limit: int | None) -> dict[str, Any]:
        """Classify records against the vector store's actual contents."""
        report: dict[str, Any] = {
            "total_documents": 0,
            "consistent_documents": 0,
            "inconsistent_documents": 0,
            "missing_vectors": 0,
            "pending": 0,
            "failed": 0,
            "skipped": 0,
            "stale_vectors": 0,
            "orphaned_vectors": 0,
            "legacy": 0,
            "vector_write_failures": [],
            # strict writes commit record and vector together (same PostgreSQL database)
            "atomic_vector_writes": self._atomic,
        }
        ids: dict[str, list[Record]] = {k: [] for k in ("missing", "failed", "stale", "pending", "unwanted")}
        record_ids: set[str] = set()
        async for batch in self._records(limit):
            present = await self._fingerprints([r.id for r in batch])
            for r in batch:
                if limit is None:
                    record_ids.add(r.id)
                has = r.id in present
                report["total_documents"] += 1
                report["legacy"] += r.legacy  # written by the original package
                ok = False
                status = r.vector_status
                if r.legacy and status == "synced" and not self._planner.wants_vector(r):
                    status = "skipped"  # e.g. an image the original skipped but called a success
                if status == "skipped":
                    report["skipped"] += 1
                    ok = not has
                    if has:
                        report["stale_vectors"] += 1
                        ids["unwanted"].append(r)
                elif status == "synced":
                    if not has:
                        report["missing_vectors"] += 1
                        ids["missing"].append(r)
                    elif self._is_stale(r, present[r.id]):
                        report["stale_vectors"] += 1
                        ids["stale"].append(r)
                    else:
                        ok = True
                elif status == "pending":
                    report["pending"] += 1
                    ids["pending"].append(r)
                else:
                    report["failed"] += 1
                    ids["failed"].append(r)
                    report["vector_write_failures"].append(
                        {
                            "id": r.id,
                            "error": r.vector_error,
                            "timestamp": r.vector_updated_at,
                            "attempts": r.vector_attempts,
                        }
                    )
                report["consistent_documents"] += ok
        report["inconsistent_documents"] = report["total_documents"] - report["consistent_documents"]
        orphans: list[str] = []
        if limit is None:
            async for vector_ids in self.vector.iter_ids(ID_CHUNK):
                orphans += [i for i in vector_ids if i not in record_ids]
            report["orphaned_vectors"] = len(orphans)
        return {"report": report, "ids": ids, "orphans": orphans}

    async def get_consistency_report(self, limit: int | None = 100) -> dict[str, Any]:
        """Check the ``limit`` newest entries (all if None) against the vector store."""
        await self.settle()
        report: dict[str, Any] = (await self._scan(limit))["report"]
        return report

    async def repair(self, dry_run: bool = False, dedupe: bool = False) -> dict[str, Any]:
        """Re-queue missing, failed, stale and stuck vectors; delete orphan vectors. With
        ``dedupe``, also delete older duplicates of an id (the original package inserted
        without upserting; reads already show only the newest)."""
        self._check_open()
        await self._queue.flush()
        await self.settle()
        duplicates: dict[str, int] = {}
        if dedupe and self.primary.capabilities.dedupe:
            duplicates = await cast(Dedupe, self.primary).dedupe(dry_run=dry_run)
        scan = await self._scan(None)
        ids, orphans = scan["ids"], scan["orphans"]
        requeue = ids["missing"] + ids["failed"] + ids["stale"] + ids["pending"]
        queued = {r.id for r in requeue}  # a deduplicated id's vector may be an older copy's
        requeue += [
            r
            for r in await self.primary.get(sorted(duplicates))
            if r is not None and r.id not in queued and r.vector_status != "skipped"
        ]
        if not dry_run:
            jobs = [self._planner.rewrite(r) for r in requeue]
            jobs += [self._planner.remove(i) for i in orphans + [r.id for r in ids["unwanted"]]]
            for job in jobs:
                job.future.add_done_callback(consume)
            if jobs:
                self._queue.submit(jobs)
        return {
            "dry_run": dry_run,
            "missing": len(ids["missing"]),
            "failed": len(ids["failed"]),
            "stale": len(ids["stale"]) + len(ids["unwanted"]),
            "pending": len(ids["pending"]),
            "requeued": len(requeue),
            "orphans_deleted": len(orphans) + len(ids["unwanted"]),
            "duplicates_removed": sum(duplicates.values()),
            "requeued_ids": [r.id for r in requeue],
            "deleted_ids": orphans + [r.id for r in ids["unwanted"]],
        }

    async def retry_vector_write(self, id_: str, max_retries: int = 3) -> bool:
        """Write this entry's vector now, up to ``max_retries`` attempts; True on success."""
        self._check_open()
        validate_id(id_)
        for attempt in range(1, max(max_retries, 0) + 1):
            await self.settle()
            [record] = await self.primary.get([id_])
            if record is None:
                raise DocumentNotFound(f"No entry with id {id_!r}", operation="retry_vector_write", document_id=id_)
            if record.vector_status == "skipped":
                return True
            if not await self._run_jobs([self._planner.resume(record)]):
                return True
            if attempt < max_retries:
                await asyncio.sleep(backoff_ms(attempt, self.config.vector_retry_delay_ms) / 1000)
        if max_retries < 1 and (await self.primary.get([id_]))[0] is None:
            raise DocumentNotFound(f"No entry with id {id_!r}", operation="retry_vector_write", document_id=id_)
        return False
