"""The migration toolkit: migrate between every pair of drivers, resume after kill -9,
failures listed and never dropped, validate, export/import round trips."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from promethean_persistence import (
    BackendRejected,
    EmbeddingMismatchError,
    MigrationError,
    SemanticStore,
    export,
    import_,
    migrate,
    validate,
)
from promethean_persistence._copy import Copier
from promethean_persistence.testing.store import open_store, user_meta

from conftest import CHROMA, MONGO, PG, PINECONE, QDRANT, base_config

# (primary, vector) kinds that migrations run between: every ordered pair of the first four,
# and the remote vector stores (qdrant local mode, the FAKE Pinecone) both ways with sqlite+local.
KINDS = {
    "memory": (("memory", "memory"), []),
    "sqlite+local": (("sqlite", "local"), []),
    "postgresql+pgvector": (("postgresql", "pgvector"), [PG]),
    "mongodb+chromadb": (("mongodb", "chromadb"), [MONGO, CHROMA]),
}
PAIRS = [pytest.param(a, b, id=f"{a}->{b}", marks=KINDS[a][1] + KINDS[b][1]) for a in KINDS for b in KINDS if a != b]
KINDS["sqlite+qdrant"] = (("sqlite", "qdrant-edge"), [QDRANT])
KINDS["sqlite+pinecone"] = (("sqlite", "pinecone"), [PINECONE])
PAIRS += [
    pytest.param(a, b, id=f"{a}->{b}", marks=KINDS[a][1] + KINDS[b][1])
    for a, b in [
        ("sqlite+qdrant", "sqlite+local"),
        ("sqlite+local", "sqlite+qdrant"),
        ("sqlite+pinecone", "sqlite+local"),
        ("sqlite+local", "sqlite+pinecone"),
    ]
]

TOPICS = ["cats purring on sofas", "stock markets falling", "sourdough bread baking", "rain over mountains"]


def entries(n: int, start: int = 0) -> list[dict]:
    """Unicode, nested metadata, extra top-level fields, own timestamps, an empty text."""
    out = [
        {
            "id": f"e{i:04d}",
            "text": f"{TOPICS[i % 4]} — note {i} ✓ 日本",
            "createdAt": 1_700_000_000_000 + 1000 * i,
            "metadata": {"n": i, "tags": ["a", "ü"], "deep": {"k": [1, {"x": None}]}, "type": "note"},
            "source": {"file": f"f{i}.md"},
        }
        for i in range(start, start + n)
    ]
    if start == 0:
        out.append({"id": "blank", "text": "   ", "createdAt": 5})
    return out


@pytest.fixture
async def stores(tmp_path):
    """``await stores(kind, side, **config)``: a store named "moved" in ``tmp_path / side``,
    closed after the test."""
    opened: list[SemanticStore] = []

    async def make(kind: str, side: str, **overrides) -> SemanticStore:
        store = await open_store("moved", base_config(tmp_path / side, *KINDS[kind][0], **overrides))
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.cleanup()


def content(record) -> tuple:
    return record.id, record.text, record.timestamp, record.metadata, record.extra


async def records(store: SemanticStore) -> list:
    return [r async for batch in store.primary.iterate(100) for r in batch]


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS)
async def test_migrate_copies_everything_between_drivers(stores, source_kind, target_kind):
    source = await stores(source_kind, "a")
    target = await stores(target_kind, "b")
    await source.insert_many(entries(60))
    await source.flush()
    report = await migrate(source, target, batch_size=16, progress=False)
    assert report["status"] == "ok", report
    assert report["mode"] == "copy vectors"
    assert (report["copied"], report["vectors_copied"], report["skipped"], report["embedded"]) == (61, 60, 1, 0)
    assert report["verification"]["exact"] and report["verification"]["compared"] == 61
    assert [content(r) for r in await records(target)] == [content(r) for r in await records(source)]
    assert await target.vector.count() == 60
    hits = await target.get_most_relevant("sourdough bread baking — note 6 ✓ 日本", 1)
    assert hits[0]["id"] == "e0006"
    entry = await target.get("e0001")
    assert entry["timestamp"] == 1_700_000_001_000 and entry["metadata"]["vectorStatus"] == "synced"
    assert user_meta(entry) == {"n": 1, "tags": ["a", "ü"], "deep": {"k": [1, {"x": None}]}, "type": "note"}
    assert (await target.get("blank"))["metadata"]["vectorStatus"] == "skipped"
    # a second run (nothing left to resume) rewrites in place: no duplicates
    again = await migrate(source, target, batch_size=16, progress=False)
    assert again["status"] == "ok" and await target.count() == 61 and await target.vector.count() == 60


async def test_migrate_reembeds_into_another_model(stores):
    source = await stores("sqlite+local", "a")
    target = await stores("memory", "b", embedding_function="hashing-v1-64")
    await source.insert_many(entries(30))
    with pytest.raises(MigrationError, match="hashing-v1-256.*hashing-v1-64"):
        await migrate(source, target, reembed="never", progress=False)
    report = await migrate(source, target, progress=False)
    assert report["status"] == "ok" and report["mode"] == "re-embed"
    assert (report["embedded"], report["vectors_copied"]) == (30, 0)
    assert len(next(iter((await target.vector.fetch(["e0003"])).values()))) == 64
    assert (await target.get_most_relevant("rain over mountains — note 7 ✓ 日本", 1))[0]["id"] == "e0007"
    assert (await migrate(source, target, reembed=True, progress=False))["embedded"] == 30


async def test_failed_entries_are_retried_then_listed_never_dropped(stores, monkeypatch):
    source = await stores("sqlite+local", "a")
    target = await stores("sqlite+local", "b")
    await source.insert_many(entries(40))
    put = target.primary.put
    attempts: dict[str, int] = {}

    async def refusing(records, **kwargs):
        for r in records:
            if r.id in ("e0007", "e0031"):
                attempts[r.id] = attempts.get(r.id, 0) + 1
                raise BackendRejected(f"refused {r.id}", driver="test")
        return await put(records, **kwargs)

    monkeypatch.setattr(target.primary, "put", refusing)
    report = await migrate(source, target, batch_size=10, progress=False)
    assert report["status"] == "failed"
    assert report["failed"] == 2 and report["failed_ids"] == ["e0007", "e0031"]
    assert all("refused" in e["error"] for e in report["errors"])
    assert attempts == {"e0007": 3, "e0031": 3}  # in its batch, alone, and once more at the end
    assert report["verification"]["missing_ids"] == ["e0007", "e0031"]
    assert await target.count() == 39
    assert (await target.primary.get_manifest()).migration["failed"].keys() == {"e0007", "e0031"}
    # the target heals: a rerun resumes and copies just what is missing
    monkeypatch.setattr(target.primary, "put", put)
    again = await migrate(source, target, progress=False)
    assert again["status"] == "ok" and again["resumed"] and again["copied"] == 2
    assert again["verification"]["exact"]
    assert (await target.primary.get_manifest()).migration is None


async def test_unreachable_target_stops_the_run_and_resume_finishes_it(stores, monkeypatch):
    source = await stores("sqlite+local", "a")
    target = await stores("sqlite+local", "b", vector_max_retries=1)
    await source.insert_many(entries(50))
    write = Copier.write
    calls = 0

    async def flaky(self, records, vectors):
        nonlocal calls
        calls += 1
        if calls == 3:
            from promethean_persistence import BackendUnavailable

            async def down(*a, **k):
                raise BackendUnavailable("connection refused", driver="sqlite")

            monkeypatch.setattr(target.primary, "put", down)
        return await write(self, records, vectors)

    monkeypatch.setattr(Copier, "write", flaky)
    with pytest.raises(MigrationError, match="unreachable.*resumes"):
        await migrate(source, target, batch_size=10, progress=False)
    monkeypatch.undo()
    assert await target.count() == 20
    report = await migrate(source, target, batch_size=10, progress=False)
    assert report["resumed"] and report["copied"] == 31 and report["status"] == "ok"


async def test_entries_written_during_the_run_are_caught_up(stores, monkeypatch):
    source = await stores("sqlite+local", "a")
    target = await stores("memory", "b")
    await source.insert_many(entries(40))
    write = Copier.write

    async def meanwhile(self, records, vectors):
        if any(r.id == "e0020" for r in records):  # behind the checkpoint already: only the end check sees it
            await source.insert({"id": "a-late", "text": "written during the migration"})
            await source.insert({"id": "e0001", "text": "changed during the migration"})
        return await write(self, records, vectors)

    monkeypatch.setattr(Copier, "write", meanwhile)
    report = await migrate(source, target, batch_size=10, progress=False)
    assert report["status"] == "ok" and report["caught_up"] == 2
    assert (await target.get("a-late"))["text"] == "written during the migration"
    assert (await target.get("e0001"))["text"] == "changed during the migration"
    assert report["verification"]["exact"]


_KILLED = """
import asyncio, sys
from promethean_persistence import SemanticStore, migrate
from promethean_persistence._copy import Copier

