"""ChromaDB vector store: embedded (``path``) or a server (``url``, async HTTP client).

Data-compatible with the original package (reference §2.3): the record's document is the
entry's text, its metadata is the entry's metadata plus ``<time_key>: epoch ms`` flattened as
the original's ``toChromaMetadata`` did (nested values as JSON text). We always pass the
embeddings ourselves, never Chroma's default embedding function.

Chroma cannot express every filter of our language (nulls, ``$exists``, dotted keys into
flattened values, string ranges), so a search sends Chroma the part it can answer (never
narrower than the real filter), checks the exact filter on the exact metadata kept as JSON
under ``_semantic_store``, and widens the search until ``limit`` matches or the collection is
exhausted: a filter never silently shortens the result.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

import numpy as np

from ..._deps import require
from ..._entries import TEXT_FINGERPRINT, content_hash
from ..._errors import BackendUnavailable, redact
from ..._filters import Cmp, Node, Or, evaluate
from ..._types import VectorHit
from .._remote import mapped
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors, stored_fingerprint
from ._widen import Rows, widening_search

if TYPE_CHECKING:
    from ..._config import StoreConfig

EXTRA = "chroma"
EXACT = "_semantic_store"  #: the metadata as JSON, for exact filtering
_MANAGED = ("vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp")
# Chroma's async client keeps one HTTP client per event loop and server settings, shared by
# every collection; the last of our drivers using it on a loop closes it.
_HTTP_USERS: dict[tuple[int, int], int] = {}
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_chroma_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The original's ``toChromaMetadata``: scalars kept, anything else as JSON text; nulls
    are left out (Chroma drops them anyway)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, (str, int, float, bool)) else _dumps(value)
    return out


def from_chroma_metadata(meta: Mapping[str, Any] | None, time_key: str | None) -> dict[str, Any]:
    """The exact metadata: ours from its JSON copy; the original's unflattened as best we can."""
    meta = dict(meta or {})
    exact = meta.get(EXACT)
    if isinstance(exact, str):
        try:
            return cast(dict[str, Any], json.loads(exact))
        except ValueError:
            pass
    for key in (*_MANAGED, time_key, EXACT):
        meta.pop(cast(str, key), None)  # a None time_key is never a key: popping it does nothing
    for key, value in meta.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                meta[key] = json.loads(value)
            except ValueError:
                pass
    return meta


def chroma_fingerprint(meta: Mapping[str, Any] | None, document: str | None) -> str | None:
    """The fingerprint a record was written with; for a record without one (the original
    package's), the hash of the text Chroma kept; else None."""
    meta = meta or {}
    exact = meta.get(EXACT)
    parsed: Any = None
    if isinstance(exact, str):  # ours: the JSON copy is rewritten whole, the flattened keys
        try:  # are merged by Chroma's update and may be stale
            parsed = json.loads(exact)
        except ValueError:
            pass
    fp = stored_fingerprint(parsed if isinstance(parsed, Mapping) else meta)
    if fp is None and isinstance(document, str):
        return TEXT_FINGERPRINT + content_hash(document)
    return fp


def chroma_name(collection: str) -> str:
    """Chroma allows 3-512 characters of ``[a-zA-Z0-9._-]``, alphanumeric at both ends; other
    names map to a readable, collision-free one."""
    if _NAME.match(collection) and ".." not in collection:
        return collection
    digest = hashlib.blake2b(collection.encode(), digest_size=4).hexdigest()
    head = re.sub(r"[^a-zA-Z0-9._-]", "_", collection).strip("._-")[:400]
    return f"{head}-{digest}" if head else f"c-{digest}"


