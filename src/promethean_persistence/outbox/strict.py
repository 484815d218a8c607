"""Strict writes (SPEC §4): when an insert raises, nothing is stored.

When the primary and the vector store share a database (``shares_transactions_with``), the
records and their vectors commit in one transaction. Otherwise the records are written first
and, if a vector write fails, ``undo`` puts back what was there before.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from .._entries import now_ms
from .._errors import SemanticStoreError, ValidationError, VectorWriteError
from .._telemetry import traced_upsert
from .._types import Record
from ..drivers.base import PrimaryDriver, TransactionalPrimary, TransactionalVector
from .planner import Planner
from .queue import VectorWriteQueue
from .vectors import consume, embed_records, vector_metadata
from .writer import OutboxWriter


def shares_transactions(primary: PrimaryDriver, vector: Any) -> bool:
    """Whether strict writes can commit records and vectors together: ``primary`` and
    ``vector`` both declare ``transactions`` and share a database. Returns a bool; raises
    nothing."""
    return (
        primary.capabilities.transactions
        and vector.capabilities.transactions
        and cast(TransactionalPrimary, primary).shares_transactions_with(vector)
    )


@traced_upsert
async def upsert_records_in(
    vector: TransactionalVector, records: list[Record], vectors: Any, model: str | None, conn: Any
) -> None:
    """``upsert_records`` inside the primary's transaction ``conn``: the vectors of ``records``
    into ``vector`` (``vectors`` aligned with them, None: metadata only), metadata
    fingerprinted with ``model``; traced as the queue's upserts are. Returns None; raises what
    ``TransactionalVector.upsert_in`` raises."""
    await vector.upsert_in(conn, [r.id for r in records], vectors, [vector_metadata(r, model) for r in records])


class StrictWrites:
    """The strict write path of one store, a peer of the queue."""

    def __init__(
        self,
        *,
        primary: PrimaryDriver,
        writer: OutboxWriter,
        queue: VectorWriteQueue,
        planner: Planner,
        timeout_ms: int,
    ) -> None:
        """``primary``: the store's primary driver. ``writer``, ``queue`` and ``planner``: the
        store's outbox writer, vector write queue (its vector driver and embedder follow a
        model switch) and planner. ``timeout_ms``: the bound on one strict write. Raises
        nothing."""
        self.primary = primary
        self.writer = writer
        self.queue = queue  # its vector driver and embedder follow a model switch
        self.planner = planner
        self.timeout_ms = timeout_ms

    async def _embed_into(self, embedded: dict[str, Any], records: list[Record]) -> None:
        if records:
            for r, v in zip(records, await embed_records(self.queue.embedder, records, images=self.planner.images)):
                embedded[r.id] = v

    async def atomic(self, records: list[Record], now: int) -> None:
        """Write ``records`` (validated, states started at ``now``) and their vectors: embed
        first, then records and vectors in one commit. Any failure rolls both back, so a
        raised insert left nothing behind. Returns None; raises ``VectorWriteError`` (caused
        by the failure, a timeout after ``timeout_ms`` included)."""
        primary = cast(TransactionalPrimary, self.primary)
        vector = cast(TransactionalVector, self.queue.vector)
        plan = self.planner
        await self.writer.settle()
        await self.queue.warm()
        before = {r.id: p for r, p in zip(records, await self.primary.get([r.id for r in records]))}
        embedded: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                await self._embed_into(embedded, [r for r in records if plan.needs_embedding(r, before[r.id])])
                async with primary.transaction() as conn:
                    for r in records:
                        if r.vector_status != "skipped":
                            plan.mark_synced(r, now)
                    previous = await primary.put_in(conn, records)
                    changed = [
                        r for r, p in zip(records, previous) if r.id not in embedded and plan.needs_embedding(r, p)
                    ]
                    await self._embed_into(embedded, changed)  # someone changed them since we looked
                    full = [r for r in records if r.id in embedded]
                    if full:
                        await upsert_records_in(vector, full, [embedded[r.id] for r in full], plan.model, conn)
                    same = [r for r in records if r.vector_status == "synced" and r.id not in embedded]
                    if same:
                        try:
                            async with conn.transaction():  # a savepoint: the vector may be gone
                                await upsert_records_in(vector, same, None, plan.model, conn)
                        except ValidationError:
                            await self._embed_into(embedded, same)
                            await upsert_records_in(vector, same, [embedded[r.id] for r in same], plan.model, conn)
                    gone = [
                        r.id
                        for r, p in zip(records, previous)
                        if r.vector_status == "skipped" and p is not None and p.vector_status != "skipped"
                    ]
                    if gone:
                        await vector.delete_in(conn, gone)
        except (TimeoutError, Exception) as exc:
            reason = f"timed out after {self.timeout_ms} ms" if isinstance(exc, TimeoutError) else exc
            raise VectorWriteError(
                f"Vector store write failed for {len(records)} entries ({', '.join(r.id for r in records[:5])}): "
                f"{reason}; nothing was stored (one transaction)",
                operation="insert",
                document_id=records[0].id,
            ) from exc
        self.queue.total_written += sum(r.vector_status == "synced" for r in records)

    async def undo(
        self, records: list[Record], previous: list[Record | None], errors: dict[str, BaseException]
    ) -> None:
        """Put back what was there before ``records`` were written: ``previous`` holds the
        replaced versions (None where new), ``errors`` the vector write failures by id.
        Vectors whose write may have landed (it timed out, or it succeeded as part of a
        failed call) are re-synced in the background. Returns None; raises the primary
        store's ``BackendUnavailable``/``BackendRejected``."""
        # An explicit failure left the vector side as it was; anything else may have landed.
        untouched = {i for i, e in errors.items() if not (isinstance(e, SemanticStoreError) and e.timed_out)}
        now = now_ms()
        gone = [r.id for r, prev in zip(records, previous) if prev is None]
        restore = [prev for prev in previous if prev is not None]
        touched = [i for i in gone if i not in untouched]
        if touched:  # their vector may exist: a tombstone makes sure it goes
            await self.primary.delete(touched, tombstone_at=now + self.planner.lease_ms)
        if len(touched) < len(gone):
            await self.primary.delete([i for i in gone if i in untouched])
        if restore:
            await self.writer.put(restore)  # a new version: late state updates cannot touch it
        reconcile = [self.planner.remove(i, Record.tombstone(i, None, now)) for i in touched] + [
            self.planner.rewrite(r) for r in restore if r.vector_status != "skipped" and r.id not in untouched
        ]
        for job in reconcile:
            job.future.add_done_callback(consume)
        if reconcile:
            self.queue.submit(reconcile)
