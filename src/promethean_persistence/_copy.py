"""Writing copies of records into a store, as migrations, imports and adapters need: vectors
given by the caller are used as they are, the rest are embedded by the store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._entries import content_hash, now_ms
from ._errors import BackendUnavailable, EmbeddingMismatchError, MigrationError, SemanticStoreError
from ._retry import backoff_ms
from ._types import Record
from .outbox.vectors import describe_error, embed_records, upsert_records

if TYPE_CHECKING:
    from ._store import SemanticStore

__all__ = ["Copier"]

log = logging.getLogger("promethean_persistence.copy")

_NO_EXPIRY = "expires_at: the target's primary driver keeps no expiry (Capabilities.expiry)"


class Copier:
    """Writes copies of records into ``target``: vectors first (given ones as they are, the
    rest embedded by the target's embedder), then the records, marked synced where their
    vector landed and pending otherwise, so the target's own outbox finishes the rest.

    A batch that fails is retried (connection errors, with backoff), then split to find the
    entries that fail on their own; those are returned, never dropped. A target that stays
    unreachable raises ``MigrationError``: what was written stays, and a rerun resumes."""

    def __init__(self, target: SemanticStore, *, max_retries: int | None = None) -> None:
        """``target``: the open store written to. ``max_retries``: retries of a batch after a
        connection error (default the store's ``vector_max_retries``). Raises nothing."""
        self.target = target
        self.max_retries = target.config.vector_max_retries if max_retries is None else max_retries
        self.retry_delay_ms = min(target.config.vector_retry_delay_ms, 1_000)
        self.counts = {"copied": 0, "vectors_copied": 0, "embedded": 0, "skipped": 0, "vectors_pending": 0}

    async def write(self, records: Sequence[Record], vectors: Mapping[str, Any]) -> dict[str, str]:
        """Store copies of ``records``; ``vectors`` holds ready vectors by id (the rest are
        embedded). Returns the error message of each entry that could not be stored, by id.
        Raises ``MigrationError`` when the target's primary store stays unreachable, and
        ``EmbeddingMismatchError`` when its embedder answers in another space."""
        target = self.target
        now = now_ms()
        refused: dict[str, str] = {}
        if not target.primary.capabilities.expiry:  # it would drop the expiry: refuse, never lose it
            refused = {r.id: _NO_EXPIRY for r in records if r.expires_at is not None}
        copies = [_copy_of(r, now) for r in records if r.id not in refused]
        wanted: list[Record] = []
        for r in copies:
            if target.wants_vector(r):
                wanted.append(r)
            else:
                r.vector_status = "skipped"
        ready = {r.id: vectors[r.id] for r in wanted if r.id in vectors}

        async def embed(part: list[Record]) -> Any:
            return await embed_records(target.embedder, part, images=target.supports_images)

        async def upsert(part: list[Record]) -> list[Record]:
            import numpy as np

            await upsert_records(target.vector, part, np.stack([ready[r.id] for r in part]), target.embedder.model)
            return part

        errors: dict[str, str] = {}
        todo = [r for r in wanted if r.id not in ready]
        if todo:
            ready.update(await self._split(todo, embed, errors))
        landed: set[str] = set()
        if ready:
            landed = set(await self._split([r for r in wanted if r.id in ready], upsert, errors))
        model = target.embedder.model
        for r in wanted:
            if r.id in landed:
                r.vector_status, r.vector_synced_at, r.embedding_model, r.vector_attempts = "synced", now, model, 1
            else:  # the target's outbox worker writes it later
                r.vector_next_at, r.vector_error = now, errors.get(r.id)
        failed = await self._put(copies)
        if failed:
            lost = [i for i in failed if i in landed]
            try:
                await target.vector.delete(lost)
            except SemanticStoreError:  # an orphan vector; repair removes it
                log.warning("could not delete the vectors of %d entries that failed to copy", len(lost))
        stored = [r for r in copies if r.id not in failed]
        c = self.counts
        c["copied"] += len(stored)
        c["skipped"] += sum(r.vector_status == "skipped" for r in stored)
        c["vectors_pending"] += sum(r.vector_status == "pending" for r in stored)
        c["vectors_copied"] += sum(r.id in landed and r.id in vectors for r in stored)
        c["embedded"] += sum(r.id in landed and r.id not in vectors for r in stored)
        return {**failed, **refused}

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        for attempt in range(1, self.max_retries + 2):
            try:
                return await call()
            except BackendUnavailable:
                if attempt > self.max_retries:
                    raise
                await asyncio.sleep(backoff_ms(attempt, self.retry_delay_ms) / 1000)

    async def _split(
        self, records: list[Record], call: Callable[[list[Record]], Any], errors: dict[str, str]
    ) -> dict[str, Any]:
        """``call(part)`` gives one result per record of ``part``: tried on the whole batch
        (connection errors retried), then record by record to find those that fail on their
        own. Returns the results by id; the errors of the rest go to ``errors``."""
        try:
            return dict(zip((r.id for r in records), await self._retrying(lambda: call(records))))
        except EmbeddingMismatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the records still go in, pending
            if len(records) == 1 or isinstance(exc, BackendUnavailable):
                errors.update((r.id, describe_error(exc)) for r in records)
                return {}
        out: dict[str, Any] = {}
        for r in records:
            out.update(await self._split([r], call, errors))
        return out

    async def _put(self, records: list[Record]) -> dict[str, str]:
        primary = self.target.primary
        try:
            await self._retrying(lambda: primary.put(records))
            return {}
        except BackendUnavailable as exc:
            raise MigrationError(
                f"The target store {self.target.name!r} is unreachable ({exc}); what was copied stays, "
                "and running the same migration again resumes from there",
                operation="migrate",
                driver=self.target.config.primary_driver,
            ) from exc
        except Exception as exc:  # noqa: BLE001 - find the entries that fail on their own
            if len(records) == 1:
                return {records[0].id: describe_error(exc)}
        failed: dict[str, str] = {}
        for r in records:
            failed.update(await self._put([r]))
        return failed


def _copy_of(record: Record, now: int) -> Record:
    """The record as a new entry of the target: same id, text, time, metadata and extra fields."""
    return Record(
        id=record.id,
        text=record.text,
        timestamp=record.timestamp,
        metadata=record.metadata,
        extra=record.extra,
        content_hash=content_hash(record.text),
        vector_updated_at=now,
        expires_at=record.expires_at,
    )
