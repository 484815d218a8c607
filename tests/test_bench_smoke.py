"""Each benchmark runs end to end at a tiny size, so the scripts keep working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_bench(script: str, *args: str, timeout: int = 300) -> dict:
    """Run ``bench/<script>`` and return the JSON object it prints last."""
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_write_path_benchmark_smoke():
    result = run_bench("write_path.py", "--n", "200", "--runs", "1")
    for key in ("raw_inserts_per_s", "sequential_ratio", "concurrent_speedup", "outage_p99_ms"):
        assert isinstance(result[key], (int, float)) and result[key] > 0


def test_embedded_benchmark_smoke():
    result = run_bench("embedded.py", "--n", "3000", "--skip-model", timeout=600)
    assert 0 < result["index"]["recall_at_10"] <= 1
    assert result["ingest"]["store_entries_per_s"] > 0 and result["ingest"]["ratio"] > 0


def test_chroma_benchmark_smoke():
    result = run_bench("chroma.py", "--sizes", "300", "--queries", "20", "--batch", "100")
    for run in ("embedded_300", "server_300"):
        assert result[run]["insert"]["ratio"] > 0 and result[run]["query"]["ratio"] > 0


def test_embeddings_benchmark_smoke():
    result = run_bench("embeddings.py", "--n", "64", "--runs", "1", "--encoder", "hashing")
    assert result["original_texts_per_s"] > 0 and result["raw_texts_per_s"] > 0
    for driver in ("ollama", "openai"):
        assert {"batch_1", "batch_16", "batch_64"} <= set(result["drivers"][driver])
        assert result["batching_gain"][driver] > 0


def test_migrate_benchmark_smoke():
    from conftest import require_postgres

    result = run_bench("migrate.py", "--sizes", "300", "--dsn", require_postgres())["300"]
    for kind in ("raw", "migrate", "migrate_verified"):
        assert result[kind]["entries_per_s"] > 0
    assert result["ratio"] > 0 and result["ratio_verified"] > 0


def test_consistency_benchmark_smoke():
    import math

    result = run_bench("consistency.py", "--n", "1000", "--rounds", "2")
    assert result["n"] == 1000 and len(result["report_seconds"]) == len(result["raw_scan_seconds"]) == 2
    assert all(math.isfinite(result["ratio"][k]) and result["ratio"][k] > 0 for k in ("min", "median", "max"))
