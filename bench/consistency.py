"""Consistency-report benchmark: the whole-store report vs the least work that could answer it.

Embedded default (SQLite primary + local vector driver) with the hashing embedder (the
report never embeds). The anchor is a plain scan of the primary's table (every record's id,
text and vector state, decoded) plus one batched read of the vector side's fingerprints,
by hand with ``sqlite3``. The two are timed A/B/A/B in the same run; the JSON gives each
round's seconds and the min/median/max of the ratio (target: median <= 2).

    python bench/consistency.py [--n 100000] [--rounds 3]
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

from promethean_persistence import SemanticStore
from promethean_persistence._entries import content_hash
from promethean_persistence._types import FINGERPRINT_KEY


def entries(n: int) -> list[dict]:
    return [
        {
            "id": f"e{i:07d}",
            "text": f"benchmark entry {i} about topic {i % 17} and more words",
            "createdAt": 1_700_000_000_000 + i,
            "metadata": {"i": i, "topic": i % 17},
        }
        for i in range(n)
    ]


def raw_scan(path: str, table: str, vectors: str) -> int:
    """Every record and its vector fingerprint, compared by hand (500 ids per query)."""
    conn = sqlite3.connect(path)
    consistent = 0
    rows = conn.execute(
        f'SELECT id, text, metadata, vector_status, content_hash, embedding_model FROM "{table}" ORDER BY id'
    )
    while batch := rows.fetchmany(500):
        ids = [r[0] for r in batch]
        marks = ",".join("?" * len(ids))
        fps = dict(
            conn.execute(
                f'SELECT id, json_extract(metadata, \'$."{FINGERPRINT_KEY}"\') FROM "{vectors}" WHERE id IN ({marks})',
                ids,
            ).fetchall()
        )
        for id_, text, meta, status, _hash, _model in batch:
            json.loads(meta)
            consistent += status == "synced" and id_ in fps and bool(content_hash(text))
    conn.close()
    return consistent


async def main(n: int, rounds: int) -> dict:
    home = tempfile.mkdtemp(prefix="bench-consistency-")
    config = {"home": home, "embedding_driver": "hashing", "vector_batch_size": 500}
    store = await SemanticStore.create("report", config=config)
    data = entries(n)
    started = time.perf_counter()
    for start in range(0, n, 5000):
        await store.insert_many(data[start : start + 5000])
    await store.flush()
    build_s = time.perf_counter() - started
    path, table = store.primary._db.path, store.name
    vectors = f"{store.name}__vectors"

    ours: list[float] = []
    anchor: list[float] = []
    for _ in range(rounds):
        t = time.perf_counter()
        report = await store.get_consistency_report(None)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        consistent = await asyncio.to_thread(raw_scan, path, table, vectors)
        anchor.append(time.perf_counter() - t)
        assert report["consistent_documents"] == consistent == n, (report, consistent)
    await store.cleanup()
    ratios = [o / a for o, a in zip(ours, anchor)]
    return {
        "n": n,
        "build_seconds": round(build_s, 2),
        "report_seconds": [round(x, 3) for x in ours],
        "raw_scan_seconds": [round(x, 3) for x in anchor],
        "report_entries_per_s": round(n / statistics.median(ours)),
        "ratio": {
            "min": round(min(ratios), 3),
            "median": round(statistics.median(ratios), 3),
            "max": round(max(ratios), 3),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.rounds))
    json.dump(result, sys.stdout)
    print()
