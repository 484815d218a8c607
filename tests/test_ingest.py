"""Incremental ingest (issue 18): canonical passage ids, unchanged files skipped, changed files
replaced passage by passage, cleanup of removed files, content ids for JSONL entries."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from promethean_persistence import SemanticStore, StoreConfig, ValidationError
from promethean_persistence.drivers.base import Capabilities
from promethean_persistence.ingest import content_id, ingest


def para(tag: str, word: str = "lorem") -> str:
    """A 600-character paragraph: two never share a passage (PASSAGE_CHARS is 1000)."""
    return (f"{tag} " + f"{word} ipsum " * 60)[:600]


def write(path, *paragraphs: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")


def pid(path, offset: int, root=None) -> str:
    resolved = path.resolve()
    return f"{(resolved.relative_to(root.resolve()) if root else resolved).as_posix()}:{offset}"


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    config = StoreConfig(
        primary_driver=request.param, vector_driver="memory", embedding_driver="hashing", home=str(tmp_path / "home")
    )
    s = await SemanticStore.create("ingest", config=config)
    yield s
    await s.cleanup()


@pytest.fixture
def writes(store, monkeypatch) -> list[str]:
    """The ids each insert_many of the store is given."""
    seen: list[str] = []
    real = store.insert_many

    async def insert_many(entries):
        seen.extend(e.get("id") for e in entries)
        return await real(entries)

    monkeypatch.setattr(store, "insert_many", insert_many)
    return seen


@pytest.fixture
def docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "docs" / "a.md", para("A0"), para("A1"), para("A2"))
    write(tmp_path / "docs" / "sub" / "b.txt", para("B0"))
    return tmp_path / "docs"


async def test_reingest_by_any_path_spelling_writes_and_embeds_nothing(store, docs, writes, monkeypatch):
    first = await ingest(store, ["docs"])
    a = docs / "a.md"
    ids = {pid(a, 0), pid(a, 602), pid(a, 1204), pid(docs / "sub" / "b.txt", 0)}
    assert set(writes) == ids and await store.count() == 4
    assert first["added"] == first["entries"] == first["indexed"] == 4 and first["files"] == 2
    assert first["updated"] == first["unchanged"] == first["deleted"] == 0
    entry = await store.get(pid(a, 602))
    assert entry["metadata"]["path"] == a.resolve().as_posix() and entry["metadata"]["offset"] == 602
    (docs.parent / "link").symlink_to(docs, target_is_directory=True)
    embedded = store.get_queue_stats()["total_written"]
    writes.clear()
    for spelling in ([str(docs)], ["./docs"], ["docs/", "docs/a.md"], ["link"], [os.path.relpath(a, docs / "sub")]):
        if spelling[0].startswith(".."):
            monkeypatch.chdir(docs / "sub")
        again = await ingest(store, spelling)
        assert again["added"] == again["updated"] == again["deleted"] == 0, spelling
        assert again["unchanged"] == again["entries"] == again["indexed"], spelling
    assert writes == [] and store.get_queue_stats()["total_written"] == embedded
    assert {e["id"] async for e in store.iter_entries()} == ids


async def test_changed_file_replaces_exactly_its_passages(store, docs, writes):
    a = docs / "a.md"
    await ingest(store, ["docs"])
    kept = await store.get(pid(a, 0))
    write(a, para("A0"), para("A1", "dolor"))  # A1 changed in place, A2 gone
    writes.clear()
    result = await ingest(store, ["docs"])
    assert writes == [pid(a, 602)]
    assert (result["added"], result["updated"], result["unchanged"], result["deleted"]) == (0, 1, 2, 1)
    assert result["entries"] == 3 and result["indexed"] == 3
    assert await store.get(pid(a, 0)) == kept  # untouched: same time, same vector write
    assert await store.get(pid(a, 1204)) is None
    changed = await store.get(pid(a, 602))
    assert "dolor" in changed["text"] and changed["metadata"]["vectorStatus"] == "synced"
    assert (await store.get_most_relevant(para("A1", "dolor"), 1))[0]["id"] == pid(a, 602)
    write(a, para("A0"), para("A1", "dolor"), para("A2"), para("A3"))
    writes.clear()
    grown = await ingest(store, ["docs/a.md"])
    assert sorted(writes) == [pid(a, 1204), pid(a, 1806)] and grown["added"] == 2 and grown["unchanged"] == 2
    write(a, "")  # emptied: its passages go, even without cleanup
    emptied = await ingest(store, ["docs"])
    assert emptied["deleted"] == 4 and await store.count() == 1


async def test_touching_a_file_rewrites_nothing(store, docs, writes):
    await ingest(store, ["docs"])
    os.utime(docs / "a.md", (1, 1))
    writes.clear()
    assert (await ingest(store, ["docs"]))["unchanged"] == 4 and writes == []


async def test_removed_files_are_deleted_only_with_cleanup_full(store, docs, tmp_path):
    write(tmp_path / "other" / "c.md", para("C0"))
    (docs / "notes.jsonl").write_text(json.dumps({"text": "a jsonl entry"}) + "\n")
    await ingest(store, ["docs", "other"])
    assert await store.count() == 6
    (docs / "sub" / "b.txt").unlink()
    (docs / "notes.jsonl").unlink()
    plain = await ingest(store, ["docs"])
    assert plain["deleted"] == 0 and await store.get(pid(docs / "sub" / "b.txt", 0)) is not None
    full = await ingest(store, ["docs"], cleanup="full")
    assert full["deleted"] == 1 and full["unchanged"] == 3 and full["added"] == 0
    assert await store.get(pid(docs / "sub" / "b.txt", 0)) is None
    assert await store.get(pid(tmp_path / "other" / "c.md", 0)) is not None  # not under the paths given
    assert len(await store.get_most_recent(10, {"type": {"$ne": "passage"}})) == 1  # JSONL entries stay
    assert (await ingest(store, ["docs/a.md"], cleanup="full"))["deleted"] == 0


async def test_cleanup_full_removes_passages_stored_by_the_old_ids(store, docs):
    legacy = {
        "id": "docs/a.md:0",
        "text": para("A0"),
        "metadata": {"path": "docs/a.md", "offset": 0, "type": "passage"},
    }
    elsewhere = {**legacy, "id": "old/x.md:0", "metadata": {**legacy["metadata"], "path": "old/x.md"}}
    await store.insert_many([legacy, elsewhere])
    assert (await ingest(store, ["docs"]))["deleted"] == 0 and await store.get("docs/a.md:0") is not None
    assert (await ingest(store, ["docs"], cleanup="full"))["deleted"] == 1
    assert await store.get("docs/a.md:0") is None and await store.get("old/x.md:0") is not None


async def test_root_makes_ids_relative_and_survives_a_move(store, docs, tmp_path, writes):
    result = await ingest(store, [docs], root=tmp_path)
    assert result["added"] == 4 and await store.get("docs/a.md:602") is not None
    assert (await store.get("docs/sub/b.txt:0"))["metadata"]["path"] == "docs/sub/b.txt"
    moved = tmp_path / "moved"
    moved.mkdir()
    docs.rename(moved / "docs")
    writes.clear()
    again = await ingest(store, [moved / "docs"], root=moved, cleanup="full")
    assert again["unchanged"] == 4 and again["deleted"] == 0 and writes == []
    (moved / "docs" / "sub" / "b.txt").unlink()
    assert (await ingest(store, ["moved/docs"], root="moved", cleanup="full"))["deleted"] == 1
    with pytest.raises(ValidationError, match="not under the root"):
        await ingest(store, [moved / "docs"], root=moved / "docs" / "sub")
    with pytest.raises(ValidationError, match="root"):
        await ingest(store, [moved / "docs"], root=tmp_path / "missing")
    assert await store.count() == 3


async def test_jsonl_without_ids_is_stored_once(store, tmp_path, writes):
    rows = [
        {"text": "no id, no time"},
        {"text": "no id, a time", "createdAt": "2024-01-02T03:04:05Z", "metadata": {"k": [1, 2]}},
        {"id": "own", "text": "its own id"},
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = await ingest(store, [data])
    assert first["added"] == 3 and await store.count() == 3
    assert await store.get(content_id(rows[0])) is not None and await store.get(content_id(rows[1])) is not None
    assert content_id(rows[1]) != content_id({**rows[1], "createdAt": 1}) != content_id({**rows[1], "other": 1})
    writes.clear()
    again = await ingest(store, [data])
    assert (again["unchanged"], again["added"], again["updated"]) == (3, 0, 0) and writes == []
    rows[2]["text"] = "its own id, new text"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = await ingest(store, [data])
    assert writes == ["own"] and changed["updated"] == 1 and changed["unchanged"] == 2
    assert (await store.get("own"))["text"] == "its own id, new text" and await store.count() == 3


async def test_ids_random_adds_entries_without_ids_again(store, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"id": "two", "text": "two"}) + "\n")
    await ingest(store, [data], ids="random")
    result = await ingest(store, [data], ids="random")
    assert result["added"] == 1 and result["unchanged"] == 1 and await store.count() == 3
    with pytest.raises(ValidationError, match="ids"):
        await ingest(store, [data], ids="sequential")
    with pytest.raises(ValidationError, match="cleanup"):
        await ingest(store, [data], cleanup="everything")


async def test_a_bad_entry_stores_nothing(store, tmp_path):
    write(tmp_path / "a.md", para("A0"))
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": 5}) + "\n")
    with pytest.raises(ValidationError, match=r"b\.jsonl:2"):
        await ingest(store, [tmp_path])
    assert await store.count() == 0


async def test_model_load_is_timed_apart_and_skipped_when_nothing_changes(store, docs, monkeypatch):
    class Slow:
        """The store's embedder, with a model that takes 0.6 s to load."""

        capabilities = Capabilities(warm=True)
        loads = 0

        async def warm(self) -> None:
            Slow.loads += 1
            await asyncio.sleep(0.6)

    monkeypatch.setattr(store, "embedder", Slow())
    first = await ingest(store, ["docs"])
    assert Slow.loads == 1 and first["model_load_s"] >= 0.6 and first["seconds"] < 0.6, first
    # ``seconds`` is rounded to 10 ms, the rate computed from the unrounded time
    low, high = first["seconds"] - 0.005, first["seconds"] + 0.005
    assert 4 / high - 0.05 <= first["entries_per_s"] <= (4 / low if low > 0 else float("inf")) + 0.05, first
    again = await ingest(store, ["docs"])
    assert Slow.loads == 1 and again["model_load_s"] == 0 and again["entries_per_s"] == 0


