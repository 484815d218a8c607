"""mem0: a vector-store provider, ``promethean``, so mem0's ``Memory`` keeps its memories in a
SemanticStore (any configuration). Extra: ``mem0``.

mem0 has no plugin API for vector stores: importing this module registers the provider in
mem0's provider tables (``register``). A memory is an entry: its id, its text (the payload's
``data``), and the rest of the payload as metadata, so mem0's filters (``user_id``,
``agent_id``, ``run_id``, metadata) run in the backends. The vectors are mem0's own (its
embedder), kept as given: the store's embedding model must make vectors of the same size
(``embedding_model_dims``), and should be the same model. ``keyword_search`` is the primary
store's lexical index, so mem0's hybrid scoring works.

>>> import promethean_persistence.integrations.mem0  # registers "promethean"
>>> Memory.from_config({"vector_store": {"provider": "promethean", "config": {
...     "collection_name": "memories", "embedding_model_dims": 384,
...     "store": {"primaryDriver": "sqlite", "embeddingDriver": "local"}}}, ...})
"""

from __future__ import annotations

import builtins
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _filters
from .._copy import Copier
from .._deps import require
from .._entries import build_record
from .._errors import ValidationError
from .._store import SemanticStore
from .._types import Record
from ._bridge import Runner, WriteClock
from ._logic import both, either, negate

require("mem0", extra="mem0", driver="mem0")

from mem0.vector_stores.base import VectorStoreBase  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

__all__ = ["PROVIDER", "Mem0StoreConfig", "OutputData", "SemanticStoreMem0", "register", "translate_filters"]

PROVIDER = "promethean"
_TEXT = "data"  #: the payload field with the memory's text
_COMPARE = {
    "eq": "$eq",
    "ne": "$ne",
    "gt": "$gt",
    "gte": "$gte",
    "lt": "$lt",
    "lte": "$lte",
    "in": "$in",
    "nin": "$nin",
}


class Mem0StoreConfig(BaseModel):
    """The provider's settings in mem0's ``vector_store.config``: ``collection_name`` (the
    store's name), ``embedding_model_dims`` (the vectors' size, checked on every write) and
    ``store`` (the SemanticStore settings, as for ``SemanticStore.create``; None: defaults
    and environment)."""

    model_config = ConfigDict(extra="forbid")

    collection_name: str = "mem0"
    embedding_model_dims: int | None = None
    store: dict[str, Any] | None = None


class OutputData(BaseModel):
    """One result, as mem0's providers return them: ``id``, ``score`` (higher is more
    similar; None for plain reads) and ``payload``."""

    id: str
    score: float | None = None
    payload: dict[str, Any] | None = None


def register(name: str = PROVIDER) -> None:
    """Make ``name`` a mem0 vector-store provider backed by ``SemanticStoreMem0`` (done on
    import for ``promethean``). Returns None."""
    from mem0.utils.factory import VectorStoreFactory
    from mem0.vector_stores.configs import VectorStoreConfig

    module = types.ModuleType(f"mem0.configs.vector_stores.{name}")
    module.Mem0StoreConfig = Mem0StoreConfig  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module  # mem0 imports a provider's config class by module name
    VectorStoreConfig.__private_attributes__["_provider_configs"].default[name] = "Mem0StoreConfig"
    VectorStoreFactory.provider_to_class[name] = f"{__name__}.SemanticStoreMem0"


def translate_filters(filters: Mapping[str, Any] | None) -> dict[str, Any] | bool:
    """mem0's ``filters`` (``{"user_id": "u"}``, ``{"k": {"gte": 2}}``, a list for any of its
    values, ``"*"`` for any value, ``"$or"``/``"$not"`` lists) in this package's filter
    language; True matches every memory. Raises ValueError for an operator it has no exact
    form of (``contains``, ``icontains``)."""
    parts: list[Any] = []
    for key, value in (filters or {}).items():
        if key in ("$or", "$not"):
            group = either([both([translate_filters(f)]) for f in value])
            parts.append(group if key == "$or" else negate(group))
        elif value == "*":
            parts.append({key: {"$exists": True}})
        elif isinstance(value, list):
            parts.append({key: {"$in": value}})
        elif isinstance(value, dict):
            for op, operand in value.items():
                if op not in _COMPARE:
                    raise ValueError(f"filter operator {op!r} on {key!r} is not supported: use {', '.join(_COMPARE)}")
                parts.append({key: {_COMPARE[op]: operand}})
        else:
            parts.append({key: {"$eq": value}})
    return both(parts)


