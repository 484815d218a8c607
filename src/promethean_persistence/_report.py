"""The consistency report and its repairs (SPEC §4, §13): every record compared with what
the vector store really holds, by fingerprint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._entries import TEXT_FINGERPRINT, check_limit, content_hash, fingerprinter, validate_id
from ._errors import DocumentNotFound, ValidationError
from ._retry import backoff_ms
from ._telemetry import traced
from ._types import Record
from .drivers.base import Dedupe
from .outbox.vectors import consume

if TYPE_CHECKING:
    from .drivers.base import Embedder, PrimaryDriver, VectorDriver
    from .outbox.planner import Job, Planner
    from .outbox.queue import VectorWriteQueue

ID_CHUNK = 500  #: records or ids per round trip (larger batches measured slower at 100k)
_ABSENT = object()  #: no vector for this id


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
        async def purge_expired(self) -> int: ...

    async def _fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), ID_CHUNK):
            found.update(await self.vector.fingerprints(ids[start : start + ID_CHUNK]))
        return found

    def _is_stale(self, record: Record, stored: str | None, fingerprint: Callable[[str], str]) -> bool:
        """The vector was computed from another input or model than the record's current one
        (``fingerprint``: the store model's ``fingerprinter``)."""
        if stored is None:  # written before fingerprints: what the record says it embedded
            return record.content_hash != content_hash(record.text) or record.embedding_model not in (
                self.embedder.model,
                None if record.legacy else self.embedder.model,
            )
        if stored.startswith(TEXT_FINGERPRINT):  # legacy vector: the text its backend kept
            return stored[len(TEXT_FINGERPRINT) :] != content_hash(record.text)
        return stored != fingerprint(record.text)

    async def check_consistency(self, id_: str) -> dict[str, Any]:
        """Whether the entry ``id_`` and its vector exist, asking the vector store itself.

        Returns a dict: ``has_document``, ``has_vector``, ``vector_status``,
        ``vector_write_success`` and ``vector_write_error`` (None without a document).
        Raises ``ValidationError`` for a bad id, and ``BackendUnavailable`` or
        ``BackendRejected`` when a backend fails."""
        await self.settle()
        validate_id(id_, operation="check_consistency")
        [record] = await self.primary.get([id_])
        has_vector = bool(await self.vector.existing([id_]))
        return {
            "has_document": record is not None,
            "has_vector": has_vector,
            "vector_status": record.vector_status if record else None,
            "vector_write_success": record.to_entry()["metadata"]["vectorWriteSuccess"] if record else None,
            "vector_write_error": record.vector_error if record else None,
        }

    async def _records(self, limit: int | None) -> AsyncIterator[tuple[list[Record], dict[str, str | None]]]:
        """Batches of records with their vectors' fingerprints (one round trip to each store
        per batch; overlapping the two only made both threads wait on each other)."""
        if limit is not None:
            batch = await self.primary.most_recent(check_limit(limit, operation="report"), include_empty=True)
            yield batch, await self._fingerprints([r.id for r in batch])
            return
        async for batch in self.primary.iterate(ID_CHUNK):
            yield batch, await self._fingerprints([r.id for r in batch])

    async def _scan(self, limit: int | None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Classify records against the vector store's actual contents (``progress``: called
        with ``(checked, total)`` after each batch)."""
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
        missing, failed, stale, pending, unwanted = (
            ids[k] for k in ("missing", "failed", "stale", "pending", "unwanted")
        )
        record_ids: set[str] = set()
        fingerprint = fingerprinter(self.embedder.model)
        total = consistent = skipped = legacy = 0
        expected = await self.primary.count() if progress else 0
        async for batch, present in self._records(limit):
            total += len(batch)
            if progress:
                progress(total, max(expected, total))
            if limit is None:
                record_ids.update(r.id for r in batch)
            for r in batch:
                status = r.vector_status
                if r.legacy:  # written by the original package
                    legacy += 1
                    if status == "synced" and not self._planner.wants_vector(r):
                        status = "skipped"  # e.g. an image the original skipped but called a success
                if status == "synced":
                    stored = present.get(r.id, _ABSENT)
                    if stored is _ABSENT:
                        missing.append(r)
                    elif stored == fingerprint(r.text) or not self._is_stale(
                        r, cast("str | None", stored), fingerprint
                    ):
                        consistent += 1  # the first test is the common case, without a call
                    else:
                        stale.append(r)
                elif status == "skipped":
                    skipped += 1
                    if r.id in present:
                        unwanted.append(r)
                    else:
                        consistent += 1
                elif status == "pending":
                    pending.append(r)
                else:
                    failed.append(r)
        report.update(
            total_documents=total,
            consistent_documents=consistent,
            missing_vectors=len(missing),
            pending=len(pending),
            failed=len(failed),
            skipped=skipped,
            stale_vectors=len(stale) + len(unwanted),
            legacy=legacy,
            vector_write_failures=[
                {"id": r.id, "error": r.vector_error, "timestamp": r.vector_updated_at, "attempts": r.vector_attempts}
                for r in failed
            ],
        )
        report["inconsistent_documents"] = report["total_documents"] - report["consistent_documents"]
        orphans: list[str] = []
        if limit is None:
            async for vector_ids in self.vector.iter_ids(ID_CHUNK):
                orphans += [i for i in vector_ids if i not in record_ids]
            report["orphaned_vectors"] = len(orphans)
        return {"report": report, "ids": ids, "orphans": orphans}

    async def get_consistency_report(self, limit: int | None = 100) -> dict[str, Any]:
        """Check the ``limit`` newest entries (all of them if None, which also counts orphan
        vectors; a limit above ``MAX_LIMIT``, 2**31 - 1, checks them all too but counts no
        orphans) against what the vector store really holds, by fingerprint. Expired entries
        are not reported; with ``limit=None`` they are purged first (``purge_expired``), so
        that their vectors are deleted rather than counted as orphans.

        Returns a report dict: ``total_documents``, ``consistent_documents``,
        ``inconsistent_documents``, ``missing_vectors``, ``pending``, ``failed``,
        ``skipped``, ``stale_vectors``, ``orphaned_vectors``, ``legacy``,
        ``vector_write_failures`` (id, error, time, attempts) and ``atomic_vector_writes``.
        Raises ``ValidationError`` for a bad ``limit``, and ``BackendUnavailable`` or
        ``BackendRejected`` when a backend fails."""
        await self.settle()
        if limit is None:
            await self.purge_expired()
        report: dict[str, Any] = (await self._scan(limit))["report"]
        return report

    @traced("repair")
    async def repair(
        self, dry_run: bool = False, dedupe: bool = False, *, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Re-queue missing, failed, stale and stuck vectors; delete orphan vectors. With
        ``dedupe``, also delete older duplicates of an id (the original package inserted
        without upserting; reads already show only the newest) where the primary driver can.
        With ``dry_run``, only count what would be done. ``progress``: called with
        ``(checked, total)`` entries as the scan goes on.

        Returns a dict: ``dry_run``, ``missing``, ``failed``, ``stale``, ``pending``,
        ``requeued``, ``orphans_deleted``, ``duplicates_removed``, ``requeued_ids`` and
        ``deleted_ids`` (the re-queued work runs in the background: ``flush`` waits for it).
        Expired entries are purged first (not with ``dry_run``). Raises
        ``BackendUnavailable`` or ``BackendRejected`` when a backend fails."""
        self._check_open()
        await self._queue.flush()
        await self.settle()
        if not dry_run:
            await self.purge_expired()
        duplicates: dict[str, int] = {}
        if dedupe and self.primary.capabilities.dedupe:
            duplicates = await cast(Dedupe, self.primary).dedupe(dry_run=dry_run)
        scan = await self._scan(None, progress)
        ids, orphans = scan["ids"], scan["orphans"]
        requeue = ids["missing"] + ids["failed"] + ids["stale"] + ids["pending"]
        queued = {r.id for r in requeue}  # a deduplicated id's vector may be an older copy's
        requeue += [
            r
            for r in await self.primary.get(sorted(duplicates))
            if r is not None and r.id not in queued and r.vector_status != "skipped"
        ]
        return self._requeue(ids, requeue, orphans + [r.id for r in ids["unwanted"]], duplicates, dry_run)

    def _requeue(
        self,
        ids: dict[str, list[Record]],
        requeue: list[Record],
        deletes: list[str],
        duplicates: dict[str, int],
        dry_run: bool,
    ) -> dict[str, Any]:
        """Queue the vector writes of ``requeue`` and the vector deletes of ``deletes`` (unless
        ``dry_run``); returns ``repair``'s summary of the scan's ``ids`` and ``duplicates``."""
        if not dry_run:
            jobs = [self._planner.rewrite(r) for r in requeue] + [self._planner.remove(i) for i in deletes]
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
            "orphans_deleted": len(deletes),
            "duplicates_removed": sum(duplicates.values()),
            "requeued_ids": [r.id for r in requeue],
            "deleted_ids": deletes,
        }

    async def retry_vector_write(self, id_: str, max_retries: int = 3) -> bool:
        """Write the vector of the entry ``id_`` now, up to ``max_retries`` attempts (with
        backoff between them). Returns True when it landed (or the entry wants no vector),
        False otherwise. Raises ``ValidationError`` for a bad id or ``max_retries`` (not an
        int), ``DocumentNotFound`` when there is no such entry, and the primary store's
        ``BackendUnavailable``/``BackendRejected``."""
        self._check_open()
        validate_id(id_, operation="retry_vector_write")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise ValidationError(
                f"max_retries must be an int, got {type(max_retries).__name__}",
                field="max_retries",
                operation="retry_vector_write",
            )
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