write = Copier.write
async def slow(self, records, vectors):
    await asyncio.sleep(0.05)
    return await write(self, records, vectors)
Copier.write = slow

def progress(done, total):
    print(done, flush=True)

async def main(a, b):
    source = await SemanticStore.create("moved", config=a)
    target = await SemanticStore.create("moved", config=b)
    await migrate(source, target, batch_size=25, progress=progress)
    print("finished", flush=True)

if __name__ == "__main__":
    import json
    asyncio.run(main(json.loads(sys.argv[1]), json.loads(sys.argv[2])))
"""


async def test_kill_9_mid_migration_then_resume_gives_an_exact_copy(tmp_path):
    a = base_config(tmp_path / "a", "sqlite", "local")
    b = base_config(tmp_path / "b", "sqlite", "local")
    source = await SemanticStore.create("moved", config=a)
    await source.insert_many(entries(1000))
    await source.flush()
    script = tmp_path / "killed.py"
    script.write_text(_KILLED)
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(a), json.dumps(b)], stdout=subprocess.PIPE, text=True
    )
    try:
        progressed = [proc.stdout.readline() for _ in range(8)]
        assert all(line.strip().isdigit() for line in progressed), progressed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.stdout.close()
    target = await SemanticStore.create("moved", config=b)
    try:
        partial = await target.count()
        assert 0 < partial < 1001
        report = await migrate(source, target, batch_size=25, progress=False)
        assert report["resumed"] and report["status"] == "ok", report
        assert report["copied"] < 1001  # it did not start over
        assert report["verification"]["exact"]
        assert await target.count() == 1001 and await target.vector.count() == 1000
        assert [content(r) for r in await records(target)] == [content(r) for r in await records(source)]
    finally:
        await source.cleanup()
        await target.cleanup()


async def test_validate_finds_missing_extra_changed_and_vectorless_entries(stores):
    source = await stores("sqlite+local", "a")
    target = await stores("sqlite+local", "b")
    await source.insert_many(entries(30))
    assert (await migrate(source, target, progress=False))["status"] == "ok"
    await target.primary.delete(["e0003"])
    await target.insert({"id": "zzz", "text": "only on the target"})
    await target.insert({"id": "e0005", "text": "edited on the target"})
    await target.vector.delete(["e0009"])
    report = await validate(source, target, sample_size=None)
    assert not report["ok"] and not report["exact"]
    assert (report["missing_ids"], report["extra_ids"]) == (["e0003"], ["zzz"])
    assert report["mismatches"] == [{"id": "e0005", "fields": ["text", "timestamp", "metadata", "extra"]}]
    assert report["vectors_missing_ids"] == ["e0009"]
    assert (report["source_count"], report["target_count"], report["sampled"]) == (31, 31, 30)
    assert report["vector_mismatches"] == 1  # e0005's new text has another vector
    await target.vector.upsert(["e0011"], [np.eye(256, dtype=np.float32)[0]], [{}])
    assert (await validate(source, target, sample_size=None))["vector_mismatches"] == 2


@pytest.mark.parametrize("name", ["backup.jsonl", "backup.jsonl.gz"])
@pytest.mark.parametrize("with_vectors", [True, False], ids=["vectors", "texts"])
async def test_export_import_round_trip_is_lossless(stores, tmp_path, name, with_vectors):
    source = await stores("sqlite+local", "a")
    target = await stores("memory", "b")
    await source.insert_many(entries(45))
    path = tmp_path / name
    out = await export(source, path, with_vectors=with_vectors)
    assert (out["entries"], out["vectors"]) == (46, 45 if with_vectors else 0)
    opened = gzip.open(path, "rt", encoding="utf-8") if name.endswith(".gz") else open(path, encoding="utf-8")
    with opened as f:
        header = json.loads(f.readline())
        f.readline()  # "blank"
        assert "日本" in f.readline()  # unicode as it is, not escaped
    assert header["manifest"]["embedding_model"] == "hashing-v1-256" and header["count"] == 46
    report = await import_(target, path)
    assert report["status"] == "ok" and report["imported"] == 46
    assert (report["vectors_copied"], report["embedded"]) == ((45, 0) if with_vectors else (0, 45))
    assert [content(r) for r in await records(target)] == [content(r) for r in await records(source)]
    a = await source.vector.fetch(["e0010"])
    b = await target.vector.fetch(["e0010"])
    np.testing.assert_allclose(a["e0010"], b["e0010"], atol=0 if with_vectors else 1e-6)
    assert (await validate(source, target))["exact"]
    again = await import_(target, path)  # upserts by id: nothing doubles
    assert again["imported"] == 46 and await target.count() == 46


async def test_import_refuses_vectors_of_another_model_and_reports_bad_lines(stores, tmp_path):
    source = await stores("sqlite+local", "a")
    target = await stores("memory", "b", embedding_function="hashing-v1-64")
    await source.insert_many(entries(10))
    path = tmp_path / "b.jsonl"
    await export(source, path, with_vectors=True)
    with pytest.raises(EmbeddingMismatchError, match="hashing-v1-256.*hashing-v1-64.*reembed"):
        await import_(target, path)
    assert await target.count() == 0
    with open(path, "a", encoding="utf-8") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "x1", "timestamp": 1}) + "\n")
        f.write(json.dumps({"id": "x2", "text": "fine", "timestamp": "yesterday-ish"}) + "\n")
    report = await import_(target, path, reembed=True)
    assert report["status"] == "failed" and report["imported"] == 11 and report["failed"] == 3
    assert [e["line"] for e in report["errors"]] == [13, 14, 15]
    assert "text" in report["errors"][1]["error"] and "timestamp" in report["errors"][2]["error"]


async def test_import_takes_plain_jsonl_entries(stores, tmp_path):
    target = await stores("memory", "b")
    path = tmp_path / "plain.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in entries(5)) + "\n", encoding="utf-8")
    report = await import_(target, path)
    assert report["status"] == "ok" and report["imported"] == 6
    assert (await target.get("e0002"))["timestamp"] == 1_700_000_002_000


def test_cli_migrate_validate_export_import(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    config = tmp_path / "stores.toml"
    config.write_text(f"""
