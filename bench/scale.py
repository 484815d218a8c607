"""Scale benchmark of the embedded default (SQLite primary + local HNSW vectors) at ``--n``
entries (100k, 300k, 1M), with the hashing embedder (384 dimensions) so the model is not what
is timed, and the store's defaults otherwise.

Prints one JSON object per size:

* ``insert``: entries/s through ``insert_many`` (batches of 1,000) until acknowledged and
  until the HNSW graph holds every vector.
* ``query``: p50/p99 ms of ``get_most_relevant(q, 10)`` unfiltered, with a 1% filter on a
  key declared in ``metadata_indexes`` (``tenant``) and with the same 1% filter on an
  undeclared key of the same distribution (``group``: a scan), over ``--queries`` queries;
  ``recall_at_10``: the unfiltered hits whose exact cosine reaches the exact 10th best (ties
  count as right), over every stored vector.
* ``disk_mb``: the SQLite file and the HNSW checkpoint; ``checkpoints``: the checkpoints
  written in the background during the inserts (count, slowest seconds, and the longest the
  connection, so writes, waited for one); ``reopen``: in a fresh process, the seconds to open
  the store, to answer a first query and the RSS (MB) after it, after a clean close, and the
  rows it replayed from SQLite (the tail after the checkpoint); ``after_kill``: the same after
  ``--kill-tail`` more entries were written by a process that was then SIGKILLed before
  closing, with ``tail_write_s`` (the seconds that process took to write them),
  ``indexed_s`` (open until the graph holds every vector again) and ``indexed_vs_writes``:
  ``indexed_s`` over the seconds the replayed rows took to write (at that process's rate).
* ``--vector-dtype float16`` stores the vectors as float16 (``recall_at_10`` is against the
  exact search over the embedder's float32 vectors either way); ``exact_float16_recall_at_10``
  is that of an exact search over the float16 vectors: what rounding alone loses.

    python bench/scale.py [--n 100000 [300000 1000000]] [--queries 200] [--kill-tail 10000]
        [--vector-dtype float32|float16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIMS = 384
BATCH = 1_000
_CHILD = r"""
import asyncio, json, os, sys, time
from promethean_persistence import SemanticStore
config, mode, tail = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
async def main():
    started = time.perf_counter()
    store = await SemanticStore.create("scale", config=config)
    opened = time.perf_counter() - started
    replayed = len(store.vector._delta)
    if mode == "write-then-die":
        t = time.perf_counter()
        for start in range(0, tail, 1000):
            await store.insert_many([{"text": f"late entry {i} about tenant {i % 100}", "metadata": {}}
                                     for i in range(start, min(tail, start + 1000))])
        await store.flush()
        print("written", round(time.perf_counter() - t, 3), flush=True)
        await asyncio.sleep(3600)  # killed here, graph changes since the last checkpoint unsaved
    await store.get_most_relevant("entry about tenant 7", 10)
    first = time.perf_counter() - started
    t = time.perf_counter()
    for i in range(20):
        await store.get_most_relevant(f"entry {i} about tenant {i}", 10)
    fast = (time.perf_counter() - t) / 20
    rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
    await store.vector.wait_indexed()
    indexed = time.perf_counter() - started
    print(json.dumps({"open_s": round(opened, 2), "first_query_s": round(first, 2),
                      "then_query_ms": round(fast * 1000, 2), "rss_mb": round(rss, 1),
                      "replayed_rows": replayed, "indexed_s": round(indexed, 2)}))
    await store.close()
asyncio.run(main())
"""


def config(home: str, dtype: str) -> dict:
    return {
        "home": home,
        "embedding_driver": "hashing",
        "hashing": {"dimensions": DIMS},
        "metadata_indexes": ["tenant"],
        "vector_dtype": dtype,
    }


def entries(start: int, stop: int) -> list[dict]:
    return [
        {
            "id": f"e{i}",
            "text": f"entry {i} about tenant {i % 100} and topic {i % 997}",
            "metadata": {"tenant": f"t{i % 100}", "group": f"g{i % 100}"},
        }
        for i in range(start, stop)
    ]


def percentiles(times: list[float]) -> dict:
    return {
        "p50_ms": round(float(np.percentile(times, 50)) * 1000, 3),
        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 3),
    }


def child(cfg: dict, mode: str, tail: int = 0) -> dict:
    args = [sys.executable, "-c", _CHILD, json.dumps(cfg), mode, str(tail)]
    if mode != "write-then-die":
        return json.loads(
            subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    word, seconds = proc.stdout.readline().split()
    assert word == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"tail_write_s": float(seconds)}


class Checkpoints(logging.Handler):
    """The checkpoints the local driver logs: (seconds, seconds the connection waited)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.saves: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("saved the HNSW checkpoint"):
            self.saves.append((float(record.args[2]), float(record.args[3])))  # type: ignore[index]


