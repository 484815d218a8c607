"""In-process vector store: exact cosine search with numpy. Nothing survives the process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import ValidationError
from ..._filters import Node
from ..._types import VectorHit
from ..base import Capabilities
from ._exact import ExactIndex, as_matrix, stored_fingerprint

if TYPE_CHECKING:
    from ..._config import StoreConfig


class MemoryVector:
    """Vector driver keeping unit vectors in a numpy matrix (exact search, filters).

    Every member is ``VectorDriver``'s; none talks to a backend, so only ``ValidationError``
    is raised (bad vectors, a metadata-only upsert of an id without a vector)."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True)

    def __init__(self, collection: str = "memory") -> None:
        """``collection``: its name (nothing is shared between instances)."""
        self.collection = collection
        self._index = ExactIndex(self.name)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> MemoryVector:
        """See ``VectorDriver.from_config`` (and ``for_collection``, the same here): a new,
        empty store named ``collection``; ``config`` has no settings for it."""
        return cls(collection)

    for_collection = from_config

    @property
    def dims(self) -> int | None:
        """The dimension of the stored vectors, None while empty."""
        return self._index.dims

    async def open(self) -> None:
        """See ``VectorDriver.open``: nothing to open."""

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose``: nothing to close (the vectors stay until dropped)."""

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``."""
        metadata = [dict(m) for m in metadata]
        if vectors is None:
            missing = self._index.set_metadata(ids, metadata)
            if missing:
                raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name)
            return
        self._index.upsert(list(ids), as_matrix(vectors, self._index.dims, self.name), metadata)

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: exact search, the filter checked on every vector."""
        return self._index.search(vector, limit, where)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        return {i for i in ids if i in self._index}

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        return {i: stored_fingerprint(m) for i, m in self._index.metadata(ids).items()}

    async def fetch(self, ids: Sequence[str]) -> dict[str, Any]:
        """See ``VectorDriver.fetch`` (copies of the stored vectors)."""
        return self._index.vectors(ids)

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        self._index.delete(ids)

    async def count(self) -> int:
        """See ``VectorDriver.count``."""
        return len(self._index)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (the ids as they were when iteration began)."""
        ids = self._index.ids()
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]

    async def drop(self) -> None:
        """See ``VectorDriver.drop`` (the dimension is forgotten too)."""
        self._index = ExactIndex(self.name)
