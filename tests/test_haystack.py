"""Haystack's own DocumentStore test suite, run against SemanticStoreDocumentStore on several
store configurations, plus embedding retrieval and the filter translation."""

from __future__ import annotations

import pytest

from conftest import ADAPTER_STORES, base_config, require_extra

require_extra("haystack")  # skipped on a machine without it; fails in CI

from haystack import Document, Pipeline  # noqa: E402
from haystack.document_stores.errors import DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy  # noqa: E402
from haystack.errors import FilterError  # noqa: E402
from haystack.testing.document_store import (  # noqa: E402
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DocumentStoreBaseExtendedTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
)

from promethean_persistence.integrations.haystack import (  # noqa: E402
    SemanticStoreDocumentStore,
    SemanticStoreEmbeddingRetriever,
    translate_filters,
)

DIMS = 768  # the size of the embeddings in Haystack's filterable test documents


class TestSemanticStoreDocumentStore(
    DocumentStoreBaseExtendedTests,  # the base suite, delete_all_documents, delete_ and update_by_filter
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
):
    # Haystack's suites compare documents in the order they were written: ours returns that
    # order (no order-ignoring override of assert_documents_are_equal).
    @pytest.fixture(params=ADAPTER_STORES)
    def document_store(self, request, tmp_path):
        store = SemanticStoreDocumentStore(
            "hs", base_config(tmp_path, *request.param, embedding_function=f"hashing-v1-{DIMS}")
        )
        try:
            yield store
        finally:
            store.close()

    # Haystack leaves the default policy to each store and asks for this override:
    # ours treats DuplicatePolicy.NONE as FAIL.
    def test_write_documents(self, document_store):
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])
        self.assert_documents_are_equal(document_store.filter_documents(), [doc])


@pytest.fixture
def store(tmp_path):
    s = SemanticStoreDocumentStore("hs", base_config(tmp_path, "sqlite", "local", embedding_function="hashing-v1-4"))
    yield s
    s.close()


def test_embedding_retrieval_uses_the_given_embeddings_and_filters(store):
    docs = [
        Document(id="x", content="east", embedding=[1, 0, 0, 0], meta={"side": "a"}),
        Document(id="y", content="north", embedding=[0, 1, 0, 0], meta={"side": "b"}),
        Document(id="z", content="north east", embedding=[1, 1, 0, 0], meta={"side": "b"}),
    ]
    assert store.write_documents(docs) == 3
    hits = store.embedding_retrieval([1, 0.1, 0, 0], top_k=2)
    assert [d.id for d in hits] == ["x", "z"] and hits[0].embedding is None and hits[0].score > hits[1].score
    filtered = store.embedding_retrieval(
        [1, 0, 0, 0],
        filters={"field": "meta.side", "operator": "==", "value": "b"},
        top_k=5,
        scale_score=True,
        return_embedding=True,
    )
    assert [d.id for d in filtered] == ["z", "y"] and 0 <= filtered[1].score <= filtered[0].score <= 1
    assert filtered[0].embedding == [1, 1, 0, 0]  # exactly as given, not normalised
    pipeline = Pipeline()
    pipeline.add_component("retriever", SemanticStoreEmbeddingRetriever(store, top_k=1))
    assert pipeline.run({"retriever": {"query_embedding": [0, 1, 0, 0]}})["retriever"]["documents"][0].id == "y"


def test_text_only_documents_are_embedded_by_the_store_and_sizes_are_checked(store):
    assert store.write_documents([Document(id="t", content="plain text")]) == 1
    assert store.store.embedder.dimensions == 4
    assert store.embedding_retrieval(store.store.embedder.embed_one("plain text").tolist(), top_k=1)[0].id == "t"
    with pytest.raises(ValueError, match="3-dimensional.*makes 4"):
        store.write_documents([Document(id="bad", content="x", embedding=[1, 2, 3])])
    assert store.write_documents([Document(id="t", content="again")], policy=DuplicatePolicy.SKIP) == 0
    assert store.write_documents([Document(id="t", content="again")], policy=DuplicatePolicy.OVERWRITE) == 1
    assert store.filter_documents()[0].content == "again"


