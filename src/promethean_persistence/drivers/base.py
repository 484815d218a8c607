"""The three driver contracts. Small, async and batch-shaped; behaviour is enforced by the
conformance suites in ``promethean_persistence.testing``, not by isinstance checks.

Every driver class is built by the registry as ``Driver.from_config(config, collection)``
and then ``await driver.open()``; ``collection`` is the physical collection name
(``{agent_name}_{name}``).

Beyond its Protocol's required members, a driver declares what else it can do in its
``capabilities`` (a frozen ``Capabilities``); each capability names a small Protocol below
whose members the driver then implements. The core asks the capability, never ``hasattr``,
and the conformance suites check that every declared capability holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from .._filters import Node
from .._types import Manifest, Record, VectorHit, VectorState

if TYPE_CHECKING:
    import numpy as np

    from .._config import StoreConfig

Order = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can do beyond its Protocol's required members.

    Primary drivers:
        transactions: ``TransactionalPrimary`` (``transaction()``, ``put_in``,
            ``shares_transactions_with``): strict writes commit record and vector together
            when the vector driver shares the transaction.
        dedupe: ``Dedupe``: older duplicates of an id (the original's data) can be removed.
        vector_aliases: ``VectorAliases``: the primary names the vector collection (the
            original's ``collection_aliases``).
    Vector drivers:
        transactions: ``TransactionalVector`` (``upsert_in``, ``delete_in`` on a primary's
            transaction).
        in_process: its work runs in this process (no network): slow under load, never
            hanging, so the write queue never times it out.
        stores_documents: ``DocumentVector``: it keeps the embedded text (Chroma), passed as
            ``documents``/``timestamps`` to ``upsert``.
        collection_switch: ``CollectionSwitch``: it can follow the primary's alias to a
            differently named collection (``use_collection``).
    Primary and vector drivers:
        field_names: ``FieldNames``: it stores the entry's own text and time keys (the
            original's layout) and is told them with ``use_keys``.
    Embedders:
        images: ``ImageEmbedder`` (``embed_images``) for ``metadata.type == "image"`` entries.
        query_embedding: ``QueryEmbedder`` (``embed_queries``): queries embed differently.
        warm: ``Warmable`` (``warm()``): a slow first load the store awaits outside any timeout.
    """

    transactions: bool = False
    dedupe: bool = False
    vector_aliases: bool = False
    in_process: bool = False
    stores_documents: bool = False
    collection_switch: bool = False
    field_names: bool = False
    images: bool = False
    query_embedding: bool = False
    warm: bool = False


NO_CAPABILITIES = Capabilities()


@runtime_checkable
class PrimaryDriver(Protocol):
    """Source of truth for entries and the durable outbox of their vector writes."""

    name: ClassVar[str]
    capabilities: Capabilities

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
    capabilities: Capabilities
    collection: str  #: the collection (or namespace) it reads and writes
    dims: int | None  #: dimension of the stored vectors once known (None while empty)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> VectorDriver: ...
    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> VectorDriver:
        """A driver with ``config``'s settings for ``collection`` even where the settings pin
        a collection name or namespace (a re-embedding writes a side collection)."""

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray | Sequence[Sequence[float]] | None,
        metadata: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace; with ``vectors=None`` only the metadata of existing ids changes."""

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
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
    capabilities: Capabilities
    model: str  #: model id recorded in the collection manifest
    #: None until known for HTTP models of unknown size: then ``probe()`` asks the server and
    #: ``expect_dimensions(n)`` fixes it from the manifest (see ``ProbingEmbedder``)
    dimensions: int | None
    supports_images: bool  #: it can embed images (the store's ``supports_images`` may turn it off)
    normalize: bool  #: its vectors are unit length (recorded in the manifest)

    @classmethod
    def from_config(cls, config: StoreConfig) -> Embedder: ...
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions), rows L2-normalised."""

    async def aclose(self) -> None: ...


# -- optional members, one small Protocol per capability ----------------------------------


class TransactionalPrimary(Protocol):
    """``Capabilities.transactions`` of a primary driver."""

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """A transaction; the object it yields is passed to ``put_in``/``upsert_in``."""

    def shares_transactions_with(self, vector: VectorDriver) -> bool:
        """Whether ``vector``'s ``upsert_in``/``delete_in`` can join this primary's transactions."""

    async def put_in(
        self, conn: Any, records: Sequence[Record], *, states: Sequence[VectorState] = ()
    ) -> list[Record | None]:
        """``put`` inside the transaction ``conn``."""


class TransactionalVector(Protocol):
    """``Capabilities.transactions`` of a vector driver."""

    async def upsert_in(
        self, conn: Any, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """``upsert`` inside a primary's transaction ``conn``."""

    async def delete_in(self, conn: Any, ids: Sequence[str]) -> None:
        """``delete`` inside a primary's transaction ``conn``."""


class DocumentVector(Protocol):
    """``Capabilities.stores_documents``: the vector store keeps the embedded text."""

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any]],
        *,
        documents: Sequence[str],
        timestamps: Sequence[int],
    ) -> None:
        """``upsert`` with each entry's text and time (epoch ms)."""


class CollectionSwitch(Protocol):
    """``Capabilities.collection_switch``: follow an alias to another collection name."""

    def use_collection(self, name: str) -> None:
        """Read and write the collection ``name`` from now on (before ``open``)."""


class FieldNames(Protocol):
    """``Capabilities.field_names``: the driver stores the entry's own text and time keys."""

    def use_keys(self, text_key: str, time_key: str) -> None:
        """The store's ``text_key`` and ``time_key`` (before ``open``)."""


class VectorAliases(Protocol):
    """``Capabilities.vector_aliases`` of a primary driver."""

    async def vector_collection(self) -> str | None:
        """The vector collection this collection's alias names, if any."""


class Dedupe(Protocol):
    """``Capabilities.dedupe`` of a primary driver."""

    async def dedupe(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete (``dry_run``: only count) older duplicates of ids; how many per id."""


class ImageEmbedder(Protocol):
    """``Capabilities.images`` of an embedder."""

    async def embed_images(self, sources: Sequence[str]) -> np.ndarray:
        """Vectors for image paths or URLs, in the text vectors' space."""


class QueryEmbedder(Protocol):
    """``Capabilities.query_embedding`` of an embedder."""

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries (documents go through ``embed``)."""


class Warmable(Protocol):
    """``Capabilities.warm`` of an embedder."""

    async def warm(self) -> None:
        """Load the model (seconds, once)."""


class ProbingEmbedder(Protocol):
    """An embedder whose ``dimensions`` may be None (an HTTP model of unknown size)."""

    async def probe(self) -> int:
        """Ask the model for its dimension."""

    def expect_dimensions(self, dimensions: int) -> None:
        """The dimension the collection's manifest records; answers must match it."""
