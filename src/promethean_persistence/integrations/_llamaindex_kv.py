"""LlamaIndex's key-value store (under its docstore and index store) on a SemanticStore: each
value is an entry without text (so no vector), its collection and key as metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, BaseKVStore

from .. import _filters
from .._store import SemanticStore
from ._bridge import Runner

_VALUE = "llamaindex_kv"  #: stored field with the value


def _id(key: str, collection: str) -> str:
    return f"{len(collection)}:{collection}/{key}"  # unambiguous whatever the two hold


class SemanticStoreKVStore(BaseKVStore):
    """``SemanticStoreKVStore(name="llamaindex_kv", config=None)``: values as entries of the
    store ``name``; pass it to ``KVDocumentStore``/``KVIndexStore`` so an index's documents and
    structure live in the same database as its nodes."""

    def __init__(self, name: str = "llamaindex_kv", config: Mapping[str, Any] | None = None) -> None:
        """``name`` is the store's collection, ``config`` its settings (as for
        ``SemanticStore.create``). The store opens on a private event loop."""
        self._runner, self.store = Runner.opening(lambda: SemanticStore.create(name, config=config))

    def close(self) -> None:
        """Close the store and its event loop."""
        self._runner.close_store(self.store)

    def put(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """Store ``val`` (a JSON dict) under ``key`` in ``collection``, replacing what was there."""
        self.put_all([(key, val)], collection)

    async def aput(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """Async ``put`` of ``val`` under ``key`` in ``collection``."""
        await self.aput_all([(key, val)], collection)

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Store every ``(key, value)`` of ``kv_pairs`` in ``collection``, ``batch_size`` per write."""
        self._runner.call(lambda: self._put(kv_pairs, collection, batch_size))

    async def aput_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Async ``put_all`` of ``kv_pairs`` into ``collection``, ``batch_size`` per write."""
        await self._runner.acall(lambda: self._put(kv_pairs, collection, batch_size))

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """The value of ``key`` in ``collection``, or None."""
        return self._runner.call(lambda: self._get(key, collection))

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """Async ``get`` of ``key`` in ``collection``."""
        return await self._runner.acall(lambda: self._get(key, collection))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Every key of ``collection`` with its value."""
        return self._runner.call(lambda: self._all(collection))

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Async ``get_all`` of ``collection``."""
        return await self._runner.acall(lambda: self._all(collection))

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Delete ``key`` from ``collection``; returns whether it was there."""
        return self._runner.call(lambda: self.store.delete(_id(key, collection)))

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Async ``delete`` of ``key`` from ``collection``."""
        return await self._runner.acall(lambda: self.store.delete(_id(key, collection)))

    async def _put(self, pairs: list[tuple[str, dict[str, Any]]], collection: str, batch_size: int) -> None:
        entries = [
            {"id": _id(k, collection), "text": "", "metadata": {"collection": collection, "key": k}, _VALUE: v}
            for k, v in pairs
        ]
        step = max(batch_size, 100)  # LlamaIndex asks for 1 by default: a write per value is needlessly slow
        for start in range(0, len(entries), step):
            await self.store.insert_many(entries[start : start + step])

    async def _get(self, key: str, collection: str) -> dict[str, Any] | None:
        await self.store.settle()
        [record] = await self.store.primary.get([_id(key, collection)])
        return None if record is None else record.extra.get(_VALUE)

    async def _all(self, collection: str) -> dict[str, dict[str, Any]]:
        total = await self.store.count()
        if not total:
            return {}
        node = _filters.parse({"collection": collection})
        records = await self.store.primary.most_recent(total, node, order="asc", include_empty=True)
        return {r.metadata["key"]: r.extra.get(_VALUE, {}) for r in records}
