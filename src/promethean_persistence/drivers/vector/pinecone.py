"""Pinecone vector store (the official SDK's ``AsyncIndex``): an existing index named by
``index_name`` or ``host``, one namespace per store (``pinecone.namespace`` overrides).

Pinecone metadata holds strings, numbers, booleans and lists of strings only, at most 40 KB a
record. Our metadata goes there flattened: nested objects become dotted keys (``{"a": {"b":
1}}`` -> ``"a.b": 1``, so dotted filters work natively), other lists become JSON text, nulls
are left out; the exact metadata rides along as JSON under ``_semantic_store`` for the exact
filter check. A record over the limit is refused with a clear error (not retried). Rate
limits (429) and server errors are ``BackendUnavailable``: the write queue backs off and
retries them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import require
from ..._errors import ConfigurationError, ValidationError, redact
from ..._filters import Cmp, Node, Or
from ..._types import VectorHit
from ..._urls import basic_auth_header, without_userinfo
from .._names import encoded
from .._remote import mapped
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors, stored_fingerprint
from ._widen import Rows, widening_search

if TYPE_CHECKING:
    from ..._config import StoreConfig

EXTRA = "pinecone"
EXACT = "_semantic_store"
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K = 10_000


_NAMESPACE_RULE = "Pinecone namespaces are 1-512 printable ASCII characters, not '__default__'"


def namespace_ok(name: str) -> bool:
    """Whether Pinecone can hold the namespace ``name`` (``_NAMESPACE_RULE``). Raises nothing."""
    return 0 < len(name) <= 512 and name.isascii() and name.isprintable() and name != "__default__"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_pinecone_metadata(metadata: Mapping[str, Any], id_: str) -> dict[str, Any]:
    """The Pinecone metadata of the entry ``id_``'s ``metadata``: flattened (nested objects
    as dotted keys, other lists as JSON text, nulls left out), with the exact metadata as
    JSON under ``_semantic_store``. Returns a new dict; raises ``ValidationError`` when it
    is over Pinecone's 40 KB per record."""
    out: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                put(f"{prefix}.{k}", v)
        elif value is None or (isinstance(value, Mapping) and not value):
            return
        elif isinstance(value, (str, bool, int, float)):
            out[prefix] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[prefix] = list(value)
        else:
            out[prefix] = _dumps(value)

    for key, value in metadata.items():
        put(str(key), value)
    out[EXACT] = _dumps(dict(metadata))
    size = len(_dumps(out).encode())
    if size > MAX_METADATA_BYTES:
        raise ValidationError(
            f"metadata of {id_!r} is {size} bytes as Pinecone metadata; Pinecone accepts at most "
            f"{MAX_METADATA_BYTES} bytes per record",
            field="metadata",
            driver="pinecone",
            document_id=id_,
        )
    return out


