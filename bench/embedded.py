"""Embedded default benchmark: the local vector driver (SQLite + HNSW) and the local model.

Prints one JSON object:

* ``index``: HNSW alone at ``--n`` x 384 low-rank synthetic vectors (rank 32 plus noise,
  never uniform random): recall@10 against exact search, single-query p50 (ms), build time;
  plus end-to-end ``get_most_relevant`` p50 (ms) through a store whose embedder looks up
  precomputed vectors (so only the store is timed).
* ``ingest``: ``--n`` entries with the hashing embedder through ``insert_many`` (SQLite +
  local vectors) until the HNSW graph holds them all, against a hand-written loop doing the
  same SQLite writes, hashing and graph inserts in the same run.
* ``model``: all-MiniLM-L6-v2 texts/s on ONNX Runtime and on PyTorch (CPU, interleaved
  rounds), the store's bulk writes with each against the embedder alone, and against the
  previous release's path (PyTorch, 64-text batches in input order).
* ``quality``: stdlib demo questions with an expected answer in the top 5 (``--quality``).

    python bench/embedded.py [--n 100000] [--rounds 3] [--quality]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from promethean_persistence import SemanticStore, StoreConfig
from promethean_persistence.drivers.base import Capabilities
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.drivers.vector.local import LocalVector

DIMS = 384


def low_rank(n: int, seed: int, rank: int = 32, noise: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(rank, DIMS)).astype(np.float32)
    x = rng.normal(size=(n, rank)).astype(np.float32) @ basis
    x += noise * np.sqrt(rank) * rng.normal(size=(n, DIMS)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class LookupEmbedder:
    """Returns precomputed vectors by text, so a benchmark times the store, not a model."""

    name = "lookup"
    model = "bench-lookup"
    dimensions = DIMS
    supports_images = False
    normalize = True
    capabilities = Capabilities()

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    async def embed(self, texts):
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, DIMS), np.float32)

    async def aclose(self) -> None:
        pass


async def bench_index(n: int, home: str) -> dict:
    x = low_rank(n, seed=1)
    queries = low_rank(200, seed=2)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    table = {f"doc {i}": x[i] for i in range(n)} | {f"query {j}": q for j, q in enumerate(queries)}
    cfg = StoreConfig(
        primary_driver="sqlite",
        vector_driver="local",
        embedding_driver="hashing",
        home=home,
        sqlite={"synchronous": "NORMAL"},
        local={"exact_threshold": 0},
    )
    collection = cfg.collection_name("index")
    store = await SemanticStore.from_drivers(
        "index",
        primary=SQLitePrimary.from_config(cfg, collection),
        vector=LocalVector.from_config(cfg, collection),
        embedder=LookupEmbedder(table),
        config=cfg,
    )
    for start in range(0, n, 1000):
        await store.insert_many([{"id": f"d{i}", "text": f"doc {i}"} for i in range(start, min(n, start + 1000))])
    started = time.perf_counter()
    await store.vector.wait_indexed()
    build_s = time.perf_counter() - started
    graph = store.vector._graph
    latencies, recalls = [], []
    for q, truth in zip(queries, exact):
        t = time.perf_counter()
        labels, _ = graph.knn_query(q, k=10)
        latencies.append((time.perf_counter() - t) * 1000)
        ids = {int(store.vector._ids[int(label)][1:]) for label in labels[0]}
        recalls.append(len(ids & set(truth.tolist())) / 10)
    e2e = []
    for j in range(len(queries)):
        t = time.perf_counter()
        hits = await store.get_most_relevant(f"query {j}", 10)
        e2e.append((time.perf_counter() - t) * 1000)
        assert len(hits) == 10
    await store.cleanup()
    return {
        "n": n,
        "dims": DIMS,
        "data": "rank-32 Gaussian + noise (0.3/dim), unit norm",
        "hnsw": {
            "m": cfg.local.hnsw.m,
            "ef_construction": cfg.local.hnsw.ef_construction,
            "ef_search": cfg.local.hnsw.ef_search,
        },
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "query_p50_ms": round(statistics.median(latencies), 3),
        "get_most_relevant_p50_ms": round(statistics.median(e2e), 3),
        "graph_build_after_ingest_s": round(build_s, 1),
    }


async def bench_ingest(n: int, home: str) -> dict:
    texts = [f"entry {i} about topic {i % 97} with a few more words" for i in range(n)]
    # hand-written: the same SQLite rows, hashing and graph inserts, no store around them
    import hnswlib

    embedder = HashingEmbedder(256)
    conn = sqlite3.connect(f"{home}/raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, text TEXT, timestamp INTEGER, metadata TEXT)")
    conn.execute("CREATE TABLE vecs (id TEXT PRIMARY KEY, label INTEGER, vector BLOB, metadata TEXT)")
    graph = hnswlib.Index(space="ip", dim=256)
    graph.init_index(max_elements=n, ef_construction=100, M=16)
    started = time.perf_counter()
    for start in range(0, n, 500):
        chunk = range(start, min(n, start + 500))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", [(f"r{i}", texts[i], i, "{}") for i in chunk])
        conn.execute("COMMIT")
        vectors = await embedder.embed([texts[i] for i in chunk])
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO vecs VALUES (?, ?, ?, ?)",
            [(f"r{i}", i, vectors[k].tobytes(), "{}") for k, i in enumerate(chunk)],
        )
        conn.execute("COMMIT")
        graph.add_items(vectors, np.asarray(list(chunk)), num_threads=2)
    raw_s = time.perf_counter() - started
    conn.close()

    store = await SemanticStore.create(
        "ingest", config={"embedding_driver": "hashing", "home": home, "vector_batch_size": 500}
    )
    started = time.perf_counter()
    for start in range(0, n, 500):
        await store.insert_many(
            [{"id": f"s{i}", "text": texts[i], "createdAt": i} for i in range(start, min(n, start + 500))]
        )
    acknowledged_s = time.perf_counter() - started
    await store.vector.wait_indexed()
    store_s = time.perf_counter() - started
    assert await store.count() == n
    await store.cleanup()
    return {
        "n": n,
        "embedder": "hashing",
        "batch": 500,
        "store_entries_per_s": round(n / store_s, 1),
        "store_acknowledged_per_s": round(n / acknowledged_s, 1),
        "hand_written_entries_per_s": round(n / raw_s, 1),
        "ratio": round(raw_s / store_s, 3),
    }


async def bench_model(rounds: int) -> dict:
    """all-MiniLM-L6-v2 on 1,024 stdlib docstrings: ONNX Runtime against PyTorch (the same
    model, texts and machine, interleaved ``rounds`` times), and the store's bulk write path
    (``insert_many`` + ``flush`` on the embedded default) against the embedder alone."""
    try:
        from promethean_persistence.drivers.embedding.local import LocalEmbedder, OnnxLocalEmbedder
    except ImportError:
        return {"skipped": "pip install 'promethean-persistence[local]'"}
    from promethean_persistence.demo import stdlib_entries

    entries = list(stdlib_entries(1024))
    texts = [e["text"] for e in entries]
    out: dict = {"texts": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts))}
    embedders, load_s = {}, {}
    for runtime in ("onnx", "torch"):
        started = time.perf_counter()
        embedder = LocalEmbedder.from_config(StoreConfig(sentence_transformers={"runtime": runtime, "device": "cpu"}))
        await embedder.warm()
        load_s[runtime] = round(time.perf_counter() - started, 2)
        await embedder.embed(texts[:64])
        embedders[runtime] = embedder
    assert isinstance(embedders["onnx"], OnnxLocalEmbedder)
    from promethean_persistence.outbox import queue

    windows = queue.WINDOW_BATCHES
    rates: dict[str, list[float]] = {k: [] for k in ("onnx", "torch", "store_onnx", "store_torch", "store_before")}
    for r in range(rounds):
        # "before": the previous release's path, torch and 64-text batches in input order
        for label, runtime, window in (("onnx", "onnx", windows), ("torch", "torch", windows), ("before", "torch", 1)):
            queue.WINDOW_BATCHES = window
            if label != "before":
                started = time.perf_counter()
                await embedders[runtime].embed(texts)
                rates[runtime].append(len(texts) / (time.perf_counter() - started))
            with tempfile.TemporaryDirectory() as home:
                cfg = {"home": home, "sentence_transformers": {"runtime": runtime, "device": "cpu"}}
                store = await SemanticStore.create(f"bench{r}", config=cfg)
                await store.embedder.warm()  # load outside the clock, as for the embedder alone
                started = time.perf_counter()
                await store.insert_many(entries)
                await store.flush()
                rates[f"store_{label}"].append(len(texts) / (time.perf_counter() - started))
                ids = {e["id"] for e in entries}  # a docstring may repeat an id: the later one wins
                assert (await store.vector_counts(list(ids)))["indexed"] == len(ids)
                await store.cleanup()
    queue.WINDOW_BATCHES = windows
    for embedder in embedders.values():
        await embedder.aclose()
    median = {k: statistics.median(v) for k, v in rates.items()}
    out |= {
        "rounds": rounds,
        "load_s": load_s,
        "onnx_texts_per_s": round(median["onnx"], 1),
        "torch_texts_per_s": round(median["torch"], 1),
        "onnx_vs_torch": round(median["onnx"] / median["torch"], 2),
        "store_onnx_texts_per_s": round(median["store_onnx"], 1),
        "store_torch_texts_per_s": round(median["store_torch"], 1),
        "store_vs_embedder_onnx": round(median["store_onnx"] / median["onnx"], 2),
        "store_vs_embedder_torch": round(median["store_torch"] / median["torch"], 2),
        "store_onnx_vs_store_torch": round(median["store_onnx"] / median["store_torch"], 2),
        "store_before_texts_per_s": round(median["store_before"], 1),
        "store_onnx_vs_before": round(median["store_onnx"] / median["store_before"], 2),
    }
    return out


async def bench_quality(home: str) -> dict:
    from promethean_persistence.demo import answer_questions, stdlib_entries
    from promethean_persistence.ingest import ingest_entries

    store = await SemanticStore.create("stdlib", config={"home": home, "vector_batch_size": 256})
    await ingest_entries(store, list(stdlib_entries()))
    answers = await answer_questions(store)
    await store.cleanup()
    return {
        "questions": len(answers),
        "found_in_top_5": sum(a["found"] for a in answers),
        "missed": [a["question"] for a in answers if not a["found"]],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--quality", action="store_true", help="also ingest the stdlib corpus (minutes)")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the model comparison")
    args = parser.parse_args(argv)
    result: dict = {"benchmark": "embedded"}
    with tempfile.TemporaryDirectory() as home:
        result["index"] = asyncio.run(bench_index(args.n, home))
    with tempfile.TemporaryDirectory() as home:
        result["ingest"] = asyncio.run(bench_ingest(args.n, home))
    if not args.skip_model:
        result["model"] = asyncio.run(bench_model(args.rounds))
    if args.quality:
        with tempfile.TemporaryDirectory() as home:
            result["quality"] = asyncio.run(bench_quality(home))
    result["targets"] = {
        "recall_at_10": ">= 0.98",
        "query_p50_ms": "<= 1",
        "get_most_relevant_p50_ms": "<= 3",
        "store_entries_per_s": ">= 5000",
        "ratio": ">= 0.5",
        "store_onnx_vs_before": ">= 2.5 (issue 18)",
        "store_vs_embedder_onnx": ">= 0.9",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