class ChromaVector:
    """Vector driver on ChromaDB (cosine space for collections it creates)."""

    name: ClassVar[str] = "chromadb"

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        path: str | None = None,
        pinned: bool = False,
        time_key: str | None = None,
        timeout: float = 30.0,
        exact_threshold: int = 1000,
    ) -> None:
        self.collection = collection
        self.timeout = timeout
        self.exact_threshold = exact_threshold  #: filters matching this many or fewer: exact search
        self.url, self.path = url, path
        self.capabilities = Capabilities(  # embedded (PersistentClient) runs in this process
            in_process=url is None, stores_documents=True, collection_switch=True, field_names=True
        )
        self.shown = redact(url) if url else f"path {path}"
        self._pinned = pinned  #: the configured collection name beats the alias lookup
        self.time_key = time_key
        self.dims: int | None = None
        self._client: Any = None
        self._col: Any = None
        self._loop_key: tuple[int, int] | None = None
        self._space = "cosine"
        self._max_batch = 1000

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> ChromaVector:
        c = config.chromadb
        url = c.url if c.url or c.path else "http://localhost:8000"
        return cls(
            c.collection or collection,
            url=url,
            path=c.path if not c.url else None,
            pinned=bool(c.collection),
            timeout=c.timeout,
            exact_threshold=c.exact_threshold,
        )

    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> ChromaVector:
        """These settings for another collection (a configured name is replaced)."""
        return cls.from_config(
            config.model_copy(update={"chromadb": config.chromadb.model_copy(update={"collection": None})}), collection
        )

    def use_keys(self, text_key: str, time_key: str) -> None:
        self.time_key = time_key

    def use_collection(self, name: str) -> None:
        """Follow the original's ``collection_aliases`` target (before ``open``)."""
        if not self._pinned:
            self.collection = name

    def __repr__(self) -> str:
        return f"ChromaVector({self.shown!r}, collection={self.collection!r})"

    # -- plumbing -------------------------------------------------------------------------

    def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]:
        where = f"Chroma at {self.shown}" if self.url else f"Chroma ({self.shown})"
        return mapped(where, driver=self.name, operation=operation)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await self._run(getattr(self._col, method), **kwargs)

    async def _client_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run(getattr(self._client, method), *args, **kwargs)

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Chroma's HTTP client has no timeout of its own: a hung server must not hang us.
        async with asyncio.timeout(self.timeout):
            if self.url:
                return await fn(*args, **kwargs)
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def open(self) -> None:
        chromadb = require("chromadb", extra=EXTRA, driver=self.name)
        async with self._mapped("open"):
            if self.url:
                parts = urlsplit(self.url)
                ssl = parts.scheme == "https"
                await self._heartbeat()
                async with asyncio.timeout(self.timeout):
                    self._client = await chromadb.AsyncHttpClient(
                        host=parts.hostname or "localhost", port=parts.port or (443 if ssl else 8000), ssl=ssl
                    )
                self._loop_key = (id(self._client._server), id(asyncio.get_running_loop()))
                _HTTP_USERS[self._loop_key] = _HTTP_USERS.get(self._loop_key, 0) + 1
            else:
                self._client = await asyncio.to_thread(chromadb.PersistentClient, path=self.path)
            await self._open_collection()
            self._max_batch = int(await self._client_call("get_max_batch_size"))

    async def _heartbeat(self) -> None:
        """Fail fast, and without leaving Chroma's client half made, when the server is down."""
        import httpx

        assert self.url is not None  # only called for a server
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(self.url.rstrip("/") + "/api/v2/heartbeat")
            if response.status_code >= 500:
                raise BackendUnavailable(
                    f"Chroma at {self.shown}: open failed: HTTP {response.status_code}",
                    driver=self.name,
                    operation="open",
                )

    async def _open_collection(self) -> None:
        self._col = await self._client_call(
            "get_or_create_collection",
            chroma_name(self.collection),
            embedding_function=None,
            metadata={"hnsw:space": "cosine"},
        )
        config = getattr(self._col, "configuration", None) or {}
        hnsw = config.get("hnsw") if isinstance(config, Mapping) else None
        self._space = (hnsw or {}).get("space") or (self._col.metadata or {}).get("hnsw:space") or "l2"
        first = await self._call("get", limit=1, include=["embeddings"])
        embeddings = first.get("embeddings")
        self.dims = len(embeddings[0]) if embeddings is not None and len(embeddings) else None

    async def aclose(self) -> None:
        client, key = self._client, self._loop_key
        self._col = self._client = self._loop_key = None
        if key is None:
            return
        _HTTP_USERS[key] -= 1
        if not _HTTP_USERS[key]:  # the last store on this loop closes the loop's HTTP client
            del _HTTP_USERS[key]
            http = client._server._clients.pop(hash(asyncio.get_running_loop()), None)
            if http is not None:
                await http.aclose()

    # -- data -----------------------------------------------------------------------------

    def _payload(self, meta: Mapping[str, Any], timestamp: int | None) -> dict[str, Any]:
        out = to_chroma_metadata(meta)
        if self.time_key and timestamp is not None:
            out[self.time_key] = timestamp
        out[EXACT] = _dumps(dict(meta))
        return out

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any]],
        *,
        documents: Sequence[str] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> None:
        ids = list(ids)
        if not ids:
            return
        payloads = [self._payload(m, timestamps[i] if timestamps else None) for i, m in enumerate(metadata)]
        async with self._mapped("upsert"):
            if vectors is None:
                missing_vectors(ids, await self.existing(ids), self.name)
            else:
                matrix = matrix_for(ids, vectors, self.dims, self.name)
            for start in range(0, len(ids), self._max_batch):
                part = slice(start, start + self._max_batch)
                kwargs: dict[str, Any] = {"ids": ids[part], "metadatas": payloads[part]}
                if vectors is None:  # same text: passing documents would make Chroma embed them
                    await self._call("update", **kwargs)
                    continue
                if documents is not None:
                    kwargs["documents"] = list(documents[part])
                await self._call("upsert", embeddings=matrix[part], **kwargs)
            if vectors is not None:
                self.dims = self.dims or int(matrix.shape[1])

    def _score(self, distance: float) -> float:
        # unit vectors: cosine/ip distance is 1 - cos; l2 (the original's default) is 2 - 2 cos
        return 1.0 - float(distance) / 2 if self._space == "l2" else 1.0 - float(distance)

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        async with self._mapped("query"):
            if self.dims is None and not await self._call("count"):
                return []
            query = as_matrix(vector, self.dims, self.name)
            if where is not None:
                # A selective filter is answered exactly from the matching vectors.
                few = await self._call("get", where=chroma_where(where), limit=self.exact_threshold + 1, include=[])
                if len(few["ids"]) <= self.exact_threshold:
                    return await self._exact(query[0], few["ids"], limit, where)
            # Chroma's own filtered HNSW search can come back short of matches that exist, so
            # a broad filter is checked here on a widening unfiltered search instead.
            include = ["distances", "metadatas"] if where is not None else ["distances"]

            async def search(k: int) -> Rows:
                result = await self._call("query", query_embeddings=query, n_results=k, include=include)
                metas = result.get("metadatas")
                return [
                    (id_, self._score(d), from_chroma_metadata(metas[0][n], self.time_key) if metas else None)
                    for n, (id_, d) in enumerate(zip(result["ids"][0], result["distances"][0]))
                ]

            return await widening_search(search, limit, where, lambda: self._call("count"))

    async def _exact(self, query: np.ndarray, ids: list[str], limit: int, where: Node) -> list[VectorHit]:
        if not ids:
            return []
        got = await self._call("get", ids=ids, include=["embeddings", "metadatas"])
        keep = [n for n, m in enumerate(got["metadatas"]) if evaluate(where, from_chroma_metadata(m, self.time_key))]
        if not keep:
            return []
        matrix = as_matrix(np.asarray(got["embeddings"])[keep], None, self.name)
        scores = matrix @ query
        order = sorted(range(len(keep)), key=lambda n: (-scores[n], got["ids"][keep[n]]))[:limit]
        return [VectorHit(got["ids"][keep[n]], float(scores[n])) for n in order]

    async def existing(self, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        found: set[str] = set()
        async with self._mapped("existing"):
            for start in range(0, len(ids), self._max_batch):
                result = await self._call("get", ids=ids[start : start + self._max_batch], include=[])
                found.update(result["ids"])  # flat ids (the original read ids[0]: a bug)
        return found

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(ids))
        found: dict[str, str | None] = {}
        async with self._mapped("fingerprints"):
            for start in range(0, len(ids), self._max_batch):
                got = await self._call(
                    "get", ids=ids[start : start + self._max_batch], include=["metadatas", "documents"]
                )
                metas = got.get("metadatas") or [None] * len(got["ids"])
                documents = got.get("documents") or [None] * len(got["ids"])
                for id_, meta, document in zip(got["ids"], metas, documents):
                    found[id_] = chroma_fingerprint(meta, document)
        return found

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids = list(dict.fromkeys(ids))
        found: dict[str, np.ndarray] = {}
        async with self._mapped("fetch"):
            for start in range(0, len(ids), self._max_batch):
                got = await self._call("get", ids=ids[start : start + self._max_batch], include=["embeddings"])
                found.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
        return found

    async def delete(self, ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(ids))
        async with self._mapped("delete"):
            for start in range(0, len(ids), self._max_batch):
                await self._call("delete", ids=ids[start : start + self._max_batch])

    async def count(self) -> int:
        async with self._mapped("count"):
            return int(await self._call("count"))

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        offset = 0
        while True:
            async with self._mapped("iter_ids"):
                result = await self._call("get", limit=batch_size, offset=offset, include=[])
            if not result["ids"]:
                return
            yield list(result["ids"])
            offset += len(result["ids"])

    async def drop(self) -> None:
        async with self._mapped("drop"):
            await self._client_call("delete_collection", chroma_name(self.collection))
            await self._open_collection()


