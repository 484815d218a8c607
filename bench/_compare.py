"""What the benchmarks comparing our store with a vector database's own client share: the
corpus, the ratio spreads, and the interleaved insert + query rounds (``compare``).

Each round writes the entries into a fresh collection on both sides (the side that goes
first alternates), then times each query on one side and then on the other (the side that
goes first alternating from query to query).
The hashing embedder's word cache is warmed first, so no side embeds colder than the other.
``insert.ratio`` = ours / raw throughput, ``query.ratio`` = ours / raw time, each the median
of the per-round ratios with ``ratio_spread`` (min/median/max)."""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from promethean_persistence import SemanticStore
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

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


def queries(n: int, count: int) -> list[str]:
    """``count`` texts of stored entries (of ``n``), spread over the collection."""
    return [text(i * 7919 % n) for i in range(count)]


def spread(values: list[float], digits: int = 3) -> dict:
    """min/median/max of per-round ratios."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


class DocTable:
    """The documents a hand-written application keeps beside its vectors: one SQLite table,
    one transaction per batch (as our store's SQLite primary, without its outbox)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, text TEXT, timestamp INTEGER, metadata TEXT)"
        )

    def write(self, part: Sequence[dict]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?)",
                [(e["id"], e["text"], e["createdAt"], json.dumps(e["metadata"])) for e in part],
            )

    def close(self) -> None:
        self.conn.close()


async def compare(
    *,
    n: int,
    batch: int,
    n_queries: int,
    rounds: int,
    config: dict,
    raw_insert: Callable[[int, list[dict]], Awaitable[tuple[Any, float, float]]],
    raw_query: Callable[[Any, str], Awaitable[list[str]]],
    raw_drop: Callable[[Any], Awaitable[None]],
    lexical_off: bool = False,
) -> dict:
    """``rounds`` interleaved rounds of our store (``config``) against the raw client:
    ``raw_insert(round, entries)`` writes them into a fresh collection and returns (its
    handle, seconds, of them the seconds spent keeping the documents apart: 0 where the
    database keeps them); ``raw_query(handle, text)`` returns the top 10 ids (the rows are then
    read from SQLite, as our store returns them); ``raw_drop(handle)`` removes it.
    ``lexical_off``: each round also writes the entries through a store without the
    full-text index (``lexical_index: false``), reported as ``ratio_without_lexical_index``."""
    data = entries(n)
    texts = queries(n, n_queries)
    home = Path(config["home"])
    if config.get("embedding_driver") == "hashing":
        # its word cache is the process's: warm it for both sides alike, not only for the
        # side that inserts second in the first round (ours went first: 0.64-0.79x there, against
        # 0.76-0.86x in the later rounds of the same runs)
        await HashingEmbedder().embed([e["text"] for e in data])

    async def ours_insert(r: int, config: dict = config) -> tuple[SemanticStore, float]:
        store = await SemanticStore.create(f"bench{r}", config=config)
        await store.drop()
        start = time.perf_counter()
        for s in range(0, len(data), batch):
            await store.insert_many(data[s : s + batch])
        await store.flush()
        seconds = time.perf_counter() - start
        assert await store.vector.count() == len(data)
        return store, seconds

    ours_plain: list[float] = []
    ours_ins, raw_ins, raw_docs, ours_q, raw_q, ours_lat, raw_lat = [], [], [], [], [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            store, ours_s = await ours_insert(r)
            handle, raw_s, docs_s = await raw_insert(r, data)
        else:
            handle, raw_s, docs_s = await raw_insert(r, data)
            store, ours_s = await ours_insert(r)
        ours_ins.append(ours_s)
        raw_ins.append(raw_s)
        raw_docs.append(docs_s)
        if lexical_off:  # the same writes without the full-text index the defaults keep
            plain, plain_s = await ours_insert(r + rounds, {**config, "lexical_index": False})
            await plain.cleanup()
            ours_plain.append(plain_s)
        conn = sqlite3.connect(home / "store.db")
        table = store.primary._table

        async def ours(q: str, store=store) -> None:
            assert await store.get_most_relevant(q, 10)

        async def raw(q: str, handle=handle, conn=conn, table=table) -> None:
            ids = await raw_query(handle, q)
            assert ids
            marks = ",".join("?" * len(ids))
            conn.execute(f"SELECT id, text, timestamp, metadata FROM {table} WHERE id IN ({marks})", ids).fetchall()

        # query by query, the side that goes first alternating: a server that gets faster as
        # it indexes in the background (milvus-lite: 5.3 down to 3.4 ms a search over the
        # minute after a 20k insert) must not favour whichever side ran its queries later
        sides = [(ours, ours_lat), (raw, raw_lat)]
        totals = [0.0, 0.0]
        for j, q in enumerate(texts):
            for s in (0, 1) if (r + j) % 2 == 0 else (1, 0):
                fn, lat = sides[s]
                t = time.perf_counter()
                await fn(q)
                elapsed = time.perf_counter() - t
                totals[s] += elapsed
                lat.append(elapsed * 1000)
        ours_q.append(totals[0])
        raw_q.append(totals[1])
        conn.close()
        await store.cleanup()
        await raw_drop(handle)
    insert_ratios = [b / a for a, b in zip(ours_ins, raw_ins)]  # throughput: ours / raw
    query_ratios = [a / b for a, b in zip(ours_q, raw_q)]  # time: ours / raw
    insert = {
        "ours_per_s": round(n / statistics.median(ours_ins), 1),
        "raw_per_s": round(n / statistics.median(raw_ins), 1),
        "ratio": round(statistics.median(insert_ratios), 3),
        "ratio_spread": spread(insert_ratios),
    }
    if any(raw_docs):  # the same rounds against the vector writes alone (no documents kept)
        alone = [(b - d) / a for a, b, d in zip(ours_ins, raw_ins, raw_docs)]
        insert["ratio_vectors_only"] = round(statistics.median(alone), 3)
        insert["ratio_vectors_only_spread"] = spread(alone)
    if ours_plain:
        plain = [b / a for a, b in zip(ours_plain, raw_ins)]
        insert["ours_without_lexical_index_per_s"] = round(n / statistics.median(ours_plain), 1)
        insert["ratio_without_lexical_index"] = round(statistics.median(plain), 3)
        insert["ratio_without_lexical_index_spread"] = spread(plain)
    return {
        "rounds": rounds,
        "insert": insert,
        "query": {
            "ours_p50_ms": round(statistics.median(ours_lat), 3),
            "raw_p50_ms": round(statistics.median(raw_lat), 3),
            "ratio": round(statistics.median(query_ratios), 3),
            "ratio_spread": spread(query_ratios),
        },
    }
