"""LlamaIndex: ``SemanticStoreVectorStore`` (a LlamaIndex vector store over any SemanticStore
configuration, ``stores_text=True``) and ``SemanticStoreEmbedding`` (the store's embedder as a
LlamaIndex embed model). Extra: ``llamaindex``.

A node is an entry: its id, its text (``get_content()`` without metadata), its metadata plus
``ref_doc_id``/``document_id``/``doc_id`` (LlamaIndex's own keys, so deletes by document and
``doc_ids`` queries run as filters in the backends), and the rest of the node (relationships,
templates) in a stored field. A node's embedding is its vector, kept as given (its size must
match the store's model); nodes without one are embedded by the store.

>>> vs = SemanticStoreVectorStore("docs", {"primaryDriver": "sqlite"})
>>> index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=vs),
...                                         embed_model=vs.embed_model)

``SemanticStoreKVStore`` keeps LlamaIndex's docstore and index store (``KVDocumentStore``,
``KVIndexStore``) in a store too, so an ``IngestionPipeline`` with a docstore needs no other
database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from .. import _filters
from .._copy import Copier
from .._deps import require
from .._entries import build_record
from .._errors import ValidationError
from .._store import SemanticStore
from .._types import Record
from ..drivers.base import Embedder, QueryEmbedder
from ._bridge import Runner, WriteClock
from ._logic import both, either, negate

require("llama_index.core", extra="llamaindex", driver="llamaindex")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict  # noqa: E402

from ._llamaindex_kv import SemanticStoreKVStore  # noqa: E402

__all__ = ["SemanticStoreEmbedding", "SemanticStoreKVStore", "SemanticStoreVectorStore", "translate_filters"]

_EXTRA = "llamaindex"  #: stored field with the node's own JSON (LlamaIndex's ``_node_content``/``_node_type``)
_NODE_FIELDS = ("_node_content", "_node_type")
_BATCH = 500  #: nodes deleted per round
_COMPARE = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
#: LlamaIndex's query modes and this store's search modes
_MODES = {
    VectorStoreQueryMode.DEFAULT: "vector",
    VectorStoreQueryMode.TEXT_SEARCH: "lexical",
    VectorStoreQueryMode.SPARSE: "lexical",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.SEMANTIC_HYBRID: "hybrid",
    VectorStoreQueryMode.MMR: "vector",
}


def translate_filters(filters: MetadataFilters | None) -> dict[str, Any] | bool:
    """LlamaIndex ``filters`` in this package's filter language; True matches every node and
    False none. Raises ValueError for an operator the language has no exact form of
    (``any``, ``all``, ``contains``, ``text_match``)."""
    if filters is None:
        return True
    parts = [translate_filters(f) if isinstance(f, MetadataFilters) else _comparison(f) for f in filters.filters]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.OR:
        return either(parts)
    if condition == FilterCondition.NOT:  # none of them, as LlamaIndex's own stores read it
        return both([negate(p) for p in parts])
    return both(parts)


def _comparison(f: MetadataFilter) -> dict[str, Any] | bool:
    if f.operator == FilterOperator.IS_EMPTY:
        return {f.key: {"$eq": None}}  # null or missing
    if f.operator not in _COMPARE:
        raise ValueError(
            f"filter operator {f.operator.value!r} on {f.key!r} is not supported: use ==, !=, >, >=, <, <=, "
            "in, nin or is_empty"
        )
    op = _COMPARE[f.operator]
    if op in ("$in", "$nin") and not isinstance(f.value, list):
        raise ValueError(f"filter operator {f.operator.value!r} on {f.key!r} takes a list")
    return {f.key: {op: f.value}}


class SemanticStoreEmbedding(BaseEmbedding):
    """This package's embedder as a LlamaIndex embed model, run on the store's event loop
    (``SemanticStoreVectorStore.embed_model`` builds one for that store)."""

    _embedder: Embedder = PrivateAttr()
    _runner: Runner = PrivateAttr()

    def __init__(self, embedder: Embedder, runner: Runner | None = None, **kwargs: Any) -> None:
        """``embedder``: this package's embedder; ``runner``: the event loop it lives on (None:
        a private one); ``kwargs``: BaseEmbedding's settings (e.g. ``embed_batch_size``)."""
        super().__init__(model_name=embedder.model, **kwargs)
        self._embedder, self._runner = embedder, runner or Runner()

    @classmethod
    def class_name(cls) -> str:
        """The class's name in LlamaIndex's serialisation."""
        return "SemanticStoreEmbedding"

    async def _queries(self, texts: list[str]) -> list[list[float]]:
        embedder = self._embedder
        if embedder.capabilities.query_embedding:
            return [list(map(float, v)) for v in await cast(QueryEmbedder, embedder).embed_queries(texts)]
        return [list(map(float, v)) for v in await embedder.embed(texts)]

    async def _texts(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in await self._embedder.embed(texts)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._runner.call(lambda: self._queries([query]))[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._runner.acall(lambda: self._queries([query])))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._runner.call(lambda: self._texts([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._runner.call(lambda: self._texts(texts))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._runner.acall(lambda: self._texts(texts))


class SemanticStoreVectorStore(BasePydanticVectorStore):
    """``SemanticStoreVectorStore(name="llamaindex", config=None)``: the store opens on a
    private event loop, so LlamaIndex's sync methods and their async forms both work.
    Query modes: ``default`` (nearest vectors; with only ``query_str``, the store embeds
    it), ``text_search``/``sparse`` (the primary store's lexical index), ``hybrid``/
    ``semantic_hybrid`` (both, fused by reciprocal rank: ``alpha`` is not used) and ``mmr``
    (``mmr_threshold`` is MMR's ``lambda_mult``)."""

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False
    name: str = "llamaindex"

    _store: SemanticStore = PrivateAttr()
    _runner: Runner = PrivateAttr()
    _clock: WriteClock = PrivateAttr(default_factory=WriteClock)

    def __init__(
        self,
        name: str = "llamaindex",
        config: Mapping[str, Any] | None = None,
        *,
        text_key: str = "text",
        time_key: str = "createdAt",
    ) -> None:
        """``name`` is the collection, ``config`` the store settings (as for
        ``SemanticStore.create``); ``text_key`` and ``time_key`` the entry keys of the text and
        the timestamp."""
        super().__init__(name=name, stores_text=True)
        self._runner, self._store = Runner.opening(lambda: SemanticStore.create(name, text_key, time_key, config))

    @classmethod
    def class_name(cls) -> str:
        """The class's name in LlamaIndex's serialisation."""
        return "SemanticStoreVectorStore"

    @property
    def client(self) -> SemanticStore:
        """The ``SemanticStore`` underneath (use it on its own loop: see ``Runner``)."""
        return self._store

    @property
    def embed_model(self) -> SemanticStoreEmbedding:
        """The store's embedder as a LlamaIndex embed model: pass it as ``embed_model`` so
        LlamaIndex embeds nodes and queries with the store's model."""
        return SemanticStoreEmbedding(self._store.embedder, self._runner)

    def close(self) -> None:
        """Close the store and its event loop."""
        self._runner.close_store(self._store)

    # -- LlamaIndex's vector store API ---------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Write ``nodes`` (replacing nodes of the same ids); ``add_kwargs`` are ignored.
        Returns their ids."""
        return self._runner.call(lambda: self._add(list(nodes)))

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Async ``add`` of ``nodes``; ``kwargs`` are ignored. Returns their ids."""
        return await self._runner.acall(lambda: self._add(list(nodes)))

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``; ``delete_kwargs`` are ignored."""
        self._runner.call(lambda: self._delete_matching({"ref_doc_id": {"$eq": ref_doc_id}}))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async ``delete`` of the nodes of ``ref_doc_id``; ``delete_kwargs`` are ignored."""
        await self._runner.acall(lambda: self._delete_matching({"ref_doc_id": {"$eq": ref_doc_id}}))

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete the nodes ``node_ids`` that match ``filters`` (None: no restriction on that
        side; both None: nothing); ``delete_kwargs`` are ignored."""
        self._runner.call(lambda: self._delete_nodes(node_ids, filters))

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Async ``delete_nodes`` of ``node_ids`` matching ``filters``; ``delete_kwargs`` are ignored."""
        await self._runner.acall(lambda: self._delete_nodes(node_ids, filters))

    def clear(self) -> None:
        """Delete every node (the store's data in both backends)."""
        self._runner.call(self._store.drop)

    async def aclear(self) -> None:
        """Async ``clear``."""
        await self._runner.acall(self._store.drop)

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes ``node_ids`` (None: all) that match ``filters``, in write order."""
        return self._runner.call(lambda: self._get_nodes(node_ids, filters))

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Async ``get_nodes`` of ``node_ids`` matching ``filters``."""
        return await self._runner.acall(lambda: self._get_nodes(node_ids, filters))

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``query.similarity_top_k`` nodes best matching ``query`` (its embedding or text,
        ``filters``, ``doc_ids``, ``node_ids`` and ``mode``), best first, with their scores;
        ``kwargs`` are ignored. Raises ValueError for an unsupported mode or filter."""
        return self._runner.call(lambda: self._query(query))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async ``query``: the nodes best matching ``query``; ``kwargs`` are ignored."""
        return await self._runner.acall(lambda: self._query(query))

    # -- on the store's loop ------------------------------------------------------------------

    def _record(self, node: BaseNode) -> Record:
        fields = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
        extra = {k: fields.pop(k) for k in _NODE_FIELDS if k in fields}
        entry = {
            "id": node.node_id,
            self._store.text_key: node.get_content(metadata_mode=MetadataMode.NONE) or "",
            self._store.time_key: self._clock.tick(),
            "metadata": fields,
            _EXTRA: extra,
        }
        try:
            return build_record(
                entry,
                text_key=self._store.text_key,
                time_key=self._store.time_key,
                max_text_bytes=self._store.config.max_text_bytes,
                ttl_ms=self._store.config.ttl_ms,
            )
        except ValidationError as exc:
            raise ValueError(f"Node {node.node_id!r}: {exc}") from exc

    async def _add(self, nodes: list[BaseNode]) -> list[str]:
        dims = self._store.embedder.dimensions
        vectors = {}
        for node in nodes:
            if node.embedding is not None:
                if dims is not None and len(node.embedding) != dims:
                    raise ValueError(
                        f"Node {node.node_id!r} has a {len(node.embedding)}-dimensional embedding; this store's "
                        f"model {self._store.embedder.model!r} makes {dims}: embed with the store's model "
                        "(embed_model=vector_store.embed_model) or configure the store to match"
                    )
                vectors[node.node_id] = np.asarray(node.embedding, dtype=np.float32)
        records = list({r.id: r for r in map(self._record, nodes)}.values())  # the last of an id wins
        failed = await Copier(self._store).write(records, vectors)
        if failed:
            raise ValueError(f"{len(failed)} nodes could not be written: {dict(list(failed.items())[:5])}")
        return [n.node_id for n in nodes]

    async def _matching(self, where: Mapping[str, Any] | None, limit: int | None = None) -> list[Record]:
        total = limit or await self._store.count()  # count also lands this store's buffered writes
        if not total:
            return []
        node = _filters.parse(where)
        return await self._store.primary.most_recent(total, node, order="asc", include_empty=True)

    async def _delete_matching(self, where: Mapping[str, Any] | None) -> int:
        deleted = 0
        while batch := await self._matching(where, _BATCH):
            found = [await self._store.delete(r.id) for r in batch]
            if not any(found):
                break  # deleted meanwhile by another writer
            deleted += sum(found)
        return deleted

    async def _delete_nodes(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> None:
        if node_ids is None and filters is None:
            return
        where = translate_filters(filters)
        if where is False:
            return
        if node_ids is None:
            await self._delete_matching(None if where is True else where)
            return
        node = None if where is True else _filters.parse(where)
        for record in await self._store.primary.get(list(dict.fromkeys(node_ids))):
            if record is not None and _filters.evaluate(node, record.metadata):
                await self._store.delete(record.id)

    async def _get_nodes(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[BaseNode]:
        where = translate_filters(filters)
        if where is False:
            return []
        if node_ids is None:
            records = await self._matching(None if where is True else where)
        else:
            await self._store.settle()
            node = None if where is True else _filters.parse(where)
            found = await self._store.primary.get(list(dict.fromkeys(node_ids)))
            records = [r for r in found if r is not None and _filters.evaluate(node, r.metadata)]
        return [_node(r) for r in records]

    async def _query(self, query: VectorStoreQuery) -> VectorStoreQueryResult:
        if query.mode not in _MODES:
            raise ValueError(f"query mode {query.mode.value!r} is not supported: use one of {sorted(_MODES)}")
        where = translate_filters(query.filters)
        if query.doc_ids is not None:
            where = both([where, {"ref_doc_id": {"$in": list(query.doc_ids)}}])
        if where is False or query.similarity_top_k < 1:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        filter_ = None if where is True else where
        if query.node_ids:  # VectorStoreIndex's retriever passes [] for "every node" when the store keeps texts
            hits = await self._among(query, list(dict.fromkeys(query.node_ids)), filter_)
        else:
            hits = await self._search(query, filter_)
        records = await self._store.primary.get([h["id"] for h in hits])
        kept = [(r, h["score"]) for r, h in zip(records, hits) if r is not None]
        return VectorStoreQueryResult(
            nodes=[_node(r) for r, _ in kept], similarities=[s for _, s in kept], ids=[r.id for r, _ in kept]
        )

    async def _search(self, query: VectorStoreQuery, where: dict[str, Any] | None) -> list[dict[str, Any]]:
        store, k, mode = self._store, query.similarity_top_k, _MODES[query.mode]
        embedding = query.query_embedding
        if query.mode == VectorStoreQueryMode.MMR:
            lambda_mult = 0.5 if query.mmr_threshold is None else query.mmr_threshold
            if embedding is not None:
                return await store.max_marginal_relevance_by_vector(embedding, k, where, lambda_mult=lambda_mult)
            return await store.max_marginal_relevance(_text(query), k, where, lambda_mult=lambda_mult)
        if mode == "vector" and embedding is not None:
            return await store.search_by_vector(embedding, k, where)
        return await store.get_most_relevant(_text(query), k, where, mode=mode)

    async def _among(
        self, query: VectorStoreQuery, ids: list[str], where: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The hits among the nodes ``ids``: ranked by cosine to the query's embedding (the
        store embeds ``query_str`` when there is none)."""
        vector = query.query_embedding
        if vector is None:
            vector = (await self.embed_model.aget_query_embedding(_text(query))) if ids else []
        node = None if where is None else _filters.parse(where)
        found = [r for r in await self._store.primary.get(ids) if r is not None]
        found = [r for r in found if _filters.evaluate(node, r.metadata)]
        stored = await self._store.vector.fetch([r.id for r in found])
        q = np.asarray(vector, dtype=np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        scored: list[tuple[float, str]] = []
        for r in found:
            if r.id in stored:
                v = np.asarray(stored[r.id], dtype=np.float32)
                scored.append((-float(q @ v / max(float(np.linalg.norm(v)), 1e-12)), r.id))
        return [{"id": i, "score": -s} for s, i in sorted(scored)[: query.similarity_top_k]]


def _text(query: VectorStoreQuery) -> str:
    if not query.query_str:
        raise ValueError(f"query mode {query.mode.value!r} needs query_str (or a query_embedding)")
    return query.query_str


def _node(record: Record) -> BaseNode:
    extra = record.extra.get(_EXTRA)
    if not extra:  # an entry written without this adapter
        return TextNode(id_=record.id, text=record.text, metadata=dict(record.metadata))
    return metadata_dict_to_node({**record.metadata, **extra}, text=record.text)
