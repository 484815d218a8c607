"""Qdrant's real engine embedded in the process (``qdrant-edge-py``, beta): one edge shard per
collection under ``qdrant.path`` (default ``<home>/qdrant-edge``), no server.

Same data layout and filter handling as the ``qdrant`` driver (UUIDv5 point ids, payload
``{"id", "metadata"}``, native conditions that can only admit more, the exact filter checked
on the payload). The shard's API is synchronous, so calls run on one thread per shard; a
shard directory is opened by one store at a time.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from ..._deps import require
from ..._errors import BackendRejected, BackendUnavailable, ValidationError
from ..._filters import Node
from ..._types import VectorHit
from .._names import file_name, inside, legacy_entry
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors, stored_fingerprint
from ._widen import Rows, widening_search
from .qdrant import Kit, point_id, qdrant_filter

if TYPE_CHECKING:
    from ..._config import StoreConfig

EXTRA = "qdrant-edge"
_BATCH = 256


def _kit(q: Any) -> Kit:
    return Kit(
        field=lambda key, match=None, range=None: q.FieldCondition(key=key, match=match, range=range),
        match_value=q.MatchValue,
        match_any=q.MatchAny,
        range_=q.RangeFloat,
        filter_=lambda must=None, should=None: q.Filter(must=must, should=should),
        filter_type=q.Filter,
        bools=False,
    )  # MatchValue(True) matches nothing in qdrant-edge 0.9


class QdrantEdgeVector:
    """Vector driver on an embedded Qdrant edge shard (cosine).

    Engine errors become ``BackendRejected``; a call on a closed shard raises
    ``BackendUnavailable``."""

    name: ClassVar[str] = "qdrant-edge"
    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True)

    def __init__(self, collection: str, path: str) -> None:
        """``collection``: the shard's name; its directory under ``path`` is the name itself
        when it is file-safe, else its encoding (``_names.file_name``; a directory an earlier
        version made from the raw name is opened there). Raises nothing."""
        self.collection = collection
        self.root = Path(path)
        self.path = self.root / file_name(collection)
        self.dims: int | None = None
        self._shard: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._q: Any = None

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> QdrantEdgeVector:
        """See ``VectorDriver.from_config`` (and ``for_collection``, the same here): under
        ``config.qdrant.path``, default ``<home>/qdrant-edge``."""
        return cls(collection, config.qdrant.path or str(Path(config.home) / "qdrant-edge"))

    for_collection = from_config

    def __repr__(self) -> str:
        return f"QdrantEdgeVector({str(self.path)!r})"

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise BackendUnavailable(f"Qdrant edge shard {self.path} is closed", driver=self.name)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @asynccontextmanager
    async def _mapped(self, operation: str) -> AsyncIterator[None]:
        try:
            yield
        except (ValidationError, BackendRejected, BackendUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - engine errors become ours
            raise BackendRejected(
                f"Qdrant edge shard {self.path}: {operation} failed: {exc}", driver=self.name, operation=operation
            ) from exc

    async def open(self) -> None:
        """See ``VectorDriver.open``: loads an existing shard (a new one is created by the
        first vectors); ``MissingDependencyError`` without the ``qdrant-edge`` extra."""
        self._q = require("qdrant_edge", extra=EXTRA, driver=self.name)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")
        if self.path.name != self.collection and legacy_entry(self.root, self.collection):
            self.path = self.root / self.collection  # made by an earlier version: keeps opening
        inside(self.root, self.path)
        async with self._mapped("open"):
            if (self.path / "edge_config.json").exists() or any(self.path.glob("*")):
                self._shard = await self._run(self._q.EdgeShard.load, str(self.path))
                self.dims = await self._run(self._dims)

    def _dims(self) -> int | None:
        first = self._shard.scroll(self._q.ScrollRequest(limit=1, with_vector=True))[0]
        return len(_vector(first[0])) if first else None

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose``: closes the shard and its thread."""
        shard, self._shard = self._shard, None
        if shard is not None:
            await self._run(shard.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _ensure(self, dims: int) -> None:
        if self._shard is None:
            q = self._q
            config = q.EdgeConfig(vectors={"": q.EdgeVectorParams(size=dims, distance=q.Distance.Cosine)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._shard = await self._run(q.EdgeShard.create, str(self.path), config)
        self.dims = self.dims or dims

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``: the first vectors create the shard with their
        dimension."""
        ids = list(ids)
        if not ids:
            return
        q = self._q
        payloads: list[dict[str, Any]] = [{"id": i, "metadata": dict(m)} for i, m in zip(ids, metadata)]
        async with self._mapped("upsert"):
            if vectors is None:
                missing_vectors(ids, await self.existing(ids), self.name)
                for p in payloads:
                    await self._run(self._shard.update, q.UpdateOperation.overwrite_payload([point_id(p["id"])], p))
                return
            matrix = matrix_for(ids, vectors, self.dims, self.name)
            await self._ensure(int(matrix.shape[1]))
            for start in range(0, len(ids), _BATCH):
                points = [
                    q.Point(point_id(p["id"]), v.tolist(), p)
                    for p, v in zip(payloads[start : start + _BATCH], matrix[start : start + _BATCH])
                ]
                await self._run(self._shard.update, q.UpdateOperation.upsert_points(points))

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: as the ``qdrant`` driver, a broader native filter and
        the exact one checked on the payload."""
        if self._shard is None or self.dims is None:
            return []
        q = self._q
        query = as_matrix(vector, self.dims, self.name)[0].tolist()
        native = qdrant_filter(where, _kit(q)) if where is not None else None

        async def search(k: int) -> Rows:
            request = q.QueryRequest(limit=k, query=q.Query.Nearest(query), with_payload=True, filter=native)
            points = await self._run(self._shard.query, request)
            return [(p.payload["id"], float(p.score), p.payload.get("metadata")) for p in points]

        async with self._mapped("query"):
            return await widening_search(search, limit, where, self.count)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self._shard is None:
            return set()
        found: set[str] = set()
        async with self._mapped("existing"):
            for start in range(0, len(ids), 1000):
                records = await self._run(
                    self._shard.retrieve, [point_id(i) for i in ids[start : start + 1000]], True, False
                )
                found.update(r.payload["id"] for r in records)
        return found

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self._shard is None:
            return {}
        found: dict[str, str | None] = {}
        async with self._mapped("fingerprints"):
            for start in range(0, len(ids), 1000):
                records = await self._run(
                    self._shard.retrieve, [point_id(i) for i in ids[start : start + 1000]], True, False
                )
                found.update((r.payload["id"], stored_fingerprint(r.payload.get("metadata"))) for r in records)
        return found

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self._shard is None:
            return {}
        found: dict[str, np.ndarray] = {}
        async with self._mapped("fetch"):
            for start in range(0, len(ids), 1000):
                records = await self._run(
                    self._shard.retrieve, [point_id(i) for i in ids[start : start + 1000]], True, True
                )
                found.update((r.payload["id"], np.asarray(_vector(r), dtype=np.float32)) for r in records)
        return found

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self._shard is None:
            return
        async with self._mapped("delete"):
            await self._run(self._shard.update, self._q.UpdateOperation.delete_points([point_id(i) for i in ids]))

    async def count(self) -> int:
        """See ``VectorDriver.count`` (an exact count)."""
        if self._shard is None:
            return 0
        async with self._mapped("count"):
            return int(await self._run(self._shard.count, self._q.CountRequest(exact=True)))

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (scrolled)."""
        if self._shard is None:
            return
        offset = None
        while True:
            async with self._mapped("iter_ids"):
                records, offset = await self._run(
                    self._shard.scroll, self._q.ScrollRequest(offset=offset, limit=batch_size, with_payload=True)
                )
            if records:
                yield [r.payload["id"] for r in records]
            if offset is None:
                return

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the shard's directory is removed (the next vectors
        create it again)."""
        async with self._mapped("drop"):
            if self._shard is not None:
                shard, self._shard = self._shard, None
                await self._run(shard.close)
            await self._run(shutil.rmtree, self.path, True)
            self.dims = None


def _vector(record: Any) -> list[float]:
    vector = record.vector
    return cast(list[float], vector.get("", next(iter(vector.values()))) if isinstance(vector, Mapping) else vector)
