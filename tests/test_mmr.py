"""Maximal marginal relevance: relevant and diverse entries, on the store and through the
LangChain adapter, with vectors chosen so that plain relevance returns near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from promethean_persistence import SemanticStore, ValidationError
from promethean_persistence._mmr import mmr_order
from promethean_persistence.drivers.base import Capabilities

from conftest import PG, base_config, require_extra

QUERY = "apple pie"
VECTORS = {
    QUERY: [1.0, 0.0, 0.0],
    "dup1": [0.95, 0.31, 0.0],
    "dup2": [0.95, 0.30, 0.05],
    "dup3": [0.94, 0.33, 0.0],
    "other": [0.8, -0.6, 0.0],
    "far": [0.0, 0.0, 1.0],
}
DOCS = [k for k in VECTORS if k != QUERY]


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def relevance(doc: str) -> float:
    return float(unit(VECTORS[doc]) @ unit(VECTORS[QUERY]))


BEST = max(DOCS, key=relevance)  # one of the near-duplicates


class TableEmbedder:
    """Vectors looked up by text: a benchmark of geometry, not of a model."""

    name = "table"
    model = "table-v1"
    dimensions = 3
    supports_images = False
    normalize = True
    capabilities = Capabilities()

    async def embed(self, texts):
        return np.stack([unit(VECTORS[t]) for t in texts]) if texts else np.zeros((0, 3), np.float32)

    async def aclose(self) -> None:
        pass


PAIRS = [
    pytest.param(("memory", "memory"), id="memory"),
    pytest.param(("sqlite", "local"), id="local"),
    pytest.param(("postgresql", "pgvector"), id="pgvector", marks=PG),
]


@pytest.fixture(params=PAIRS)
async def store(request, tmp_path):
    s = await SemanticStore.create("mmr", config=base_config(tmp_path, *request.param), embedder=TableEmbedder())
    await s.insert_many([{"id": d, "text": d, "metadata": {"kind": d.rstrip("123")}} for d in DOCS])
    await s.flush()
    try:
        yield s
    finally:
        await s.drop()
        await s.cleanup()  # drop keeps it open: its pool share goes back here


async def test_mmr_trades_near_duplicates_for_diversity(store):
    plain = [h["id"] for h in await store.get_most_relevant(QUERY, 2)]
    assert set(plain) <= {"dup1", "dup2", "dup3"}  # relevance alone: two near-duplicates
    hits = await store.max_marginal_relevance(QUERY, 2)
    assert [h["id"] for h in hits] == [BEST, "other"]
    assert BEST.startswith("dup") and hits[1]["score"] == pytest.approx(relevance("other"), abs=1e-5)
    assert hits[0]["text"] == BEST and hits[0]["metadata"]["kind"] == "dup"


async def test_lambda_one_is_relevance_order_and_filters_apply(store):
    relevant = [h["id"] for h in await store.get_most_relevant(QUERY, 4)]
    assert [h["id"] for h in await store.max_marginal_relevance(QUERY, 4, lambda_mult=1.0)] == relevant
    only_dups = await store.max_marginal_relevance(QUERY, 5, where={"kind": "dup"})
    assert sorted(h["id"] for h in only_dups) == ["dup1", "dup2", "dup3"]
    # fetch_k below limit is raised to it; every candidate is returned once
    every = await store.max_marginal_relevance(QUERY, 10, fetch_k=1, lambda_mult=0.0)
    assert sorted(h["id"] for h in every) == sorted(DOCS)
    by_vector = await store.max_marginal_relevance_by_vector(VECTORS[QUERY], 2)
    assert [h["id"] for h in by_vector] == [BEST, "other"]
    assert await store.max_marginal_relevance(["", "  "], 3) == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        *(({"lambda_mult": v}, "lambda_mult") for v in (-0.1, 1.5, float("nan"), "0.5", True, None)),
        *(({"fetch_k": v}, "fetch_k") for v in (0, -1, "20", True, 2.5)),
        *(({"mode": v}, "mode") for v in ("bm25", "", 7, "Vector ")),
        ({"limit": 0}, "limit"),
        ({"where": {"$bad": 1}}, None),
    ],
)
async def test_bad_arguments_are_refused(store, kwargs, field):
    with pytest.raises(ValidationError) as refused:
        await store.max_marginal_relevance(QUERY, **kwargs)
    assert field is None or refused.value.field == field
    assert await store.count() == len(DOCS)


def test_mmr_order_on_its_own():
    candidates = np.stack([unit(VECTORS[d]) for d in DOCS])
    query = unit(VECTORS[QUERY])[None, :]
    assert mmr_order(query, candidates, 3, 1.0) == list(np.argsort(-(candidates @ query[0]), kind="stable")[:3])
    assert mmr_order(query, candidates, 2, 0.5) == [DOCS.index(BEST), DOCS.index("other")]
    assert mmr_order(query, candidates[:0], 3, 0.5) == []
    assert sorted(mmr_order(query, candidates, 99, 0.3)) == list(range(len(DOCS)))


async def test_langchain_mmr_search(tmp_path):
    require_extra("langchain_core")
    from langchain_core.embeddings import Embeddings

    from promethean_persistence.integrations.langchain import SemanticStoreVectorStore

    class TableEmbeddings(Embeddings):
        def embed_documents(self, texts):
            return [self.embed_query(t) for t in texts]

        def embed_query(self, text):
            return unit(VECTORS.get(text, [0.0, 1.0, 0.0])).tolist()  # the adapter probes the size

    vs = await SemanticStoreVectorStore.afrom_texts(
        DOCS, TableEmbeddings(), ids=DOCS, config=base_config(tmp_path, "sqlite", "local")
    )
    try:
        docs = await vs.amax_marginal_relevance_search(QUERY, k=2, fetch_k=10)
        assert [d.id for d in docs] == [BEST, "other"]
        by_vector = await vs.amax_marginal_relevance_search_by_vector(VECTORS[QUERY], k=2, lambda_mult=0.5)
        assert [d.page_content for d in by_vector] == [BEST, "other"]
        plain = await vs.amax_marginal_relevance_search(QUERY, k=3, lambda_mult=1.0)
        assert [d.id for d in plain] == [d.id for d in await vs.asimilarity_search(QUERY, k=3)]
    finally:
        await vs.aclose()
