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
    """What a driver can do beyond its Protocol's required members: every field is a bool,
    False by default, and names the optional-member Protocol the driver then implements.

    Primary drivers:
        transactions: ``TransactionalPrimary`` (``transaction()``, ``put_in``,
            ``shares_transactions_with``): strict writes commit record and vector together
            when the vector driver shares the transaction.
        dedupe: ``Dedupe``: older duplicates of an id (the original's data) can be removed.
        vector_aliases: ``VectorAliases``: the primary names the vector collection (the
            original's ``collection_aliases``).
        lexical: ``LexicalPrimary``: a full-text index of the records' text, written and
            deleted with the record, for ``mode="lexical"``/``"hybrid"`` searches.
        expiry: ``ExpiringPrimary``: it stores ``Record.expires_at``, hides expired records
            from every read and purges them.
        outbox_stats: ``OutboxStatsPrimary``: figures of the stored outbox from cheap
            (indexed) queries, heartbeats of outbox workers, and the list of collections.
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
        in_process: it computes in this process (as a ``warm`` model does): a bulk write
            does not embed while its records are written, nor a hybrid search while it
            ranks lexically, which would only share the CPU.
    """

    transactions: bool = False
    dedupe: bool = False
    vector_aliases: bool = False
    lexical: bool = False
    expiry: bool = False
    outbox_stats: bool = False
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
    """Source of truth for entries and the durable outbox of their vector writes.

    Errors, for every member that talks to the backend: ``BackendUnavailable`` when it cannot
    be reached or times out (the write queue retries these), ``BackendRejected`` when it
    refuses the request (not retried), ``ValidationError`` for input it cannot store."""

    name: ClassVar[str]
    capabilities: Capabilities

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> PrimaryDriver:
        """A driver built from ``config``'s settings for the physical ``collection``
        (``{agent_name}_{name}``), not opened yet. Returns the driver; raises
        ``ConfigurationError`` for missing or malformed settings."""

    async def open(self) -> None:
        """Connect and create what the collection needs (tables, indexes). Returns None;
        raises ``MissingDependencyError`` when the client package is not installed, else
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def aclose(self) -> None:
        """Release connections and threads. Returns None; a closed driver is not used again."""

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """Insert or replace ``records`` atomically (all or none) and return what each
        replaced, aligned with ``records`` (None where new). Sets each record's ``version``
        to the replaced one's + 1 (1 if new), removes tombstones of these ids and applies
        ``states`` (vector states of other records, as ``set_vector_state``), all in the
        same transaction. Raises ``BackendUnavailable`` or ``BackendRejected``; on any error
        nothing was written."""

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """The records of ``ids``, aligned with them; None where missing. Raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """The version of each of ``ids`` that ``get`` would return, by id (the write queue
        checks what it wrote without reading texts back). Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """Delete ``ids``; return the ones that existed. Missing ids are not an error.

        With ``tombstone_at`` (epoch ms), each deleted record leaves a tombstone (its vector
        must be deleted too) that ``claim`` hands out from that time on, in the same
        transaction. Raises ``BackendUnavailable`` or ``BackendRejected``."""

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
        """At most ``limit`` records sorted by (timestamp, id), newest first with ``order``
        ``"desc"``, oldest first with ``"asc"``. ``where``: a parsed filter on the metadata
        (None: all). ``since`` and ``until``: inclusive bounds in epoch ms.
        ``include_empty``: also records with empty text (left out by default). Returns the
        records; raises ``BackendUnavailable`` or ``BackendRejected``."""

    def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """Every record once, in ascending id order, in lists of at most ``batch_size``,
        starting after the id ``after`` (None: from the first). An async iterator; raises
        ``BackendUnavailable`` or ``BackendRejected`` while iterating."""

    async def count(self, where: Node | None = None) -> int:
        """How many records match the parsed filter ``where`` (None: all of them). Raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """At most ``limit`` items of vector work that are due, least recently touched
        first, leased for ``lease_ms`` from ``now`` (epoch ms) so no other claimer takes
        them meanwhile: pending records and new tombstones (returned as records with
        ``vector_status="deleting"``, version 0) whose lease ended by ``now``, and failed
        records and failed tombstones (``vector_attempts > 0``) whose retry time is before
        ``due_by`` (default ``now``; ``flush`` passes a later time to retry early). Returns
        the claimed records; raises ``BackendUnavailable`` or ``BackendRejected``."""

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """Apply each of ``states`` whose record still has that version; return how many
        applied. States of tombstones (version 0): ``"deleted"`` removes it, ``"deleting"``
        updates its attempts and retry time. Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def get_manifest(self) -> Manifest | None:
        """The collection manifest (embedding model, dimension, vector collection,
        checkpoints), or None before one is written. Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def set_manifest(self, manifest: Manifest) -> None:
        """Write ``manifest``, replacing the stored one. Returns None; raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def drop(self) -> None:
        """Delete this collection's records and manifest. Returns None; raises
        ``BackendUnavailable`` or ``BackendRejected``."""


@runtime_checkable
class VectorDriver(Protocol):
    """One unit vector per entry id, with the entry's metadata for filtered search.

    Errors, for every member that talks to the backend: ``BackendUnavailable`` when it cannot
    be reached or times out (the write queue retries these), ``BackendRejected`` when it
    refuses the request (not retried), ``ValidationError`` for vectors or metadata it cannot
    store (a wrong dimension, NaN, a metadata-only upsert of an id without a vector)."""

    name: ClassVar[str]
    capabilities: Capabilities
    collection: str  #: the collection (or namespace) it reads and writes
    dims: int | None  #: dimension of the stored vectors once known (None while empty)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> VectorDriver:
        """A driver built from ``config``'s settings for the physical ``collection``, not
        opened yet (a collection name or namespace the settings pin wins). Returns the
        driver; raises ``ConfigurationError`` for missing or malformed settings."""

    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> VectorDriver:
        """A driver with ``config``'s settings for ``collection`` even where the settings
        pin a collection name or namespace (a re-embedding writes a side collection).
        Returns the unopened driver; raises ``ConfigurationError`` like ``from_config``."""

    async def open(self) -> None:
        """Connect, open or create the collection and learn ``dims`` from it. Returns None;
        raises ``MissingDependencyError`` when the client package is not installed, else
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def aclose(self) -> None:
        """Release clients and threads. Returns None; a closed driver is not used again."""

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray | Sequence[Sequence[float]] | None,
        metadata: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace the vectors of ``ids``: ``vectors`` holds one row per id (unit
        length after normalisation), ``metadata`` one mapping per id, replacing the stored
        one. With ``vectors=None`` only the metadata of existing ids changes. Returns None;
        raises ``ValidationError`` for a wrong dimension, non-finite values, mismatched
        lengths or (metadata only) an id without a vector, else ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """The ``limit`` vectors most similar to ``vector`` whose metadata match the parsed
        filter ``where`` (None: all), best first: fewer only when fewer match. Returns the
        hits (id and cosine score); raises ``ValidationError`` for a query of another
        dimension, else ``BackendUnavailable`` or ``BackendRejected``."""

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that have a vector. Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """For each of ``ids`` that has a vector: the ``FINGERPRINT_KEY`` value stored with
        its metadata, ``"text:" + content_hash(text)`` for a vector without one whose
        backend keeps the embedded text (Chroma), else None; ids without a vector are left
        out. Batched: no per-id round trips. Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of ``ids`` that exist, by id (migrations copy them as
        they are). Raises ``BackendUnavailable`` or ``BackendRejected``."""

    async def delete(self, ids: Sequence[str]) -> None:
        """Delete the vectors of ``ids``; missing ids are not an error. Returns None; raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    async def count(self) -> int:
        """How many vectors the collection holds. Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """Every stored id once, in lists of at most ``batch_size`` (in no particular
        order). An async iterator; raises ``BackendUnavailable`` or ``BackendRejected``
        while iterating."""

    async def drop(self) -> None:
        """Delete every vector of the collection (it stays usable, empty). Returns None;
        raises ``BackendUnavailable`` or ``BackendRejected``."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of ``dimensions`` floats.

    Errors: ``EmbeddingError`` when the model fails on the input, ``BackendUnavailable`` when
    an HTTP model cannot be reached or times out, ``BackendRejected`` when it refuses."""

    name: ClassVar[str]
    capabilities: Capabilities
    model: str  #: model id recorded in the collection manifest
    #: None until known for HTTP models of unknown size: then ``probe()`` asks the server and
    #: ``expect_dimensions(n)`` fixes it from the manifest (see ``ProbingEmbedder``)
    dimensions: int | None
    supports_images: bool  #: it can embed images (the store's ``supports_images`` may turn it off)
    normalize: bool  #: its vectors are unit length (recorded in the manifest)

    @classmethod
    def from_config(cls, config: StoreConfig) -> Embedder:
        """An embedder built from ``config``'s settings (model name, server, key). Returns
        it (a model is loaded on first use or by ``warm``); raises ``ConfigurationError``
        for missing or malformed settings, ``MissingDependencyError`` when its package is
        absent."""

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``: a float32 array of shape (len(texts), dimensions), rows
        L2-normalised. Raises ``EmbeddingError``, ``BackendUnavailable`` or
        ``BackendRejected`` (``EmbeddingMismatchError`` when an HTTP model answers with
        another dimension than the collection's)."""

    async def aclose(self) -> None:
        """Release the model or the HTTP client. Returns None."""


@runtime_checkable
class Reranker(Protocol):
    """Rescores a search's candidates against the query (a cross-encoder reads query and text
    together): applied to the top ``fetch_k`` of the search's ranking, whose order it then sets.

    Errors: ``EmbeddingError`` when the model fails (or cannot be loaded)."""

    name: ClassVar[str]
    model: str  #: the model it runs, by name or path

    @classmethod
    def from_config(cls, config: StoreConfig) -> Reranker:
        """A reranker built from ``config``'s settings; its model loads on first use. Returns
        it; raises ``ConfigurationError`` for bad settings, ``MissingDependencyError`` when
        its package is absent."""

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """A relevance score of each of ``texts`` for ``query``, aligned with ``texts``
        (higher is more relevant). Raises ``EmbeddingError`` when the model fails."""

    async def aclose(self) -> None:
        """Release the model. Returns None."""


# -- optional members, one small Protocol per capability ----------------------------------


class TransactionalPrimary(Protocol):
    """``Capabilities.transactions`` of a primary driver."""

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """A transaction: an async context manager that commits on exit and rolls back on an
        error; the object it yields is passed to ``put_in``/``upsert_in``. Raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    def shares_transactions_with(self, vector: VectorDriver) -> bool:
        """Whether ``vector``'s ``upsert_in``/``delete_in`` can join this primary's
        transactions (the same database). Returns a bool; raises nothing."""

    async def put_in(
        self, conn: Any, records: Sequence[Record], *, states: Sequence[VectorState] = ()
    ) -> list[Record | None]:
        """``put`` of ``records`` and ``states`` inside the transaction ``conn``; returns
        and raises as ``put`` (the caller's transaction rolls back on an error)."""


class TransactionalVector(Protocol):
    """``Capabilities.transactions`` of a vector driver."""

    async def upsert_in(
        self, conn: Any, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """``upsert`` of ``ids``, ``vectors`` and ``metadata`` inside a primary's
        transaction ``conn``; returns and raises as ``VectorDriver.upsert``."""

    async def delete_in(self, conn: Any, ids: Sequence[str]) -> None:
        """``delete`` of ``ids`` inside a primary's transaction ``conn``; returns and raises
        as ``VectorDriver.delete``."""


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
        """``VectorDriver.upsert`` of ``ids``, ``vectors`` and ``metadata`` with each
        entry's text in ``documents`` and time in ``timestamps`` (epoch ms), aligned with
        ``ids``. Returns and raises as ``VectorDriver.upsert``."""


class CollectionSwitch(Protocol):
    """``Capabilities.collection_switch``: follow an alias to another collection name."""

    def use_collection(self, name: str) -> None:
        """Read and write the collection ``name`` from now on (called before ``open``).
        Returns None; raises nothing."""


class FieldNames(Protocol):
    """``Capabilities.field_names``: the driver stores the entry's own text and time keys."""

    def use_keys(self, text_key: str, time_key: str) -> None:
        """Use the store's ``text_key`` and ``time_key`` for the entry's text and time
        (called before ``open``). Returns None; raises nothing."""


class VectorAliases(Protocol):
    """``Capabilities.vector_aliases`` of a primary driver."""

    async def vector_collection(self) -> str | None:
        """The vector collection this collection's alias names, or None. Raises
        ``BackendUnavailable`` or ``BackendRejected``."""


class Dedupe(Protocol):
    """``Capabilities.dedupe`` of a primary driver."""

    async def dedupe(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete older duplicates of ids, keeping the newest (with ``dry_run``: only count
        them). Returns how many were (or would be) removed per id; raises
        ``BackendUnavailable`` or ``BackendRejected``."""


class LexicalPrimary(Protocol):
    """``Capabilities.lexical`` of a primary driver: a full-text index of the records' text,
    kept with the record (written, replaced and deleted in the same transaction, so it never
    drifts from it), and opened with ``lexical_backfill`` for records written before it."""

    async def lexical_query(self, text: str, limit: int, where: Node | None = None) -> list[VectorHit]:
        """The at most ``limit`` records whose text best matches the words of ``text``, best
        first (ties by id), among those matching the parsed filter ``where`` (None: all).
        A record matches when it holds any of the query's words (a disjunctive, BM25-style
        ranking where the engine has one; ``_lexical.query_terms`` are the words); records
        with empty text never match, nor does a query without a word to look up (``[]``).
        Each hit's ``score`` is the engine's lexical score, higher is better. Raises
        ``BackendUnavailable`` or ``BackendRejected``."""

    def lexical_backfill(self, batch_size: int) -> AsyncIterator[tuple[int, int]]:
        """Index the records written before the index existed (or outside this driver), at
        most ``batch_size`` per transaction, yielding ``(done, total)`` records after each
        batch; resumable (an interrupted backfill goes on where it stopped) and safe beside
        concurrent writers. Yields nothing when there is nothing to do. The store runs it once
        on open. An async iterator; raises ``BackendUnavailable`` or ``BackendRejected``."""


class ExpiringPrimary(Protocol):
    """``Capabilities.expiry`` of a primary driver: it stores each record's ``expires_at``
    (epoch ms, None: never) with ``put``, and every read (``get``, ``most_recent``, ``count``,
    ``iterate``, ``lexical_query``) leaves out the records whose ``expires_at`` is at or before
    the time of the call, as if deleted; ``claim`` still hands out their vector work."""

    async def purge_expired(self, now: int, limit: int) -> list[str]:
        """Delete at most ``limit`` records whose ``expires_at`` is at or before ``now`` (epoch
        ms), each leaving a tombstone at ``now`` (as ``delete(ids, tombstone_at=now)``: the
        outbox then deletes its vector), in one transaction. Returns their ids; raises
        ``BackendUnavailable`` or ``BackendRejected``."""


class OutboxStatsPrimary(Protocol):
    """``Capabilities.outbox_stats`` of a primary driver: what its stored outbox holds, read
    with cheap queries (the outbox index: the cost grows with the backlog, not the store), and
    the heartbeats of the outbox workers (``semantic-store worker``) that serve a collection."""

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """This collection's outbox at ``now`` (epoch ms), a dict of: ``pending`` (records
        waiting for their vector) and ``leased`` (of those, leased to a writer or worker:
        being worked on), ``failed`` (records whose last vector write failed) and
        ``retrying`` (of those, with a retry time), ``tombstones`` (vector deletes
        outstanding), ``oldest_pending_at`` (epoch ms of the oldest pending record's write,
        None when none is pending), ``workers`` (the live workers of this collection, each
        ``{id, host, pid, started_at, last_beat_at}``). Raises ``BackendUnavailable`` or
        ``BackendRejected``."""

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """Record that ``worker`` (keys ``id``: str, ``host``: str, ``pid``: int,
        ``started_at``: epoch ms) serves this collection and is alive at ``now`` (epoch ms);
        from ``dead_at`` on without a newer beat it counts as dead. Workers dead for a day
        are forgotten. Returns None; raises ``BackendUnavailable`` or ``BackendRejected``."""

    async def forget_worker(self, worker_id: str) -> None:
        """Remove the heartbeat of the worker ``worker_id`` for this collection (it stopped).
        Returns None; raises ``BackendUnavailable`` or ``BackendRejected``."""

    @classmethod
    async def list_collections(cls, config: StoreConfig) -> list[str] | None:
        """The physical names (``{agent_name}_{name}``) of every collection that the primary
        configured by ``config`` holds, sorted; None where the driver cannot tell (each
        in-process store is its own database). Opens and closes its own connection, creates
        nothing. Raises ``BackendUnavailable`` or ``BackendRejected``."""


class ImageEmbedder(Protocol):
    """``Capabilities.images`` of an embedder."""

    async def embed_images(self, sources: Sequence[str]) -> np.ndarray:
        """Vectors for the image paths or URLs in ``sources``, in the text vectors' space:
        an array shaped like ``embed``'s. Raises ``EmbeddingError`` for an image it cannot
        read or embed, else ``EmbeddingError``, ``BackendUnavailable`` or
        ``BackendRejected``."""


class QueryEmbedder(Protocol):
    """``Capabilities.query_embedding`` of an embedder."""

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for the search queries ``texts`` (documents go through ``embed``): an
        array shaped like ``embed``'s. Raises ``EmbeddingError``, ``BackendUnavailable`` or
        ``BackendRejected``."""


class Warmable(Protocol):
    """``Capabilities.warm`` of an embedder."""

    async def warm(self) -> None:
        """Load the model (seconds, once; later calls return at once). Returns None; raises
        ``EmbeddingError`` when the model cannot be loaded."""


class ProbingEmbedder(Protocol):
    """An embedder whose ``dimensions`` may be None (an HTTP model of unknown size)."""

    async def probe(self) -> int:
        """Ask the model for its dimension and fix ``dimensions``. Returns the dimension;
        raises ``BackendUnavailable`` when the server cannot be reached, ``EmbeddingError``
        when it fails."""

    def expect_dimensions(self, dimensions: int) -> None:
        """Take ``dimensions``, the dimension the collection's manifest records, as this
        embedder's; later answers must match it (else ``EmbeddingMismatchError``). Returns
        None."""