class PineconeVector:
    """Vector driver on a Pinecone index (cosine metric expected).

    Client errors become ``BackendUnavailable`` (connection, timeout, 429, 5xx: the write
    queue retries them) or ``BackendRejected``; messages never carry the API key."""

    name: ClassVar[str] = "pinecone"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        collection: str,
        *,
        api_key: str | None,
        host: str | None = None,
        index_name: str | None = None,
        namespace: str | None = None,
        batch_size: int = 100,
        timeout: float = 30.0,
    ) -> None:
        """``collection``: the store's collection (the namespace unless ``namespace`` is
        given; a name Pinecone cannot hold gets a stable encoding, ``_names.encoded``).
        ``api_key``: the Pinecone API key. ``host`` or ``index_name``: the existing index.
        ``batch_size``: vectors per upsert request. ``timeout``: seconds per request. Raises
        ``ConfigurationError`` without a key, without both a host and an index name, or for
        a configured ``namespace`` Pinecone cannot hold."""
        if not api_key:
            raise ConfigurationError("The pinecone driver needs pinecone.api_key (PINECONE_API_KEY)", driver=self.name)
        if not host and not index_name:
            raise ConfigurationError(
                "The pinecone driver needs pinecone.index_name (PINECONE_INDEX_NAME) or pinecone.host (PINECONE_HOST)",
                driver=self.name,
            )
        if namespace and not namespace_ok(namespace):
            raise ConfigurationError(f"pinecone.namespace: {_NAMESPACE_RULE} (got {namespace!r})", driver=self.name)
        self.collection = collection
        #: a configured namespace as it is; the collection's own name where Pinecone can hold it
        self.namespace = namespace or (collection if namespace_ok(collection) else encoded(collection))
        self._api_key = api_key
        #: never holds a password: the SDK logs its host; a user:password in it goes as basic auth
        self.host, self.index_name = (without_userinfo(host) if host else host), index_name
        self._basic = basic_auth_header(host) if host else {}
        self.batch_size = batch_size
        self.timeout = timeout
        self.shown = redact(host or f"index {index_name}", api_key)
        self.dims: int | None = None
        self._index: Any = None

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> PineconeVector:
        """See ``VectorDriver.from_config``: ``config.pinecone``."""
        p = config.pinecone
        return cls(
            collection,
            api_key=p.api_key.get_secret_value() if p.api_key else None,
            host=p.host,
            index_name=p.index_name,
            namespace=p.namespace,
            batch_size=p.batch_size,
        )

    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> PineconeVector:
        """See ``VectorDriver.for_collection``: this index's settings for another namespace
        (a configured one is replaced); the index keeps its one dimension."""
        return cls.from_config(
            config.model_copy(update={"pinecone": config.pinecone.model_copy(update={"namespace": None})}), collection
        )

    def __repr__(self) -> str:
        return f"PineconeVector({self.shown!r}, namespace={self.namespace!r})"

    def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]:
        return mapped(f"Pinecone at {self.shown}", driver=self.name, operation=operation, secret=self._api_key)

    async def open(self) -> None:
        """See ``VectorDriver.open``: connects to the index and reads its dimension;
        ``MissingDependencyError`` without the ``pinecone`` extra."""
        pinecone = require("pinecone", extra=EXTRA, driver=self.name)
        async with self._mapped("open"):
            if self.host:
                self._index = pinecone.AsyncIndex(
                    host=self.host, api_key=self._api_key, timeout=self.timeout, additional_headers=self._basic or None
                )
            else:
                client = pinecone.PineconeAsyncio(api_key=self._api_key)
                try:
                    self._index = await client.index(name=self.index_name)
                finally:
                    await client.close()
            try:
                stats = await self._index.describe_index_stats()
            except BaseException:
                await self.aclose()
                raise
            self.dims = int(stats.dimension) if stats.dimension else None

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose``."""
        index, self._index = self._index, None
        if index is not None:
            await index.close()

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``: a metadata-only upsert writes the stored vectors
        again (Pinecone's update would merge the metadata); ``ValidationError`` for metadata
        over 40 KB."""
        ids = list(ids)
        if not ids:
            return
        payloads = [to_pinecone_metadata(m, i) for i, m in zip(ids, metadata)]
        async with self._mapped("upsert"):
            if vectors is None:  # Pinecone's update merges metadata: write the record again
                current = await self._fetch(ids)
                missing_vectors(ids, set(current), self.name)
                rows = [(i, list(current[i].values), p) for i, p in zip(ids, payloads)]
            else:
                matrix = matrix_for(ids, vectors, self.dims, self.name)
                rows = [(i, v.tolist(), p) for i, v, p in zip(ids, matrix, payloads)]
            for start in range(0, len(rows), self.batch_size):
                batch = [{"id": i, "values": v, "metadata": p} for i, v, p in rows[start : start + self.batch_size]]
                await self._index.upsert(vectors=batch, namespace=self.namespace)
            if vectors is not None:
                self.dims = self.dims or len(rows[0][1])

    async def _fetch(self, ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(ids), 100):  # ids go in the query string
            result = await self._index.fetch(ids=ids[start : start + 100], namespace=self.namespace)
            found.update(result.vectors)
        return found

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: a broader native filter, the exact one checked on the
        metadata, widening the search (at most 10,000 hits a request)."""
        if self.dims is None:
            return []
        query = as_matrix(vector, self.dims, self.name)[0].tolist()
        native = pinecone_filter(where) if where is not None else None

        async def search(k: int) -> Rows:
            result = await self._index.query(
                vector=query,
                top_k=min(k, MAX_TOP_K),
                namespace=self.namespace,
                filter=native,
                include_metadata=where is not None,
            )
            rows: Rows = []
            for m in result.matches:
                meta = None
                if where is not None:
                    exact = (m.metadata or {}).get(EXACT)
                    meta = json.loads(exact) if isinstance(exact, str) else dict(m.metadata or {})
                rows.append((m.id, float(m.score), meta))
            return rows

        async with self._mapped("query"):
            return await widening_search(search, limit, where, self.count)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return set()
        async with self._mapped("existing"):
            return set(await self._fetch(ids))

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        async with self._mapped("fingerprints"):
            found = await self._fetch(ids)
        return {i: stored_fingerprint(v.metadata) for i, v in found.items()}

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        async with self._mapped("fetch"):
            found = await self._fetch(ids)
        return {i: np.asarray(v.values, dtype=np.float32) for i, v in found.items()}

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        async with self._mapped("delete"):
            for start in range(0, len(ids), 1000):
                await self._index.delete(ids=ids[start : start + 1000], namespace=self.namespace)

    async def count(self) -> int:
        """See ``VectorDriver.count``: the namespace's vector count from the index
        statistics."""
        async with self._mapped("count"):
            stats = await self._index.describe_index_stats()
        ns = stats.namespaces.get(self.namespace)
        return int(ns.vector_count) if ns is not None else 0

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (pages of at most 100, Pinecone's limit)."""
        token = None
        while True:
            async with self._mapped("iter_ids"):
                page = await self._index.list_paginated(
                    namespace=self.namespace, limit=min(batch_size, 100), pagination_token=token
                )
            ids = [v.id for v in page.vectors]
            if ids:
                yield ids
            token = page.pagination.next if page.pagination else None
            if not token:
                return

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: deletes every vector of the namespace."""
        async with self._mapped("drop"):
            if await self.count():
                await self._index.delete(delete_all=True, namespace=self.namespace)


# -- the filter language as a Pinecone filter (never narrower than the exact filter) ----------


def _native(node: Cmp) -> dict[str, Any] | None:
    key, op, value = ".".join(node.path), node.op, node.value
    if key == EXACT:
        return None
    # Lists match by their elements in Pinecone and never in our semantics; nulls are not
    # stored. So only conditions that can only admit more: $eq, $in and numeric ranges.
    if op == "eq" and isinstance(value, (str, bool, int, float)):
        return {key: {"$eq": value}}
    if op == "in" and value and all(isinstance(v, str) for v in value):
        return {key: {"$in": list(value)}}
    if op == "in" and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return {key: {"$in": list(value)}}
    if op in ("gt", "gte", "lt", "lte") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return {key: {f"${op}": value}}
    return None


def pinecone_filter(node: Node) -> dict[str, Any] | None:
    """Pinecone's share of the parsed filter ``node``: a filter never narrower than it, or
    None when Pinecone can check nothing of it. Raises nothing."""
    if isinstance(node, Cmp):
        return _native(node)
    parts = [pinecone_filter(n) for n in node.items]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else {"$or": parts}
    kept = [p for p in parts if p is not None]
    return None if not kept else kept[0] if len(kept) == 1 else {"$and": kept}