def test_cli_options(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "docs" / "a.md", para("A0"))
    write(tmp_path / "docs" / "b.md", para("B0"))
    (tmp_path / "docs" / "e.jsonl").write_text(json.dumps({"text": "an entry"}) + "\n")
    first = json.loads(sh("--json", "ingest", "--root", ".", "docs").stdout)
    keys = {"files", "entries", "added", "updated", "unchanged", "deleted", "indexed", "pending", "failed"}
    assert keys | {"skipped", "seconds", "model_load_s", "entries_per_s"} <= set(first)
    assert (first["files"], first["added"], first["indexed"]) == (3, 3, 3)
    assert json.loads(sh("--json", "get", "docs/a.md:0").stdout)["metadata"]["path"] == "docs/a.md"
    (tmp_path / "docs" / "b.md").unlink()
    kept = json.loads(sh("--json", "ingest", "--root", str(tmp_path), str(tmp_path / "docs")).stdout)
    assert kept["unchanged"] == 2 and kept["deleted"] == 0
    out = sh("ingest", "--root", ".", "--cleanup", "full", "./docs").stdout
    assert "deleted: 1" in out and "unchanged: 2" in out and "indexed 2 of 2" in out
    sh("ingest", "--ids", "random", "docs/e.jsonl")
    sh("ingest", "--ids", "content", "docs/e.jsonl")
    assert sh("count").stdout.strip() == "3"  # the random one came in beside the content-id one
    sh("ingest", "--cleanup", "some", "docs", code=2)
    sh("ingest", "--root", "missing", "docs", code=2)
