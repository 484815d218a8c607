"""The CLI: one library call per command, --json, one-line errors, exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def hashing(monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")


def test_insert_get_recent_search_count(sh):
    id_ = sh("insert", "the cat sleeps on the mat", "-m", '{"kind": "pet"}', "--id", "cat").stdout.strip()
    assert id_ == "cat"
    sh("insert", "markets fell today", "--timestamp", "2024-01-01T00:00:00Z")
    assert sh("count").stdout.strip() == "2"
    entry = json.loads(sh("get", "cat").stdout)
    assert entry["text"] == "the cat sleeps on the mat" and entry["metadata"]["kind"] == "pet"
    recent = json.loads(sh("--json", "recent", "5").stdout)
    assert [e["id"] for e in recent][0] == "cat" and len(recent) == 2
    assert "cat" in sh("recent", "--filter", '{"kind": "pet"}').stdout
    hits = json.loads(sh("--json", "search", "cat on a mat", "-n", "1").stdout)
    assert hits[0]["id"] == "cat" and "score" in hits[0]
    assert "cat" in sh("search", "cat").stdout
    assert sh("delete", "cat").stdout.strip() == "deleted"
    assert sh("count").stdout.strip() == "1"


def test_report_and_stats(sh):
    sh("insert", "hello")
    report = json.loads(sh("--json", "report", "--all").stdout)
    assert report["total_documents"] == 1 and report["inconsistent_documents"] == 0
    assert "consistent_documents: 1" in sh("report").stdout
    stats = json.loads(sh("--json", "stats").stdout)
    assert stats["config"]["batch_size"] == 64


def test_stores_are_separate(sh):
    sh("--store", "a", "insert", "in a")
    assert sh("--store", "b", "count").stdout.strip() == "0"
    assert sh("--store", "a", "count").stdout.strip() == "1"


def test_errors_are_one_line_with_exit_codes(sh, monkeypatch):
    missing = sh("get", "nope", code=1)
    assert missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr
    assert "Traceback" not in missing.output
    sh("recent", "--filter", '{"$bad": 1}', code=2)
    sh("recent", "--filter", "not json", code=2)
    sh("insert", "x", "--timestamp", "yesterday", code=2)
    sh("--bogus", code=2)
    monkeypatch.setenv("PRIMARY_DRIVER", "sqlit")
    bad = sh("count", code=2)
    assert "did you mean 'sqlite'" in bad.stderr


def test_config_file_and_profile(sh, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profiles.mem]\nprimaryDriver = "memory"\nvectorDriver = "memory"\n')
    sh("--config", str(cfg), "--profile", "mem", "insert", "ephemeral")
    assert sh("--config", str(cfg), "--profile", "mem", "count").stdout.strip() == "0"  # memory: new process, empty
    sh("--profile", "mem", "count", code=2)


def test_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("semantic-store")
    env = {**os.environ, "SEMANTIC_STORE_HOME": str(tmp_path), "EMBEDDING_DRIVER": "hashing"}
    done = subprocess.run(
        [str(script), "insert", "from the console script"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(script), "--json", "search", "console"], capture_output=True, text=True, env=env, timeout=60
    )
    assert json.loads(done.stdout)[0]["text"] == "from the console script"


def test_retry_and_repair(sh):
    sh("insert", "needs a vector", "--id", "x")
    assert sh("retry", "x").stdout.strip() == "synced"
    sh("retry", "missing-id", code=1)
    plan = json.loads(sh("--json", "repair", "--dry-run").stdout)
    assert plan["dry_run"] is True and plan["requeued"] == 0
    assert json.loads(sh("--json", "report", "--all").stdout)["inconsistent_documents"] == 0
    assert "orphans_deleted: 0" in sh("repair").stdout
