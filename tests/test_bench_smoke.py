"""Each benchmark runs end to end at a tiny size, so the scripts keep working: the JSON each
prints has the documented shape, and every ratio in it is a finite positive number."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
NUMBER = "number"  # shape marker: an int or a float (not a bool)
# keys whose values are ratios (ours / raw, speedups, gains); "targets" holds their goals as text
RATIO_KEY = re.compile(r"ratio|speedup|gain")


def run_bench(script: str, *args: str, timeout: int = 300) -> dict:
    """Run ``bench/<script>`` and return the JSON object it prints last."""
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict), result
    return result


def assert_shape(value, shape, where: str = "result") -> None:
    """``value`` has at least the keys of ``shape``, with values of the given kinds."""
    if isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        for key, sub in shape.items():
            assert key in value, f"{where}: missing {key!r} (has {sorted(value)})"
            assert_shape(value[key], sub, f"{where}.{key}")
    elif shape == NUMBER:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: not a number: {value!r}"
    else:
        assert isinstance(value, shape), f"{where}: expected {shape.__name__}, got {value!r}"


def ratios(value, where: str = "result") -> dict[str, object]:
    """Every value under a ratio-named key (``ratio``, ``sequential_ratio``, ``ratio_to_raw``,
    ``concurrent_speedup``, ``batching_gain``, ...), by path; ``targets`` are skipped."""
    found: dict[str, object] = {}
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{where}.{key}"
            if key.startswith("target"):
                continue
            if RATIO_KEY.search(key):
                if isinstance(sub, dict):  # e.g. {"min", "median", "max"} or one per driver
                    found.update({f"{path}.{k}": v for k, v in sub.items()})
                else:
                    found[path] = sub
            else:
                found.update(ratios(sub, path))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found.update(ratios(sub, f"{where}[{i}]"))
    return found


def assert_ratios(result: dict, expected: set[str]) -> None:
    """Every ratio is a finite positive number, and at least the ``expected`` ones are there."""
    found = ratios(result)
    assert expected <= set(found), f"missing ratios {sorted(expected - set(found))}; found {sorted(found)}"
    for path, value in found.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path} is not a number: {value!r}"
        assert math.isfinite(value) and value > 0, f"{path} is not a finite positive number: {value!r}"


def test_write_path_benchmark_smoke():
    result = run_bench("write_path.py", "--n", "200", "--runs", "1")
    assert_shape(
        result,
        {
            "benchmark": str,
            "setup": str,
            "n": int,
            "runs": int,
            "raw_inserts_per_s": NUMBER,
            "sequential_inserts_per_s": NUMBER,
            "concurrent_inserts_per_s": NUMBER,
            "sequential_ratio": NUMBER,
            "concurrent_speedup": NUMBER,
            "outage_p99_ms": NUMBER,
            "targets": dict,
        },
    )
    assert (result["benchmark"], result["n"], result["runs"]) == ("write_path", 200, 1)
    for key in ("raw_inserts_per_s", "sequential_inserts_per_s", "concurrent_inserts_per_s", "outage_p99_ms"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert_ratios(result, {"result.sequential_ratio", "result.concurrent_speedup"})


def test_embedded_benchmark_smoke():
    result = run_bench("embedded.py", "--n", "3000", "--skip-model", timeout=600)
    assert_shape(
        result,
        {
            "benchmark": str,
            "index": {
                "n": int,
                "dims": int,
                "hnsw": {"m": int, "ef_construction": int, "ef_search": int},
                "recall_at_10": NUMBER,
                "query_p50_ms": NUMBER,
                "get_most_relevant_p50_ms": NUMBER,
                "graph_build_after_ingest_s": NUMBER,
            },
            "ingest": {
                "n": int,
                "embedder": str,
                "batch": int,
                "store_entries_per_s": NUMBER,
                "store_acknowledged_per_s": NUMBER,
                "hand_written_entries_per_s": NUMBER,
                "ratio": NUMBER,
            },
            "targets": dict,
        },
    )
    assert "model" not in result  # --skip-model
    assert result["index"]["n"] == result["ingest"]["n"] == 3000
    assert 0 < result["index"]["recall_at_10"] <= 1
    assert result["ingest"]["store_entries_per_s"] > 0
    assert_ratios(result, {"result.ingest.ratio"})


def test_chroma_benchmark_smoke():
    result = run_bench("chroma.py", "--sizes", "300", "--queries", "20", "--batch", "100")
    side = {
        "insert": {"ours_per_s": NUMBER, "raw_per_s": NUMBER, "ratio": NUMBER},
        "query": {"ours_p50_ms": NUMBER, "raw_p50_ms": NUMBER, "ratio": NUMBER},
    }
    assert_shape(result, {"batch": int, "queries": int, "embedded_300": side, "server_300": side})
    assert (result["batch"], result["queries"]) == (100, 20)
    assert_ratios(
        result, {f"result.{run}.{op}.ratio" for run in ("embedded_300", "server_300") for op in ("insert", "query")}
    )


def test_milvus_benchmark_smoke():
    result = run_bench("milvus.py", "--sizes", "300", "--queries", "20", "--batch", "100", "--rounds", "2")
    side = {
        "insert": {"ours_per_s": NUMBER, "raw_per_s": NUMBER, "ratio": NUMBER, "ratio_vectors_only": NUMBER},
        "query": {"ours_p50_ms": NUMBER, "raw_p50_ms": NUMBER, "ratio": NUMBER},
    }
    assert_shape(result, {"batch": int, "queries": int, "rounds": int, "lite_300": side})
    assert (result["batch"], result["queries"], result["rounds"]) == (100, 20, 2)
    assert_ratios(
        result,
        {"result.lite_300.insert.ratio", "result.lite_300.insert.ratio_vectors_only", "result.lite_300.query.ratio"},
    )


def test_workers_benchmark_smoke():
    from conftest import require_postgres

    result = run_bench("workers.py", "--n", "64", "--delay", "0.02", "--rounds", "1", "--dsn", require_postgres())
    assert_shape(result, {"per_s": {"1": {"median": NUMBER}, "4": {"median": NUMBER}}, "embedded_twice": int})
    assert result["embedded_twice"] == 0
    assert {run["entries"] for run in result["runs"]} == {64}
    assert_ratios(result, {"result.speedup.2", "result.speedup.4"})


def test_embeddings_benchmark_smoke():
    result = run_bench("embeddings.py", "--n", "64", "--runs", "1", "--encoder", "hashing")
    batches = {f"batch_{b}": {"texts_per_s": NUMBER, "ratio_to_raw": NUMBER} for b in (1, 16, 64)}
    assert_shape(
        result,
        {
            "benchmark": str,
            "encoder": str,
            "n": int,
            "runs": int,
            "raw_texts_per_s": NUMBER,
            "original_texts_per_s": NUMBER,
            "drivers": {"ollama": batches, "openai": batches},
            "batching_gain": {"ollama": NUMBER, "openai": NUMBER},
            "target_batching_gain": NUMBER,
        },
    )
    assert result["original_texts_per_s"] > 0 and result["raw_texts_per_s"] > 0
    assert_ratios(
        result,
        {f"result.drivers.{d}.batch_{b}.ratio_to_raw" for d in ("ollama", "openai") for b in (1, 16, 64)}
        | {"result.batching_gain.ollama", "result.batching_gain.openai"},
    )


def test_migrate_benchmark_smoke():
    from conftest import require_postgres

    result = run_bench("migrate.py", "--sizes", "300", "--dsn", require_postgres())
    kind = {"entries_per_s": NUMBER, "seconds": NUMBER, "rss_growth_mb": NUMBER}
    assert_shape(
        result,
        {
            "dims": int,
            "runs": int,
            "300": {
                "build_seconds": NUMBER,
                "raw": kind,
                "migrate": kind,
                "migrate_verified": kind,
                "ratio": NUMBER,
                "ratio_verified": NUMBER,
            },
        },
    )
    for name in ("raw", "migrate", "migrate_verified"):
        assert result["300"][name]["entries_per_s"] > 0
    assert_ratios(result, {"result.300.ratio", "result.300.ratio_verified"})


def test_consistency_benchmark_smoke():
    result = run_bench("consistency.py", "--n", "1000", "--rounds", "2")
    assert_shape(
        result,
        {
            "n": int,
            "build_seconds": NUMBER,
            "report_seconds": list,
            "raw_scan_seconds": list,
            "report_entries_per_s": NUMBER,
            "ratio": {"min": NUMBER, "median": NUMBER, "max": NUMBER},
        },
    )
    assert result["n"] == 1000 and len(result["report_seconds"]) == len(result["raw_scan_seconds"]) == 2
    assert result["ratio"]["min"] <= result["ratio"]["median"] <= result["ratio"]["max"]
    assert_ratios(result, {"result.ratio.min", "result.ratio.median", "result.ratio.max"})


def test_search_quality_benchmark_smoke(tmp_path):
    import gzip
    import os

    # a tiny collection in the BEIR layout: gzipped corpus, a title-only match, a score-0 judgment
    beir = tmp_path / "tinybeir"
    (beir / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Photosynthesis", "text": "Plants turn light into sugar."},
        {"_id": "d2", "title": "", "text": "Volcanoes erupt molten rock."},
        {"_id": "d3", "title": "Tides", "text": "The moon pulls the oceans."},
        {"_id": "d4", "title": "Glaciers", "text": "Ice carves valleys slowly."},
    ]
    with gzip.open(beir / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in corpus)
    queries = [
        {"_id": "q1", "text": "photosynthesis"},
        {"_id": "q2", "text": "volcanoes erupt"},
        {"_id": "q3", "text": "tides"},
    ]
    (beir / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td3\t0\n")

    result = run_bench(
        "search_quality.py", "--embedder", "hashing", "--max-docs", "300", "--max-queries", "20", "--beir", str(beir),
        timeout=120,
    )  # fmt: skip
    metrics = {"ndcg_at_10": NUMBER, "recall_at_100": NUMBER, "mrr_at_10": NUMBER}
    corpus_shape = {
        "docs": int,
        "queries": int,
        "judged_per_query": NUMBER,
        "build_s": NUMBER,
        "vector": metrics | {"query_p50_ms": NUMBER},
        "lexical": metrics | {"query_p50_ms": NUMBER},
        "hybrid": metrics | {"query_p50_ms": NUMBER},
        "raw": {"vector": metrics, "lexical": metrics, "hybrid": metrics},
        "ratio_to_raw": dict,
        "best_single": str,
        "hybrid_ge_best_single": bool,
        "hybrid_delta_over_vector": NUMBER,
        "hybrid_delta_over_best_single": NUMBER,
    }
    expected = {"stdlib": corpus_shape, "numpy_seealso": corpus_shape, "tinybeir": corpus_shape}
    assert_shape(
        result,
        {
            "benchmark": str,
            "embedder": str,
            "limit": int,
            "rrf_k": int,
            "corpora": expected,
            "summary": {"hybrid_ge_best_single": bool, "hybrid_delta_over_vector": NUMBER},
            "targets": dict,
        },
    )
    assert result["benchmark"] == "search_quality" and result["limit"] == 100
    stdlib = result["corpora"]["stdlib"]
    assert set(stdlib["by_kind"]) == {"paraphrase", "identifier"}  # the even cut keeps both kinds
    # on Debian (CI) dpkg's status alone holds the installed packages' long descriptions
    if Path("/var/lib/dpkg/status").exists():
        debian = result["corpora"]["debian"]
        assert_shape(debian, corpus_shape | {"source": {"packages": int, "documents": int, "from_dpkg_status": int}})
        assert debian["source"]["from_dpkg_status"] > 0 and debian["docs"] == min(300, debian["source"]["documents"])
        assert debian["judged_per_query"] <= 5  # synopses shared by more packages are left out
    for name, c in result["corpora"].items():
        if name in ("stdlib", "numpy_seealso"):
            assert 300 <= c["docs"] <= 320 and 0 < c["queries"] <= 20, name  # judged documents may pass the cap
        for side in (c, c["raw"]):
            for mode in ("vector", "lexical", "hybrid"):
                assert all(0 <= side[mode][k] <= 1 for k in metrics), (name, mode)
        assert c["best_single"] in ("vector", "lexical")
        assert c["hybrid_ge_best_single"] == (c["hybrid_delta_over_best_single"] >= 0)
        assert -1 <= c["hybrid_delta_over_vector"] <= 1
        gains = [c["hybrid_gain_over_vector"], c["hybrid_gain_over_best_single"], *c["ratio_to_raw"].values()]
        assert all(g is None or (math.isfinite(g) and g > 0) for g in gains), gains  # None: a zero denominator
    tiny = result["corpora"]["tinybeir"]
    assert (tiny["docs"], tiny["queries"], tiny["judged_per_query"]) == (4, 2, 1)  # q3's only judgment scores 0
    assert tiny["vector"]["recall_at_100"] == 1  # 4 documents, limit 100: the judged ids are the store's ids
    # "photosynthesis" is only in d1's title and "volcanoes" only in d2's text (empty title): both come first
    assert tiny["lexical"]["mrr_at_10"] == 1 and tiny["lexical"]["recall_at_100"] == 1

    # where no package lists nor dpkg status hold long descriptions, debian says why: left out of
    # the default corpora, an error when named
    (tmp_path / "lists").mkdir()
    apt_conf = tmp_path / "apt.conf"
    apt_conf.write_text(f'Dir::State::Lists "{tmp_path}/lists/";\nDir::State::status "{tmp_path}/no-status";\n')
    env = os.environ | {"APT_CONFIG": str(apt_conf)}
    script = [sys.executable, str(BENCH / "search_quality.py"), "--embedder", "hashing", "--max-docs", "50"]
    done = subprocess.run([*script, "--max-queries", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    without = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(without["corpora"]) == {"stdlib", "numpy_seealso"}
    why = without["unavailable"]["debian"]
    assert "no long package descriptions" in why and "Translation-en" in why and "dpkg status" in why, why
    done = subprocess.run([*script, "--corpora", "debian"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and why in done.stderr, done.stderr


def test_search_speed_benchmark_smoke():
    result = run_bench(
        "search_speed.py", "--n", "2000", "--queries", "20", "--rounds", "1", "--write-n", "1000", "--write-rounds", "2"
    )
    query = {f"{k}_p{p}_ms": NUMBER for k in ("vector", "lexical", "hybrid", "raw_fts") for p in (50, 95)}
    assert_shape(
        result,
        {
            "benchmark": str,
            "embedder": str,
            "data": {"entries": int, "mean_words": NUMBER, "vocabulary": int, "zipf_exponent": NUMBER},
            "query": query
            | {
                "queries": int,
                "rounds": int,
                "embed_query_p50_ms": NUMBER,
                "lexical_queries_with_10_hits": NUMBER,
                "hybrid_ratio": NUMBER,
                "lexical_ratio_to_raw": NUMBER,
            },
            "write": {
                "entries": int,
                "rounds": int,
                "on_acknowledged_per_s": NUMBER,
                "off_acknowledged_per_s": NUMBER,
                "on_indexed_per_s": NUMBER,
                "off_indexed_per_s": NUMBER,
                "ratio": NUMBER,
                "indexed_ratio": NUMBER,
            },
            "targets": dict,
        },
    )
    assert (result["data"]["entries"], result["query"]["queries"], result["write"]["entries"]) == (2000, 20, 1000)
    assert 8 <= result["data"]["mean_words"] <= 60 and result["data"]["vocabulary"] > 1000
    assert 0.5 < result["data"]["zipf_exponent"] < 2  # Zipfian words, not uniform random tokens
    for key in query:
        assert math.isfinite(result["query"][key]) and result["query"][key] > 0, key
    assert result["query"]["lexical_p50_ms"] <= result["query"]["lexical_p95_ms"]
    assert 0 <= result["query"]["lexical_queries_with_10_hits"] <= 1
    assert_ratios(
        result,
        {
            "result.query.hybrid_ratio",
            "result.query.lexical_ratio_to_raw",
            "result.write.ratio",
            "result.write.indexed_ratio",
        },
    )


def test_scale_benchmark_smoke():
    result = run_bench("scale.py", "--n", "3000", "--queries", "20", "--kill-tail", "500")
    timing = {"p50_ms": NUMBER, "p99_ms": NUMBER}
    assert_shape(
        result,
        {
            "entries": NUMBER,
            "insert": {"acknowledged_per_s": NUMBER, "indexed_per_s": NUMBER},
            "query": {"unfiltered": timing, "indexed_1pct": timing, "scan_1pct": timing, "recall_at_10": NUMBER},
            "disk_mb": NUMBER,
            "reopen": {"open_s": NUMBER, "first_query_s": NUMBER, "rss_mb": NUMBER},
            "after_kill": {"tail_entries": NUMBER, "open_s": NUMBER, "first_query_s": NUMBER},
        },
    )
    assert 0.9 <= result["query"]["recall_at_10"] <= 1.0  # 3,000 entries: exact search
