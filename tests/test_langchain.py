"""LangChain's own standard VectorStore suite, run against SemanticStoreVectorStore on several
store configurations, plus the embeddings bridges both ways."""

from __future__ import annotations

import pytest

from conftest import ADAPTER_STORES, base_config, require_extra

require_extra("langchain_core", "langchain_tests")  # skipped on a machine without it; fails in CI

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings.fake import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from promethean_persistence.drivers.embedding.hashing import HashingEmbedder  # noqa: E402
from promethean_persistence.integrations.langchain import (  # noqa: E402
    LangChainEmbedder,
    SemanticStoreEmbeddings,
    SemanticStoreVectorStore,
)


class TestSemanticStoreVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture(params=ADAPTER_STORES)
    def vectorstore(self, request, tmp_path):
        store = SemanticStoreVectorStore.create(
            "lc", base_config(tmp_path, *request.param), embedding=self.get_embeddings()
        )
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def fake():
    return DeterministicFakeEmbedding(size=12)


async def test_native_async_on_the_callers_loop_with_filters(tmp_path, fake):
    vs = await SemanticStoreVectorStore.afrom_texts(
        ["cats purr", "dogs bark", "cats sleep"],
        fake,
        [{"kind": "cat"}, {"kind": "dog"}, {"kind": "cat"}],
        ids=["c1", "d1", "c2"],
        config=base_config(tmp_path, "sqlite", "local"),
    )
    try:
        hits = await vs.asimilarity_search("dogs bark", k=3, filter={"kind": "cat"})
        assert {d.id for d in hits} == {"c1", "c2"}
        [(best, score)] = await vs.asimilarity_search_with_score("dogs bark", k=1)
        assert best.id == "d1" and score == pytest.approx(1.0, abs=1e-5)
        by_vector = await vs.asimilarity_search_by_vector(fake.embed_query("cats sleep"), k=1)
        assert by_vector[0].page_content == "cats sleep"
        relevance = await vs.asimilarity_search_with_relevance_scores("dogs bark", k=1)
        assert relevance[0][1] == pytest.approx(1.0, abs=1e-5)
        # the fake embeddings know nothing of words; the lexical ranking does
        [(purr, lexical)] = await vs.asimilarity_search_with_score("purr", k=1, mode="lexical")
        assert purr.id == "c1" and lexical > 0
        assert {d.id for d in await vs.asimilarity_search("sleeping cats", k=2, mode="hybrid")} == {"c1", "c2"}
        manifest = await vs.store.primary.get_manifest()
        assert (manifest.embedding_driver, manifest.embedding_model, manifest.dimensions) == (
            "langchain",
            "langchain:DeterministicFakeEmbedding:12",
            12,
        )
        with pytest.raises(Exception, match="async methods"):
            vs.similarity_search("cats")  # the store lives on this very loop
    finally:
        await vs.aclose()


def test_sync_from_texts_reopens_with_the_same_embeddings_only(tmp_path, fake):
    config = base_config(tmp_path, "sqlite", "local")
    vs = SemanticStoreVectorStore.from_texts(["alpha", "beta"], fake, ids=["a", "b"], config=config)
    assert [d.id for d in vs.get_by_ids(["b", "missing", "a"])] == ["b", "a"]
    assert vs.similarity_search("beta", k=1)[0].id == "b"
    vs.close()
    again = SemanticStoreVectorStore.create("langchain", config, embedding=fake)
    assert again.similarity_search("alpha", k=1)[0].metadata == {}
    again.close()
    from promethean_persistence import EmbeddingMismatchError

    with pytest.raises(EmbeddingMismatchError):
        SemanticStoreVectorStore.create("langchain", config, embedding=DeterministicFakeEmbedding(size=7))


async def test_embeddings_bridges_both_ways(fake):
    ours = LangChainEmbedder(fake)
    matrix = await ours.embed(["one", "two"])
    assert matrix.shape == (2, 12) and ours.dimensions == 12
    assert abs(float((matrix[0] ** 2).sum()) - 1) < 1e-5  # normalised for the store
    theirs = SemanticStoreEmbeddings(HashingEmbedder(32))
    vectors = await theirs.aembed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 32
    assert await theirs.aembed_query("one") == vectors[0]


def test_our_embedder_inside_langchain_sync(tmp_path):
    theirs = SemanticStoreEmbeddings(HashingEmbedder(32))
    assert theirs.embed_query("one") == theirs.embed_documents(["one"])[0]
    vs = SemanticStoreVectorStore.create("plain", base_config(tmp_path, "memory", "memory"))
    vs.add_documents([Document(page_content="store embedder", id="x")])
    assert vs.similarity_search("store embedder", k=1)[0].id == "x"
    assert len(vs.embeddings.embed_query("q")) == vs.store.embedder.dimensions
    vs.close()
