"""ChromaDB benchmark: our store (SQLite primary + chromadb vectors, hashing embedder) against
Chroma's own client doing the same work in the same run, embedded and against a server.

Prints one JSON object; per mode (``embedded``, ``server``) and size:

* ``insert``: entries/s of ``insert_many`` in batches of ``--batch`` (until every vector is
  written) against embedding the same batches and calling ``collection.upsert`` directly;
  ``ratio`` = ours / raw throughput, median of ``--rounds`` rounds (target >= 0.8), with
  ``ratio_spread`` (min/median/max). Each round writes fresh collections on both sides and
  alternates which side goes first.
* ``query``: p50 ms of ``get_most_relevant(text, 10)`` against embedding the text, a direct
  ``collection.query`` and a lookup of the returned ids in the same SQLite table, each
  query on one side then on the other (which goes first alternates); ``ratio`` = ours / raw
  time, median over rounds (target <= 1.2), with ``ratio_spread``.

    python bench/chroma.py [--sizes 10000,100000] [--modes embedded,server] [--queries 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from _compare import compare

from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.vector.chroma import to_chroma_metadata
from promethean_persistence.testing import engines


def _caller(client):
    import inspect

    async def call(fn, *args, **kwargs):
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    return call


async def bench_mode(mode: str, n: int, batch: int, n_queries: int, tmp: Path, url: str | None, rounds: int) -> dict:
    """``compare`` our store with Chroma's client, embedded or against the server at ``url``."""
    import chromadb

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

    async def raw_insert(r: int, data: list[dict]):
        # Chroma's client, embedding and upserting the same payload our driver sends (Chroma
        # keeps the documents itself)
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
        return col, time.perf_counter() - start, 0.0

    async def raw_query(col, q: str) -> list[str]:
        vector = await embedder.embed([q])
        result = await call(col.query, query_embeddings=vector, n_results=10, include=["distances"])
        return result["ids"][0]

    async def raw_drop(col) -> None:
        await call(client.delete_collection, col.name)

    return await compare(
        n=n,
        batch=batch,
        n_queries=n_queries,
        rounds=rounds,
        config=config,
        raw_insert=raw_insert,
        raw_query=raw_query,
        raw_drop=raw_drop,
    )


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
