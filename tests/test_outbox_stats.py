"""``get_outbox_stats()`` reads the stored outbox (every process's writes), on every primary."""

from __future__ import annotations

import asyncio

import pytest

from promethean_persistence import SemanticStore, StoreConfig
from promethean_persistence._entries import now_ms
from promethean_persistence._types import VectorState
from promethean_persistence.testing.capabilities import check_declared

from conftest import PRIMARY, base_config

KEYS = {"pending", "failed", "tombstones", "oldest_pending_ms", "workers", "by_status", "in_progress", "retrying"}


async def _open(primary: str, tmp_path):
    return await SemanticStore.create("stats", config=base_config(tmp_path, primary, "memory", vector_writes="worker"))


@pytest.fixture(params=PRIMARY)
async def store(request, tmp_path):
    s = await _open(request.param, tmp_path)
    yield s
    await s.cleanup()


@pytest.fixture(params=[p for p in PRIMARY if p != "memory"])  # each memory store is its own database
async def shared_store(request, tmp_path):
    s = await _open(request.param, tmp_path)
    yield s
    await s.cleanup()


async def test_empty_store(store):
    check_declared(store.primary, "primary")
    assert store.primary.capabilities.outbox_stats
    stats = await store.get_outbox_stats()
    assert KEYS <= set(stats)
    assert stats["pending"] == stats["failed"] == stats["tombstones"] == stats["workers"] == 0
    assert stats["oldest_pending_ms"] is None
    assert stats["by_status"] == {"pending": 0, "failed": 0, "deleting": 0}


async def test_worker_mode_writes_are_counted_with_their_age(store):
    await store.insert_many([{"text": f"note {i}", "id": f"n{i}"} for i in range(7)])
    await store.insert({"text": "", "id": "empty"})  # no vector wanted: not outbox work
    await asyncio.sleep(0.05)
    stats = await store.get_outbox_stats()
    assert stats["pending"] == 7 and stats["by_status"]["pending"] == 7
    assert stats["in_progress"] == 0  # due at once for a worker, leased to nobody
    assert 40 <= stats["oldest_pending_ms"] < 60_000
    assert await store.vector_counts() == {"indexed": 0, "pending": 7, "failed": 0, "skipped": 1}


async def test_failed_tombstones_and_leases(store):
    await store.insert_many([{"text": f"note {i}", "id": f"n{i}"} for i in range(4)])
    now = now_ms()
    [record] = await store.primary.get(["n0"])
    await store.primary.set_vector_state([VectorState("n0", record.version, "failed", 1, "boom", now + 60_000, now)])
    [record] = await store.primary.get(["n1"])
    await store.primary.set_vector_state([VectorState("n1", record.version, "failed", 4, "gave up", None, now)])
    claimed = await store.primary.claim(1, now, 60_000)  # a worker holds one lease
    await store.primary.delete(["n3"], tombstone_at=now + 60_000)
    stats = await store.get_outbox_stats()
    assert [r.id for r in claimed] == ["n2"]
    assert stats["failed"] == 2 and stats["retrying"] == 1
    assert stats["pending"] == 1 and stats["in_progress"] == 1
    assert stats["tombstones"] == 1 and stats["by_status"] == {"pending": 1, "failed": 2, "deleting": 1}


async def test_writing_a_deleted_id_again_drops_only_its_own_tombstone(store):
    await store.insert_many([{"text": f"note {i}", "id": f"n{i}"} for i in range(3)])
    await store.primary.delete(["n0", "n1"], tombstone_at=now_ms() + 60_000)
    assert (await store.get_outbox_stats())["tombstones"] == 2
    await store.insert({"text": "note 0 again", "id": "n0"})  # its vector must not be deleted after this
    await store.insert({"text": "note 9", "id": "n9"})  # no tombstone of its own: the others stay
    stats = await store.get_outbox_stats()
    assert stats["tombstones"] == 1
    assert [r.id for r in await store.primary.claim(10, now_ms() + 120_000, 60_000) if not r.text] == ["n1"]


