"""ChromaDB benchmark: our store (SQLite primary + chromadb vectors, hashing embedder) against
Chroma's own client doing the same work in the same run, embedded and against a server.

Prints one JSON object; per mode (``embedded``, ``server``) and size:

* ``insert``: entries/s of ``insert_many`` in batches of ``--batch`` (until every vector is
  written) against embedding the same batches and calling ``collection.upsert`` directly;
  ``ratio`` = ours / raw throughput, median of ``--rounds`` rounds (target >= 0.8), with
  ``ratio_spread`` (min/median/max). Each round writes fresh collections on both sides and
  alternates which side goes first.
* ``query``: p50 ms of ``get_most_relevant(text, 10)`` against embedding the text, a direct
  ``collection.query`` and a lookup of the returned ids in the same SQLite table, every
  query on one side then on the other in each round (alternating); ``ratio`` = ours / raw
  time, median over rounds (target <= 1.2), with ``ratio_spread``.

    python bench/chroma.py [--sizes 10000,100000] [--modes embedded,server] [--queries 200] [--rounds 3]
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


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


async def bench_mode(mode: str, n: int, batch: int, n_queries: int, tmp: Path, url: str | None, rounds: int) -> dict:
    """``rounds`` interleaved rounds (the side that goes first alternates): each writes the
    entries into a fresh collection on both sides, then times every query on both sides."""
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
        # the outbox writes vectors in batches of this size: the raw side's upsert batch
        "vector_batch_size": batch,
    }
    if mode == "server":
        host, port = url.rsplit("//", 1)[1].split(":")
        client = await chromadb.AsyncHttpClient(host=host, port=int(port))
    else:
        client = chromadb.PersistentClient(path=str(home / "chroma-raw"))
    call = _caller(client)
    embedder = HashingEmbedder()

    async def ours_insert(r: int):
        store = await SemanticStore.create(f"bench{r}", config=config)
        await store.drop()
        start = time.perf_counter()
        for s in range(0, len(data), batch):
            await store.insert_many(data[s : s + batch])
        await store.flush()
        seconds = time.perf_counter() - start
        assert await store.vector.count() == len(data)
        return store, seconds

    async def raw_insert(r: int):
        # Chroma's client, embedding and upserting the same payload our driver sends
        col = await call(
            client.get_or_create_collection,
            f"raw_bench_{n}_{r}",
            embedding_function=None,
            metadata={"hnsw:space": "cosine"},
        )
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
        return col, time.perf_counter() - start

    ours_ins, raw_ins, ours_q, raw_q, ours_lat, raw_lat = [], [], [], [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            store, ours_s = await ours_insert(r)
            col, raw_s = await raw_insert(r)
        else:
            col, raw_s = await raw_insert(r)
            store, ours_s = await ours_insert(r)
        ours_ins.append(ours_s)
        raw_ins.append(raw_s)
        conn = sqlite3.connect(home / "store.db")
        table = store.primary._table

        async def ours_query(q: str, store=store) -> None:
            assert await store.get_most_relevant(q, 10)

        async def raw_query(q: str, col=col, conn=conn, table=table) -> None:
            # embed the text, a direct ``collection.query``, the returned ids' rows from SQLite
            vector = await embedder.embed([q])
            result = await call(col.query, query_embeddings=vector, n_results=10, include=["distances"])
            ids = result["ids"][0]
            marks = ",".join("?" * len(ids))
            conn.execute(f"SELECT id, text, timestamp, metadata FROM {table} WHERE id IN ({marks})", ids).fetchall()

        sides = [(ours_query, ours_q, ours_lat), (raw_query, raw_q, raw_lat)]
        for fn, totals, lat in sides if r % 2 == 0 else sides[::-1]:
            total = 0.0
            for q in queries:
                t = time.perf_counter()
                await fn(q)
                elapsed = time.perf_counter() - t
                total += elapsed
                lat.append(elapsed * 1000)
            totals.append(total)
        conn.close()
        await store.cleanup()
        await call(client.delete_collection, f"raw_bench_{n}_{r}")
    insert_ratios = [b / a for a, b in zip(ours_ins, raw_ins)]  # throughput: ours / raw
    query_ratios = [a / b for a, b in zip(ours_q, raw_q)]  # time: ours / raw
    return {
        "rounds": rounds,
        "insert": {
            "ours_per_s": round(n / statistics.median(ours_ins), 1),
            "raw_per_s": round(n / statistics.median(raw_ins), 1),
            "ratio": round(statistics.median(insert_ratios), 3),
            "ratio_spread": spread(insert_ratios),
        },
        "query": {
            "ours_p50_ms": round(statistics.median(ours_lat), 3),
            "raw_p50_ms": round(statistics.median(raw_lat), 3),
            "ratio": round(statistics.median(query_ratios), 3),
            "ratio_spread": spread(query_ratios),
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--modes", default="embedded,server")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours and raw alternate first)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    out: dict = {"batch": args.batch, "queries": args.queries, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        url = engines.start_chroma(Path(tmp) / "server") if "server" in modes else None
        try:
            for mode in modes:
                for n in sizes:
                    out[f"{mode}_{n}"] = await bench_mode(
                        mode, n, args.batch, args.queries, Path(tmp), url, args.rounds
                    )
                    print(json.dumps({f"{mode}_{n}": out[f"{mode}_{n}"]}), file=sys.stderr, flush=True)
        finally:
            if url:
                engines.stop_chroma(Path(tmp) / "server")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
