"""Durability of the write path across processes: a SIGKILLed writer loses nothing that it
acknowledged, and two stores on one primary file neither lose nor duplicate work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from promethean_persistence import SemanticStore
from promethean_persistence.testing.store import open_store

from conftest import PG, base_config

PERSISTENT = [
    pytest.param(("sqlite", "local"), id="sqlite+local"),
    pytest.param(("postgresql", "pgvector"), id="postgresql+pgvector", marks=PG),
]

WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from promethean_persistence import SemanticStore

    async def main():
        store = await SemanticStore.create("crash", "text", "createdAt", json.loads(sys.argv[1]))
        prefix, stop = sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None
        n = 0
        while stop is None or n < stop:
            batch = [{"id": f"{prefix}{n + i}", "text": f"crash test entry {prefix} {n + i}", "metadata": {"i": n + i}}
                     for i in range(20)]
            n += 20
            for id_ in await asyncio.gather(*(store.insert(e) for e in batch)):
                print(id_, flush=True)
        await store.cleanup()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("drivers", PERSISTENT)
async def test_sigkill_mid_ingest_loses_no_acknowledged_entry(tmp_path, drivers):
    # The dead writer's leases run out after 2 x vector_timeout_ms + 1 s; flush waits for that.
    # Two writers share the store; one is killed, the other finishes normally.
    config = base_config(tmp_path, *drivers, vector_timeout_ms=1000)
    victim = subprocess.Popen(
        [sys.executable, "-c", WRITER, json.dumps(config), "v"], stdout=subprocess.PIPE, text=True
    )
    survivor = subprocess.Popen(
        [sys.executable, "-c", WRITER, json.dumps(config), "s", "300"], stdout=subprocess.PIPE, text=True
    )
    acknowledged = []
    try:
        for line in victim.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= 400:
                break
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        victim.stdout.close()
    survived = survivor.stdout.read().split()
    survivor.wait(timeout=120)
    survivor.stdout.close()
    assert victim.returncode == -signal.SIGKILL and len(acknowledged) >= 400
    assert survivor.returncode == 0 and len(survived) == 300
    acknowledged += survived

    store = await SemanticStore.create("crash", "text", "createdAt", config)
    try:
        await store.flush()
        entries = await store.get_many(acknowledged)
        assert all(e is not None for e in entries)
        assert len({e["id"] for e in entries}) == len(acknowledged)  # each once
        present = await store.vector.existing(acknowledged)
        assert present == set(acknowledged)
        report = await store.get_consistency_report(None)
        assert report["total_documents"] >= len(acknowledged)
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
    finally:
        await store.cleanup()


@pytest.mark.parametrize("drivers", PERSISTENT)
async def test_two_stores_on_one_file_neither_lose_nor_duplicate(tmp_path, drivers):
    config = base_config(tmp_path, *drivers, vector_batch_size=16, vector_retry_delay_ms=10)
    a = await open_store("shared", config, faults=True)
    b = await open_store("shared", config, faults=True)
    try:

        async def ingest(store, prefix):
            for start in range(0, 300, 30):
                await asyncio.gather(
                    *(
                        store.insert({"id": f"{prefix}{i}", "text": f"{prefix} entry {i}"})
                        for i in range(start, start + 30)
                    )
                )

        await asyncio.gather(ingest(a, "a"), ingest(b, "b"))
        await asyncio.gather(a.flush(), b.flush())
        ids = [f"a{i}" for i in range(300)] + [f"b{i}" for i in range(300)]
        assert await a.count() == 600 and await b.count() == 600
        assert all(e is not None for e in await b.get_many(ids))
        writes = Counter(a.vector.upserted) + Counter(b.vector.upserted)
        assert set(writes) == set(ids) and set(writes.values()) == {1}
        for store in (a, b):
            report = await store.get_consistency_report(None)
            assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
    finally:
        await a.cleanup()
        await b.cleanup()


@pytest.mark.parametrize("drivers", PERSISTENT)
async def test_a_bulk_write_the_primary_refuses_writes_no_vector(tmp_path, drivers):
    # its texts are embedded while the primary writes (``_outbox_front.EARLY_MIN``): that
    # work is dropped with the write, and the next bulk write is not served stale vectors
    from promethean_persistence import BackendUnavailable
    from promethean_persistence.testing.embedding_server import EmbeddingServer, hashing_encoder

    server = EmbeddingServer({"m": hashing_encoder(64)}).start()  # a remote embedder: embedded early
    remote = {"embedding_driver": "ollama", "embedding_function": "m", "ollama": {"url": server.url, "dimensions": 64}}
    store = await SemanticStore.create("refused", config={**base_config(tmp_path, *drivers), **remote})
    try:
        put = store.primary.put

        async def refuse(records, **kwargs):
            raise BackendUnavailable("primary refused", driver=store.primary.name)

        store.primary.put = refuse
        batch = [{"id": f"r{i}", "text": f"refused entry {i}"} for i in range(64)]
        with pytest.raises(BackendUnavailable):
            await store.insert_many(batch)
        store.primary.put = put
        await asyncio.sleep(0.05)
        assert (await store.count(), await store.vector.count()) == (0, 0)
        await store.insert_many([{**e, "text": e["text"] + " again"} for e in batch])
        await store.flush()
        hits = await store.get_most_relevant("refused entry 5 again", 1)
        assert hits[0]["id"] == "r5" and hits[0]["text"] == "refused entry 5 again"
        report = await store.get_consistency_report()
        assert (report["missing_vectors"], report["stale_vectors"], await store.vector.count()) == (0, 0, 64)
    finally:
        await store.cleanup()
        server.stop()