[profiles.old]
primary_driver = "sqlite"
sqlite = {{ path = "{tmp_path / "old.db"}" }}
[profiles.new]
primary_driver = "sqlite"
sqlite = {{ path = "{tmp_path / "new.db"}" }}
""")
    for i in range(12):
        sh("--config", str(config), "--profile", "old", "insert", f"note number {i}", "--id", f"n{i:02d}")
    out = json.loads(sh("--json", "--config", str(config), "migrate", "--from", "old", "--to", "new").stdout)
    assert out["status"] == "ok" and out["copied"] == 12 and out["verification"]["exact"]
    assert sh("--config", str(config), "--profile", "new", "count").stdout.strip() == "12"
    sh("--config", str(config), "--profile", "new", "delete", "n03")
    out = json.loads(sh("--json", "--config", str(config), "validate", "--from", "old", "--to", "new", code=1).stdout)
    assert out["missing_ids"] == ["n03"]
    # env-style settings instead of profiles
    backup = tmp_path / "old.jsonl.gz"
    sh("--config", str(config), "--profile", "old", "export", str(backup), "--with-vectors")
    sh("--store", "restored", "import", str(backup))
    assert sh("--store", "restored", "count").stdout.strip() == "12"
    out = json.loads(
        sh(
            "--json",
            "validate",
            "--from",
            f"PRIMARY_DRIVER=sqlite,SQLITE_PATH={tmp_path / 'old.db'}",
            "--to",
            "PRIMARY_DRIVER=sqlite",
            "--to-store",
            "restored",
        ).stdout
    )
    assert out["exact"] and out["compared"] == 12


def test_cli_migrate_exits_1_and_names_the_entries_that_failed(sh, monkeypatch):
    from promethean_persistence.drivers.primary.memory import MemoryPrimary

    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    for i in range(6):
        sh("insert", f"note {i}", "--id", f"bad{i}" if i % 3 == 0 else f"ok{i}")
    put = MemoryPrimary.put

    async def refusing(self, records, **kwargs):
        if any(r.id.startswith("bad") for r in records):
            raise BackendRejected("refused", driver="memory")
        return await put(self, records, **kwargs)

    monkeypatch.setattr(MemoryPrimary, "put", refusing)
    result = sh(
        "--json",
        "migrate",
        "--from",
        "PRIMARY_DRIVER=sqlite",
        "--to",
        "PRIMARY_DRIVER=memory,VECTOR_DRIVER=memory",
        code=1,
    )
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and report["failed_ids"] == ["bad0", "bad3"] and report["copied"] == 4
