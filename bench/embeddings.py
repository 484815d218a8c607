"""Embedding drivers benchmark: our Ollama and OpenAI-compatible clients against the in-repo
stand-in server (testing/embedding_server.py), which computes real all-MiniLM-L6-v2
embeddings with one model call per request, in its own process (as a real server would be).

Prints one JSON object:

* ``raw_texts_per_s``: the server's model called directly on all texts (batches of 64): the
  ceiling that HTTP clients approach.
* ``original_texts_per_s``: one text per request, one request at a time, through Ollama's old
  ``/api/embeddings`` (what the original package did).
* ``drivers.<name>.batch_<b>``: texts/s of ``embed(texts)`` with ``batch_size=b`` (1, 16, 64);
  ``ratio_to_raw`` = that / raw (median of the per-round ratios; ``ratio_to_raw_spread``
  their min/median/max).
* ``batching_gain``: each driver's batch-64 throughput / the original's, median of the
  per-round ratios (target >= 5; ``drivers.<name>.batch_64.gain_spread`` min/median/max).

Every figure comes from ``--runs`` interleaved rounds: each round runs every side once (raw,
original, each driver and batch size), in an order rotated per round, so load on a shared
machine hits all sides alike; medians are over rounds.

    python bench/embeddings.py [--n 1000] [--runs 3] [--encoder local|hashing]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time

from _compare import spread, text

from promethean_persistence.drivers.embedding.ollama import OllamaEmbedder
from promethean_persistence.drivers.embedding.openai import OpenAIEmbedder
from promethean_persistence.testing.embedding_server import (
    EmbeddingServer,
    hashing_encoder,
    local_encoder,
)

MODEL = "all-minilm"


def texts(n: int) -> list[str]:
    return [text(i) for i in range(n)]


def build(driver: str, url: str, batch: int, concurrency: int):
    common = {"timeout": 120.0, "batch_size": batch, "max_concurrency": concurrency, "max_retries": 0}
    if driver == "openai":
        return OpenAIEmbedder(MODEL, url=url + "/v1", **common)
    return OllamaEmbedder(MODEL, url=url, **common)


def encoder(name: str):
    return local_encoder() if name == "local" else hashing_encoder(384)  # all-minilm's size


def serve(encoder_name: str, conn) -> None:
    """The child process: a current server and an old one (no /api/embed), until told to stop."""
    encode = encoder(encoder_name)
    current = EmbeddingServer({MODEL: encode}).start()
    old = EmbeddingServer({MODEL: encode}, legacy=True).start()
    conn.send((current.url, old.url))
    conn.recv()
    current.stop()
    old.stop()


async def main(n: int, runs: int, encoder_name: str) -> dict:
    items = texts(n)
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(encoder_name, child), daemon=True)
    process.start()
    embedders: dict[str, object] = {}
    try:
        url, old_url = parent.recv()
        encode = encoder(encoder_name)  # the raw ceiling, measured here while the server idles
        encode(items[:64])

        async def raw() -> None:
            for i in range(0, n, 64):
                encode(items[i : i + 64])

        embedders["original"] = build("ollama", old_url, 1, 1)
        for driver in ("ollama", "openai"):
            for batch in (1, 16, 64):
                embedders[f"{driver}/batch_{batch}"] = build(driver, url, batch, 4)
        for embedder in embedders.values():
            await embedder.embed(items[:2])  # connection set up, model warm
        assert embedders["original"].legacy

        def timed(embedder):
            async def call() -> None:
                out = await embedder.embed(items)
                assert out.shape[0] == len(items)

            return call

        sides = {"raw": raw} | {name: timed(e) for name, e in embedders.items()}
        rates: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for r in range(runs):  # interleaved: every side once per round, the order rotated
            shift = r % len(order)
            for name in order[shift:] + order[:shift]:
                started = time.perf_counter()
                await sides[name]()
                rates[name].append(n / (time.perf_counter() - started))
    finally:
        for embedder in embedders.values():
            await embedder.aclose()
        parent.send("stop")
        process.join(30)
    raw_rates, original = rates["raw"], rates["original"]
    drivers: dict[str, dict] = {}
    for driver in ("ollama", "openai"):
        for batch in (1, 16, 64):
            own = rates[f"{driver}/batch_{batch}"]
            to_raw = [a / b for a, b in zip(own, raw_rates)]
            drivers.setdefault(driver, {})[f"batch_{batch}"] = {
                "texts_per_s": round(statistics.median(own), 1),
                "ratio_to_raw": round(statistics.median(to_raw), 3),
                "ratio_to_raw_spread": spread(to_raw),
            }
        gains = [a / b for a, b in zip(rates[f"{driver}/batch_64"], original)]
        drivers[driver]["batch_64"]["gain_spread"] = spread(gains)
    return {
        "benchmark": "embeddings",
        "encoder": "all-MiniLM-L6-v2 (real)" if encoder_name == "local" else "hashing (not semantic)",
        "n": n,
        "runs": runs,
        "raw_texts_per_s": round(statistics.median(raw_rates), 1),
        "original_texts_per_s": round(statistics.median(original), 1),
        "drivers": drivers,
        "batching_gain": {d: round(v["batch_64"]["gain_spread"]["median"], 2) for d, v in drivers.items()},
        "target_batching_gain": 5,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--encoder", choices=("local", "hashing"), default="local")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.n, args.runs, args.encoder))))
