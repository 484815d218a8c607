"""PostgreSQL specifics: passwords never leak, newer schemas are refused, long names fit,
and pools are shared between stores and closed with the last one."""

from __future__ import annotations

import uuid

import pytest

from promethean_persistence import BackendRejected, BackendUnavailable, SemanticStore, StoreConfig
from promethean_persistence.drivers import _postgres
from promethean_persistence.drivers.primary.postgres import CATALOG, PostgresPrimary

from conftest import PG, base_config, require_postgres

pytestmark = PG


async def test_unreachable_server_error_names_the_server_not_the_password():
    cfg = StoreConfig(
        postgresql={"host": "127.0.0.1", "port": 1, "database": "db", "username": "app", "password": "hunter2-secret"}
    )
    driver = PostgresPrimary.from_config(cfg, "x")
    assert "hunter2" not in repr(driver)
    with pytest.raises(BackendUnavailable) as info:
        await driver.open()
    assert "127.0.0.1:1/db" in str(info.value) and "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value.__cause__ or "")


async def test_newer_schema_is_refused(tmp_path):
    dsn = require_postgres()
    collection = f"t{uuid.uuid4().hex[:8]}_schema"
    driver = PostgresPrimary(dsn, "test", [], collection)
    await driver.open()
    async with driver._pool.connection() as conn:
        await conn.execute(f"UPDATE {CATALOG} SET schema_version = 99 WHERE collection = %s", (collection,))
    await driver.aclose()
    again = PostgresPrimary(dsn, "test", [], collection)
    with pytest.raises(BackendRejected, match="schema version 99"):
        await again.open()


async def test_long_names_and_shared_pools(tmp_path):
    config = base_config(tmp_path, "postgresql", "pgvector")
    name = "a-very-long-store-name-" + "x" * 80
    first = await SemanticStore.create(name, config=config)
    second = await SemanticStore.create(name + "-2", config=config)
    await first.insert({"id": "1", "text": "long names still work"})
    await second.insert({"id": "1", "text": "a different store"})
    assert (await first.get("1"))["text"] == "long names still work"
    assert (await second.get("1"))["text"] == "a different store"
    assert len(_postgres._POOLS) == 1 and next(iter(_postgres._POOLS.values()))[1] == 4  # 2 stores x 2 drivers
    await first.cleanup()
    assert await second.count() == 1  # cleaning one store never closes another's pool
    await second.cleanup()
    assert not _postgres._POOLS


async def test_strict_insert_is_one_transaction_on_one_database(tmp_path):
    from promethean_persistence.testing.store import open_store

    config = base_config(tmp_path, "postgresql", "pgvector", consistency="strict")
    store = await open_store("atomic", config, faults=True)
    assert (await store.get_consistency_report(None))["atomic_vector_writes"] is True
    await store.insert({"id": "a", "text": "first words", "metadata": {"v": 1}})
    assert (await store.get("a"))["metadata"]["vectorStatus"] == "synced"
    calls = store.embedder.calls["embed"]
    await store.insert({"id": "a", "text": "first words", "metadata": {"v": 2}})  # metadata only
    assert store.embedder.calls["embed"] == calls
    assert [h["id"] for h in await store.get_most_relevant("first words", 3, where={"v": 2})] == ["a"]
    store.vector.fail()
    with pytest.raises(Exception) as info:
        await store.insert_many([{"id": "b", "text": "never"}, {"id": "a", "text": "replaced?"}])
    assert type(info.value).__name__ == "VectorWriteError"
    assert await store.get("b") is None and (await store.get("a"))["text"] == "first words"
    store.vector.heal()
    report = await store.get_consistency_report(None)
    assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
    assert report["total_documents"] == 1
    plain = await open_store("atomic-off", {**config, "consistency": "eventual"})
    assert (await plain.get_consistency_report(None))["atomic_vector_writes"] is False
    await plain.cleanup()
    await store.cleanup()
