"""ChromaDB benchmark: our store (SQLite primary + chromadb vectors, hashing embedder) against
Chroma's own client doing the same work in the same run, embedded and against a server.

Prints one JSON object; per mode (``embedded``, ``server``) and size:

* ``insert``: entries/s of ``insert_many`` in batches of ``--batch`` (until every vector is
  written) against embedding the same batches and calling ``collection.upsert`` directly;
  ``ratio`` = ours / raw (target >= 0.8).
* ``query``: p50 ms of ``get_most_relevant(text, 10)`` against embedding the text, a direct
  ``collection.query`` and a lookup of the returned ids in the same SQLite table;
  ``ratio`` = ours / raw (target <= 1.2).

    python bench/chroma.py [--sizes 10000,100000] [--modes embedded,server] [--queries 200]
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

from promethean_persistence import SemanticStore
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.vector.chroma import to_chroma_metadata
from promethean_persistence.testing import engines

WORDS = (
    "duck pond river stone cloud market lantern harbor violet engine garden winter signal "
    "copper meadow thunder orchard canyon silver marble forest candle rocket anchor"
).split()


def text(i: int) -> str:
    return " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 9)) + f" entry {i}"


def entries(n: int) -> list[dict]:
    return [
        {
            "id": f"e{i:07d}",
            "text": text(i),
            "createdAt": 1_700_000_000_000 + i,
            "metadata": {"kind": ("note", "chat", "doc")[i % 3], "n": i},
        }
        for i in range(n)
    ]


def _caller(client):
    import inspect

    async def call(fn, *args, **kwargs):
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    return call


async def bench_mode(mode: str, n: int, batch: int, n_queries: int, tmp: Path, url: str | None) -> dict:
    import chromadb

    data = entries(n)
    queries = [text(i * 7919 % n) for i in range(n_queries)]
    home = tmp / f"{mode}-{n}"
    chroma = {"url": url} if mode == "server" else {"path": str(home / "chroma")}
    config = {
        "primary_driver": "sqlite",
        "vector_driver": "chromadb",
        "embedding_driver": "hashing",
        "home": str(home),
        "chromadb": chroma,
        "agent_name": "b",
        "vector_batch_size": batch,
    }

    # ours: insert_many until every vector is written
    store = await SemanticStore.create("bench", config=config)
    await store.drop()
    start = time.perf_counter()
    for s in range(0, len(data), batch):
        await store.insert_many(data[s : s + batch])
    await store.flush()
    ours_insert = len(data) / (time.perf_counter() - start)
    assert await store.vector.count() == len(data)

    # raw: Chroma's client, embedding and upserting the same payload our driver sends
    if mode == "server":
        host, port = url.rsplit("//", 1)[1].split(":")
        client = await chromadb.AsyncHttpClient(host=host, port=int(port))
    else:
        client = chromadb.PersistentClient(path=str(home / "chroma-raw"))
    call = _caller(client)
    col = await call(
        client.get_or_create_collection, f"raw_bench_{n}", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    embedder = HashingEmbedder()
    start = time.perf_counter()
    for s in range(0, len(data), batch):
        part = data[s : s + batch]
        vectors = await embedder.embed([e["text"] for e in part])
        await call(
            col.upsert,
            ids=[e["id"] for e in part],
            embeddings=vectors,
            documents=[e["text"] for e in part],
            metadatas=[{**to_chroma_metadata(e["metadata"]), "createdAt": e["createdAt"]} for e in part],
        )
    raw_insert = len(data) / (time.perf_counter() - start)

    # queries, alternating ours and raw so background work on either side hits both alike
    conn = sqlite3.connect(home / "store.db")
    table = store.primary._table
    ours_t, raw_t = [], []
    for q in queries:
        t = time.perf_counter()
        assert await store.get_most_relevant(q, 10)
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        vector = await embedder.embed([q])
        result = await call(col.query, query_embeddings=vector, n_results=10, include=["distances"])
        ids = result["ids"][0]
        conn.execute(
            f"SELECT id, text, timestamp, metadata FROM {table} WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchall()
        raw_t.append(time.perf_counter() - t)
    conn.close()
    await store.cleanup()
    await call(client.delete_collection, f"raw_bench_{n}")
    ours_q, raw_q = statistics.median(ours_t) * 1000, statistics.median(raw_t) * 1000
    return {
        "insert": {
            "ours_per_s": round(ours_insert, 1),
            "raw_per_s": round(raw_insert, 1),
            "ratio": round(ours_insert / raw_insert, 3),
        },
        "query": {"ours_p50_ms": round(ours_q, 3), "raw_p50_ms": round(raw_q, 3), "ratio": round(ours_q / raw_q, 3)},
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--modes", default="embedded,server")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    out: dict = {"batch": args.batch, "queries": args.queries}
    with tempfile.TemporaryDirectory() as tmp:
        url = engines.start_chroma(Path(tmp) / "server") if "server" in modes else None
        try:
            for mode in modes:
                for n in sizes:
                    out[f"{mode}_{n}"] = await bench_mode(mode, n, args.batch, args.queries, Path(tmp), url)
                    print(json.dumps({f"{mode}_{n}": out[f"{mode}_{n}"]}), file=sys.stderr, flush=True)
        finally:
            if url:
                engines.stop_chroma(Path(tmp) / "server")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
