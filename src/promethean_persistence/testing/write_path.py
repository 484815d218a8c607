"""Fault tests of the write path (SPEC §4), run on every combination of drivers.

Needs the same ``make_store`` fixture as StoreSuite; the vector driver and embedder are
wrapped in FaultyVector / FaultyEmbedder over the real drivers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest

from .._errors import VectorWriteError
from .._store import SemanticStore
from .store import MakeStore

CHUNK = 100


async def _timed_inserts(
    store: SemanticStore, entries: Sequence[Mapping[str, Any]]
) -> tuple[list[str | Exception], float]:
    """Insert in concurrent chunks; return (ids or exceptions, worst latency in seconds)."""
    results: list[str | Exception] = []
    worst = 0.0

    async def one(entry: Mapping[str, Any]) -> str | Exception:
        nonlocal worst
        start = time.perf_counter()
        try:
            return await store.insert(entry)
        except Exception as exc:  # noqa: BLE001 - the caller asserts on it
            return exc
        finally:
            worst = max(worst, time.perf_counter() - start)

    for start in range(0, len(entries), CHUNK):
        results += await asyncio.gather(*(one(e) for e in entries[start : start + CHUNK]))
    return results, worst


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


class WritePathSuite:
    """Subclass and provide ``make_store`` (see StoreSuite)."""

    async def test_outage_in_eventual_mode_loses_nothing(self, make_store: MakeStore) -> None:
        # Retries are far apart, so none is spent during the outage: after it, flush() alone
        # must bring every write home.
        store = await make_store(faults=True, vector_timeout_ms=2000, vector_retry_delay_ms=60_000)
        store.vector.fail()
        entries = [{"id": f"o{i}", "text": f"written during the outage {i}"} for i in range(2000)]
        results, worst = await _timed_inserts(store, entries)
        assert results == [e["id"] for e in entries]  # every insert returned its id, none raised
        assert worst < 2.0 + 1.0, worst  # vector_timeout_ms, plus scheduling slack
        report = await store.primary.count()
        assert report == 2000
        store.vector.heal()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["total_documents"] == 2000
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
        assert await store.vector.count() == 2000

    async def test_outage_in_strict_mode_stores_nothing(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, consistency="strict", vector_timeout_ms=2000)
        await store.insert({"id": "before", "text": "written before the outage"})
        store.vector.fail()
        entries = [{"id": f"s{i}", "text": f"refused during the outage {i}"} for i in range(2000)]
        results, worst = await _timed_inserts(store, entries)
        assert all(isinstance(r, VectorWriteError) for r in results)
        assert worst < 3.0
        assert await store.count() == 1
        assert await store.get_many([e["id"] for e in entries[:50]]) == [None] * 50
        store.vector.heal()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["total_documents"] == 1 and report["inconsistent_documents"] == 0
        assert report["orphaned_vectors"] == 0

    async def test_hanging_backend_never_holds_an_insert_past_the_timeout(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_timeout_ms=300, vector_retry_delay_ms=60_000)
        store.vector.hang()
        results, worst = await _timed_inserts(store, [{"text": f"hang {i}"} for i in range(150)])
        assert all(isinstance(r, str) for r in results)
        assert worst < 0.3 * 2 + 1.0  # at most one batch ahead of it, plus slack
        store.vector.heal()
        await store.flush()
        assert (await store.get_consistency_report(None))["inconsistent_documents"] == 0

    async def test_strict_hang_raises_and_leaves_no_orphan(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, consistency="strict", vector_timeout_ms=200)
        store.vector.hang()
        with pytest.raises(VectorWriteError):
            await store.insert({"id": "h", "text": "hangs"})
        assert await store.get("h") is None
        store.vector.heal()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["orphaned_vectors"] == 0 and report["total_documents"] == 0

    async def test_background_worker_retries_without_any_call(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_retry_delay_ms=20)
        store.vector.fail()
        ids = [await store.insert({"text": f"retry me {i}"}) for i in range(5)]
        store.vector.heal()

        async def all_synced() -> bool:
            return all(e["metadata"]["vectorStatus"] == "synced" for e in await store.get_many(ids))

        assert await _wait_for(all_synced)

    async def test_retries_stop_after_max_retries(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_retry_delay_ms=1, vector_max_retries=2)
        store.vector.fail()
        id_ = await store.insert({"text": "keeps failing"})

        async def exhausted() -> bool:
            [r] = await store.primary.get([id_])
            return r.vector_attempts == 3 and r.vector_next_at is None

        assert await _wait_for(exhausted)
        await asyncio.sleep(0.1)
        [record] = await store.primary.get([id_])
        assert record.vector_attempts == 3 and record.vector_status == "failed"
        store.vector.heal()
        await store.flush()  # exhausted writes wait for retry_vector_write or repair
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "failed"
        await store.repair()
        await store.flush()
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "synced"

    async def test_failed_vector_delete_leaves_a_tombstone_that_is_retried(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True)
        await store.insert({"id": "d", "text": "delete me"})
        store.vector.fail()
        assert await store.delete("d") is True
        assert await store.get("d") is None
        store.vector.heal()
        assert await store.vector.existing(["d"]) == {"d"}  # the delete has not landed yet
        await store.flush()
        assert await store.vector.existing(["d"]) == set()
        assert (await store.get_consistency_report(None))["orphaned_vectors"] == 0

    async def test_reinserting_a_deleted_id_cancels_its_tombstone(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True)
        await store.insert({"id": "d", "text": "first life"})
        store.vector.fail()
        await store.delete("d")
        store.vector.heal()
        await store.insert({"id": "d", "text": "second life"})
        await store.flush()
        assert await store.vector.existing(["d"]) == {"d"}
        assert (await store.get_most_relevant("second life", 1))[0]["id"] == "d"

    async def test_concurrent_inserts_are_group_committed(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_batch_size=64)
        ids = await asyncio.gather(*(store.insert({"text": f"gathered {i}"}) for i in range(1000)))
        assert len(set(ids)) == 1000
        bound = math.ceil(1000 / 64) + 2
        assert store.embedder.calls["embed"] <= bound
        assert store.vector.calls["upsert"] <= bound
        assert sum(store.vector.upserted.values()) == 1000

    async def test_every_kth_failure_is_retried_to_completion(self, make_store: MakeStore) -> None:
        # Far-apart retries: none is spent while the fault lasts, so a record cannot exhaust
        # its retries on the every-3rd failures before flush() (after heal) writes it.
        store = await make_store(faults=True, vector_batch_size=8, vector_retry_delay_ms=60_000)
        store.vector.fail_every(3)
        ids = await asyncio.gather(*(store.insert({"text": f"flaky {i}"}) for i in range(200)))
        store.vector.heal()
        await store.flush()
        entries = await store.get_many(ids)
        assert all(e["metadata"]["vectorStatus"] == "synced" for e in entries)
        assert (await store.get_consistency_report(None))["inconsistent_documents"] == 0
