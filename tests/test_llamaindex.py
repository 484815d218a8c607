"""LlamaIndex end to end through its own public objects (VectorStoreIndex, retrievers, a query
engine with LlamaIndex's MockLLM, an IngestionPipeline, delete_ref_doc) on several store
configurations, plus the filter translation. llama-index-core ships no vector-store test suite."""

from __future__ import annotations

import pytest

from conftest import ADAPTER_STORES, base_config, require_extra

require_extra("llama_index.core")  # skipped on a machine without it; fails in CI

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline  # noqa: E402
from llama_index.core.llms.mock import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore  # noqa: E402
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from promethean_persistence.integrations.llamaindex import (  # noqa: E402
    SemanticStoreKVStore,
    SemanticStoreVectorStore,
    translate_filters,
)

DOCS = [
    Document(text="The kestrel hovers over the meadow hunting voles.", metadata={"kind": "bird", "year": 2019}),
    Document(text="Sourdough bread needs a lively starter and patience.", metadata={"kind": "food", "year": 2021}),
    Document(text="The heron stands still in the river shallows.", metadata={"kind": "bird", "year": 2023}),
    Document(text="Ramen broth simmers for many hours with bones.", metadata={"kind": "food", "year": 2024}),
]


@pytest.fixture(params=ADAPTER_STORES)
def vs(request, tmp_path):
    store = SemanticStoreVectorStore("li", base_config(tmp_path, *request.param))
    try:
        yield store
    finally:
        store.close()


def _index(vs: SemanticStoreVectorStore, docs=DOCS) -> VectorStoreIndex:
    context = StorageContext.from_defaults(vector_store=vs)
    return VectorStoreIndex.from_documents(docs, storage_context=context, embed_model=vs.embed_model)


def _texts(nodes) -> list[str]:
    return [n.node.get_content() for n in nodes]


def test_an_index_retrieves_filters_answers_and_deletes_by_document(vs):
    index = _index(vs)
    assert vs.client.primary.capabilities  # the nodes live in the store itself (stores_text)
    top = index.as_retriever(similarity_top_k=1).retrieve("heron river shallows")
    assert _texts(top) == [DOCS[2].text] and top[0].score is not None
    assert top[0].node.metadata == {"kind": "bird", "year": 2023} and top[0].node.ref_doc_id == DOCS[2].doc_id

    birds_after_2020 = MetadataFilters(
        filters=[
            MetadataFilter(key="kind", value="bird"),
            MetadataFilter(key="year", value=2020, operator=FilterOperator.GT),
        ]
    )
    hits = index.as_retriever(similarity_top_k=4, filters=birds_after_2020).retrieve("kestrel meadow")
    assert _texts(hits) == [DOCS[2].text]

    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    response = engine.query("bread starter")
    assert DOCS[1].text in [n.node.get_content() for n in response.source_nodes]

    index.delete_ref_doc(DOCS[1].doc_id)
    assert DOCS[1].text not in _texts(index.as_retriever(similarity_top_k=4).retrieve("bread starter"))
    assert len(vs.get_nodes()) == 3


async def test_async_retrieval_and_adds(vs):
    index = _index(vs, DOCS[:2])
    await index.ainsert(DOCS[2])
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("heron river")
    assert _texts(hits) == [DOCS[2].text]
    await vs.adelete(DOCS[2].doc_id)
    assert [n.get_content() for n in await vs.aget_nodes()] == [DOCS[0].text, DOCS[1].text]


def test_an_ingestion_pipeline_writes_chunks_into_the_store(vs):
    long_doc = Document(text=" ".join(f"Sentence {i} mentions topic{i}." for i in range(60)), metadata={"src": "a"})
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), vs.embed_model], vector_store=vs
    )
    nodes = pipeline.run(documents=[long_doc])
    assert len(nodes) > 3 and vs.client.primary is not None
    stored = vs.get_nodes()
    assert {n.node_id for n in stored} == {n.node_id for n in nodes}
    assert all(n.ref_doc_id == long_doc.doc_id and n.metadata["src"] == "a" for n in stored)
    index = VectorStoreIndex.from_vector_store(vs, embed_model=vs.embed_model)
    assert "topic42" in _texts(index.as_retriever(similarity_top_k=1).retrieve("topic42"))[0]


