"""The ``cross-encoder`` reranker (drivers/rerank/cross_encoder.py).

The model is a tiny cross-encoder with random, seeded weights built by the test
(testing/tiny_cross_encoder.py): no download. It runs sentence-transformers' real
CrossEncoder code path; its scores carry no meaning, so nothing here asserts relevance,
only one finite score per text, determinism and the order the store gives."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys

import pytest

from promethean_persistence import (
    EmbeddingError,
    MissingDependencyError,
    StoreConfig,
    UnknownDriverError,
    _registry,
)

from conftest import require_extra

TEXTS = ["cats purr on the sofa", "dogs bark at night", "the stock market fell", "rain, again!", "42"]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    require_extra("sentence_transformers", "torch", "transformers")
    from promethean_persistence.testing.tiny_cross_encoder import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


def reranker_config(model: str, **overrides) -> StoreConfig:
    return StoreConfig(reranker="cross-encoder", cross_encoder={"model": model, "device": "cpu"}, **overrides)


@pytest.fixture
async def reranker(tiny_cross_encoder):
    reranker = _registry.build("reranker", reranker_config(tiny_cross_encoder))
    yield reranker
    await reranker.aclose()


async def test_registry_builds_the_reranker_from_config(tiny_cross_encoder):
    from promethean_persistence.drivers.rerank.cross_encoder import CrossEncoderReranker

    config = StoreConfig(reranker="cross-encoder", cross_encoder={"model": tiny_cross_encoder, "batch_size": 2})
    reranker = _registry.build("reranker", config)
    assert isinstance(reranker, CrossEncoderReranker)
    assert (reranker.name, reranker.model, reranker.device, reranker.batch_size) == (
        "cross-encoder",
        tiny_cross_encoder,
        "auto",
        2,
    )
    assert repr(reranker) == f"CrossEncoderReranker(model={tiny_cross_encoder!r}, device='auto')"
    assert reranker._model is None  # loaded on the first rerank, not when built


async def test_rerank_gives_one_finite_score_per_text(reranker):
    scores = await reranker.rerank("cats", TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert len(set(scores)) == len(TEXTS)  # different texts, different scores
    assert reranker.device == "cpu"


async def test_rerank_is_deterministic_and_aligned_with_the_texts(reranker, tiny_cross_encoder, tmp_path):
    from promethean_persistence.drivers.rerank.cross_encoder import CrossEncoderReranker
    from promethean_persistence.testing.tiny_cross_encoder import build_tiny_cross_encoder

    scores = await reranker.rerank("cats", TEXTS)
    assert await reranker.rerank("cats", TEXTS) == scores
    assert await reranker.rerank("cats", TEXTS[::-1]) == pytest.approx(scores[::-1], abs=1e-6)
    assert await reranker.rerank("cats", TEXTS[1:2]) == pytest.approx(scores[1:2], abs=1e-6)
    assert await reranker.rerank("the market", TEXTS) != scores  # the query counts
    # the same seed builds the same model
    rebuilt = CrossEncoderReranker(build_tiny_cross_encoder(tmp_path), device="cpu")
    try:
        assert await rebuilt.rerank("cats", TEXTS) == pytest.approx(scores, abs=1e-6)
    finally:
        await rebuilt.aclose()


async def test_rerank_of_no_texts_loads_nothing(reranker):
    assert await reranker.rerank("cats", []) == []
    assert reranker._model is None


async def test_concurrent_reranks_load_the_model_once(reranker):
    results = await asyncio.gather(*(reranker.rerank("cats", TEXTS) for _ in range(4)))
    assert all(r == results[0] for r in results)


async def test_long_texts_are_truncated_not_failed(reranker):
    scores = await reranker.rerank("cats " * 1000, ["word " * 50_000, "short"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


async def test_aclose_releases_the_model_and_a_later_rerank_reloads_it(reranker):
    scores = await reranker.rerank("cats", TEXTS)
    await reranker.aclose()
    assert reranker._model is None and reranker._executor is None
    assert await reranker.rerank("cats", TEXTS) == scores
    await reranker.aclose()
    await reranker.aclose()  # twice is fine


async def test_a_bad_model_path_fails_on_the_first_rerank(tmp_path):
    require_extra("sentence_transformers", "torch")
    missing = str(tmp_path / "no" / "such-model")  # a path, so nothing is looked up on the Hub
    reranker = _registry.build("reranker", reranker_config(missing))  # building loads nothing
    try:
        with pytest.raises(EmbeddingError, match="Cannot load reranker model") as info:
            await reranker.rerank("cats", TEXTS)
        assert missing in str(info.value)
        assert info.value.driver == "cross-encoder" and info.value.operation == "rerank"
        with pytest.raises(EmbeddingError, match="Cannot load reranker model"):  # again, not a hang
            await reranker.rerank("cats", TEXTS)
    finally:
        await reranker.aclose()


async def test_a_failing_model_raises_embedding_error(reranker):
    await reranker.warm()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    reranker._model.predict = broken
    with pytest.raises(EmbeddingError, match="failed to rerank 5 texts: out of memory") as info:
        await reranker.rerank("cats", TEXTS)
    assert info.value.operation == "rerank"


def test_an_unknown_reranker_fails_at_config_time():
    with pytest.raises(UnknownDriverError, match="did you mean 'cross-encoder'"):
        StoreConfig(reranker="cross-encodr")
    with pytest.raises(UnknownDriverError):
        StoreConfig.from_env({"RERANKER": "no-such-reranker"})


def test_no_reranker_is_the_default():
    assert StoreConfig().reranker is None


def test_environment_variables_configure_the_reranker():
    config = StoreConfig.from_env({"RERANKER": "cross-encoder", "RERANKER_MODEL": "/models/my-reranker"})
    assert config.reranker == "cross-encoder"
    assert config.cross_encoder.model == "/models/my-reranker"


def test_missing_sentence_transformers_fails_at_build_with_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'promethean-persistence\[local\]'"):
        _registry.build("reranker", reranker_config("some/model"))


async def test_missing_sentence_transformers_fails_at_load_with_the_extra(monkeypatch):
    from promethean_persistence.drivers.rerank.cross_encoder import CrossEncoderReranker

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now raises ImportError
    reranker = CrossEncoderReranker("some/model", device="cpu")
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install 'promethean-persistence\[local\]'"):
            await reranker.rerank("cats", TEXTS)
    finally:
        await reranker.aclose()


# -- in the store ----------------------------------------------------------------------------

DOCS = {
    "d0": "cats purr on the sofa",
    "d1": "cats chase mice",
    "d2": "dogs bark at night",
    "d3": "a cat and a dog",
    "d4": "the stock market fell",
    "d5": "rain, again!",
    "d6": "cats sleep all day",
    "d7": "quantum cats in boxes",
}


async def test_the_store_orders_results_by_the_rerankers_scores(tmp_path, tiny_cross_encoder):
    from promethean_persistence import SemanticStore
    from promethean_persistence.drivers.rerank.cross_encoder import CrossEncoderReranker

    def config(**reranker) -> StoreConfig:
        return StoreConfig(
            primary_driver="memory",
            vector_driver="memory",
            embedding_driver="hashing",
            home=str(tmp_path / "home"),
            **reranker,
        )

    reranked = await SemanticStore.create(
        "reranked", config=config(reranker="cross-encoder", cross_encoder={"model": tiny_cross_encoder})
    )
    plain = await SemanticStore.create("plain", config=config())
    judge = CrossEncoderReranker(tiny_cross_encoder, device="cpu")
    try:
        assert isinstance(reranked.reranker, CrossEncoderReranker) and plain.reranker is None
        for store in (reranked, plain):
            await store.insert_many([{"id": k, "text": v} for k, v in DOCS.items()])
            await store.flush()
        query = "cats"
        hits = await reranked.get_most_relevant(query, len(DOCS))
        candidates = [h["id"] for h in await plain.get_most_relevant(query, len(DOCS))]
        assert sorted(h["id"] for h in hits) == sorted(candidates)  # the same candidates (fetch_k >= all)...
        scores = dict(zip(candidates, await judge.rerank(query, [DOCS[i] for i in candidates]), strict=True))
        by_score = sorted(candidates, key=lambda i: -scores[i])
        assert [h["id"] for h in hits] == by_score  # ...in the reranker's order
        assert by_score != candidates  # which is not the vectors' order: the reranker changed it
        assert [h["score"] for h in hits] == pytest.approx([scores[i] for i in by_score], abs=1e-6)
        top = await reranked.get_most_relevant(query, 3)
        assert [h["id"] for h in top] == by_score[:3]  # limit cuts the reranked list
    finally:
        await judge.aclose()
        await reranked.cleanup()
        await plain.cleanup()
    assert reranked.reranker._model is None  # closed with the store