async def measure(n: int, queries: int, tail: int, home: str, dtype: str) -> dict:
    from promethean_persistence import SemanticStore

    logger = logging.getLogger("promethean_persistence.local")
    checkpoints = Checkpoints()
    logger.addHandler(checkpoints)
    logger.setLevel(logging.INFO)
    store = await SemanticStore.create("scale", config=config(home, dtype))
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        await store.insert_many(entries(start, min(n, start + BATCH)))
    acknowledged = time.perf_counter() - started
    await store.flush()
    await store.vector.wait_indexed()
    indexed = time.perf_counter() - started

    rng = np.random.default_rng(7)
    qs = [f"entry {int(i)} about topic {int(i) % 997}" for i in rng.integers(0, n, size=queries)]
    for q in qs[:5]:
        await store.get_most_relevant(q, 10)
    times: dict[str, list[float]] = {"unfiltered": [], "indexed_1pct": [], "scan_1pct": []}
    found: list[list[str]] = []
    for n_q, q in enumerate(qs):
        for kind, where in (
            ("unfiltered", None),
            ("indexed_1pct", {"tenant": f"t{n_q % 100}"}),
            ("scan_1pct", {"group": f"g{n_q % 100}"}),
        ):
            t = time.perf_counter()
            hits = await store.get_most_relevant(q, 10, where)
            times[kind].append(time.perf_counter() - t)
            if kind == "unfiltered":
                found.append([h["id"] for h in hits])
    # exact search over the embedder's (float32) vector of every entry, for recall
    chunks = [
        np.asarray(await store.embedder.embed([e["text"] for e in entries(start, min(n, start + 5_000))]))
        for start in range(0, n, 5_000)
    ]
    matrix = np.concatenate(chunks).astype(np.float32)
    row = {f"e{i}": i for i in range(n)}
    # float16: also the exact search over the rounded vectors, the loss rounding alone costs
    half = matrix.astype(np.float16).astype(np.float32) if dtype == "float16" else None
    agree = agree_half = 0
    for got, v in zip(found, await store.embedder.embed(qs)):
        exact = matrix @ v
        tenth = -np.partition(-exact, 9)[9]
        # ties at the 10th score are common among generated texts: any of them is a right answer
        agree += sum(exact[row[i]] >= tenth - 1e-6 for i in got[:10])
        if half is not None:
            agree_half += sum(exact[i] >= tenth - 1e-6 for i in np.argpartition(-(half @ v), 9)[:10])
    recall = {"recall_at_10": round(agree / (10 * len(qs)), 4)}
    if half is not None:
        recall["exact_float16_recall_at_10"] = round(agree_half / (10 * len(qs)), 4)
    saves = list(checkpoints.saves)
    await store.close()
    logger.removeHandler(checkpoints)
    disk = sum(p.stat().st_size for p in Path(home).rglob("*") if p.is_file()) / 2**20
    reopen = child(config(home, dtype), "reopen")
    killed = child(config(home, dtype), "write-then-die", tail)
    after_kill = child(config(home, dtype), "reopen")
    # the replayed rows include the tail left before the killed process started
    lost_write_s = killed["tail_write_s"] * after_kill["replayed_rows"] / tail
    return {
        "entries": n,
        "vector_dtype": dtype,
        "insert": {
            "acknowledged_per_s": round(n / acknowledged, 1),
            "indexed_per_s": round(n / indexed, 1),
        },
        "query": {k: percentiles(v) for k, v in times.items()} | {"queries": queries, **recall},
        "disk_mb": round(disk, 1),
        "checkpoints": {
            "count": len(saves),
            "slowest_s": round(max((s for s, _ in saves), default=0.0), 2),
            "writes_waited_max_s": round(max((w for _, w in saves), default=0.0), 3),
        },
        "reopen": reopen,
        "after_kill": {
            "tail_entries": tail,
            **killed,
            **after_kill,
            "indexed_vs_writes": round(after_kill["indexed_s"] / lost_write_s, 2) if lost_write_s else None,
        },
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kill-tail", type=int, default=10_000, help="entries written by the process that is killed")
    parser.add_argument("--vector-dtype", choices=("float32", "float16"), default="float32")
    args = parser.parse_args(argv)
    out = []
    for n in args.n:
        with tempfile.TemporaryDirectory() as home:
            result = {
                "benchmark": "scale",
                "embedder": f"hashing ({DIMS} dimensions)",
                **asyncio.run(measure(n, args.queries, args.kill_tail, home, args.vector_dtype)),
            }
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