async def test_heartbeats_count_live_workers_only(store):
    primary = store.primary
    now = now_ms()
    alive = {"id": "w-alive", "host": "box-1", "pid": 11, "started_at": now - 1000}
    dead = {"id": "w-dead", "host": "box-2", "pid": 12, "started_at": now - 90_000}
    await primary.beat_worker(alive, now, now + 15_000)
    await primary.beat_worker(dead, now - 60_000, now - 45_000)
    stats = await store.get_outbox_stats()
    assert stats["workers"] == 1
    [w] = stats["worker_list"]
    assert (w["id"], w["host"], w["pid"], w["started_at"], w["last_beat_at"]) == (
        "w-alive",
        "box-1",
        11,
        now - 1000,
        now,
    )
    await primary.beat_worker(dead, now, now + 15_000)  # it came back
    assert (await store.get_outbox_stats())["workers"] == 2
    await primary.forget_worker("w-alive")
    assert [w["id"] for w in (await store.get_outbox_stats())["worker_list"]] == ["w-dead"]


async def test_another_collection_has_its_own_figures(shared_store, tmp_path):
    store = shared_store
    await store.insert({"text": "mine"})
    other = await SemanticStore.create("stats_other", config=store.config)
    try:
        await other.insert_many([{"text": "a"}, {"text": "b"}])
        await store.primary.beat_worker({"id": "w", "host": "h", "pid": 1, "started_at": 1}, now_ms(), now_ms() + 9000)
        assert (await other.get_outbox_stats())["pending"] == 2
        assert (await other.get_outbox_stats())["workers"] == 0
        assert (await store.get_outbox_stats())["pending"] == 1
    finally:
        await other.cleanup()


async def test_list_collections(store):
    lister = type(store.primary).list_collections
    found = await lister(store.config)
    if store.primary.name == "memory":
        assert found is None
    else:
        assert store.name in found


def test_strict_and_worker_conflict():
    from promethean_persistence import ConfigurationError

    with pytest.raises(ConfigurationError, match="strict.*worker"):
        StoreConfig(consistency="strict", vector_writes="worker")
    with pytest.raises(ConfigurationError, match="strict.*worker"):
        StoreConfig.resolve({"consistency": "strict"}, {"VECTOR_WRITES": "worker"})
    assert StoreConfig.resolve(None, {"VECTOR_WRITES": "Worker"}).vector_writes == "worker"
    assert StoreConfig().vector_writes == "inline"


async def test_sqlite_claims_read_the_outbox_index_not_every_row(tmp_path):
    """The claim query states the outbox index's predicate, so SQLite searches the index (a
    scan of the table, every second, cost 49 ms a claim at 100k rows), and still claims what
    is due."""
    import sqlite3

    from promethean_persistence._filters import parse
    from promethean_persistence.drivers._sql import due_records

    store = await _open("sqlite", tmp_path)
    try:
        await store.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(20)])
        table = store.primary._table
        conn = sqlite3.connect(store.primary._db.path)
        sql = due_records(table, "id", mark="?")
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, (0, 0, 5)))
        assert "USING INDEX" in plan and "__outbox" in plan, plan  # the partial index holds only outbox rows
        due = conn.execute(sql, (now_ms() + 10**9, now_ms() + 10**9, 100)).fetchall()
        assert sorted(r[0] for r in due) == sorted(f"e{i}" for i in range(20))  # worker mode: all pending
        # flush's count of pending entries too: the statement the driver ran, explained
        ran: list[str] = []
        store.primary._db.conn.set_trace_callback(ran.append)
        assert await store.primary.count(parse({"vectorStatus": "pending"})) == 20
        store.primary._db.conn.set_trace_callback(None)
        counted = next(s for s in ran if s.startswith("SELECT COUNT(*)"))
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + counted))
        assert "USING INDEX" in plan and "__outbox" in plan, plan
        conn.close()
    finally:
        await store.cleanup()
