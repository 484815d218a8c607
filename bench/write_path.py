"""Write-path benchmark: SemanticStore vs the same work done by hand, in the same run.

SQLite primary + memory vector + hashing embedder. Prints one JSON object:

* ``sequential_ratio``: store inserts/s ÷ raw inserts/s (raw = SQLite INSERT + COMMIT with
  the same pragmas, hash-embed, numpy upsert); target >= 0.5;
* ``concurrent_speedup``: store inserts/s with 64 in flight ÷ sequential; target >= 5;
* ``outage_p99_ms``: p99 insert latency with the vector backend down (eventual); target <= 50.

Each figure is the median of ``--runs`` runs.

    python bench/write_path.py [--n 10000] [--runs 3]
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

from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.testing.store import open_store

SYNCHRONOUS = "FULL"


def entries(n: int, tag: str) -> list[dict]:
    return [
        {
            "id": f"{tag}{i}",
            "text": f"benchmark entry {i} about topic {i % 17} and more words",
            "createdAt": 1_700_000_000_000 + i,
            "metadata": {"i": i, "topic": i % 17},
        }
        for i in range(n)
    ]


def raw(n: int, home: str) -> float:
    """The same work by hand: durable row write, embedding, vector upsert."""
    conn = sqlite3.connect(f"{home}/raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, text TEXT, timestamp INTEGER, metadata TEXT)")
    embedder = HashingEmbedder(256)
    matrix = np.zeros((n, 256), dtype=np.float32)
    rows: dict[str, int] = {}
    data = entries(n, "r")
    start = time.perf_counter()
    for e in data:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)",
            (e["id"], e["text"], e["createdAt"], json.dumps(e["metadata"])),
        )
        conn.execute("COMMIT")
        row = rows.setdefault(e["id"], len(rows))
        matrix[row] = embedder.embed_one(e["text"])
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def config(home: str) -> dict:
    return {
        "primary_driver": "sqlite",
        "vector_driver": "memory",
        "embedding_driver": "hashing",
        "home": home,
        "sqlite": {"synchronous": SYNCHRONOUS},
    }


async def sequential(n: int, home: str) -> float:
    store = await open_store("seq", config(home))
    data = entries(n, "s")
    start = time.perf_counter()
    for e in data:
        await store.insert(e)
    elapsed = time.perf_counter() - start
    await store.cleanup()
    return n / elapsed


async def concurrent(n: int, home: str, in_flight: int = 64) -> float:
    store = await open_store("conc", config(home))
    data = entries(n, "c")
    queue = iter(data)

    async def client():
        for e in queue:
            await store.insert(e)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    assert await store.count() == n
    await store.cleanup()
    return n / elapsed


async def outage_p99_ms(n: int, home: str) -> float:
    store = await open_store("down", config(home), faults=True)
    store.vector.fail()
    latencies = []
    for e in entries(n, "d"):
        start = time.perf_counter()
        await store.insert(e)
        latencies.append((time.perf_counter() - start) * 1000)
    store.vector.heal()
    await store.cleanup()
    return float(np.percentile(latencies, 99))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"raw": [], "sequential": [], "concurrent": [], "outage_p99_ms": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            runs["raw"].append(raw(args.n, home))
            runs["sequential"].append(asyncio.run(sequential(args.n, home)))
            runs["concurrent"].append(asyncio.run(concurrent(args.n, home)))
            runs["outage_p99_ms"].append(asyncio.run(outage_p99_ms(min(args.n, 2000), home)))
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "write_path",
        "setup": f"sqlite(synchronous={SYNCHRONOUS}) + memory vector + hashing embedder",
        "n": args.n,
        "runs": args.runs,
        "raw_inserts_per_s": round(med["raw"], 1),
        "sequential_inserts_per_s": round(med["sequential"], 1),
        "concurrent_inserts_per_s": round(med["concurrent"], 1),
        "sequential_ratio": round(med["sequential"] / med["raw"], 3),
        "concurrent_speedup": round(med["concurrent"] / med["sequential"], 2),
        "outage_p99_ms": round(med["outage_p99_ms"], 2),
        "targets": {"sequential_ratio": ">= 0.5", "concurrent_speedup": ">= 5", "outage_p99_ms": "<= 50"},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
