"""Search speed benchmark: ``get_most_relevant`` in the ``vector``, ``lexical`` and ``hybrid``
modes on the embedded default (SQLite primary with its FTS5 index + local HNSW vectors), and
what keeping the lexical index costs writes.

Texts are generated, deterministically, by a word-bigram model of the standard library's
docstring summaries (``bench/data/stdlib_docs.jsonl.gz``): English-like sentences of 8 to 60
words whose word frequencies follow the corpus's Zipfian distribution (its fitted exponent is
reported), identifiers included. Vectors come from the hashing embedder (384 dimensions), so
building ``--n`` entries takes seconds and the model is not what is timed.

Prints one JSON object:

* ``data``: entries, mean words, vocabulary, Zipf exponent, build time of the store.
* ``query``: p50/p95 ms of ``get_most_relevant(q, 10, mode=...)`` for each mode over
  ``--queries`` queries (the stdlib benchmark questions, then generated phrases), ``--rounds``
  interleaved rounds with the order of the modes rotated per query; ``raw_fts`` is a
  hand-written FTS5 query on a plain SQLite copy of the same texts (same words, BM25, the top
  10 ranked inside the index, then their rows), timed in the same rounds. ``hybrid_ratio`` =
  hybrid p50 / vector p50 (target <= 1.5); ``lexical_p50_ms`` target <= 5;
  ``lexical_ratio_to_raw`` = lexical p50 / raw p50; ``lexical_recall_at_10_vs_exact_bm25``:
  the share of the exact BM25 top 10 (the raw query's) that the lexical mode returns (it ranks
  only rows holding one of the query's rarer words on large stores); ``embed_query_p50_ms`` is the hashing
  embedder's share of the vector and hybrid times. ``*_local_model_*``: vector and hybrid with
  the queries embedded by the embedded default's local model (ONNX MiniLM) as a real
  deployment does (documents stay hashed: timings only), ``hybrid_ratio_local_model`` their
  p50 ratio; ``hybrid_concurrent_local_model_p50_ms`` the hybrid mode ranking lexically while
  the model embeds (as for a remote model; the store embeds first when the model computes
  here) in the same rounds, ``sequenced_speedup`` its p50 over the hybrid p50.
* ``write``: ``insert_many`` throughput (batches of 500) of ``--write-n`` entries (default
  ``--n``) into a fresh store with ``lexical_index`` on and off, A/B interleaved
  ``--write-rounds`` times, until acknowledged and until every vector is indexed; ``ratio`` =
  on / off, acknowledged (target >= 0.8); ``indexed_ratio`` the same until indexed.

    python bench/search_speed.py [--n 100000] [--queries 200] [--rounds 3] [--write-n N] [--write-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gzip
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
DIMS = 384
MODES = ("vector", "lexical", "hybrid")
TOKENIZER = "porter unicode61 remove_diacritics 2"  # what the SQLite primary's index uses
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+")


# -- texts ------------------------------------------------------------------------------------


class Bigrams:
    """A word-bigram model of the stdlib docstring summaries."""

    def __init__(self) -> None:
        with gzip.open(DATA / "stdlib_docs.jsonl.gz", "rt", encoding="utf-8") as f:
            sentences = [_TOKEN.findall(json.loads(line)["text"]) for line in f]
        counts: dict[str, Counter[str]] = {}
        starts: Counter[str] = Counter()
        for words in sentences:
            if len(words) < 2:
                continue
            starts[words[1]] += 1  # words[0] is the dotted name's first part
            for a, b in zip(words, words[1:]):
                counts.setdefault(a, Counter())[b] += 1
        self.vocab = sorted({w for c in counts.values() for w in c} | set(counts))
        index = {w: i for i, w in enumerate(self.vocab)}
        self.next_ids: list[list[int]] = [[] for _ in self.vocab]
        self.next_cum: list[list[float]] = [[] for _ in self.vocab]
        for word, following in counts.items():
            total = sum(following.values())
            acc = 0.0
            for w, c in sorted(following.items()):
                acc += c / total
                self.next_ids[index[word]].append(index[w])
                self.next_cum[index[word]].append(acc)
        start_total = sum(starts.values())
        self.start_ids = [index[w] for w in sorted(starts)]
        self.start_cum = list(np.cumsum([starts[w] / start_total for w in sorted(starts)]))

    def texts(self, n: int, seed: int, low: int = 8, high: int = 60) -> list[str]:
        rng = np.random.default_rng(seed)
        lengths = np.clip(rng.lognormal(np.log(20), 0.5, size=n).astype(int), low, high)
        draws = iter(rng.random(int(lengths.sum()) + n).tolist())
        out = []
        for length in lengths:
            word = self.start_ids[min(bisect.bisect(self.start_cum, next(draws)), len(self.start_ids) - 1)]
            words = [self.vocab[word]]
            for _ in range(length - 1):
                ids, cum = self.next_ids[word], self.next_cum[word]
                u = next(draws)
                if ids:
                    word = ids[min(bisect.bisect(cum, u), len(ids) - 1)]
                else:  # a dead end: start a new sentence
                    word = self.start_ids[min(bisect.bisect(self.start_cum, u), len(self.start_ids) - 1)]
                words.append(self.vocab[word])
            out.append(" ".join(words).capitalize() + ".")
        return out


def zipf_exponent(texts: list[str], top: int = 1000) -> float:
    """The slope of log frequency over log rank for the ``top`` most frequent words."""
    freq = sorted(Counter(w.lower() for t in texts for w in _TOKEN.findall(t)).values(), reverse=True)[:top]
    ranks = np.log(np.arange(1, len(freq) + 1))
    return float(-np.polyfit(ranks, np.log(freq), 1)[0])


def queries(model: Bigrams, n: int) -> list[str]:
    questions = json.loads((DATA / "stdlib_questions.json").read_text(encoding="utf-8"))["questions"]
    out = [q["query"] for q in questions][:n]
    for text in model.texts(max(0, n - len(out)), seed=99, low=3, high=7):
        out.append(text.rstrip(".").lower())
    return out[:n]


# -- helpers ----------------------------------------------------------------------------------


def config(home: str, lexical: bool = True) -> dict:
    return {
        "home": home,
        "embedding_driver": "hashing",
        "hashing": {"dimensions": DIMS},
        "vector_batch_size": 500,
        "lexical_index": lexical,
    }


def entries(texts: list[str], start: int, stop: int) -> list[dict]:
    return [{"id": f"d{i}", "text": texts[i], "createdAt": 1_700_000_000_000 + i} for i in range(start, stop)]


async def fill(store, texts: list[str], batch: int = 500) -> tuple[float, float]:
    """Insert ``texts`` in batches; seconds until acknowledged and until every vector is indexed."""
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        await store.insert_many(entries(texts, start, min(len(texts), start + batch)))
    acknowledged = time.perf_counter() - started
    await store.flush()
    wait = getattr(store.vector, "wait_indexed", None)
    if wait is not None:
        await wait()
    return acknowledged, time.perf_counter() - started


class RawFts:
    """The same texts in a plain SQLite table with an FTS5 index: the query one would write by hand."""

    def __init__(self, path: str, texts: list[str]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, text TEXT, timestamp INTEGER, metadata TEXT)")
        self.conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5(text, content='docs', tokenize='{TOKENIZER}')")
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO docs VALUES (?, ?, ?, '{}')",
            [(f"d{i}", t, 1_700_000_000_000 + i) for i, t in enumerate(texts)],
        )
        self.conn.execute("INSERT INTO fts (fts) VALUES ('rebuild')")
        self.conn.execute("COMMIT")
        # top 10 by BM25 inside the index, then their rows: the usual hand-written top-k query
        self.sql = (
            "SELECT d.id, d.text, d.timestamp, d.metadata, r.s FROM (SELECT rowid, bm25(fts) AS s FROM fts"
            " WHERE fts MATCH ? ORDER BY s, rowid LIMIT ?) AS r JOIN docs AS d ON d.rowid = r.rowid"
            " ORDER BY r.s, d.rowid"
        )

    def search(self, terms: list[str], k: int = 10) -> list:
        if not terms:
            return []
        rows = self.conn.execute(self.sql, (" OR ".join(f'"{t}"' for t in terms), k)).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3]), -r[4]) for r in rows]


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


# -- the runs ---------------------------------------------------------------------------------


async def bench_query(texts: list[str], qs: list[str], rounds: int, home: str) -> tuple[dict, dict]:
    from promethean_persistence import SemanticStore
    from promethean_persistence._lexical import query_terms
    from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

    store = await SemanticStore.create("speed", config=config(home))
    try:
        acknowledged, settled = await fill(store, texts, batch=1000)
        assert await store.count() == len(texts)
        started = time.perf_counter()
        raw = RawFts(f"{home}/raw.db", texts)
        raw_build = time.perf_counter() - started
        embedder = HashingEmbedder(DIMS)
        kinds = (*MODES, "raw_fts")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        embed_ms, matched = [], []
        for q in qs[:5]:  # warm the caches
            for mode in MODES:
                await store.get_most_relevant(q, 10, mode=mode)
            raw.search(query_terms(q))
        for r in range(rounds):
            for n, q in enumerate(qs):
                shift = (n + r) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    t = time.perf_counter()
                    if kind == "raw_fts":
                        hits = raw.search(query_terms(q))
                    else:
                        hits = await store.get_most_relevant(q, 10, mode=kind)
                    times[kind].append((time.perf_counter() - t) * 1000)
                    if r == 0 and kind == "lexical":
                        matched.append(len(hits))
                t = time.perf_counter()
                await embedder.embed([q])
                embed_ms.append((time.perf_counter() - t) * 1000)
        agreement = []  # the lexical top 10 against the exact BM25 top 10 of the whole index
        for q in qs:
            exact = {h[0] for h in raw.search(query_terms(q))}
            if exact:
                ours = {h["id"] for h in await store.get_most_relevant(q, 10, mode="lexical")}
                agreement.append(len(ours & exact) / len(exact))
        raw.conn.close()
        local = await with_local_queries(store, qs, rounds)
    finally:
        await store.cleanup()
    p50 = {k: statistics.median(v) for k, v in times.items()}
    data = {
        "entries": len(texts),
        "build_acknowledged_per_s": round(len(texts) / acknowledged, 1),
        "build_indexed_s": round(settled, 1),
        "raw_fts_build_s": round(raw_build, 1),
    }
    query = {
        "queries": len(qs),
        "rounds": rounds,
        "limit": 10,
        **{f"{k}_p50_ms": round(p50[k], 3) for k in kinds},
        **{f"{k}_p95_ms": round(percentile(times[k], 95), 3) for k in kinds},
        "embed_query_p50_ms": round(statistics.median(embed_ms), 3),
        "lexical_queries_with_10_hits": round(sum(m == 10 for m in matched) / len(matched), 3),
        "hybrid_ratio": round(p50["hybrid"] / p50["vector"], 3),
        "lexical_ratio_to_raw": round(p50["lexical"] / p50["raw_fts"], 3),
        "lexical_recall_at_10_vs_exact_bm25": round(statistics.fmean(agreement), 4),
        **local,
    }
    return data, query


class _LocalQueries:
    """The store's hashing embedder for documents, the embedded default's local model (ONNX
    MiniLM) for queries: the query-side cost of the embedded default on a store built in
    seconds. The vectors do not match, so only the timings mean something. ``remote``: it
    says it computes elsewhere, so a hybrid search ranks lexically while it embeds."""

    def __init__(self, documents, queries, remote: bool = False) -> None:
        from dataclasses import replace

        self.documents, self.queries = documents, queries
        self.name, self.model, self.dimensions = documents.name, documents.model, documents.dimensions
        self.supports_images, self.normalize = False, True
        self.capabilities = replace(queries.capabilities, query_embedding=True, warm=not remote, in_process=not remote)

    async def embed(self, texts):
        return await self.documents.embed(texts)

    async def embed_queries(self, texts):
        return await self.queries.embed(texts)


async def with_local_queries(store, qs: list[str], rounds: int) -> dict:
    """p50 of the vector and hybrid modes with queries embedded by the local model (none when
    it is not installed), interleaved as above; ``hybrid_ratio_local_model`` is their ratio.
    ``hybrid_concurrent_local_model_p50_ms``: the hybrid mode ranking lexically while the
    model embeds, timed in the same rounds, and ``sequenced_speedup`` = that p50 / the hybrid
    p50."""
    from promethean_persistence import StoreConfig
    from promethean_persistence._errors import MissingDependencyError
    from promethean_persistence.drivers.embedding.local import LocalEmbedder

    try:
        model = LocalEmbedder.from_config(StoreConfig())
        await model.embed(["warm"])
    except MissingDependencyError:
        return {}
    documents = store.embedder
    here = _LocalQueries(documents, model)
    runs = {
        "vector": ("vector", here),
        "hybrid": ("hybrid", here),
        "hybrid_concurrent": ("hybrid", _LocalQueries(documents, model, remote=True)),
    }
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    try:
        for q in qs[:5]:  # warm
            for mode, embedder in runs.values():
                store.embedder = embedder
                await store.get_most_relevant(q, 10, mode=mode)
        for r in range(rounds):
            for n, q in enumerate(qs):
                shift = (n + r) % len(names)
                for name in names[shift:] + names[:shift]:
                    mode, store.embedder = runs[name]
                    t = time.perf_counter()
                    await store.get_most_relevant(q, 10, mode=mode)
                    times[name].append((time.perf_counter() - t) * 1000)
    finally:
        store.embedder = documents
        await model.aclose()
    p50 = {k: statistics.median(v) for k, v in times.items()}
    out = {f"{k}_local_model_p50_ms": round(v, 3) for k, v in p50.items()}
    out["hybrid_ratio_local_model"] = round(p50["hybrid"] / p50["vector"], 3)
    out["sequenced_speedup"] = round(p50["hybrid_concurrent"] / p50["hybrid"], 3)
    return out


async def bench_write(texts: list[str], rounds: int) -> dict:
    from promethean_persistence import SemanticStore

    rates: dict[str, list[float]] = {"on_acknowledged": [], "off_acknowledged": [], "on_indexed": [], "off_indexed": []}
    for r in range(rounds):
        for lexical in (True, False) if r % 2 == 0 else (False, True):
            side = "on" if lexical else "off"
            with tempfile.TemporaryDirectory() as home:
                store = await SemanticStore.create(f"write{r}{side}", config=config(home, lexical))
                try:
                    acknowledged, indexed = await fill(store, texts)
                    assert await store.count() == len(texts)
                finally:
                    await store.cleanup()
            rates[f"{side}_acknowledged"].append(len(texts) / acknowledged)
            rates[f"{side}_indexed"].append(len(texts) / indexed)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "entries": len(texts),
        "rounds": rounds,
        "batch": 500,
        **{f"{k}_per_s": round(v, 1) for k, v in med.items()},
        "ratio": round(med["on_acknowledged"] / med["off_acknowledged"], 3),
        "indexed_ratio": round(med["on_indexed"] / med["off_indexed"], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="entries searched")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the query timings")
    parser.add_argument("--write-n", type=int, default=None, help="entries per write run (default: --n)")
    parser.add_argument("--write-rounds", type=int, default=3, help="A/B rounds of the write runs")
    args = parser.parse_args(argv)
    args.write_n = args.n if args.write_n is None else args.write_n
    started = time.perf_counter()
    model = Bigrams()
    texts = model.texts(max(args.n, args.write_n), seed=1)
    qs = queries(model, args.queries)
    result: dict = {
        "benchmark": "search_speed",
        "embedder": f"hashing ({DIMS} dimensions)",
        "data": {
            "source": "word bigrams of bench/data/stdlib_docs.jsonl.gz",
            "mean_words": round(statistics.fmean(len(t.split()) for t in texts[: args.n]), 1),
            "vocabulary": len(model.vocab),
            "zipf_exponent": round(zipf_exponent(texts[: args.n]), 2),
            "generate_s": round(time.perf_counter() - started, 1),
        },
    }
    with tempfile.TemporaryDirectory() as home:
        data, query = asyncio.run(bench_query(texts[: args.n], qs, args.rounds, home))
    result["data"] |= data
    result["query"] = query
    result["write"] = asyncio.run(bench_write(texts[: args.write_n], args.write_rounds))
    result["targets"] = {
        "hybrid_ratio": "<= 1.5",
        "lexical_p50_ms": "<= 5",
        "write.ratio": ">= 0.8",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
