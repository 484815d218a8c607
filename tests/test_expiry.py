"""Expiry at the store level (SPEC §13): ``expires_at``, ``ttl_ms``, ``purge_expired`` and the
CLI's ``purge``, on the in-process and the embedded configurations."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from promethean_persistence import SemanticStore, StoreConfig, export, import_, migrate
from promethean_persistence._entries import build_record, now_ms
from promethean_persistence._errors import ConfigurationError, ValidationError
from promethean_persistence.drivers.base import Capabilities
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.drivers.primary.memory import MemoryPrimary
from promethean_persistence.drivers.vector.memory import MemoryVector

from conftest import base_config

CONFIGS = [("memory", "memory"), ("sqlite", "local")]
HOUR = 3_600_000


def _build(entry, **kw):
    return build_record(entry, text_key="text", time_key="createdAt", max_text_bytes=1000, **kw)


# -- validation -----------------------------------------------------------------------------


def test_expires_at_takes_ms_iso_and_datetimes():
    assert _build({"text": "a", "expires_at": 1_700_000_000_000}).expires_at == 1_700_000_000_000
    assert _build({"text": "a", "expires_at": "2024-01-01T00:00:00Z"}).expires_at == 1_704_067_200_000
    when = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert _build({"text": "a", "expires_at": when}).expires_at == 1_704_067_200_000
    record = _build({"text": "a", "expires_at": 5, "other": 1})
    assert record.extra == {"other": 1} and record.to_entry()["expires_at"] == 5
    assert _build({"text": "a"}).expires_at is None
    assert _build({"text": "a", "expires_at": None}).expires_at is None


@pytest.mark.parametrize("bad", [True, math.nan, math.inf, "soon", [], {"at": 1}, 10**30])
def test_bad_expires_at_is_a_validation_error_naming_it(bad):
    with pytest.raises(ValidationError) as err:
        _build({"text": "a", "expires_at": bad})
    assert err.value.field == "expires_at" and "expires_at" in str(err.value)


def test_ttl_applies_to_entries_without_expires_at():
    assert _build({"text": "a"}, now=1_000, ttl_ms=500).expires_at == 1_500
    assert _build({"text": "a", "createdAt": 1}, now=1_000, ttl_ms=500).expires_at == 1_500  # the write time
    assert _build({"text": "a", "expires_at": 7}, now=1_000, ttl_ms=500).expires_at == 7


def test_ttl_config_and_env():
    assert StoreConfig(ttl_ms=5).ttl_ms == 5 and StoreConfig().ttl_ms is None
    assert StoreConfig.from_env({"TTL_MS": "60000"}).ttl_ms == 60_000
    with pytest.raises(ConfigurationError):
        StoreConfig(ttl_ms=0)


# -- the store ------------------------------------------------------------------------------


@pytest.fixture(params=CONFIGS, ids=["-".join(c) for c in CONFIGS])
async def store(request, tmp_path):
    primary, vector = request.param
    # no background worker: it would purge on its own (see test_the_worker_purges_in_the_background)
    s = await SemanticStore.create("expiry", config=base_config(tmp_path, primary, vector), background=False)
    yield s
    await s.cleanup()


async def _seed(store, past: int = 1) -> None:
    """``live`` and ``forever``, and ``past`` entries ``old{i}`` that expire once their vectors
    are written (an entry already expired when written gets none)."""
    now = now_ms()
    soon = now + 600
    await store.insert_many(
        [
            {"id": "live", "text": "the cat sleeps on the mat", "expires_at": now + HOUR},
            {"id": "forever", "text": "the dog sleeps on the mat"},
            *[{"id": f"old{i}", "text": f"the cat sleeps on mat {i}", "expires_at": soon} for i in range(past)],
        ]
    )
    await store.flush()
    assert len(await store.vector.existing([f"old{i}" for i in range(past)])) == past
    await asyncio.sleep(max(0, soon - now_ms() + 20) / 1000)


async def test_expired_entries_are_invisible_at_once(store):
    await _seed(store, past=2)
    visible = {"live", "forever"}
    assert await store.get("old0") is None and (await store.get("live"))["expires_at"] > now_ms()
    assert "expires_at" not in await store.get("forever")
    assert await store.get_many(["old0", "forever"]) == [None, await store.get("forever")]
    assert {e["id"] for e in await store.get_most_recent(10)} == visible
    assert await store.count() == 2
    assert {e["id"] async for e in store.iter_entries()} == visible
    for mode in ("vector", "lexical", "hybrid"):
        hits = await store.get_most_relevant("cat sleeps mat", 10, mode=mode)
        assert {e["id"] for e in hits} <= visible and "live" in {e["id"] for e in hits}, mode
    report = await store.get_consistency_report(100)
    assert report["total_documents"] == 2 and report["inconsistent_documents"] == 0


async def test_an_entry_expires_while_waiting(store):
    await store.insert({"id": "brief", "text": "here for a moment", "expires_at": now_ms() + 300})
    assert (await store.get("brief"))["text"] == "here for a moment" and await store.count() == 1
    await asyncio.sleep(0.4)
    assert await store.get("brief") is None and await store.count() == 0
    assert await store.get_most_recent(5) == []


async def test_purge_returns_the_number_and_deletes_the_vectors(store):
    await _seed(store, past=3)
    old = [f"old{i}" for i in range(3)]
    assert await store.purge_expired() == 3
    await store.flush()
    assert not await store.vector.existing(old)
    assert set(await store.vector.existing(["live", "forever"])) == {"live", "forever"}
    assert await store.purge_expired() == 0
    assert await store.count() == 2


async def test_report_counts_no_orphan_for_expired_entries(store):
    await _seed(store, past=2)
    report = await store.get_consistency_report(None)
    assert report["orphaned_vectors"] == 0 and report["total_documents"] == 2
    assert report["inconsistent_documents"] == 0
    assert not await store.vector.existing(["old0", "old1"])  # purged first


async def test_purge_of_many_loops_over_batches(tmp_path):
    s = await SemanticStore.create("many", config=base_config(tmp_path, "memory", "memory"), background=False)
    try:
        past = now_ms() - 1
        await s.insert_many([{"id": f"e{i}", "text": f"entry {i}", "expires_at": past} for i in range(1_203)])
        await s.insert({"id": "kept", "text": "kept"})
        assert await s.purge_expired() == 1_203
        await s.flush()
        assert await s.count() == 1 and await s.vector.count() == 1
    finally:
        await s.cleanup()


async def test_ttl_ms_gives_entries_an_expiry(tmp_path):
    config = base_config(tmp_path, "memory", "memory", ttl_ms=200)
    s = await SemanticStore.create("ttl", config=config, background=False)
    try:
        before = now_ms()
        await s.insert({"id": "a", "text": "short lived"})
        await s.insert({"id": "b", "text": "told its own", "expires_at": before + HOUR})
        entry = await s.get("a")
        assert before + 200 <= entry["expires_at"] <= now_ms() + 200
        assert (await s.get("b"))["expires_at"] == before + HOUR
        await asyncio.sleep(0.3)
        assert await s.get("a") is None and await s.count() == 1
        assert await s.purge_expired() == 1
    finally:
        await s.cleanup()


async def test_the_worker_purges_in_the_background(tmp_path):
    s = await SemanticStore.create("bg", config=base_config(tmp_path, "memory", "memory"))
    try:
        await s.insert({"id": "a", "text": "gone soon", "expires_at": now_ms() + 100})
        await s.flush()
        assert await s.vector.existing(["a"])
        s._worker.purge_every_ms = 20
        await asyncio.sleep(0.2)
        s.wake_outbox()
        for _ in range(100):
            if not await s.vector.existing(["a"]):
                break
            await asyncio.sleep(0.02)
        assert not await s.vector.existing(["a"]) and s._worker.purged == 1
    finally:
        await s.cleanup()


async def test_a_scoped_view_purges_the_store(store):
    await _seed(store, past=1)
    view = store.scope(user="ada")
    assert await view.purge_expired() == 1
    assert await store.count() == 2


# -- round trips ----------------------------------------------------------------------------


async def test_export_import_keeps_expires_at(store, tmp_path):
    await _seed(store, past=1)
    path = tmp_path / "out.jsonl"
    await export(store, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert {item["id"]: item.get("expires_at") for item in lines}.keys() == {"live", "forever"}
    await store.drop()
    report = await import_(store, path)
    assert report["status"] == "ok" and report["imported"] == 2
    live = await store.get("live")
    assert live["expires_at"] == next(i["expires_at"] for i in lines if i["id"] == "live")
    assert "expires_at" not in await store.get("forever")


async def test_migrate_keeps_expires_at(tmp_path):
    src = await SemanticStore.create("src", config=base_config(tmp_path, "memory", "memory"))
    dst = await SemanticStore.create("dst", config=base_config(tmp_path, "sqlite", "local"))
    try:
        at = now_ms() + HOUR
        await src.insert_many([{"id": "a", "text": "alpha", "expires_at": at}, {"id": "b", "text": "beta"}])
        await src.flush()
        report = await migrate(src, dst, progress=False)
        assert report["status"] == "ok", report
        assert (await dst.get("a"))["expires_at"] == at and "expires_at" not in await dst.get("b")
    finally:
        await src.cleanup()
        await dst.cleanup()


# -- drivers without expiry -----------------------------------------------------------------


class _NoExpiry(MemoryPrimary):
    def __init__(self, collection: str) -> None:
        super().__init__(collection)
        self.capabilities = Capabilities()


async def _plain_store(**config):
    return await SemanticStore.from_drivers(
        "plain",
        primary=_NoExpiry("plain"),
        vector=MemoryVector("plain"),
        embedder=HashingEmbedder(),
        config={"primary_driver": "memory", "vector_driver": "memory", "embedding_driver": "hashing", **config},
    )


async def test_a_primary_without_expiry_refuses_it():
    s = await _plain_store()
    try:
        with pytest.raises(ValidationError, match="keeps no expiry") as err:
            await s.insert({"text": "a", "expires_at": now_ms() + HOUR})
        assert err.value.field == "expires_at" and await s.count() == 0
        await s.insert({"text": "a"})
        assert await s.purge_expired() == 0
    finally:
        await s.cleanup()
    with pytest.raises(ConfigurationError, match="keeps no expiry"):
        await _plain_store(ttl_ms=1000)


# -- CLI ------------------------------------------------------------------------------------


def test_cli_purge(tmp_path, monkeypatch):
    config = base_config(tmp_path, "sqlite", "local")
    for var, key in (("PRIMARY_DRIVER", "primary_driver"), ("VECTOR_DRIVER", "vector_driver")):
        monkeypatch.setenv(var, config[key])
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    monkeypatch.setenv("SEMANTIC_STORE_HOME", config["home"])

    async def seed() -> None:
        s = await SemanticStore.create("default", config=StoreConfig.from_env(), background=False)
        try:
            past = now_ms() - 1
            await s.insert_many([{"id": f"e{i}", "text": f"entry {i}", "expires_at": past} for i in range(3)])
            await s.insert({"id": "kept", "text": "kept"})
            await s.flush()
        finally:
            await s.cleanup()

    asyncio.run(seed())
    from promethean_persistence.cli import cli

    monkeypatch.delenv("SEMANTIC_STORE_NAME", raising=False)
    result = CliRunner().invoke(cli, ["purge"], catch_exceptions=False)
    assert result.exit_code == 0 and result.output.strip() == "3"
    result = CliRunner().invoke(cli, ["purge", "--json"], catch_exceptions=False)
    assert json.loads(result.output) == {"purged": 0}