def test_query_modes_ids_and_node_deletes(vs):
    nodes = [
        TextNode(id_=f"n{i}", text=d.text, metadata=dict(d.metadata)) for i, d in enumerate(DOCS)
    ]  # no embeddings: the store embeds them
    vs.add(nodes)
    words = vs.query(VectorStoreQuery(query_str="sourdough", similarity_top_k=2, mode=VectorStoreQueryMode.TEXT_SEARCH))
    assert words.ids == ["n1"] and words.similarities[0] > 0  # only one node holds the word
    hybrid = vs.query(VectorStoreQuery(query_str="heron", similarity_top_k=1, mode=VectorStoreQueryMode.HYBRID))
    assert hybrid.ids == ["n2"]
    embedding = vs.embed_model.get_query_embedding("ramen broth bones")
    among = vs.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=5, node_ids=["n0", "n3"]))
    assert among.ids == ["n3", "n0"] and among.similarities[0] > among.similarities[1]
    mmr = vs.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=2, mode=VectorStoreQueryMode.MMR))
    assert mmr.ids[0] == "n3" and len(mmr.ids) == 2
    food = MetadataFilters(filters=[MetadataFilter(key="kind", value="food")])
    assert [n.node_id for n in vs.get_nodes(filters=food)] == ["n1", "n3"]
    vs.delete_nodes(["n0", "n1"], filters=food)  # n0 is not food: kept
    assert [n.node_id for n in vs.get_nodes()] == ["n0", "n2", "n3"]
    vs.clear()
    assert vs.get_nodes() == [] and vs.query(VectorStoreQuery(query_embedding=embedding)).ids == []


def test_embeddings_of_another_size_are_refused(tmp_path):
    vs = SemanticStoreVectorStore("li", base_config(tmp_path, "sqlite", "local", embedding_function="hashing-v1-8"))
    try:
        with pytest.raises(ValueError, match="3-dimensional.*makes 8"):
            vs.add([TextNode(id_="x", text="t", embedding=[1.0, 2.0, 3.0])])
        assert vs.get_nodes() == []
    finally:
        vs.close()


def test_filter_translation():
    f = MetadataFilters(
        filters=[
            MetadataFilter(key="a", value=1),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="b", value=[1, 2], operator=FilterOperator.IN),
                    MetadataFilter(key="c", value=None, operator=FilterOperator.IS_EMPTY),
                ],
                condition=FilterCondition.OR,
            ),
        ]
    )
    assert translate_filters(f) == {
        "$and": [{"a": {"$eq": 1}}, {"$or": [{"b": {"$in": [1, 2]}}, {"c": {"$eq": None}}]}]
    }
    none_of = MetadataFilters(
        filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="n", value=3, operator=FilterOperator.GT)],
        condition=FilterCondition.NOT,
    )
    assert translate_filters(none_of) == {
        "$and": [{"a": {"$ne": 1}}, {"$or": [{"n": {"$lte": 3}}, {"n": {"$eq": None}}]}]
    }
    with pytest.raises(ValueError, match="'text_match'.*not supported"):
        translate_filters(MetadataFilters(filters=[MetadataFilter(key="t", value="x", operator="text_match")]))


def test_a_pipeline_with_a_docstore_in_the_store_skips_unchanged_documents_and_replaces_changed_ones(vs, tmp_path):
    kv = SemanticStoreKVStore("li_kv", vs.client.config)
    try:
        docstore = KVDocumentStore(kv)

        def pipeline() -> IngestionPipeline:
            return IngestionPipeline(
                transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), vs.embed_model],
                vector_store=vs,
                docstore=docstore,
                docstore_strategy=DocstoreStrategy.UPSERTS,
            )

        docs = [Document(text=d.text, id_=f"doc{i}", metadata=d.metadata) for i, d in enumerate(DOCS)]
        assert len(pipeline().run(documents=docs)) == 4
        assert len(pipeline().run(documents=docs)) == 0  # unchanged: skipped by the docstore's hashes
        changed = Document(text="The heron flies off downstream.", id_="doc2", metadata=DOCS[2].metadata)
        assert len(pipeline().run(documents=[*docs[:2], changed, docs[3]])) == 1
        assert sorted(n.get_content() for n in vs.get_nodes()) == sorted(
            [DOCS[0].text, DOCS[1].text, changed.text, DOCS[3].text]
        )  # the old chunk of doc2 went with it
        assert docstore.get_document_hash("doc2") == changed.hash

        # the index store too: an index's structure kept beside its nodes
        index_store = KVIndexStore(kv)
        context = StorageContext.from_defaults(vector_store=vs, docstore=docstore, index_store=index_store)
        index = VectorStoreIndex([], storage_context=context, embed_model=vs.embed_model)
        assert index_store.get_index_struct(index.index_id) is not None
        assert kv.get("missing") is None and kv.delete("missing") is False
    finally:
        kv.close()
