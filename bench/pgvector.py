"""PostgreSQL + pgvector benchmark: our searches against a hand-written psycopg equivalent on
the same tables, interleaved.

The store (``postgresql`` primary + ``pgvector`` vectors, its defaults: HNSW m 16,
ef_construction 64, ``ef_search`` chosen from the limit and the table's size) holds ``--n``
entries whose vectors are the hard synthetic set of ``bench/embedded.py`` (rank 32 plus
noise, 384 dimensions), written through an embedder that looks them up (no model is timed).
The anchor is what one would write by hand with psycopg: one async connection whose session
sets ``hnsw.ef_search`` once (to the store's value, so both search the same graph at equal
recall), then per query one ANN statement on the vector table and one fetch of the hits' rows
from the primary table (id, text, timestamp, metadata).

Prints one JSON object: ``n``, ``ef_search``, recall@10 against exact search of ours and of
the anchor, p50 ms of each, and ``search_by_vector_ratio`` / ``get_most_relevant_ratio``:
ours / anchor per round (``--rounds`` rounds of ``--queries`` queries, order rotated), as
min/median/max. Needs a PostgreSQL with pgvector: ``--dsn`` or ``TEST_POSTGRES_DSN``.

    python bench/pgvector.py [--n 50000] [--rounds 3] [--queries 200] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from embedded import DIMS, LookupEmbedder, low_rank, recall, spread  # noqa: E402

from promethean_persistence import SemanticStore, StoreConfig  # noqa: E402
from promethean_persistence.drivers.primary.postgres import PostgresPrimary  # noqa: E402
from promethean_persistence.drivers.vector._ef import ef_for  # noqa: E402
from promethean_persistence.drivers.vector.pgvector import EXACT_ROWS, PgvectorVector, _literal  # noqa: E402


class RawSearch:
    """The hand-written search: ANN on the vector table, then the rows from the primary's."""

    def __init__(self, conn, vectors: str, docs: str) -> None:
        self.conn = conn
        self.ann = f"SELECT id, embedding <=> %s::vector AS d FROM {vectors} ORDER BY d LIMIT %s"
        self.rows = f"SELECT id, text, timestamp, metadata FROM {docs} WHERE id = ANY(%s)"

    async def search(self, q: np.ndarray, k: int = 10) -> list[dict]:
        hits = await (await self.conn.execute(self.ann, (_literal(q), k))).fetchall()
        rows = {r[0]: r for r in await (await self.conn.execute(self.rows, ([h[0] for h in hits],))).fetchall()}
        return [
            {"id": r[0], "text": r[1], "timestamp": r[2], "metadata": r[3], "score": 1.0 - d}
            for i, d in hits
            if (r := rows.get(i)) is not None
        ]


async def run(n: int, rounds: int, n_queries: int, dsn: str) -> dict:
    import psycopg

    x = low_rank(n, seed=1)
    queries = low_rank(n_queries, seed=2)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    table = {f"doc {i}": x[i] for i in range(n)} | {f"query {j}": q for j, q in enumerate(queries)}
    name = f"bench_{uuid.uuid4().hex[:8]}"
    cfg = StoreConfig(
        primary_driver="postgresql", vector_driver="pgvector", embedding_driver="hashing", postgresql={"dsn": dsn}
    )
    collection = cfg.collection_name(name)
    store = await SemanticStore.from_drivers(
        name,
        primary=PostgresPrimary.from_config(cfg, collection),
        vector=PgvectorVector.from_config(cfg, collection),
        embedder=LookupEmbedder(table),
        config=cfg,
    )
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        started = time.perf_counter()
        for start in range(0, n, 1000):
            await store.insert_many([{"id": f"d{i}", "text": f"doc {i}"} for i in range(start, min(n, start + 1000))])
        await store.flush()
        build_s = time.perf_counter() - started
        await conn.execute(f"ANALYZE {store.vector._t}")  # what autovacuum does soon after a bulk load
        ef = ef_for(cfg.pgvector.hnsw.ef_search, 10, n)
        await conn.execute(f"SET hnsw.ef_search = {ef}")
        raw = RawSearch(conn, store.vector._t, store.primary._t)

        async def ours_vector(j: int) -> list[dict]:
            return await store.search_by_vector(queries[j], 10)

        async def ours_text(j: int) -> list[dict]:
            return await store.get_most_relevant(f"query {j}", 10)

        async def anchor(j: int) -> list[dict]:
            return await raw.search(queries[j])

        sides = {"search_by_vector": ours_vector, "get_most_relevant": ours_text, "raw": anchor}
        found = {}
        for side, call in sides.items():  # warm-up (prepared statements, caches) and recall
            found[side] = [[h["id"] for h in await call(j)] for j in range(n_queries)]
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        latencies: dict[str, list[float]] = {side: [] for side in sides}
        order = list(sides)
        for r in range(rounds):
            for side in order[r % 3 :] + order[: r % 3]:
                total = 0.0
                for j in range(n_queries):
                    t = time.perf_counter()
                    await sides[side](j)
                    elapsed = time.perf_counter() - t
                    total += elapsed
                    latencies[side].append(elapsed * 1000)
                seconds[side].append(total)
    finally:
        await conn.close()
        await store.cleanup()
    return {
        "benchmark": "pgvector",
        "n": n,
        "dims": DIMS,
        "queries": n_queries,
        "rounds": rounds,
        "build_s": round(build_s, 1),
        "ef_search": ef,
        "exact_below": EXACT_ROWS,
        "recall_at_10": round(recall(found["search_by_vector"], exact), 4),
        "get_most_relevant_recall_at_10": round(recall(found["get_most_relevant"], exact), 4),
        "raw_recall_at_10": round(recall(found["raw"], exact), 4),
        "search_by_vector_p50_ms": round(statistics.median(latencies["search_by_vector"]), 3),
        "get_most_relevant_p50_ms": round(statistics.median(latencies["get_most_relevant"]), 3),
        "raw_p50_ms": round(statistics.median(latencies["raw"]), 3),
        "search_by_vector_ratio": spread([a / b for a, b in zip(seconds["search_by_vector"], seconds["raw"])]),
        "get_most_relevant_ratio": spread([a / b for a, b in zip(seconds["get_most_relevant"], seconds["raw"])]),
        "targets": {"search_by_vector_ratio": "<= 1.25 (median; issue 22)", "recall_at_10": ">= 0.98"},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dsn", default=os.environ.get("TEST_POSTGRES_DSN") or os.environ.get("PGVECTOR_DSN"))
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn (or TEST_POSTGRES_DSN) is required: a PostgreSQL with pgvector")
    result = asyncio.run(run(args.n, args.rounds, args.queries, args.dsn))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
