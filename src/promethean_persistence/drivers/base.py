"""The three driver contracts. Small, async and batch-shaped; behaviour is enforced by the
conformance suites in ``promethean_persistence.testing``, not by isinstance checks.

Every driver class is built by the registry as ``Driver.from_config(config, collection)``
and then ``await driver.open()``; ``collection`` is the physical collection name
(``{agent_name}_{name}``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from .._filters import Node
from .._types import Manifest, Record, VectorHit, VectorState

if TYPE_CHECKING:
    import numpy as np

    from .._config import StoreConfig

Order = Literal["asc", "desc"]


@runtime_checkable
class PrimaryDriver(Protocol):
    """Source of truth for entries and the durable outbox of their vector writes."""

    name: ClassVar[str]

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> PrimaryDriver: ...
    async def open(self) -> None: ...
    async def aclose(self) -> None: ...

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """Insert or replace ``records`` atomically (all or none) and return what each
        replaced. Sets each record's ``version`` to the replaced one's + 1 (1 if new),
        removes tombstones of these ids and applies ``states`` (as ``set_vector_state``),
        all in the same transaction."""

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """Records aligned with ``ids``; None where missing."""

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """Delete ``ids``; return the ones that existed. Missing ids are not an error.

        With ``tombstone_at``, each deleted record leaves a tombstone (its vector must be
        deleted too) that ``claim`` hands out from that time on, in the same transaction."""

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
        """Records sorted by (timestamp, id); ``since``/``until`` are inclusive epoch ms."""

    def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """Every record in ascending id order, in batches, starting after id ``after``."""

    async def count(self, where: Node | None = None) -> int: ...

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """Vector work that is due, least recently touched first, leased until
        ``now + lease_ms`` so no other claimer takes it meanwhile: pending records and new
        tombstones (returned as records with ``vector_status="deleting"``, version 0)
        whose lease ended by ``now``, and failed records and failed tombstones
        (``vector_attempts > 0``) whose retry time is before ``due_by`` (default ``now``;
        ``flush`` passes a later time to retry early)."""

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """Apply each state whose record still has that version; return how many applied.
        States of tombstones (version 0): ``"deleted"`` removes it, ``"deleting"`` updates
        its attempts and retry time."""

    async def get_manifest(self) -> Manifest | None: ...
    async def set_manifest(self, manifest: Manifest) -> None: ...
    async def drop(self) -> None:
        """Delete this collection's records and manifest."""


@runtime_checkable
class VectorDriver(Protocol):
    """One unit vector per entry id, with the entry's metadata for filtered search."""

    name: ClassVar[str]
    #: its work runs in this process (no network): slow under load, never hanging, so the
    #: write queue never times it out; remote backends are bounded by ``vector_timeout_ms``
    in_process: bool

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> VectorDriver: ...
    async def open(self) -> None: ...
    async def aclose(self) -> None: ...

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray | Sequence[Sequence[float]] | None,
        metadata: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace; with ``vectors=None`` only the metadata of existing ids changes."""

    async def query(
        self, vector: Sequence[float], limit: int, where: Node | None = None
    ) -> list[VectorHit]:
        """The ``limit`` most similar vectors whose metadata match ``where``, best first."""

    async def existing(self, ids: Sequence[str]) -> set[str]: ...
    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """For each id that has a vector: the ``FINGERPRINT_KEY`` value stored with its
        metadata, ``"text:" + content_hash(text)`` for a vector without one whose backend
        keeps the embedded text (Chroma), else None. Batched: no per-id round trips."""
    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ids that exist (migrations copy them as they are)."""
    async def delete(self, ids: Sequence[str]) -> None: ...
    async def count(self) -> int: ...
    def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]: ...
    async def drop(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of ``dimensions`` floats."""

    name: ClassVar[str]
    model: str  #: model id recorded in the collection manifest
    dimensions: int
    supports_images: bool

    @classmethod
    def from_config(cls, config: StoreConfig) -> Embedder: ...
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions), rows L2-normalised."""

    async def aclose(self) -> None: ...

    # Optional: ``async def warm()`` loads a model once; the store awaits it before timing
    # a vector write, so a slow first load never counts as a hanging backend.
    # Optional: ``async def embed_images(paths_or_urls)`` for image entries.
