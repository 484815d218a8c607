"""MirrorStore: blue-green writes to both stores, reads from one, comparisons counted."""

from __future__ import annotations

import json

import pytest

from promethean_persistence import BackendUnavailable, MirrorStore, SemanticStore, ValidationError
from promethean_persistence.testing.store import open_store

from conftest import base_config


@pytest.fixture
async def pair(tmp_path):
    old = await open_store("m", base_config(tmp_path / "old", "sqlite", "local"))
    new = await open_store("m", base_config(tmp_path / "new", "memory", "memory"))
    yield old, new
    await old.cleanup()
    await new.cleanup()


def take_down(monkeypatch, store: SemanticStore) -> None:
    async def down(*args, **kwargs):
        raise BackendUnavailable("connection refused", driver="test")

    monkeypatch.setattr(store.primary, "put", down)
    monkeypatch.setattr(store.primary, "delete", down)


async def test_writes_go_to_both_with_the_same_id_and_time(pair):
    old, new = pair
    mirror = MirrorStore(old, new)
    id_ = await mirror.insert({"text": "hello both", "metadata": {"k": 1}})
    ids = await mirror.insert_many([{"id": "x", "text": "second"}, {"id": "y", "text": "third", "createdAt": 42}])
    assert ids == ["x", "y"]
    for store in (old, new):
        a = await store.get(id_)
        assert a["text"] == "hello both" and a["metadata"]["k"] == 1
        assert (await store.get("y"))["timestamp"] == 42
    assert (await old.get(id_))["timestamp"] == (await new.get(id_))["timestamp"]
    assert await mirror.delete("x") is True
    assert await old.get("x") is None and await new.get("x") is None
    stats = mirror.stats()
    assert (stats["writes"], stats["mirrored"], stats["pending"], stats["mismatches"]) == (4, 4, 0, 0)


async def test_a_failing_secondary_is_queued_in_order_not_raised(pair, monkeypatch):
    old, new = pair
    mirror = MirrorStore(old, new, retry_delay_ms=10)
    monkeypatch.setattr(mirror, "_start_retrier", lambda: None)  # retried by flush() below
    take_down(monkeypatch, new)
    await mirror.insert({"id": "a", "text": "written while new is down"})
    await mirror.insert({"id": "b", "text": "deleted while new is down"})
    assert await mirror.delete("b") is True
    assert await mirror.get("a") is not None  # reads come from old
    assert mirror.stats()["pending"] == 3 and mirror.stats()["deferred"] == 3
    monkeypatch.undo()
    await mirror.flush()
    assert mirror.stats()["pending"] == 0 and mirror.stats()["retried"] == 3
    assert (await new.get("a"))["text"] == "written while new is down"
    assert await new.get("b") is None  # the delete ran after the insert


async def test_the_backlog_is_retried_in_the_background(pair, monkeypatch):
    old, new = pair
    mirror = MirrorStore(old, new, retry_delay_ms=10)
    put = new.primary.put
    failures = iter([True, True, False])

    async def flaky(*args, **kwargs):
        if next(failures, False):
            raise BackendUnavailable("blip", driver="test")
        return await put(*args, **kwargs)

    monkeypatch.setattr(new.primary, "put", flaky)
    await mirror.insert({"id": "a", "text": "eventually on new"})
    assert mirror.stats()["pending"] == 1
    await mirror._retrier
    assert mirror.stats()["pending"] == 0 and (await new.get("a")) is not None


async def test_reads_come_from_read_from_and_relevance_overlap_is_recorded(pair):
    old, new = pair
    await old.insert({"id": "only-old", "text": "cats purring on sofas"})
    mirror = MirrorStore(old, new, read_from="new")
    await mirror.insert_many([{"id": f"n{i}", "text": t} for i, t in enumerate(["cats on sofas", "bread baking"])])
    assert await mirror.get("only-old") is None  # new does not have it
    hits = await mirror.get_most_relevant("cats purring on sofas", 2)
    assert [h["id"] for h in hits] == ["n0", "n1"]
    stats = mirror.stats()
    assert stats["relevance_compared"] == 1 and stats["mean_overlap"] == 0.5 and stats["mismatches"] >= 1
    before = mirror.stats()["mismatches"]
    assert await mirror.count() == 2
    assert mirror.stats()["mismatches"] == before + 1  # old has 3
    quiet = MirrorStore(old, new, compare=False)
    await quiet.get_most_relevant("cats", 1)
    assert quiet.stats()["relevance_compared"] == 0


async def test_bad_input_fails_before_either_side_is_written(pair):
    old, new = pair
    mirror = MirrorStore(old, new)
    with pytest.raises(ValidationError):
        await mirror.insert({"text": 42})
    assert await old.count() == 0 and await new.count() == 0
    with pytest.raises(ValidationError, match="read_from"):
        MirrorStore(old, new, read_from="both")


def test_cli_runs_a_mirror_profile(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    config = tmp_path / "rollout.toml"
    config.write_text(f"""
[profiles.blue]
sqlite = {{ path = "{tmp_path / "blue.db"}" }}
[profiles.green]
sqlite = {{ path = "{tmp_path / "green.db"}" }}
[profiles.rollout.mirror]
old = "blue"
new = "green"
read_from = "old"
""")
    sh("--config", str(config), "--profile", "rollout", "insert", "mirrored note", "--id", "m1")
    for profile in ("blue", "green"):
        entry = json.loads(sh("--config", str(config), "--profile", profile, "get", "m1").stdout)
        assert entry["text"] == "mirrored note"
    stats = json.loads(sh("--json", "--config", str(config), "--profile", "rollout", "stats").stdout)
    assert stats["mirror"]["read_from"] == "old"
    flushed = json.loads(sh("--json", "--config", str(config), "--profile", "rollout", "flush").stdout)
    assert flushed == {"indexed": 1, "pending": 0, "failed": 0, "skipped": 0}
    repaired = json.loads(sh("--json", "--config", str(config), "--profile", "rollout", "repair").stdout)
    assert repaired["requeued"] == 0 and repaired["dry_run"] is False
    config.write_text(config.read_text() + "bogus = 1\n")
    result = sh("--config", str(config), "--profile", "rollout", "count", code=2)
    assert "mirror" in result.stderr