class SemanticStoreMem0(VectorStoreBase):  # type: ignore[misc]  # mem0 has no type hints
    """mem0's ``VectorStoreBase`` over a SemanticStore, opened on a private event loop."""

    def __init__(
        self,
        collection_name: str = "mem0",
        embedding_model_dims: int | None = None,
        store: dict[str, Any] | None = None,
    ) -> None:
        """``collection_name``: the store's name; ``embedding_model_dims``: the size of mem0's
        vectors (checked on write); ``store``: the SemanticStore settings (None: defaults)."""
        self.collection_name, self.dims = collection_name, embedding_model_dims
        self._clock = WriteClock()
        self._runner, self.store = Runner.opening(lambda: SemanticStore.create(collection_name, config=store))

    def close(self) -> None:
        """Close the store and its event loop."""
        self._runner.close_store(self.store)

    # -- mem0's provider API --------------------------------------------------------------------

    def create_col(self, name: str | None = None, vector_size: int | None = None, distance: Any = None) -> None:
        """Nothing to do: the store's collection exists once it is open (``name``,
        ``vector_size`` and ``distance`` are mem0's and ignored; cosine is the metric)."""

    def insert(
        self,
        vectors: Sequence[Sequence[float]],
        payloads: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Store memories: ``vectors`` with their ``payloads`` (mem0's ``data`` is the text)
        under ``ids`` (required). A memory of an existing id replaces it."""
        if ids is None:
            raise ValueError("insert needs the memories' ids")
        payloads = payloads or [{} for _ in ids]
        items = [(i, p, v) for i, p, v in zip(ids, payloads, vectors)]
        self._runner.call(lambda: self._write(items))

    def search(
        self, query: str, vectors: Sequence[float], top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> builtins.list[OutputData]:
        """The ``top_k`` memories nearest to the query vector ``vectors`` (``query`` is its
        text, unused) among those matching ``filters``; scores are cosines clipped to [0, 1]."""
        return self._runner.call(lambda: self._search(vectors, top_k, filters))

    def keyword_search(
        self, query: str, top_k: int = 5, filters: dict[str, Any] | None = None
    ) -> builtins.list[OutputData]:
        """The ``top_k`` memories best matching the words of ``query`` (the primary store's
        lexical index, BM25-style scores) among those matching ``filters``."""
        return self._runner.call(lambda: self._keywords(query, top_k, filters))

    def delete(self, vector_id: str) -> None:
        """Delete the memory ``vector_id`` (a missing one is not an error)."""
        self._runner.call(lambda: self.store.delete(vector_id))

    def update(
        self, vector_id: str, vector: Sequence[float] | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        """Replace the memory ``vector_id``'s ``vector`` and/or ``payload`` (None: kept)."""
        self._runner.call(lambda: self._update(vector_id, vector, payload))

    def get(self, vector_id: str) -> OutputData | None:
        """The memory ``vector_id`` (no score), or None."""
        return self._runner.call(lambda: self._get(vector_id))

    def list_cols(self) -> builtins.list[str]:
        """This provider's collection: ``[collection_name]``."""
        return [self.collection_name]

    def delete_col(self) -> None:
        """Delete every memory of the collection."""
        self._runner.call(self.store.drop)

    def col_info(self) -> dict[str, Any]:
        """``{"name": ..., "count": ...}`` of the collection."""
        return {"name": self.collection_name, "count": self._runner.call(self.store.count)}

    def list(
        self, filters: dict[str, Any] | None = None, top_k: int | None = 100
    ) -> builtins.list[builtins.list[OutputData]]:
        """The first ``top_k`` memories (None: all) matching ``filters``, in write order, in
        mem0's shape (one list inside a list)."""
        return [self._runner.call(lambda: self._list(filters, top_k))]

    def reset(self) -> None:
        """Delete every memory; the collection stays usable."""
        self._runner.call(self.store.drop)

    # -- on the store's loop ----------------------------------------------------------------------

    def _record(self, id_: str, payload: Mapping[str, Any], timestamp: int) -> Record:
        text = payload.get(_TEXT)
        entry: dict[str, Any] = {
            "id": id_,
            "text": text if isinstance(text, str) else "",
            "metadata": _metadata(payload),
        }
        entry[self.store.time_key] = timestamp
        try:
            return build_record(
                entry,
                text_key="text",
                time_key=self.store.time_key,
                max_text_bytes=self.store.config.max_text_bytes,
                ttl_ms=self.store.config.ttl_ms,
            )
        except ValidationError as exc:
            raise ValueError(f"memory {id_!r}: {exc}") from exc

    def _vector(self, id_: str, vector: Sequence[float]) -> np.ndarray:
        size = self.dims or self.store.embedder.dimensions
        if size is not None and len(vector) != size:
            raise ValueError(f"memory {id_!r} has a {len(vector)}-dimensional vector; this store takes {size}")
        return np.asarray(vector, dtype=np.float32)

    async def _write(
        self,
        items: Sequence[tuple[str, Mapping[str, Any], Sequence[float] | None]],
        times: Mapping[str, int] | None = None,
    ) -> None:
        # a memory written again keeps its time (``times``: those already read, by id)
        if times is None:
            found = await self.store.get_many([i for i, _, _ in items])
            times = {e["id"]: e["timestamp"] for e in found if e is not None}
        records, vectors = [], {}
        for id_, payload, vector in items:
            old = times.get(id_)
            records.append(self._record(id_, payload, old if old is not None else self._clock.tick()))
            if vector is not None:
                vectors[id_] = self._vector(id_, vector)
        failed = await Copier(self.store).write(records, vectors)
        if failed:
            raise ValueError(f"{len(failed)} memories could not be written: {dict(list(failed.items())[:5])}")

    async def _update(self, id_: str, vector: Sequence[float] | None, payload: dict[str, Any] | None) -> None:
        [record] = await self.store.primary.get([id_])
        if record is None:
            raise ValueError(f"memory {id_!r} does not exist")
        if vector is None and payload is not None:
            # same vector: the store's write path rewrites metadata only (it embeds again only
            # if the text changed)
            entry: dict[str, Any] = {"id": id_, "text": payload.get(_TEXT) or "", "metadata": _metadata(payload)}
            entry[self.store.time_key] = record.timestamp
            await self.store.insert_many([entry])
            return
        current = payload if payload is not None else {**record.metadata, _TEXT: record.text}
        await self.store.settle()  # what the read it spares did first: buffered writes land
        await self._write([(id_, current, vector)], {id_: record.timestamp})

    async def _get(self, id_: str) -> OutputData | None:
        [record] = await self.store.primary.get([id_])
        return None if record is None else _output(record, None)

    async def _search(
        self, vector: Sequence[float], top_k: int, filters: dict[str, Any] | None
    ) -> builtins.list[OutputData]:
        where = translate_filters(filters)
        if where is False:
            return []
        hits = await self.store.search_by_vector(vector, top_k, None if where is True else where)
        return await self._outputs(hits, lambda s: max(0.0, s))

    async def _keywords(self, query: str, top_k: int, filters: dict[str, Any] | None) -> builtins.list[OutputData]:
        where = translate_filters(filters)
        if where is False or not self.store.primary.capabilities.lexical:
            return []
        hits = await self.store.get_most_relevant(query, top_k, None if where is True else where, mode="lexical")
        return await self._outputs(hits, float)

    async def _outputs(self, hits: builtins.list[dict[str, Any]], score: Any) -> builtins.list[OutputData]:
        records = await self.store.primary.get([h["id"] for h in hits])
        return [_output(r, score(h["score"])) for r, h in zip(records, hits) if r is not None]

    async def _list(self, filters: dict[str, Any] | None, top_k: int | None) -> builtins.list[OutputData]:
        where = translate_filters(filters)
        limit = top_k or await self.store.count()
        if where is False or not limit:
            return []
        node = None if where is True else _filters.parse(where)
        await self.store.settle()
        records = await self.store.primary.most_recent(limit, node, order="asc", include_empty=True)
        return [_output(r, None) for r in records]


def _metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != _TEXT}


def _output(record: Record, score: float | None) -> OutputData:
    return OutputData(id=record.id, score=score, payload={**record.metadata, _TEXT: record.text})


register()
