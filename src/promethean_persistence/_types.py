"""Plain data passed between the store and its drivers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

VectorStatus = Literal["pending", "synced", "failed", "skipped", "deleting", "deleted"]
# "deleting"/"deleted" only exist on tombstones in the outbox; entries show the other four.
TOMBSTONE_VERSION = 0
#: metadata key under which every vector write stores its fingerprint (see ``_entries.fingerprint``)
FINGERPRINT_KEY = "_semantic_store_fp"
SCHEMA_VERSION = 1


@dataclass(slots=True)
class Record:
    """One entry as the primary store keeps it: the document and its vector state (the outbox).

    The document: ``id``, ``text``, ``timestamp`` (epoch ms), ``metadata`` (the caller's
    metadata only) and ``extra`` (other top-level input fields). Bookkeeping: ``version``
    (bumped by every write), ``content_hash`` (of the text the vector must represent),
    ``legacy`` (written by the original package, without our outbox fields). The vector
    state: ``vector_status``, ``vector_attempts``, ``vector_error``, ``vector_next_at`` (when
    the worker may try again), ``vector_updated_at``, ``vector_synced_at`` (last successful
    vector write) and ``embedding_model`` (the model of the stored vector). ``expires_at``:
    when the entry expires (epoch ms; None: never).
    """

    id: str
    text: str
    timestamp: int  #: epoch milliseconds
    metadata: dict[str, Any] = field(default_factory=dict)  #: caller metadata only
    extra: dict[str, Any] = field(default_factory=dict)  #: other top-level input fields
    version: int = 1  #: bumped by every write; state updates apply only to their version
    vector_status: VectorStatus = "pending"
    vector_attempts: int = 0
    vector_error: str | None = None
    vector_next_at: int | None = None  #: when the worker may try again (epoch ms)
    vector_updated_at: int | None = None  #: last change of the vector state (epoch ms)
    vector_synced_at: int | None = None  #: last successful vector write (epoch ms)
    content_hash: str = ""  #: hash of the text that the vector must represent
    embedding_model: str | None = None  #: model that produced the stored vector
    legacy: bool = False  #: written by the original package, without our outbox fields
    expires_at: int | None = None  #: when the entry expires (epoch ms): invisible from then on, then purged

    @property
    def is_empty(self) -> bool:
        """Whether the text is empty or blank (such entries get no vector)."""
        return not self.text.strip()

    @classmethod
    def tombstone(cls, id_: str, next_at: int | None, now: int, attempts: int = 0, error: str | None = None) -> Record:
        """The outbox entry of a deleted record whose vector must still be deleted.

        ``id_`` is the deleted record's id; ``next_at`` when the worker may delete the vector
        (epoch ms, None: now); ``now`` the time of the deletion; ``attempts`` and ``error`` the
        vector deletion's tries so far and last error.
        """
        return cls(
            id=id_,
            text="",
            timestamp=0,
            version=TOMBSTONE_VERSION,
            vector_status="deleting",
            vector_attempts=attempts,
            vector_error=error,
            vector_next_at=next_at,
            vector_updated_at=now,
        )

    def copy(self, **changes: Any) -> Record:
        """A copy with the fields given as keyword arguments in ``changes`` replaced."""
        return replace(self, **changes)

    def to_entry(self) -> dict[str, Any]:
        """The dict every read returns (SPEC §1)."""
        status = self.vector_status
        meta = dict(self.metadata)
        meta["vectorStatus"] = status
        meta["vectorWriteSuccess"] = True if status == "synced" else False if status == "failed" else None
        meta["vectorWriteError"] = self.vector_error
        meta["vectorWriteTimestamp"] = self.vector_synced_at if status == "synced" else None
        entry = {"id": self.id, "text": self.text, "timestamp": self.timestamp, "metadata": meta}
        if self.expires_at is not None:
            entry["expires_at"] = self.expires_at
        return entry


@dataclass(slots=True, frozen=True)
class VectorState:
    """A change of one record's vector state, applied only if the record is still ``version``.

    ``id`` names the record; ``status``, ``attempts``, ``error``, ``next_at``, ``updated_at``,
    ``synced_at`` and ``embedding_model`` are the new values of its ``vector_*`` fields and
    ``embedding_model`` (see ``Record``).
    """

    id: str
    version: int
    status: VectorStatus
    attempts: int
    error: str | None
    next_at: int | None
    updated_at: int
    synced_at: int | None = None
    embedding_model: str | None = None


@dataclass(slots=True, frozen=True)
class VectorHit:
    """One nearest-neighbour result ``id``: higher ``score`` is more similar (cosine similarity)."""

    id: str
    score: float


@dataclass(slots=True, frozen=True)
class Manifest:
    """What a collection was built with; reopening with another embedder is refused.

    ``embedding_driver``, ``embedding_model`` and ``dimensions`` describe the embedder;
    ``metric`` the distance; ``schema_version`` the storage layout; ``normalized`` whether
    the vectors are unit length; ``vector_collection`` where the vectors live, when not the
    store's own name; ``reembed`` and ``migration`` the checkpoints of a re-embedding run or
    a migration in progress.
    """

    embedding_driver: str
    embedding_model: str
    dimensions: int
    metric: str = "cosine"
    schema_version: int = SCHEMA_VERSION
    normalized: bool = True  #: the embedder's vectors are unit length
    vector_collection: str | None = None  #: where the vectors live, when not the store's own name
    reembed: dict[str, Any] | None = None  #: checkpoint of a re-embedding run in progress
    migration: dict[str, Any] | None = None  #: checkpoint of a migration into this collection

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a plain dict of its fields."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest stored as ``data``; unknown keys are ignored."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def copy(self, **changes: Any) -> Manifest:
        """A copy with the fields given as keyword arguments in ``changes`` replaced."""
        return replace(self, **changes)
