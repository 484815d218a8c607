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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from ..._deps import require
from ..._errors import BackendUnavailable, redact
from ..._filters import Node, evaluate
from ..._types import VectorHit
from ..._urls import basic_auth_header, without_userinfo
from .._remote import mapped
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors
from ._widen import Rows, widening_search

if TYPE_CHECKING:
    from ..._config import StoreConfig
from ._chroma_layout import (
    EXACT,
    EXTRA,
    _dumps,
    chroma_fingerprint,
    chroma_name,
    chroma_where,
    from_chroma_metadata,
    to_chroma_metadata,
)

__all__ = [
    "ChromaVector",
    "chroma_fingerprint",
    "chroma_name",
    "chroma_where",
    "from_chroma_metadata",
    "to_chroma_metadata",
]

# Chroma's async client keeps one HTTP client per event loop and server settings, shared by
# every collection; the last of our drivers using it on a loop closes it.
_HTTP_USERS: dict[tuple[int, int], int] = {}


class ChromaVector:
    """Vector driver on ChromaDB (cosine space for collections it creates).

    Client errors become ``BackendUnavailable`` (connection, timeout, 429, 5xx) or
    ``BackendRejected``; every call is bounded by ``timeout``."""

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
        """``collection``: the collection name (mapped by ``chroma_name``). ``url``: a Chroma
        server, or ``path``: a directory for the embedded client. ``pinned``: the name was
        configured, so ``use_collection`` does not follow the original's alias.
        ``time_key``: the entry key the time is stored under, as the original did.
        ``timeout``: seconds per call. ``exact_threshold``: filters matching at most this
        many vectors are answered by exact search. Raises nothing."""
        self.collection = collection
        self.timeout = timeout
        self.exact_threshold = exact_threshold  #: filters matching this many or fewer: exact search
        self.url, self.path = (without_userinfo(url) if url else url), path  #: never holds a password
        self._basic = basic_auth_header(url) if url else {}  #: a user:password in ``url``, as basic auth
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
        """See ``VectorDriver.from_config``: ``config.chromadb`` (``url``, else ``path``, else
        ``http://localhost:8000``; a configured ``collection`` wins)."""
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
        """See ``VectorDriver.for_collection``: these settings for another collection (a
        configured name is replaced)."""
        return cls.from_config(
            config.model_copy(update={"chromadb": config.chromadb.model_copy(update={"collection": None})}), collection
        )

    def use_keys(self, text_key: str, time_key: str) -> None:
        """See ``FieldNames.use_keys``: the time goes in the metadata under ``time_key``
        (``text_key`` is not needed: the text is Chroma's document)."""
        self.time_key = time_key

    def use_collection(self, name: str) -> None:
        """See ``CollectionSwitch.use_collection``: follow the original's
        ``collection_aliases`` target (before ``open``), unless the name was configured."""
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
        """See ``VectorDriver.open``: a server is asked for its heartbeat first (fail fast);
        ``MissingDependencyError`` without the ``chroma`` extra."""
        chromadb = require("chromadb", extra=EXTRA, driver=self.name)
        async with self._mapped("open"):
            if self.url:
                parts = urlsplit(self.url)
                ssl = parts.scheme == "https"
                await self._heartbeat()
                async with asyncio.timeout(self.timeout):
                    self._client = await chromadb.AsyncHttpClient(
                        host=parts.hostname or "localhost",
                        port=parts.port or (443 if ssl else 8000),
                        ssl=ssl,
                        headers=self._basic or None,
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
        async with httpx.AsyncClient(timeout=self.timeout, headers=self._basic) as client:
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
        """See ``VectorDriver.aclose``: the last store on an event loop closes the HTTP
        client Chroma shares between collections."""
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
        """See ``DocumentVector.upsert`` and ``VectorDriver.upsert``: ``documents`` become
        Chroma's documents (never embedded by Chroma), ``timestamps`` the ``time_key``
        value; a metadata-only upsert leaves the documents as they are."""
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
        """See ``VectorDriver.query``: a selective filter (at most ``exact_threshold``
        matches) is answered exactly, a broad one by a widening search checked on the exact
        metadata."""
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
        """See ``VectorDriver.existing``."""
        ids = list(dict.fromkeys(ids))
        found: set[str] = set()
        async with self._mapped("existing"):
            for start in range(0, len(ids), self._max_batch):
                result = await self._call("get", ids=ids[start : start + self._max_batch], include=[])
                found.update(result["ids"])  # flat ids (the original read ids[0]: a bug)
        return found

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints`` (``chroma_fingerprint``: the kept text's hash for
        the original's records)."""
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
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, np.ndarray] = {}
        async with self._mapped("fetch"):
            for start in range(0, len(ids), self._max_batch):
                got = await self._call("get", ids=ids[start : start + self._max_batch], include=["embeddings"])
                found.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
        return found

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        async with self._mapped("delete"):
            for start in range(0, len(ids), self._max_batch):
                await self._call("delete", ids=ids[start : start + self._max_batch])

    async def count(self) -> int:
        """See ``VectorDriver.count``."""
        async with self._mapped("count"):
            return int(await self._call("count"))

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (paged by offset)."""
        offset = 0
        while True:
            async with self._mapped("iter_ids"):
                result = await self._call("get", limit=batch_size, offset=offset, include=[])
            if not result["ids"]:
                return
            yield list(result["ids"])
            offset += len(result["ids"])

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the collection is deleted and created again."""
        async with self._mapped("drop"):
            await self._client_call("delete_collection", chroma_name(self.collection))
            await self._open_collection()
