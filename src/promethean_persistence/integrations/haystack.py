"""Haystack: ``SemanticStoreDocumentStore`` (a Haystack DocumentStore over any SemanticStore
configuration) and ``SemanticStoreEmbeddingRetriever``. Extra: ``haystack``.

Documents keep their id, content, meta and, exactly as given, their embedding. A given
embedding is the document's vector (it must come from the store's embedding model: same
size, checked); documents without one are embedded by the store, so text-only writes are
searchable too. Haystack filters are translated to this package's filter language and run
in the backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import numpy as np

from .. import _filters
from .._copy import Copier
from .._deps import require
from .._entries import build_record
from .._errors import ValidationError
from .._store import SemanticStore
from .._types import Record
from ._bridge import Runner

require("haystack", extra="haystack", driver="haystack")

from haystack import component, default_from_dict, default_to_dict  # noqa: E402
from haystack.dataclasses import Document  # noqa: E402
from haystack.document_stores.errors import DocumentStoreError, DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy  # noqa: E402
from haystack.errors import FilterError  # noqa: E402

__all__ = ["SemanticStoreDocumentStore", "SemanticStoreEmbeddingRetriever", "translate_filters"]

_EXTRA = "haystack"  #: top-level stored field with what a Document has besides id, content, meta


class SemanticStoreDocumentStore:
    """``SemanticStoreDocumentStore(name="haystack", config=None)``: the store opens on a
    private event loop, so Haystack's sync API and the ``*_async`` methods both work."""

    def __init__(
        self,
        name: str = "haystack",
        config: Mapping[str, Any] | None = None,
        *,
        text_key: str = "text",
        time_key: str = "createdAt",
    ) -> None:
        """``name`` is the collection, ``config`` the store settings (as for
        ``SemanticStore.create``); ``text_key`` and ``time_key`` the entry keys of the text and
        the timestamp. The store opens on a private event loop.
        """
        self.name, self.config, self.text_key, self.time_key = name, config, text_key, time_key
        self._runner = Runner()
        try:
            self.store = self._runner.call(lambda: SemanticStore.create(name, text_key, time_key, config))
        except BaseException:
            self._runner.close()
            raise

    def to_dict(self) -> dict[str, Any]:
        """Secrets are not serialised: give them by environment variables."""
        return default_to_dict(
            self, name=self.name, config=_without_secrets(self.config), text_key=self.text_key, time_key=self.time_key
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SemanticStoreDocumentStore:
        """The document store serialised as ``data`` by ``to_dict``."""
        return default_from_dict(cls, data)

    def close(self) -> None:
        """Close the store."""
        self._runner.call(self.store.cleanup)
        self._runner.close()

    # -- the DocumentStore protocol -------------------------------------------------------

    def count_documents(self) -> int:
        """The number of documents."""
        return self._runner.call(self.store.count)

    async def count_documents_async(self) -> int:
        """The number of documents."""
        return await self._runner.acall(self.store.count)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The documents matching the Haystack filter ``filters`` (None: all); malformed filters
        raise Haystack's FilterError.
        """
        return self._runner.call(lambda: self._filter(filters))

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Async ``filter_documents``: the documents matching ``filters``."""
        return await self._runner.acall(lambda: self._filter(filters))

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write ``documents``; returns how many were written. ``policy`` is Haystack's
        DuplicatePolicy: ``NONE`` means ``FAIL``: an existing id raises DuplicateDocumentError.
        """
        _check_documents(documents)
        return self._runner.call(lambda: self._write(documents, policy))

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Async ``write_documents``: write ``documents`` under ``policy``."""
        _check_documents(documents)
        return await self._runner.acall(lambda: self._write(documents, policy))

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete the documents ``document_ids``; unknown ids are ignored."""
        self._runner.call(lambda: self._delete(document_ids))

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """Async ``delete_documents``: delete the documents ``document_ids``."""
        await self._runner.acall(lambda: self._delete(document_ids))

    def embedding_retrieval(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """The ``top_k`` documents nearest to ``query_embedding`` (cosine; ``scale_score`` maps
        it to [0, 1]) among those matching the Haystack filter ``filters``; with
        ``return_embedding`` each carries its vector.
        """
        return self._runner.call(lambda: self._nearest(query_embedding, filters, top_k, scale_score, return_embedding))

    async def embedding_retrieval_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """Async ``embedding_retrieval``: the ``top_k`` documents nearest to ``query_embedding``
        matching ``filters``, scored as ``scale_score`` says, with vectors if ``return_embedding``.
        """
        return await self._runner.acall(
            lambda: self._nearest(query_embedding, filters, top_k, scale_score, return_embedding)
        )

    # -- on the store's loop --------------------------------------------------------------

    async def _filter(self, filters: dict[str, Any] | None) -> list[Document]:
        where = _where(filters)
        if where is False:
            return []
        total = await self.store.count()  # also lands this store's buffered writes
        if not total:
            return []
        # records, not entries: the Document's own fields live in the record's extra fields
        records = await self.store.primary.most_recent(total, _filters.parse(where), order="asc", include_empty=True)
        return [_document(r, embedding=True) for r in records]

    async def _write(self, documents: list[Document], policy: DuplicatePolicy) -> int:
        unique = list({d.id: d for d in documents}.values())  # the last of an id wins
        if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL, DuplicatePolicy.SKIP):
            found = await self.store.get_many([d.id for d in unique])
            existing = {d.id for d, e in zip(unique, found) if e is not None}
            if existing and policy != DuplicatePolicy.SKIP:
                raise DuplicateDocumentError(f"ID '{sorted(existing)[0]}' already exists in {self.store.name!r}")
            unique = [d for d in unique if d.id not in existing]
        if not unique:
            return 0
        records, vectors = [], {}
        dims = self.store.embedder.dimensions
        for doc in unique:
            records.append(self._record(doc))
            if doc.embedding is not None:
                if dims is not None and len(doc.embedding) != dims:
                    raise ValueError(
                        f"Document {doc.id!r} has a {len(doc.embedding)}-dimensional embedding; this store's "
                        f"model {self.store.embedder.model!r} makes {dims}. Embed with the same model, or "
                        "configure the store's embedding model to match."
                    )
                vectors[doc.id] = np.asarray(doc.embedding, dtype=np.float32)
        failed = await Copier(self.store).write(records, vectors)
        if failed:
            raise DocumentStoreError(f"{len(failed)} documents could not be written: {dict(list(failed.items())[:5])}")
        return len(unique)

    def _record(self, doc: Document) -> Record:
        data = doc.to_dict(flatten=False)
        rest = {k: data[k] for k in ("blob", "embedding", "sparse_embedding") if data.get(k) is not None}
        if doc.content is None:
            rest["no_content"] = True
        entry = {"id": doc.id, self.store.text_key: doc.content or "", "metadata": doc.meta}
        if rest:
            entry[_EXTRA] = rest
        try:
            return build_record(
                entry,
                text_key=self.store.text_key,
                time_key=self.store.time_key,
                max_text_bytes=self.store.config.max_text_bytes,
            )
        except ValidationError as exc:
            raise ValueError(f"Document {doc.id!r}: {exc}") from exc

    async def _delete(self, ids: list[str]) -> None:
        for id_ in ids:
            await self.store.delete(id_)

    async def _nearest(
        self, query: list[float], filters: dict[str, Any] | None, top_k: int, scale: bool, with_embedding: bool
    ) -> list[Document]:
        where = _where(filters)
        if where is False:
            return []
        hits = await self.store.search_by_vector(query, top_k, where)
        records = await self.store.primary.get([e["id"] for e in hits])
        return [
            _document(r, embedding=with_embedding, score=(e["score"] + 1) / 2 if scale else e["score"])
            for r, e in zip(records, hits)
            if r is not None
        ]


def _document(record: Record, *, embedding: bool, score: float | None = None) -> Document:
    rest = record.extra.get(_EXTRA, {})
    data: dict[str, Any] = {
        "id": record.id,
        "content": None if rest.get("no_content") else record.text,
        "meta": dict(record.metadata),
        "score": score,
    }
    data.update((k, rest[k]) for k in ("blob", "sparse_embedding") if k in rest)
    if embedding and "embedding" in rest:
        data["embedding"] = rest["embedding"]
    return Document.from_dict(data)


def _check_documents(documents: Any) -> None:
    if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
        raise ValueError("write_documents takes a list of haystack Document objects")


def _without_secrets(config: Any) -> Any:
    if config is None or isinstance(config, Mapping):
        return (
            None
            if config is None
            else {
                k: _without_secrets(v) if isinstance(v, Mapping) else v
                for k, v in config.items()
                if not any(s in k.lower() for s in ("password", "api_key", "apikey", "dsn", "uri"))
            }
        )
    return config.model_dump(mode="json", exclude_unset=True)


# -- filters ---------------------------------------------------------------------------------

_COMPARE = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "in": "$in", "not in": "$nin"}
_NEGATE = {"$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in"}
_ORDER_NEGATE = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


def translate_filters(filters: dict[str, Any] | None) -> dict[str, Any] | bool:
    """The Haystack filter ``filters`` in this package's filter language; True matches every
    document and False none. Malformed filters raise Haystack's FilterError.
    """
    if not filters:
        return True
    return _translate(filters)


def _translate(f: Any) -> dict[str, Any] | bool:
    if not isinstance(f, dict):
        raise FilterError(f"a filter must be a dict, got {type(f).__name__}")
    if "field" in f:
        return _comparison(f)
    if "operator" not in f:
        raise FilterError(f"'operator' key missing in {f}")
    if "conditions" not in f or not isinstance(f["conditions"], list):
        raise FilterError(f"'conditions' list missing in {f}")
    parts = [_translate(c) for c in f["conditions"]]
    op = f["operator"]
    if op == "AND":
        return _and(parts)
    if op == "OR":
        return _or(parts)
    if op == "NOT":
        return _not(_and(parts))
    raise FilterError(f"unknown logical operator {op!r}; use AND, OR or NOT")


def _comparison(f: dict[str, Any]) -> dict[str, Any] | bool:
    for key in ("field", "operator", "value"):
        if key not in f:
            raise FilterError(f"{key!r} key missing in {f}")
    field, op, value = f["field"], f["operator"], f["value"]
    if not isinstance(field, str) or not field.startswith("meta.") or len(field) == 5:
        raise FilterError(f"only meta fields can be filtered here ('meta.<name>'), got {field!r}")
    if op not in _COMPARE:
        raise FilterError(f"unknown comparison operator {op!r}")
    ours = _COMPARE[op]
    if ours in ("$in", "$nin") and not isinstance(value, list):
        raise FilterError(f"{op!r} takes a list, got {type(value).__name__}")
    if ours in _ORDER_NEGATE:
        if value is None:
            return False
        if isinstance(value, (list, dict)):
            raise FilterError(f"{op!r} cannot compare with a {type(value).__name__}")
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise FilterError(f"{op!r} compares numbers or ISO dates, got the string {value!r}") from None
    if isinstance(value, (list, tuple)) and ours in ("$eq", "$ne") or isinstance(value, dict):
        raise FilterError(f"{op!r} cannot compare with a {type(value).__name__}")
    return {field[5:]: {ours: value}}


def _where(filters: dict[str, Any] | None) -> dict[str, Any] | None | Literal[False]:
    """The filter in our language (None: everything, False: nothing), checked: values our
    language cannot compare are a FilterError too."""
    where = translate_filters(filters)
    if isinstance(where, bool):
        return None if where else False
    try:
        _filters.parse(where)
    except ValidationError as exc:
        raise FilterError(str(exc)) from None
    return where


def _and(parts: list[Any]) -> dict[str, Any] | bool:
    if any(p is False for p in parts):
        return False
    parts = [p for p in parts if p is not True]
    return True if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _or(parts: list[Any]) -> dict[str, Any] | bool:
    if any(p is True for p in parts):
        return True
    parts = [p for p in parts if p is not False]
    return False if not parts else parts[0] if len(parts) == 1 else {"$or": parts}


def _not(node: Any) -> dict[str, Any] | bool:
    if isinstance(node, bool):
        return not node
    if "$and" in node:
        return _or([_not(n) for n in node["$and"]])
    if "$or" in node:
        return _and([_not(n) for n in node["$or"]])
    [(key, cmp)] = node.items()
    [(op, value)] = cmp.items()
    if op in _NEGATE:
        return {key: {_NEGATE[op]: value}}
    # not (x > v): x <= v, or x missing or null
    return _or([{key: {_ORDER_NEGATE[op]: value}}, {key: {"$eq": None}}])


# -- retriever -------------------------------------------------------------------------------


@component
class SemanticStoreEmbeddingRetriever:
    """Retrieves documents from a SemanticStoreDocumentStore by query embedding."""

    def __init__(
        self,
        document_store: SemanticStoreDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> None:
        """``document_store`` is the store to search; ``filters``, ``top_k``, ``scale_score`` and
        ``return_embedding`` are the defaults of ``run`` (see
        ``SemanticStoreDocumentStore.embedding_retrieval``).
        """
        if not isinstance(document_store, SemanticStoreDocumentStore):
            raise ValueError("document_store must be a SemanticStoreDocumentStore")
        self.document_store, self.filters, self.top_k = document_store, filters, top_k
        self.scale_score, self.return_embedding = scale_score, return_embedding

    def to_dict(self) -> dict[str, Any]:
        """The retriever as a Haystack-serialisable dict."""
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            scale_score=self.scale_score,
            return_embedding=self.return_embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SemanticStoreEmbeddingRetriever:
        """The retriever serialised as ``data`` by ``to_dict``."""
        params = data["init_parameters"]
        params["document_store"] = SemanticStoreDocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self, query_embedding: list[float], filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """``{"documents": [...]}``: the documents nearest to ``query_embedding``; ``filters`` and
        ``top_k`` override the retriever's defaults when given.
        """
        docs = self.document_store.embedding_retrieval(
            query_embedding, filters or self.filters, top_k or self.top_k, self.scale_score, self.return_embedding
        )
        return {"documents": docs}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query_embedding: list[float], filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Async ``run``: the documents nearest to ``query_embedding``, with ``filters`` and ``top_k``
        overriding the defaults.
        """
        docs = await self.document_store.embedding_retrieval_async(
            query_embedding, filters or self.filters, top_k or self.top_k, self.scale_score, self.return_embedding
        )
        return {"documents": docs}