async def test_async_methods(store):
    assert await store.write_documents_async([Document(id="a", content="async doc", meta={"n": 1})]) == 1
    assert await store.count_documents_async() == 1
    got = await store.filter_documents_async({"field": "meta.n", "operator": ">=", "value": 1})
    assert [d.id for d in got] == ["a"]
    await store.delete_documents_async(["a"])
    assert await store.count_documents_async() == 0


def test_filter_translation():
    eq = {"field": "meta.a", "operator": "==", "value": 1}
    gt = {"field": "meta.b", "operator": ">", "value": 2}
    assert translate_filters(None) is True
    assert translate_filters({"operator": "AND", "conditions": [eq, gt]}) == {
        "$and": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]
    }
    assert translate_filters({"operator": "NOT", "conditions": [eq, gt]}) == {
        "$or": [{"a": {"$ne": 1}}, {"$or": [{"b": {"$lte": 2}}, {"b": {"$eq": None}}]}]
    }
    assert translate_filters({"field": "meta.b", "operator": "<", "value": None}) is False
    assert (
        translate_filters({"operator": "NOT", "conditions": [{"field": "meta.b", "operator": "<", "value": None}]})
        is True
    )
    for bad in (
        {"field": "content", "operator": "==", "value": "x"},
        {"field": "meta.a", "operator": "~", "value": 1},
        {"field": "meta.a", "operator": "in", "value": "ab"},
    ):
        with pytest.raises(FilterError):
            translate_filters(bad)


def test_serialisation_round_trip_leaves_secrets_out(tmp_path):
    config = base_config(tmp_path, "sqlite", "local", embedding_function="hashing-v1-4")
    config["postgresql"] = {"password": "s3cret", "host": "db"}
    store = SemanticStoreDocumentStore("hs", config)
    data = store.to_dict()
    assert "s3cret" not in repr(data) and data["init_parameters"]["config"]["postgresql"] == {"host": "db"}
    store.write_documents([Document(id="k", content="kept")])
    store.close()
    again = SemanticStoreDocumentStore.from_dict(data)
    assert again.count_documents() == 1
    again.close()


def test_update_by_filter_reaches_the_vectors_without_embedding_again(store):
    docs = [
        Document(id="g", content="given", embedding=[1, 0, 0, 0], meta={"k": "a"}),
        Document(id="t", content="text only", meta={"k": "a"}),
        Document(id="o", content="other", embedding=[0, 1, 0, 0], meta={"k": "b"}),
    ]
    assert store.write_documents(docs) == 3
    embedder = store.store.embedder
    calls: list[int] = []
    embed = embedder.embed

    async def counting(texts):
        calls.append(len(texts))
        return await embed(texts)

    embedder.embed = counting
    assert store.update_by_filter({"field": "meta.k", "operator": "==", "value": "a"}, {"k": "z", "n": 1}) == 2
    store._runner.call(store.store.flush)
    assert calls == []  # same texts: only the vectors' metadata was rewritten
    # the vector store filters on the new metadata, and the given embedding is kept as it was
    hits = store.embedding_retrieval([1, 0, 0, 0], filters={"field": "meta.k", "operator": "==", "value": "z"})
    assert [d.id for d in hits][:1] == ["g"] and {d.id for d in hits} == {"g", "t"}
    assert store.filter_documents({"field": "meta.n", "operator": "==", "value": 1})[0].embedding == [1, 0, 0, 0]
    assert [d.id for d in store.filter_documents()] == ["g", "t", "o"]  # write order kept


def test_documents_come_back_in_write_order_and_an_overwrite_keeps_its_place(store):
    store.write_documents([Document(id=i, content=f"doc {i}") for i in ("m", "c", "x")])
    store.write_documents([Document(id="a", content="later")])
    store.write_documents([Document(id="c", content="rewritten")], policy=DuplicatePolicy.OVERWRITE)
    assert [d.id for d in store.filter_documents()] == ["m", "c", "x", "a"]
    assert store.delete_by_filter({"field": "meta.none", "operator": "==", "value": 1}) == 0
    store.delete_all_documents(recreate_index=True)
    assert store.count_documents() == 0 and store.embedding_retrieval([1, 0, 0, 0]) == []
