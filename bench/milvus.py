"""Milvus benchmark: our store (SQLite primary + milvus vectors, hashing embedder) against
pymilvus's ``AsyncMilvusClient`` doing the same work in the same run, on milvus-lite (the
engine for a local file) and, with ``--uri`` (or ``MILVUS_URI``), on a server.

Prints one JSON object; per mode (``lite``, ``server``) and size:

* ``insert``: entries/s of ``insert_many`` in batches of ``--batch`` (until every vector is
  written) against the hand-written equivalent: per batch, embedding it, keeping its
  documents in one SQLite transaction (Milvus holds no text in this schema; the query side
  reads them from SQLite too) and calling ``client.upsert`` with the rows our driver writes
  (same schema, index and consistency); ``ratio`` = ours / raw throughput, median of
  ``--rounds`` rounds (target >= 0.8), with ``ratio_spread`` (min/median/max);
  ``ratio_vectors_only``: against the same rounds less their document writes. Each round
  writes fresh collections on both sides (created inside the timing: our driver creates its
  collection with the first vectors) and alternates which side goes first.
* ``query``: p50 ms of ``get_most_relevant(text, 10)`` against embedding the text, a direct
  ``client.search`` and a lookup of the returned ids in the same SQLite table, each query on
  one side then on the other (which goes first alternates); ``ratio`` = ours / raw time, median
  over rounds (target <= 1.25), with ``ratio_spread``.

    python bench/milvus.py [--sizes 2000,20000] [--modes lite,server] [--uri URL] [--queries 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _compare import DocTable, compare

from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.vector.milvus import start_lite
from promethean_persistence.drivers.vector.qdrant import point_id


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
    """``compare`` our store with pymilvus on milvus-lite (or a server) at ``n`` entries."""
    from pymilvus import AsyncMilvusClient

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

    async def raw_insert(r: int, data: list[dict]) -> tuple[str, float, float]:
        name = f"raw_bench_{n}_{r}"
        if await client.has_collection(name):
            await client.drop_collection(name)
        docs = DocTable(home / f"raw{r}.db")
        kept = 0.0
        start = time.perf_counter()
        # inside the timing: our driver creates its collection with the first vectors
        await raw_collection(client, name, embedder.dimensions)
        for s in range(0, len(data), batch):
            part = data[s : s + batch]
            vectors = await embedder.embed([e["text"] for e in part])
            t = time.perf_counter()
            docs.write(part)  # Milvus keeps no text here: the application keeps its documents
            kept += time.perf_counter() - t
            rows = [
                {"pk": point_id(e["id"]), "id": e["id"], "vector": v.tolist(), "metadata": e["metadata"]}
                for e, v in zip(part, vectors)
            ]
            await client.upsert(name, rows)
        seconds = time.perf_counter() - start
        docs.close()
        return name, seconds, kept

    async def raw_query(name: str, q: str) -> list[str]:
        vector = await embedder.embed([q])
        result = await client.search(name, [vector[0].tolist()], limit=10, output_fields=["id"])
        return [h["entity"]["id"] for h in result[0]]

    async def raw_drop(name: str) -> None:
        await client.drop_collection(name)

    try:
        return await compare(
            n=n,
            batch=batch,
            n_queries=n_queries,
            rounds=rounds,
            config=config,
            raw_insert=raw_insert,
            raw_query=raw_query,
            raw_drop=raw_drop,
            lexical_off=True,
        )
    finally:
        await client.close()


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
