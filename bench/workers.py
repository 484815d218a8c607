"""Outbox workers benchmark: throughput of 1, 2 and 4 ``semantic-store worker`` processes
on PostgreSQL + pgvector, with a remote embedder whose latency dominates.

The embedder is the in-repo Ollama stand-in (``testing.embedding_server``) answering each
request after a fixed ``--delay`` (hashing vectors, so the model costs nothing). The workers
start first and beat (their heartbeats are awaited, so process start-up is not timed); then
a writer opened with ``vector_writes="worker"`` stores ``--n`` entries and the clock runs
until the stored outbox has nothing pending (``get_outbox_stats()``). Rounds interleave the
worker counts (1, 2, 4, 1, 2, 4, ...); every store is fresh. Prints one JSON object:

* ``runs``: each run's workers, seconds and entries/s;
* ``per_s``: min/median/max entries/s per worker count;
* ``speedup``: per worker count, median entries/s ÷ the median of 1 worker (targets: 2
  workers >= 1.8, 4 workers >= 3.2);
* ``embedded_twice``: texts the server embedded more than once over every run (must be 0:
  workers never take the same item).

* ``batch_ms``: one worker's median time per claimed batch (``--delay`` plus the claim, the
  vector upsert and the state write: what workers cannot overlap).

A worker beats once its embedder is warm, but an HTTP embedder still builds its client at its
first request (measured 0.2 s alone, 0.65-0.9 s when 4 workers start together on 2 busy
cores): that start-up still falls in the timed first batch of each worker.

    TEST_POSTGRES_DSN=postgresql://... python bench/workers.py [--n 1280] [--delay 0.25] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from promethean_persistence import SemanticStore
from promethean_persistence.testing.embedding_server import EmbeddingServer, hashing_encoder

MODEL = "bench-stand-in"
COUNTS = (1, 2, 4)
TARGETS = {"2": ">= 1.8", "4": ">= 3.2"}


class SlowEncoder:
    """Hashing vectors after a fixed delay per request, counting the texts asked for."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._encode = hashing_encoder(64)

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.seen.update(texts)
        time.sleep(self.delay)
        return self._encode(texts)


def toml(path: Path, cfg: dict) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for name, table in ((k, v) for k, v in cfg.items() if isinstance(v, dict)):
        lines += [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


async def one_run(workers: int, n: int, args: argparse.Namespace, url: str, home: Path) -> dict:
    cfg = {
        "primary_driver": "postgresql",
        "vector_driver": "pgvector",
        "embedding_driver": "ollama",
        "embedding_function": MODEL,
        "agent_name": f"wb{uuid.uuid4().hex[:8]}",
        "vector_batch_size": args.batch_size,
        "postgresql": {"dsn": args.dsn},
        "ollama": {"url": url, "dimensions": 64},
    }
    path = toml(home / f"{cfg['agent_name']}.toml", cfg)
    writer = await SemanticStore.create("bench", config={**cfg, "vector_writes": "worker"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "promethean_persistence.cli", "--config", str(path), "--store", "bench", "worker"]
            + ["--poll-ms", "50", "--heartbeat-ms", "500"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 120
        while (await writer.get_outbox_stats())["workers"] < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the workers did not start: " + "".join(p.stderr.read() for p in procs if p.stderr))
            await asyncio.sleep(0.1)
        tag = cfg["agent_name"]
        entries = [{"text": f"{tag} entry {i} about topic {i % 17}"} for i in range(n)]
        start = time.perf_counter()
        for i in range(0, n, 500):
            await writer.insert_many(entries[i : i + 500])
        while (await writer.get_outbox_stats())["pending"]:
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - start
        counts = await writer.vector_counts()
        assert counts["indexed"] == n, counts
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.communicate(timeout=60)
        await writer.primary.drop()
        await writer.vector.drop()
        await writer.cleanup()
    bad = [p.returncode for p in procs if p.returncode != 0]
    assert not bad, f"workers exited with {bad}"
    return {"workers": workers, "entries": n, "seconds": round(seconds, 3), "per_s": round(n / seconds, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1280, help="entries per run")
    parser.add_argument("--delay", type=float, default=0.25, help="seconds per embedding request")
    parser.add_argument("--batch-size", type=int, default=16, help="vector_batch_size: texts per claim and request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    if not args.dsn:
        sys.exit("set TEST_POSTGRES_DSN (or --dsn) to a PostgreSQL with pgvector")
    encoder = SlowEncoder(args.delay)
    server = EmbeddingServer({MODEL: encoder}).start()
    runs = []
    try:
        with tempfile.TemporaryDirectory() as home:
            for _ in range(args.rounds):
                for workers in COUNTS:
                    runs.append(await one_run(workers, args.n, args, server.url, Path(home)))
                    print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        server.stop()
    per_s = {}
    for workers in COUNTS:
        rates = [r["per_s"] for r in runs if r["workers"] == workers]
        per_s[str(workers)] = {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}
    base = per_s["1"]["median"]
    result = {
        "config": {
            "primary": "postgresql",
            "vector": "pgvector",
            "embedder": f"ollama stand-in, {args.delay * 1000:.0f} ms per request",
            "entries": args.n,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
        },
        "runs": runs,
        "per_s": per_s,
        "speedup": {k: round(v["median"] / base, 2) for k, v in per_s.items()},
        "batch_ms": round(args.batch_size / base * 1000, 1),
        "targets": TARGETS,
        "embedded_twice": sum(1 for c in encoder.seen.values() if c > 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
