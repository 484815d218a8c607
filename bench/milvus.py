"""Milvus benchmark: our store (SQLite primary + milvus vectors, hashing embedder) against
pymilvus's ``AsyncMilvusClient`` doing the same work in the same run, on milvus-lite (the
engine for a local file) and, with ``--uri`` (or ``MILVUS_URI``), on a server.

Prints one JSON object; per mode (``lite``, ``server``) and size:

* ``insert``: entries/s of ``insert_many`` in batches of ``--batch`` (until every vector is
  written) against embedding the same batches and calling ``client.upsert`` with the rows our
  driver writes (same schema, index and consistency); ``ratio`` = ours / raw throughput,
  median of ``--rounds`` rounds (target >= 0.8), with ``ratio_spread`` (min/median/max).
  Each round writes fresh collections on both sides (created inside the timing: our driver
  creates its collection with the first vectors) and alternates which side goes first.
* ``query``: p50 ms of ``get_most_relevant(text, 10)`` against embedding the text, a direct
  ``client.search`` and a lookup of the returned ids in the same SQLite table, every query on
  one side then on the other in each round (alternating); ``ratio`` = ours / raw time, median
  over rounds (target <= 1.25), with ``ratio_spread``.

    python bench/milvus.py [--sizes 2000,20000] [--modes lite,server] [--uri URL] [--queries 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from promethean_persistence import SemanticStore
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.vector.milvus import start_lite
from promethean_persistence.drivers.vector.qdrant import point_id

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


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


async def raw_collection(client, name: str, dims: int) -> None:
    """The collection our driver creates: same fields, index and consistency."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=36)
    schema.add_field("id", DataType.VARCHAR, max_length=2048)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
    schema.add_field("metadata", DataType.JSON)
    index = MilvusClient.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    await client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


async def bench_mode(mode: str, n: int, batch: int, n_queries: int, tmp: Path, uri: str, rounds: int) -> dict:
    """``rounds`` interleaved rounds (the side that goes first alternates): each writes the
    entries into a fresh collection on both sides, then times every query on both sides."""
    from pymilvus import AsyncMilvusClient

    data = entries(n)
    queries = [text(i * 7919 % n) for i in range(n_queries)]
    home = tmp / f"{mode}-{n}"
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "primary_driver": "sqlite",
        "vector_driver": "milvus",
        "embedding_driver": "hashing",
        "home": str(home),
        "milvus": {"uri": uri},
        "agent_name": "b",
        "vector_batch_size": batch,  # the outbox's vector batches: the raw side's upsert batch
    }
    client = AsyncMilvusClient(uri=uri)
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
        name = f"raw_bench_{n}_{r}"
        if await client.has_collection(name):
            await client.drop_collection(name)
        start = time.perf_counter()
        # inside the timing: our driver creates its collection with the first vectors
        await raw_collection(client, name, embedder.dimensions)
        for s in range(0, len(data), batch):
            part = data[s : s + batch]
            vectors = await embedder.embed([e["text"] for e in part])
            rows = [
                {"pk": point_id(e["id"]), "id": e["id"], "vector": v.tolist(), "metadata": e["metadata"]}
                for e, v in zip(part, vectors)
            ]
            await client.upsert(name, rows)
        return name, time.perf_counter() - start

    ours_ins, raw_ins, ours_q, raw_q, ours_lat, raw_lat = [], [], [], [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            store, ours_s = await ours_insert(r)
            name, raw_s = await raw_insert(r)
        else:
            name, raw_s = await raw_insert(r)
            store, ours_s = await ours_insert(r)
        ours_ins.append(ours_s)
        raw_ins.append(raw_s)
        conn = sqlite3.connect(home / "store.db")
        table = store.primary._table

        async def ours_query(q: str, store=store) -> None:
            assert await store.get_most_relevant(q, 10)

        async def raw_query(q: str, name=name, conn=conn, table=table) -> None:
            # embed the text, a direct ``client.search``, the returned ids' rows from SQLite
            vector = await embedder.embed([q])
            result = await client.search(name, [vector[0].tolist()], limit=10, output_fields=["id"])
            ids = [h["entity"]["id"] for h in result[0]]
            assert ids
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
        await client.drop_collection(name)
    await client.close()
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
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--modes", default=None, help="lite,server (default: lite, and server with a uri)")
    parser.add_argument("--uri", default=os.environ.get("MILVUS_URI"), help="a Milvus server for the server mode")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours and raw alternate first)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",") if args.modes else ["lite"] + (["server"] if args.uri else [])
    if "server" in modes and not args.uri:
        parser.error("the server mode needs --uri or MILVUS_URI")
    out: dict = {"batch": args.batch, "queries": args.queries, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lite = str(Path(tmp) / "lite" / "milvus.db")
        if "lite" in modes:
            start_lite(lite)  # both sides share one milvus-lite engine
        for mode in modes:
            for n in sizes:
                uri = lite if mode == "lite" else args.uri
                out[f"{mode}_{n}"] = await bench_mode(mode, n, args.batch, args.queries, Path(tmp), uri, args.rounds)
                print(json.dumps({f"{mode}_{n}": out[f"{mode}_{n}"]}), file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