# -- the filter language as a Chroma ``where`` (never narrower than the exact filter) ------------


def _typed(values: Sequence[Any]) -> dict[type, list[Any]]:
    groups: dict[type, list[Any]] = {}
    for v in values:
        groups.setdefault(type(v), []).append(v)
    return groups


def _native(node: Cmp) -> dict[str, Any] | None:
    if len(node.path) != 1 or node.path[0] == EXACT:
        return None  # dotted keys reach into JSON text: checked exactly afterwards
    key, op, value = node.path[0], node.op, node.value
    # Chroma truncates a fractional operand when it meets an int value (2 < 2.5 is false
    # there): ranges are widened to whole numbers, $ne/$nin with fractions stay with us.
    fractional = any(
        isinstance(v, float) and not v.is_integer() for v in (value if isinstance(value, tuple) else (value,))
    )
    if op in ("eq", "ne"):
        return None if value is None or (op == "ne" and fractional) else {key: {f"${op}": value}}
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if fractional:
            return {key: {"$gte": math.floor(value)}} if op in ("gt", "gte") else {key: {"$lte": math.ceil(value)}}
        return {key: {f"${op}": value}}
    if op in ("in", "nin"):
        if not value or any(v is None for v in value) or (op == "nin" and fractional):
            return None
        parts = [{key: {f"${op}": vs}} for vs in _typed(value).values()]
        return _join("$or" if op == "in" else "$and", parts)
    return None  # $exists: nulls are not stored by Chroma


def _join(op: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {op: parts}


def chroma_where(node: Node) -> dict[str, Any] | None:
    """Chroma's share of a filter, or None when it can check nothing of it."""
    if isinstance(node, Cmp):
        return _native(node)
    parts = [chroma_where(n) for n in node.items]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else _join("$or", parts)  # type: ignore[arg-type]
    kept = [p for p in parts if p is not None]
    return _join("$and", kept) if kept else None


__all__ = [
    "ChromaVector",
    "chroma_fingerprint",
    "chroma_name",
    "chroma_where",
    "from_chroma_metadata",
    "to_chroma_metadata",
]
