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
    """Vector driver keeping unit vectors in a numpy matrix (exact search, filters)."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True)

    def __init__(self, collection: str = "memory") -> None:
        self.collection = collection
        self._index = ExactIndex(self.name)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> MemoryVector:
        return cls(collection)

    for_collection = from_config

    @property
    def dims(self) -> int | None:
        return self._index.dims

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        metadata = [dict(m) for m in metadata]
        if vectors is None:
            missing = self._index.set_metadata(ids, metadata)
            if missing:
                raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=self.name)
            return
        self._index.upsert(list(ids), as_matrix(vectors, self._index.dims, self.name), metadata)

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        return self._index.search(vector, limit, where)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._index}

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        return {i: stored_fingerprint(m) for i, m in self._index.metadata(ids).items()}

    async def fetch(self, ids: Sequence[str]) -> dict[str, Any]:
        return self._index.vectors(ids)

    async def delete(self, ids: Sequence[str]) -> None:
        self._index.delete(ids)

    async def count(self) -> int:
        return len(self._index)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        ids = self._index.ids()
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]

    async def drop(self) -> None:
        self._index = ExactIndex(self.name)
