"""The one place that decides, for a record and the version it replaces, the vector job it
needs and the vector state it carries (SPEC §4)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import BackendRejected, ValidationError
from .._policy import wants_vector
from .._retry import backoff_ms
from .._types import TOMBSTONE_VERSION, Record, VectorState


@dataclass(eq=False)
class Job:
    """One vector write: ``upsert`` a record (re-embedding it or not) or ``delete`` an id.

    A delete carrying a tombstone record records its outcome in the outbox too. Fields:
    ``kind`` (``"upsert"`` or ``"delete"``), ``id`` (the entry id), ``record`` (the record
    an upsert writes, or a delete's tombstone), ``embed`` (False: metadata only),
    ``future`` (resolved with None or the write's error; made on the running loop),
    ``early`` (the record's vector being embedded already: see ``VectorWriteQueue.prefetch``)."""

    kind: Literal["upsert", "delete"]
    id: str
    record: Record | None = None
    embed: bool = True
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    early: Early | None = None

    @property
    def upserted(self) -> Record:
        """The record an upsert writes (upserts always carry one; ``AssertionError`` for a
        job without one)."""
        assert self.record is not None, f"{self.kind} job for {self.id} has no record"
        return self.record


@dataclass(frozen=True)
class Early:
    """A vector embedded ahead of its job: row ``index`` of what ``task`` returns, made by
    ``embedder`` (unused once the store's embedder has changed)."""

    task: asyncio.Future[Any]
    index: int
    embedder: object


class Planner:
    """Vector jobs and states for one store. ``model`` and ``images`` follow the store's
    embedder (a model switch updates them)."""

    def __init__(
        self, *, enabled: bool, images: bool, model: str, lease_ms: int, max_retries: int, retry_delay_ms: int
    ) -> None:
        """``enabled``: vector writes are on (``dual_write_enabled``). ``images``: image
        entries are embedded as images. ``model``: the embedding model recorded with written
        vectors. ``lease_ms``: how long fresh work is leased to this process.
        ``max_retries`` and ``retry_delay_ms``: retries of a failed write and their base
        backoff. Raises nothing."""
        self.enabled = enabled
        self.images = images
        self.model = model
        self.lease_ms = lease_ms
        self.max_retries = max_retries
        self.retry_delay_ms = retry_delay_ms

    def wants_vector(self, record: Record) -> bool:
        """Whether ``record`` gets a vector at all (see ``_policy.wants_vector``). Returns a
        bool; raises nothing."""
        return wants_vector(record, enabled=self.enabled, images=self.images)

    def start(self, record: Record, now: int) -> None:
        """Set the state of a freshly written ``record`` (in place), at ``now`` (epoch ms):
        ``skipped``, or ``pending`` and leased to this process until its own attempt is
        over, so no worker claims it twice. Returns None; raises nothing."""
        record.vector_updated_at = now
        if not self.wants_vector(record):
            record.vector_status = "skipped"
            return
        record.vector_status = "pending"
        record.vector_next_at = now + self.lease_ms

    def same_vector(self, record: Record, prev: Record | None) -> bool:
        """Whether the vector of ``prev`` (the version ``record`` replaces, or None) already
        represents ``record``'s text with this model. Returns a bool; raises nothing."""
        return (
            prev is not None
            and prev.vector_status == "synced"
            and prev.content_hash == record.content_hash
            and prev.embedding_model == self.model
        )

    def needs_embedding(self, record: Record, prev: Record | None) -> bool:
        """Whether ``record`` must be embedded: it wants a vector and ``prev`` (the version
        it replaces, or None) has no usable one (``same_vector``). Returns a bool."""
        return record.vector_status != "skipped" and not self.same_vector(record, prev)

    def job(self, record: Record, prev: Record | None) -> Job | None:
        """The vector write a freshly stored ``record`` needs, given ``prev``, the version it
        replaced (or None): None, a delete (it no longer wants a vector), a metadata-only or
        a full upsert. Returns the ``Job`` or None; raises nothing."""
        if record.vector_status == "skipped":
            return self.remove(record.id) if prev is not None and prev.vector_status != "skipped" else None
        return Job("upsert", record.id, record, embed=not self.same_vector(record, prev))

    def rewrite(self, record: Record, *, embed: bool = True) -> Job:
        """A job writing ``record``'s vector again from scratch (repair, undo, a writer
        race), with its attempts reset; ``embed`` False writes the metadata only. Returns
        the ``Job``."""
        return Job("upsert", record.id, record.copy(vector_attempts=0), embed=embed)

    def remove(self, id_: str, tombstone: Record | None = None) -> Job:
        """A job deleting the vector of ``id_``; with its ``tombstone`` record, the outcome is
        recorded in the outbox. Returns the ``Job``."""
        return Job("delete", id_, tombstone)

    def resume(self, record: Record) -> Job:
        """The job of ``record``, an item claimed from the outbox (a record, or a tombstone:
        a delete). Returns the ``Job``."""
        if record.version == TOMBSTONE_VERSION:
            return self.remove(record.id, record)
        return Job("upsert", record.id, record, embed=True)

    def mark_synced(self, record: Record, now: int) -> None:
        """Mark ``record`` (in place) as synced at ``now``: its vector landed together with
        the record (strict transaction, copier). Returns None."""
        record.vector_status, record.vector_attempts, record.vector_next_at = "synced", 1, None
        record.vector_synced_at, record.embedding_model, record.vector_error = now, self.model, None

    def mark_owed(self, record: Record, now: int, error: str | None = None) -> None:
        """Mark ``record`` (in place) as stored without its vector: pending and due at
        ``now`` for the outbox worker, with the last ``error`` message if any. Returns None."""
        record.vector_status, record.vector_next_at, record.vector_error = "pending", now, error

    def outcome(
        self, job: Job, error: BaseException | None, now: int, describe: Callable[[BaseException], str]
    ) -> VectorState:
        """The state a finished attempt of ``job`` records at ``now``: synced when ``error``
        is None, else failed with its retry time (none for bad data or a refusal: waiting
        does not help, SPEC §10) and the message ``describe`` makes of the error; tombstones
        are deleted or retried until they succeed. Returns a ``VectorState``."""
        record = job.record
        assert record is not None
        attempts = record.vector_attempts + 1
        if record.version == TOMBSTONE_VERSION:
            if error is None:
                return VectorState(job.id, TOMBSTONE_VERSION, "deleted", attempts, None, None, now)
            return VectorState(
                job.id,
                TOMBSTONE_VERSION,
                "deleting",
                attempts,
                describe(error),
                now + backoff_ms(attempts, self.retry_delay_ms),
                now,
            )
        if error is None:
            return VectorState(job.id, record.version, "synced", attempts, None, None, now, now, self.model)
        retry = attempts <= self.max_retries and not isinstance(error, (ValidationError, BackendRejected))
        return VectorState(
            job.id,
            record.version,
            "failed",
            attempts,
            describe(error),
            now + backoff_ms(attempts, self.retry_delay_ms) if retry else None,
            now,
        )

    def lease(self, record: Record, until: int, now: int) -> VectorState:
        """``record``'s current state with its lease moved to ``until`` (renewed, or released
        with ``now``; ``now`` also stands in for a missing update time). Returns a
        ``VectorState``."""
        return VectorState(
            record.id,
            record.version,
            record.vector_status,
            record.vector_attempts,
            record.vector_error,
            until,
            record.vector_updated_at or now,
        )
