"""Haystack: ``SemanticStoreDocumentStore`` (a Haystack DocumentStore over any SemanticStore
configuration) and ``SemanticStoreEmbeddingRetriever``. Extra: ``haystack``.

Documents keep their id, content, meta and, exactly as given, their embedding. A given
embedding is the document's vector (it must come from the store's embedding model: same
size, checked); documents without one are embedded by the store, so text-only writes are
searchable too. Haystack filters are translated to this package's filter language and run
in the backends. Documents come back in the order they were first written (a document
overwritten keeps its place): each write stamps its documents with increasing times.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
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

require("haystack", extra="haystack", driver="haystack")

from haystack import component, default_from_dict, default_to_dict  # noqa: E402
from haystack.dataclasses import Document  # noqa: E402
from haystack.document_stores.errors import DocumentStoreError, DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy  # noqa: E402

from ._haystack_filters import translate_filters, where  # noqa: E402

__all__ = ["SemanticStoreDocumentStore", "SemanticStoreEmbeddingRetriever", "translate_filters"]

_EXTRA = "haystack"  #: top-level stored field with what a Document has besides id, content, meta
_BATCH = 500  #: documents deleted or updated per round


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
        self._clock = WriteClock()
        self._runner, self.store = Runner.opening(lambda: SemanticStore.create(name, text_key, time_key, config))

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
        self._runner.close_store(self.store)

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

    # -- Haystack's optional mixins: deletes, updates, counts and metadata by filter ----------

    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Delete every document. ``recreate_index``: drop and recreate the store's data in both
        backends at once (fast) instead of deleting document by document."""
        self._runner.call(lambda: self._delete_all(recreate_index))

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        """Async ``delete_all_documents``, ``recreate_index`` as there."""
        await self._runner.acall(lambda: self._delete_all(recreate_index))

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents matching the Haystack filter ``filters``; returns how many."""
        return self._runner.call(lambda: self._delete_matching(filters))

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async ``delete_by_filter``: delete the documents matching ``filters``; returns how many."""
        return await self._runner.acall(lambda: self._delete_matching(filters))

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the meta of the documents matching ``filters`` (texts and
        embeddings unchanged: nothing is embedded again); returns how many were updated."""
        return self._runner.call(lambda: self._update(filters, meta))

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Async ``update_by_filter``: merge ``meta`` into the documents matching ``filters``."""
        return await self._runner.acall(lambda: self._update(filters, meta))

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """The number of documents matching ``filters``, counted by the primary store."""
        return self._runner.call(lambda: self._count(filters))

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async ``count_documents_by_filter``: the number of documents matching ``filters``."""
        return await self._runner.acall(lambda: self._count(filters))

    def count_unique_metadata_by_filter(self, filters: dict[str, Any], metadata_fields: list[str]) -> dict[str, int]:
        """For each of ``metadata_fields`` (with or without ``meta.``), how many distinct values
        it has among the documents matching ``filters`` (1, 1.0, True and "1" are four)."""
        return self._runner.call(lambda: self._unique_counts(filters, metadata_fields))

    async def count_unique_metadata_by_filter_async(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        """Async ``count_unique_metadata_by_filter`` of ``metadata_fields`` under ``filters``."""
        return await self._runner.acall(lambda: self._unique_counts(filters, metadata_fields))

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        """Every metadata field of the stored documents with its type (``boolean``, ``int``,
        ``float``, ``keyword``; the last one written wins where documents differ)."""
        return self._runner.call(self._fields_info)

    async def get_metadata_fields_info_async(self) -> dict[str, dict[str, str]]:
        """Async ``get_metadata_fields_info``."""
        return await self._runner.acall(self._fields_info)

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        """``{"min": ..., "max": ...}`` of the numbers (or, without numbers, the strings) of
        ``metadata_field`` (with or without ``meta.``); None for both when it has none."""
        return self._runner.call(lambda: self._min_max(metadata_field))

    async def get_metadata_field_min_max_async(self, metadata_field: str) -> dict[str, Any]:
        """Async ``get_metadata_field_min_max`` of ``metadata_field``."""
        return await self._runner.acall(lambda: self._min_max(metadata_field))

    def get_metadata_field_unique_values(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """The distinct values of ``metadata_field`` among the documents matching ``filters``
        whose text form holds ``search_term`` (case-insensitive; None: all), sorted by text
        form: ``size`` of them from ``from_``, and how many there are in all."""
        return self._runner.call(lambda: self._unique_values(metadata_field, search_term, from_, size, filters))

    async def get_metadata_field_unique_values_async(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """Async ``get_metadata_field_unique_values`` of ``metadata_field`` with ``search_term``,
        ``from_``, ``size`` and ``filters`` as there."""
        return await self._runner.acall(lambda: self._unique_values(metadata_field, search_term, from_, size, filters))

    # -- on the store's loop --------------------------------------------------------------

    async def _matching(self, filters: dict[str, Any] | None, limit: int | None = None) -> list[Record]:
        """The records matching ``filters``, in write order (at most ``limit``)."""
        found = where(filters)
        if found is False:
            return []
        total = limit or await self.store.count()  # count also lands this store's buffered writes
        if not total:
            return []
        # records, not entries: the Document's own fields live in the record's extra fields
        node = _filters.parse(found)
        return await self.store.primary.most_recent(total, node, order="asc", include_empty=True)

    async def _filter(self, filters: dict[str, Any] | None) -> list[Document]:
        return [_document(r, embedding=True) for r in await self._matching(filters)]

    async def _write(self, documents: list[Document], policy: DuplicatePolicy) -> int:
        unique = list({d.id: d for d in documents}.values())  # the last of an id wins
        found = await self.store.get_many([d.id for d in unique])
        existing = {d.id: e for d, e in zip(unique, found) if e is not None}
        if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL, DuplicatePolicy.SKIP):
            if existing and policy != DuplicatePolicy.SKIP:
                raise DuplicateDocumentError(f"ID '{sorted(existing)[0]}' already exists in {self.store.name!r}")
            unique = [d for d in unique if d.id not in existing]
        if not unique:
            return 0
        records, vectors = [], {}
        dims = self.store.embedder.dimensions
        for doc in unique:
            old = existing.get(doc.id)
            records.append(self._record(doc, old["timestamp"] if old else self._clock.tick()))
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

    def _entry(self, doc: Document, timestamp: int) -> dict[str, Any]:
        data = doc.to_dict(flatten=False)
        rest = {k: data[k] for k in ("blob", "embedding", "sparse_embedding") if data.get(k) is not None}
        if doc.content is None:
            rest["no_content"] = True
        entry = {"id": doc.id, self.store.text_key: doc.content or "", self.store.time_key: timestamp}
        entry["metadata"] = doc.meta
        if rest:
            entry[_EXTRA] = rest
        return entry

    def _record(self, doc: Document, timestamp: int) -> Record:
        try:
            return build_record(
                self._entry(doc, timestamp),
                text_key=self.store.text_key,
                time_key=self.store.time_key,
                max_text_bytes=self.store.config.max_text_bytes,
                ttl_ms=self.store.config.ttl_ms,
            )
        except ValidationError as exc:
            raise ValueError(f"Document {doc.id!r}: {exc}") from exc

    async def _delete(self, ids: list[str]) -> None:
        for id_ in ids:
            await self.store.delete(id_)

    async def _delete_matching(self, filters: dict[str, Any] | None) -> int:
        deleted = 0
        while batch := await self._matching(filters, _BATCH):
            found = await asyncio.gather(*(self.store.delete(r.id) for r in batch))
            if not any(found):
                break  # deleted meanwhile by another writer
            deleted += sum(found)
        return deleted

    async def _delete_all(self, recreate: bool) -> None:
        if recreate:
            await self.store.drop()
        else:
            await self._delete_matching(None)

    async def _update(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        if not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        records = await self._matching(filters)
        for start in range(0, len(records), _BATCH):
            entries = []
            for r in records[start : start + _BATCH]:
                doc = _document(r, embedding=True)
                entry = self._entry(replace(doc, meta={**doc.meta, **meta}), r.timestamp)
                if r.expires_at is not None:
                    entry["expires_at"] = r.expires_at  # an update keeps the document's expiry
                entries.append(entry)
            # same texts: the store rewrites the vectors' metadata without embedding again
            await self.store.insert_many(entries)
        return len(records)

    async def _count(self, filters: dict[str, Any] | None) -> int:
        found = where(filters)
        if found is False:
            return 0
        await self.store.settle()
        return await self.store.primary.count(None if found is None else _filters.parse(found))

    async def _unique_counts(self, filters: dict[str, Any] | None, fields: list[str]) -> dict[str, int]:
        return {f.removeprefix("meta."): len(await self._values(filters, f)) for f in fields}

    async def _fields_info(self) -> dict[str, dict[str, str]]:
        kinds = {bool: "boolean", int: "int", float: "float"}
        info: dict[str, dict[str, str]] = {}
        for r in await self._matching(None):
            for key, value in r.metadata.items():
                if value is not None:
                    info[key] = {"type": kinds.get(type(value), "keyword")}
        return info

    async def _min_max(self, field: str) -> dict[str, Any]:
        values = list((await self._values(None, field)).values())
        numbers: list[Any] = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        ordered = numbers or [v for v in values if isinstance(v, str)]
        return {"min": min(ordered), "max": max(ordered)} if ordered else {"min": None, "max": None}

    async def _unique_values(
        self, field: str, term: str | None, start: int, size: int, filters: dict[str, Any] | None
    ) -> tuple[list[Any], int]:
        values = await self._values(filters, field)
        if term:
            values = {k: v for k, v in values.items() if term.lower() in str(v).lower()}
        keys = sorted(values, key=lambda k: (str(values[k]), k[0]))
        return [values[k] for k in keys[start : start + size]], len(keys)

    async def _values(self, filters: dict[str, Any] | None, field: str) -> dict[tuple[str, str], Any]:
        """The distinct values of the metadata ``field`` (with or without ``meta.``) among the
        documents matching ``filters``, by their type and JSON form (1, 1.0, True and "1" stay apart)."""
        key = field.removeprefix("meta.")
        values: dict[tuple[str, str], Any] = {}
        for r in await self._matching(filters):
            value = r.metadata.get(key)
            if value is not None:
                values.setdefault((type(value).__name__, json.dumps(value, sort_keys=True, default=str)), value)
        return values

    async def _nearest(
        self, query: list[float], filters: dict[str, Any] | None, top_k: int, scale: bool, with_embedding: bool
    ) -> list[Document]:
        found = where(filters)
        if found is False:
            return []
        hits = await self.store.search_by_vector(query, top_k, found)
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
