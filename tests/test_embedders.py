"""The Ollama and OpenAI-compatible embedding clients against the in-repo stand-in server
(testing/embedding_server.py: real all-MiniLM-L6-v2 embeddings; Ollama and OpenAI cannot be
installed here), with its scripted faults; and stores built on them."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from promethean_persistence import (
    BackendUnavailable,
    EmbeddingError,
    EmbeddingMismatchError,
    SemanticStore,
    StoreConfig,
    _registry,
)
from promethean_persistence.testing.embedding_server import EmbeddingServer
from promethean_persistence.testing.engines import _free_port

from conftest import MINILM, SERVER_API_KEY, embedding_config

HTTP = ["ollama", "openai"]
TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'markets'}" for i in range(100)]


def make(name, server, model=None, **overrides):
    settings = embedding_config(name, server, **overrides)
    cfg = StoreConfig(**{**settings, "embedding_function": model or settings["embedding_function"]})
    return _registry.load("embedding", name).from_config(cfg)


@pytest.fixture
async def client(served):
    """make(name, **overrides) -> an embedder on the stand-in server, closed afterwards."""
    made = []

    def build(name, model=None, **overrides):
        made.append(make(name, served, model, **overrides))
        return made[-1]

    yield build
    for embedder in made:
        await embedder.aclose()


@pytest.mark.parametrize("name", HTTP)
async def test_batches_requests_and_returns_the_models_vectors(client, served, name):
    embedder = client(name, batch_size=16)
    out = await embedder.embed(TEXTS)
    assert out.shape == (100, 384)
    route = "/api/embed" if name == "ollama" else "/v1/embeddings"
    assert served.requests[route] == 7 and sorted(served.batch_sizes) == [4] + [16] * 6
    direct = served.models["all-minilm"](TEXTS)
    direct = direct / np.linalg.norm(direct, axis=1, keepdims=True)
    assert np.allclose(out, direct, atol=1e-5)  # in order, although OpenAI answers are reversed


async def test_old_ollama_gets_one_text_per_request(client, served):
    batched = await client("ollama").embed(TEXTS[:5])
    served.reset()
    served.legacy = True
    embedder = client("ollama")
    out = await embedder.embed(TEXTS[:5])
    assert served.requests["/api/embed"] == 1 and served.requests["/api/embeddings"] == 5
    assert embedder.legacy is True
    assert np.allclose(out, batched, atol=1e-5)
    await embedder.embed(TEXTS[:2])
    assert served.requests["/api/embed"] == 1  # it remembers


@pytest.mark.parametrize("name", HTTP)
async def test_5xx_is_retried_then_succeeds(client, served, name):
    served.faults += [("status", 500), ("status", 503)]
    out = await client(name, max_retries=3).embed(["hello"])
    assert out.shape == (1, 384)
    assert sum(served.requests.values()) == 3


@pytest.mark.parametrize("name", HTTP)
async def test_5xx_after_the_last_retry_names_the_server(client, served, name):
    served.faults += [("status", 500)] * 2
    with pytest.raises(BackendUnavailable) as info:
        await client(name, max_retries=1).embed(["hello"])
    assert served.url in str(info.value) and "500" in str(info.value)


@pytest.mark.parametrize("name", HTTP)
async def test_429_waits_for_retry_after(client, served, name):
    served.faults += [("status", 429, "1")]
    started = time.monotonic()
    out = await client(name).embed(["hello"])
    assert time.monotonic() - started >= 0.95
    assert out.shape == (1, 384) and sum(served.requests.values()) == 2


@pytest.mark.parametrize("name", HTTP)
async def test_slow_server_times_out_naming_it(client, served, name):
    served.faults += [("delay", 1.5)]
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        await client(name, timeout=0.3, max_retries=0).embed(["hello"])
    assert time.monotonic() - started < 1.4
    assert "did not answer within 0.3 s" in str(info.value) and served.url in str(info.value)


@pytest.mark.parametrize("name", HTTP)
async def test_malformed_json_is_an_embedding_error(client, served, name):
    served.faults += [("malformed",)]
    with pytest.raises(EmbeddingError, match="malformed answer"):
        await client(name).embed(["hello"])


@pytest.mark.parametrize("name", HTTP)
async def test_wrong_dimension_is_refused_naming_both(client, served, name):
    embedder = client(name)
    await embedder.embed(["first answer sets the size"])
    served.faults += [("dims", 7)]
    with pytest.raises(EmbeddingMismatchError) as info:
        await embedder.embed(["hello"])
    assert "7-dimensional" in str(info.value) and "expected 384" in str(info.value)


@pytest.mark.parametrize("name", HTTP)
async def test_connection_refused_names_the_url(name):
    port = _free_port()
    embedder = _registry.load("embedding", name).from_config(
        StoreConfig(
            embedding_driver=name,
            ollama={"url": f"http://127.0.0.1:{port}", "max_retries": 1},
            openai={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1},
        )
    )
    with pytest.raises(BackendUnavailable) as info:
        await embedder.embed(["hello"])
    assert f"127.0.0.1:{port}" in str(info.value) and "is it running" in str(info.value)
    await embedder.aclose()


async def test_ollama_model_not_pulled_says_how_to_pull(client):
    with pytest.raises(EmbeddingError) as info:
        await client("ollama", model="nomic-embed-text").embed(["hello"])
    assert "ollama pull nomic-embed-text" in str(info.value)


async def test_openai_bad_key_is_refused_without_showing_it(client):
    embedder = client("openai", api_key="sk-wrong-key-1234")
    with pytest.raises(EmbeddingError) as info:
        await embedder.embed(["hello"])
    assert "401" in str(info.value) and "sk-wrong-key-1234" not in str(info.value)
    assert "sk-wrong-key-1234" not in repr(embedder)
    assert SERVER_API_KEY not in repr(client("openai"))


async def test_concurrency_is_limited(client, served):
    for _ in range(100):  # a request an earlier test gave up on may still be running
        if not served.in_flight:
            break
        await asyncio.sleep(0.05)
    served.max_in_flight = 0
    served.faults += [("delay", 0.2)] * 8
    await client("ollama", batch_size=1, max_concurrency=2).embed(TEXTS[:8])
    assert served.max_in_flight == 2


async def test_configured_dimensions_are_checked(client):
    with pytest.raises(EmbeddingMismatchError, match="expected 256 \\(configured\\)"):
        await client("openai", dimensions=256).embed(["hello"])


# -- stores on HTTP embedders ----------------------------------------------------------


def store_config(tmp_path, name, server, **overrides):
    return {
        "primary_driver": "sqlite",
        "vector_driver": "local",
        "home": str(tmp_path),
        "vector_retry_delay_ms": 10,
        **embedding_config(name, server, **overrides),
    }


@pytest.mark.parametrize("name", HTTP)
async def test_store_on_an_http_embedder_finds_by_meaning(tmp_path, served, name):
    async with await SemanticStore.create("docs", config=store_config(tmp_path, name, served)) as store:
        await store.insert_many(
            [
                {"text": t}
                for t in [
                    "The kitten sleeps on the sofa",
                    "Quarterly revenue grew by ten percent",
                    "How to bake sourdough bread",
                ]
            ]
        )
        [best] = await store.get_most_relevant("a small cat napping", 1)
        assert best["text"] == "The kitten sleeps on the sofa"
        manifest = await store.primary.get_manifest()
        assert (manifest.embedding_driver, manifest.dimensions, manifest.normalized) == (name, 384, True)
        assert manifest.embedding_model == ("all-minilm" if name == "ollama" else MINILM)
        # openai serves MiniLM under a name of unknown size: one probe at open; then one
        # request for the batch insert and one for the query
        assert served.batch_sizes == ([1] if name == "openai" else []) + [3, 1]


async def test_another_model_on_reopen_is_refused_naming_both(tmp_path, served):
    async with await SemanticStore.create("docs", config=store_config(tmp_path, "ollama", served)) as store:
        await store.insert({"text": "hello"})
    with pytest.raises(EmbeddingMismatchError) as info:
        await SemanticStore.create("docs", config=store_config(tmp_path, "openai", served))
    assert "'all-minilm'" in str(info.value) and repr(MINILM) in str(info.value)


async def test_manifest_gives_the_size_when_the_server_is_down_at_open(tmp_path, served):
    """A model of unknown size (no probe possible) reopens from its manifest."""
    async with await SemanticStore.create("docs", config=store_config(tmp_path, "openai", served)) as store:
        await store.insert({"text": "hello"})
    down = {"openai": {"base_url": f"http://127.0.0.1:{_free_port()}/v1", "max_retries": 0}}
    config = {**store_config(tmp_path, "openai", served), **down, "vector_max_retries": 0}
    async with await SemanticStore.create("docs", config=config) as store:
        assert store.embedder.dimensions == 384
        id_ = await store.insert({"text": "while down"})
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "failed"


async def test_outage_then_recovery_loses_nothing(tmp_path, served):
    port = _free_port()
    server = EmbeddingServer({"all-minilm": served.models["all-minilm"]}, port=port).start()
    config = {**store_config(tmp_path, "ollama", server, max_retries=0), "vector_retry_delay_ms": 60_000}
    async with await SemanticStore.create("docs", config=config) as store:
        await store.insert({"id": "before", "text": "written while the server is up"})
        server.stop()
        await store.insert({"id": "during", "text": "written while the server is down"})
        entry = await store.get("during")
        assert entry["metadata"]["vectorStatus"] == "failed"
        assert f"127.0.0.1:{port}" in entry["metadata"]["vectorWriteError"]
        server = EmbeddingServer({"all-minilm": served.models["all-minilm"]}, port=port).start()
        await store.flush()  # retries now, without waiting for the backoff
        report = await store.get_consistency_report(None)
        assert report["consistent_documents"] == 2 and report["failed"] == 0
        [best] = await store.get_most_relevant("server down", 1)
        assert best["id"] == "during"
    server.stop()
