"""LangChain: ``SemanticStoreVectorStore`` (a ``langchain_core`` VectorStore over any
SemanticStore configuration) and embeddings bridges both ways. Extra: ``langchain``.

>>> vs = SemanticStoreVectorStore.create("notes", config={"primaryDriver": "sqlite"})
>>> vs.add_texts(["hello"], ids=["a"])
>>> vs.similarity_search("hello", k=1, filter={"topic": "greetings"})
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypedDict, Unpack

import numpy as np

from .._config import StoreConfig
from .._deps import require
from .._entries import user_metadata
from .._errors import ConfigurationError, EmbeddingError, EmbeddingMismatchError
from .._store import SemanticStore
from ..drivers.base import Capabilities, Embedder
from ._bridge import Runner

require("langchain_core", extra="langchain", driver="langchain")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402

__all__ = ["LangChainEmbedder", "SemanticStoreEmbeddings", "SemanticStoreVectorStore"]


class _Keys(TypedDict, total=False):
    """The store's entry keys ``create``/``acreate`` pass on to ``SemanticStore.create``."""

    text_key: str
    time_key: str


class LangChainEmbedder:
    """A LangChain ``Embeddings`` object as this package's embedder: documents through
    ``aembed_documents``, queries through ``aembed_query``; rows L2-normalised."""

    name: ClassVar[str] = "langchain"
    capabilities: Capabilities = Capabilities(query_embedding=True)
    supports_images = False
    normalize = True  #: rows are L2-normalised here

    def __init__(self, embeddings: Embeddings, *, model: str | None = None, dimensions: int | None = None) -> None:
        """``embeddings`` is the LangChain ``Embeddings`` object; ``model`` the name recorded in the
        collection's manifest (default: built from the object's class and model name);
        ``dimensions`` the vector size when known (else learnt from the first answer).
        """
        self.embeddings = embeddings
        named = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
        size = getattr(embeddings, "size", None)  # the fake embeddings of langchain_core
        self.model = model or f"langchain:{type(embeddings).__name__}" + (
            f":{named}" if isinstance(named, str) else f":{size}" if isinstance(size, int) else ""
        )
        self.dimensions = dimensions

    @classmethod
    def from_config(cls, config: Any) -> LangChainEmbedder:
        """See ``Embedder.from_config``."""
        raise ConfigurationError(
            "The langchain embedding driver wraps an Embeddings object: pass it as "
            "SemanticStoreVectorStore.create(..., embedding=...) or LangChainEmbedder(embeddings)"
        )

    def __repr__(self) -> str:
        return f"LangChainEmbedder(model={self.model!r})"

    def _matrix(self, vectors: Any, count: int) -> np.ndarray:
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != count or not np.isfinite(matrix).all():
            raise EmbeddingError(
                f"{self.model} returned {matrix.shape} for {count} texts, not finite rows", driver=self.name
            )
        if self.dimensions is None:
            self.dimensions = int(matrix.shape[1])
        elif matrix.shape[1] != self.dimensions:
            raise EmbeddingMismatchError(
                f"{self.model} returned {matrix.shape[1]}-dimensional vectors; expected {self.dimensions}",
                driver=self.name,
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalized: np.ndarray = matrix / norms
        return normalized

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See ``Embedder.embed``."""
        texts = list(texts)
        return (
            self._matrix(await self.embeddings.aembed_documents(texts), len(texts))
            if texts
            else np.zeros((0, self.dimensions or 0), dtype=np.float32)
        )

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """See ``QueryEmbedder.embed_queries``."""
        vectors = await asyncio.gather(*(self.embeddings.aembed_query(t) for t in texts))
        return self._matrix(list(vectors), len(vectors))

    async def probe(self) -> int:
        """See ``ProbingEmbedder.probe``."""
        await self.embed(["dimension probe"])
        assert self.dimensions is not None  # set by the first non-empty embed
        return self.dimensions

    def expect_dimensions(self, dimensions: int) -> None:
        """See ``ProbingEmbedder.expect_dimensions``."""
        self.dimensions = dimensions

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        pass


class SemanticStoreEmbeddings(Embeddings):
    """This package's embedder as a LangChain ``Embeddings`` (sync calls run it on a private
    event loop; async calls await it directly)."""

    def __init__(self, embedder: Embedder) -> None:
        """``embedder`` is this package's embedder to expose as LangChain ``Embeddings``."""
        self.embedder = embedder
        self._runner: Runner | None = None

    def _sync(self, texts: list[str]) -> list[list[float]]:
        if self._runner is None:
            self._runner = Runner()
        return self._runner.call(lambda: self.aembed_documents(texts))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """The vectors of ``texts`` (sync)."""
        return self._sync(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of the query ``text`` (sync)."""
        return self._sync([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """The vectors of ``texts``."""
        rows: list[list[float]] = np.asarray(await self.embedder.embed(texts)).tolist()
        return rows

    async def aembed_query(self, text: str) -> list[float]:
        """The vector of the query ``text``."""
        return (await self.aembed_documents([text]))[0]


class SemanticStoreVectorStore(VectorStore):
    """A LangChain VectorStore over a SemanticStore: documents in the primary store, vectors in
    the vector store, kept consistent by the store's write path. Filters use this package's
    filter language on metadata (``{"topic": "x", "year": {"$gte": 2020}}``).

    Open it with ``create(...)`` (sync; the store runs on a private event loop) or
    ``await acreate(...)`` (the store runs on the caller's loop), or wrap an open store:
    ``SemanticStoreVectorStore(store)`` inside the loop that opened it."""

    def __init__(
        self, store: SemanticStore, *, embedding: Embeddings | None = None, runner: Runner | None = None
    ) -> None:
        """``store`` is an open SemanticStore; ``embedding`` the LangChain embeddings reported by
        ``embeddings`` (default: the store's own embedder, wrapped); ``runner`` runs the store's
        coroutines on its loop (default: the running loop's). Usually built with ``create`` or
        ``acreate``.
        """
        self.store = store
        self._embedding = embedding
        self._runner = runner or Runner(asyncio.get_running_loop())

    @classmethod
    def create(
        cls,
        name: str = "langchain",
        config: Any = None,
        *,
        embedding: Embeddings | None = None,
        **keys: Unpack[_Keys],
    ) -> SemanticStoreVectorStore:
        """Open a store on a private event loop; sync and async methods both work.

        ``name`` is the collection, ``config`` the store settings (as for
        ``SemanticStore.create``), ``embedding`` LangChain embeddings to embed with (default: the
        configured embedder); the other keywords are ``text_key``/``time_key``.
        """
        runner, store = Runner.opening(lambda: _open(name, config, embedding, keys))
        return cls(store, embedding=embedding, runner=runner)

    @classmethod
    async def acreate(
        cls,
        name: str = "langchain",
        config: Any = None,
        *,
        embedding: Embeddings | None = None,
        **keys: Unpack[_Keys],
    ) -> SemanticStoreVectorStore:
        """Open a store on the running event loop (use the async methods there).

        ``name``, ``config``, ``embedding`` and the other keywords are as for ``create``.
        """
        return cls(await _open(name, config, embedding, keys), embedding=embedding)

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings the store embeds with, as a LangChain ``Embeddings``."""
        return self._embedding or SemanticStoreEmbeddings(self.store.embedder)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # cosine similarity in [-1, 1] -> [0, 1]; float32 rounding may step just outside
        return lambda score: min(1.0, max(0.0, (score + 1.0) / 2.0))

    # -- writes ---------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Insert ``texts`` with ``metadatas`` (one dict per text) and ``ids`` (default: new ids);
        returns the ids. Other keyword arguments are ignored.
        """
        texts = list(texts)
        return self._runner.call(lambda: self._add(texts, metadatas, ids))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async ``add_texts``: insert ``texts`` with ``metadatas`` and ``ids``; returns the ids."""
        texts = list(texts)
        return await self._runner.acall(lambda: self._add(texts, metadatas, ids))

    async def _add(
        self, texts: list[str], metadatas: list[dict[str, Any]] | None, ids: Sequence[str | None] | None
    ) -> list[str]:
        metadatas = metadatas or [{} for _ in texts]
        ids = list(ids) if ids is not None else [None] * len(texts)
        if not len(texts) == len(metadatas) == len(ids):
            raise ValueError(f"{len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        key = self.store.text_key
        entries = [
            {"id": i or str(uuid.uuid4()), key: t, "metadata": dict(m or {})} for t, m, i in zip(texts, metadatas, ids)
        ]
        return await self.store.insert_many(entries)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the entries ``ids``; returns True. Raises ValueError when ``ids`` is None (use the
        store's ``drop`` to empty it).
        """
        return self._runner.call(lambda: self._delete(ids))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Async ``delete``: delete the entries ``ids``; returns True."""
        return await self._runner.acall(lambda: self._delete(ids))

    async def _delete(self, ids: list[str] | None) -> bool:
        if ids is None:
            raise ValueError("delete needs the ids to delete (drop() empties the whole store)")
        for id_ in ids:
            await self.store.delete(id_)
        return True

    # -- reads ----------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The Documents of the entries ``ids`` that exist, in that order."""
        return self._runner.call(lambda: self._get(ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async ``get_by_ids``: the Documents of the entries ``ids`` that exist."""
        return await self._runner.acall(lambda: self._get(ids))

    async def _get(self, ids: Sequence[str]) -> list[Document]:
        return [_document(e) for e in await self.store.get_many(list(ids)) if e is not None]

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` entries most similar to ``query``, as Documents; ``filter`` is a metadata
        filter in this package's filter language (other keyword arguments are ignored).
        """
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` entries most similar to ``query``, as Documents; ``filter`` is a metadata
        filter in this package's filter language (other keyword arguments are ignored).
        """
        return [d for d, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` entries most similar to ``query``, as Documents with their cosine similarity;
        ``filter`` is a metadata filter in this package's filter language; ``mode=`` in
        ``kwargs`` picks ``"lexical"`` or ``"hybrid"`` ranking (their scores are not cosines;
        default ``"vector"``), other keyword arguments are ignored.
        """
        return self._runner.call(lambda: self._search(query, k, filter, kwargs.get("mode", "vector")))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` entries most similar to ``query``, as Documents with their cosine similarity;
        ``filter`` and ``kwargs`` (``mode=``) as for ``similarity_search_with_score``.
        """
        return await self._runner.acall(lambda: self._search(query, k, filter, kwargs.get("mode", "vector")))

    async def _search(
        self, query: str, k: int, filter: Mapping[str, Any] | None, mode: str
    ) -> list[tuple[Document, float]]:
        hits = await self.store.get_most_relevant(query, k, filter, distinct_texts=False, mode=mode)
        return [(_document(e), e["score"]) for e in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` entries most similar to the vector ``embedding``, as Documents; ``filter`` is a metadata
        filter in this package's filter language (other keyword arguments are ignored).
        """
        return self._runner.call(lambda: self._by_vector(embedding, k, filter))

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` entries most similar to the vector ``embedding``, as Documents; ``filter`` is a metadata
        filter in this package's filter language (other keyword arguments are ignored).
        """
        return await self._runner.acall(lambda: self._by_vector(embedding, k, filter))

    async def _by_vector(self, embedding: list[float], k: int, filter: Mapping[str, Any] | None) -> list[Document]:
        return [_document(e) for e in await self.store.search_by_vector(embedding, k, filter)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` relevant and diverse Documents for ``query``: MMR over the ``fetch_k`` nearest,
        ``lambda_mult`` from 0 (most diverse) to 1 (plain relevance); ``filter`` is a metadata
        filter in this package's filter language (other keyword arguments are ignored)."""
        return self._runner.call(lambda: self._mmr(query, k, fetch_k, lambda_mult, filter))

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async ``max_marginal_relevance_search``: ``query``, ``k``, ``fetch_k``,
        ``lambda_mult`` and ``filter`` as there (other keyword arguments are ignored)."""
        return await self._runner.acall(lambda: self._mmr(query, k, fetch_k, lambda_mult, filter))

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``max_marginal_relevance_search`` for the query vector ``embedding``; ``k``,
        ``fetch_k``, ``lambda_mult`` and ``filter`` as there (other keyword arguments are ignored)."""
        return self._runner.call(lambda: self._mmr(embedding, k, fetch_k, lambda_mult, filter))

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async ``max_marginal_relevance_search_by_vector``: ``embedding``, ``k``, ``fetch_k``,
        ``lambda_mult`` and ``filter`` as there (other keyword arguments are ignored)."""
        return await self._runner.acall(lambda: self._mmr(embedding, k, fetch_k, lambda_mult, filter))

    async def _mmr(
        self, query: str | list[float], k: int, fetch_k: int, lambda_mult: float, filter: Mapping[str, Any] | None
    ) -> list[Document]:
        if isinstance(query, str):
            hits = await self.store.max_marginal_relevance(query, k, filter, fetch_k=fetch_k, lambda_mult=lambda_mult)
        else:
            hits = await self.store.max_marginal_relevance_by_vector(
                query, k, filter, fetch_k=fetch_k, lambda_mult=lambda_mult
            )
        return [_document(e) for e in hits]

    # -- construction and lifecycle -------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        name: str = "langchain",
        config: Any = None,
        **kwargs: Any,
    ) -> SemanticStoreVectorStore:
        """Open a store with ``create`` (collection ``name``, settings ``config``, LangChain
        ``embedding``) and add ``texts`` with ``metadatas`` and ``ids`` to it; other keyword
        arguments go to ``create``.
        """
        store = cls.create(name, config, embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        name: str = "langchain",
        config: Any = None,
        **kwargs: Any,
    ) -> SemanticStoreVectorStore:
        """Async ``from_texts``: open a store with ``acreate`` (collection ``name``, settings
        ``config``, LangChain ``embedding``) and add ``texts`` with ``metadatas`` and ``ids``.
        """
        store = await cls.acreate(name, config, embedding=embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def drop(self) -> None:
        """Delete every document and vector of this store."""
        self._runner.call(self.store.drop)

    def close(self) -> None:
        """Close the store (and the private loop of one opened by ``create``)."""
        self._runner.close_store(self.store)

    async def aclose(self) -> None:
        """Close the store."""
        await self._runner.aclose_store(self.store)


async def _open(name: str, config: Any, embedding: Embeddings | None, keys: _Keys) -> SemanticStore:
    if embedding is None:
        return await SemanticStore.create(name, config=config, **keys)
    # the manifest names the driver: "langchain", with the Embeddings object's model
    config = StoreConfig.resolve(config).model_copy(update={"embedding_driver": "langchain"})
    return await SemanticStore.create(name, config=config, embedder=LangChainEmbedder(embedding), **keys)


def _document(entry: Mapping[str, Any]) -> Document:
    return Document(id=entry["id"], page_content=entry["text"], metadata=user_metadata(entry))
