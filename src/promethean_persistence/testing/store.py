"""Store-level behaviour (SPEC §1-4) that must hold on every combination of drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import pytest

from .. import _registry
from .._config import StoreConfig
from .._errors import (
    DocumentNotFound,
    SemanticStoreError,
    ValidationError,
    VectorWriteError,
)
from .._store import SemanticStore
from .faults import FaultyEmbedder, FaultyVector

ENTRY_KEYS = {"id", "text", "timestamp", "metadata"}
MANAGED = {"vectorStatus", "vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp"}

#: the ``make_store`` fixture: ``await make_store(name="suite", *, faults=False, **config_overrides)``
#: returns an open SemanticStore. Typed ``Any``: the suites reach into its FaultyVector and
#: FaultyEmbedder (``store.vector.fail()``), index entries they know exist, and pass odd values.
MakeStore = Callable[..., Awaitable[Any]]


async def open_store(
    name: str,
    config: StoreConfig | Mapping[str, Any],
    *,
    faults: bool = False,
    text_key: str = "text",
    time_key: str = "createdAt",
) -> SemanticStore:
    """Open store ``name`` from ``config``; with ``faults`` its vector driver and embedder are
    wrapped in FaultyVector / FaultyEmbedder (reachable as ``store.vector`` /
    ``store.embedder``). ``text_key`` and ``time_key`` are the entry keys of the text and the
    timestamp.
    """
    cfg = StoreConfig.resolve(config)
    collection = cfg.collection_name(name)
    primary = _registry.build("primary", cfg, collection)
    vector = _registry.build("vector", cfg, collection)
    embedder = _registry.build("embedding", cfg)
    if faults:
        vector, embedder = FaultyVector(vector), FaultyEmbedder(embedder)
    return await SemanticStore.from_drivers(
        name, text_key, time_key, primary=primary, vector=vector, embedder=embedder, config=cfg
    )


def user_meta(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a returned ``entry`` without the store-managed keys."""
    return {k: v for k, v in entry["metadata"].items() if k not in MANAGED}


class StoreSuite:
    """Subclass and provide ``make_store``: ``await make_store(faults=False, **config)``."""

    # -- writes and reads -----------------------------------------------------------------

    async def test_insert_get_roundtrip(self, make_store: MakeStore) -> None:
        store = await make_store()
        id_ = await store.insert(
            {"text": "hello world", "createdAt": 1732400000000, "metadata": {"userName": "Duck", "n": {"x": 1}}}
        )
        entry = await store.get(id_)
        assert set(entry) == ENTRY_KEYS
        assert entry["id"] == id_ and entry["text"] == "hello world"
        assert entry["timestamp"] == 1732400000000
        assert user_meta(entry) == {"userName": "Duck", "n": {"x": 1}}
        meta = entry["metadata"]
        assert meta["vectorStatus"] == "synced" and meta["vectorWriteSuccess"] is True
        assert meta["vectorWriteError"] is None and isinstance(meta["vectorWriteTimestamp"], int)
        assert await store.get("missing") is None

    async def test_add_entry_is_insert_and_ids_are_uuid4(self, make_store: MakeStore) -> None:
        store = await make_store()
        id_ = await store.add_entry({"text": "x"})
        assert len(id_) == 36 and id_[14] == "4"
        assert (await store.get(id_))["text"] == "x"

    async def test_managed_metadata_from_caller_is_ignored(self, make_store: MakeStore) -> None:
        store = await make_store()
        id_ = await store.insert({"text": "t", "metadata": {"vectorWriteSuccess": False, "vectorStatus": "x", "k": 1}})
        meta = (await store.get(id_))["metadata"]
        assert meta["vectorStatus"] == "synced" and meta["vectorWriteSuccess"] is True and meta["k"] == 1

    async def test_upsert_replaces_and_reembeds_only_on_text_change(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True)
        await store.insert({"id": "a", "text": "first text", "metadata": {"v": 1}})
        calls = store.embedder.calls["embed"]
        await store.insert({"id": "a", "text": "first text", "metadata": {"v": 2}})
        assert store.embedder.calls["embed"] == calls  # metadata only: no embedding
        assert await store.count() == 1
        assert user_meta(await store.get("a")) == {"v": 2}
        hits = await store.get_most_relevant("first text", 5, where={"v": 2})
        assert [h["id"] for h in hits] == ["a"]
        calls = store.embedder.calls["embed"]
        await store.insert({"id": "a", "text": "second words", "metadata": {"v": 2}})
        assert store.embedder.calls["embed"] == calls + 1
        assert (await store.get("a"))["text"] == "second words"
        assert (await store.get_most_relevant("second words", 1))[0]["id"] == "a"

    async def test_bulk_insert_embeds_each_new_or_changed_text_once(self, make_store: MakeStore) -> None:
        # bulk writes embed while their records are written (``_outbox_front.EARLY_MIN``)
        store = await make_store(faults=True)
        inner = store.embedder.inner
        embed, seen = inner.embed, []

        async def counting(batch: list[str]) -> Any:
            seen.extend(batch)
            return await embed(batch)

        inner.embed = counting
        texts = [f"bulk entry number {i}" for i in range(80)]
        entries = [{"id": f"b{i}", "text": t, "metadata": {"v": 1}} for i, t in enumerate(texts)]
        await store.insert_many(entries)
        assert sorted(seen) == sorted(texts)
        seen.clear()
        await store.insert_many([{**e, "metadata": {"v": 2}} for e in entries])
        assert seen == []  # metadata only
        changed = [f"{t} changed" for t in texts[1::2]]
        await store.insert_many([{**e, "text": t} for e, t in zip(entries[1::2], changed)] + entries[::2])
        assert sorted(seen) == sorted(changed)
        await store.flush()  # a busy machine may still be writing them: slow is not failed
        assert (await store.get_most_relevant("bulk entry number 7 changed", 1))[0]["id"] == "b7"
        assert user_meta(await store.get("b7")) == {"v": 1} and user_meta(await store.get("b8")) == {"v": 1}
        report = await store.get_consistency_report()
        assert (report["missing_vectors"], report["stale_vectors"]) == (0, 0)

    async def test_insert_many_returns_ids_in_order(self, make_store: MakeStore) -> None:
        store = await make_store()
        ids = await store.insert_many([{"text": f"entry {i}", "id": f"e{i}"} for i in range(150)] + [{"text": "anon"}])
        assert ids[:150] == [f"e{i}" for i in range(150)] and len(ids) == 151
        assert await store.count() == 151
        assert [e["id"] for e in await store.get_many(["e3", "nope", "e149"]) if e] == ["e3", "e149"]
        assert (await store.get_many(["nope"])) == [None]

    async def test_timestamps(self, make_store: MakeStore) -> None:
        store = await make_store()
        cases = {
            "ms": (1704067200000, 1704067200000),
            "float": (1704067200000.7, 1704067200000),
            "naive": (datetime(2024, 1, 1), 1704067200000),
            "aware": (datetime(2024, 1, 1, 1, tzinfo=timezone.utc), 1704070800000),
            "iso": ("2024-01-01T00:00:00.000Z", 1704067200000),
            "iso-offset": ("2024-01-01T02:00:00+02:00", 1704067200000),
        }
        for id_, (value, expected) in cases.items():
            await store.insert({"id": id_, "text": id_, "createdAt": value})
            assert (await store.get(id_))["timestamp"] == expected, id_
        await store.insert({"id": "legacy", "text": "l", "metadata": {"timeStamp": 5000}})
        assert (await store.get("legacy"))["timestamp"] == 5000
        before = datetime.now(timezone.utc).timestamp() * 1000 - 5000
        await store.insert({"id": "now", "text": "n"})
        assert (await store.get("now"))["timestamp"] >= before

    @pytest.mark.parametrize(
        "entry, field",
        [
            ("not a mapping", "entry"),
            ({"metadata": {}}, "text"),
            ({"text": 42}, "text"),
            ({"text": None}, "text"),
            ({"text": "x", "createdAt": "yesterday"}, "createdAt"),
            ({"text": "x", "createdAt": float("nan")}, "createdAt"),
            ({"text": "x", "createdAt": True}, "createdAt"),
            ({"text": "x", "createdAt": [1]}, "createdAt"),
            ({"text": "x", "id": 5}, "id"),
            ({"text": "x", "id": ""}, "id"),
            ({"text": "x", "id": "i" * 513}, "id"),
            ({"text": "x", "metadata": "m"}, "metadata"),
            ({"text": "x", "metadata": {"bad": float("nan")}}, "metadata.bad"),
            ({"text": "x", "metadata": {"deep": {"inf": float("inf")}}}, "metadata.deep.inf"),
            ({"text": "x", "metadata": {"obj": object()}}, "metadata.obj"),
            ({"text": "x", "metadata": {1: "int key"}}, "metadata"),
            ({"text": "\ud800"}, "text"),
        ],
    )
    async def test_bad_entries_are_rejected_and_nothing_is_stored(
        self, make_store: MakeStore, entry: Any, field: str
    ) -> None:
        store = await make_store()
        await store.insert({"id": "keep", "text": "already here"})
        with pytest.raises(ValidationError) as info:
            await store.insert(entry)
        assert info.value.field == field
        assert field.split(".")[0] in str(info.value)
        with pytest.raises(ValidationError):
            await store.insert_many([{"id": "good", "text": "fine"}, entry])
        assert await store.count() == 1
        assert await store.get("good") is None

    async def test_huge_text_is_rejected(self, make_store: MakeStore) -> None:
        store = await make_store(max_text_bytes=1000)
        with pytest.raises(ValidationError) as info:
            await store.insert({"text": "é" * 501})
        assert info.value.field == "text" and await store.count() == 0
        await store.insert({"text": "é" * 500})
        assert await store.count() == 1

    async def test_empty_text_is_stored_without_vector(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"id": "blank", "text": "   ", "createdAt": 10})
        await store.insert({"id": "full", "text": "words", "createdAt": 5})
        entry = await store.get("blank")
        assert entry["metadata"]["vectorStatus"] == "skipped" and entry["metadata"]["vectorWriteSuccess"] is None
        assert [e["id"] for e in await store.get_most_recent(10)] == ["full"]
        assert [e["id"] for e in await store.get_most_recent(10, include_empty=True)] == ["blank", "full"]
        assert (await store.check_consistency("blank"))["has_vector"] is False

    async def test_most_recent_order_limit_filter_and_window(self, make_store: MakeStore) -> None:
        store = await make_store()
        for i in range(10):
            await store.insert(
                {"id": f"r{i}", "text": f"t{i}", "createdAt": 1000 + i, "metadata": {"i": i, "odd": i % 2 == 1}}
            )
        assert [e["id"] for e in await store.get_most_recent(3)] == ["r9", "r8", "r7"]
        assert [e["id"] for e in await store.get_most_recent(3, order="asc")] == ["r0", "r1", "r2"]
        assert len(await store.get_most_recent(100)) == 10
        assert [e["id"] for e in await store.get_most_recent(10, {"odd": True, "i": {"$lt": 6}})] == ["r5", "r3", "r1"]
        assert [e["id"] for e in await store.get_most_recent(10, since=1003, until=1005)] == ["r5", "r4", "r3"]
        assert [e["id"] for e in await store.get_most_recent(1, {"$or": [{"i": 2}, {"i": 4}]})] == ["r4"]
        for bad in (0, -1, "3", 2.5):
            with pytest.raises(ValidationError):
                await store.get_most_recent(bad)
        with pytest.raises(ValidationError):
            await store.get_most_recent(5, {"i": {"$regex": "x"}})
        with pytest.raises(ValidationError):
            await store.get_most_recent(5, order="sideways")

    async def test_most_relevant_ranks_merges_and_dedupes(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert_many(
            [
                {"id": "cat", "text": "the cat sleeps on the warm mat", "metadata": {"kind": "pet"}},
                {"id": "dog", "text": "a dog barks at the mailman", "metadata": {"kind": "pet"}},
                {"id": "stock", "text": "stock markets fell sharply today", "metadata": {"kind": "news"}},
                {"id": "cat2", "text": "the cat sleeps on the warm mat", "metadata": {"kind": "pet"}},
            ]
        )
        assert await store.get_most_relevant([], 5) == []
        one = await store.get_most_relevant("cat sleeps on a mat", 1)
        assert one[0]["id"] in ("cat", "cat2") and isinstance(one[0]["score"], float)
        assert set(one[0]) == ENTRY_KEYS | {"score", "vector_score", "lexical_score"}
        both = await store.get_most_relevant(["cat sleeps on a mat", "stock markets"], 3)
        texts = [e["text"] for e in both]
        assert len(texts) == len(set(texts)) == 3  # the duplicate text appears once
        assert {e["id"] for e in both} >= {"stock"}
        assert [e["score"] for e in both] == sorted((e["score"] for e in both), reverse=True)
        news = await store.get_most_relevant("cat sleeps on a mat", 5, where={"kind": "news"})
        assert [e["id"] for e in news] == ["stock"]
        high = await store.get_most_relevant("cat sleeps on a mat", 5, min_score=0.5)
        assert high and all(e["score"] >= 0.5 for e in high) and "stock" not in {e["id"] for e in high}
        with pytest.raises(ValidationError):
            await store.get_most_relevant([1, 2], 5)
        with pytest.raises(ValidationError):
            await store.get_most_relevant("x", 5, where={"kind": ["a"]})

    async def test_selective_filter_still_fills_the_limit(self, make_store: MakeStore) -> None:
        store = await make_store()
        entries = [
            {"id": f"n{i}", "text": f"apple banana cherry {i}", "metadata": {"rare": i >= 57}} for i in range(60)
        ]
        await store.insert_many(entries)
        hits = await store.get_most_relevant("apple banana cherry", 3, where={"rare": True})
        assert sorted(e["id"] for e in hits) == ["n57", "n58", "n59"]

    async def test_reads_come_from_the_primary_store(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"id": "a", "text": "original words", "metadata": {"k": 1}})
        await store.vector.upsert(["a"], None, [{"k": 1, "planted": True}])
        [hit] = await store.get_most_relevant("original words", 1)
        assert hit["text"] == "original words" and "planted" not in hit["metadata"]

    async def test_delete(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"id": "a", "text": "to be deleted"})
        assert await store.delete("a") is True
        assert await store.get("a") is None
        assert await store.delete("a") is False
        assert await store.vector.existing(["a"]) == set()
        assert await store.get_most_relevant("to be deleted", 5) == []

    async def test_iter_entries_and_count(self, make_store: MakeStore) -> None:
        store = await make_store()
        ids = await store.insert_many([{"text": f"e{i}"} for i in range(37)])
        seen = [e["id"] async for e in store.iter_entries(batch_size=10)]
        assert sorted(seen) == sorted(ids) and len(seen) == 37
        assert seen == sorted(seen)
        assert await store.count() == 37

    async def test_extra_fields_are_kept_but_not_returned(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"id": "x", "text": "t", "channel": "c1", "score": 3})
        assert set(await store.get("x")) == ENTRY_KEYS
        [record] = await store.primary.get(["x"])
        assert record.extra == {"channel": "c1", "score": 3}

    # -- consistency and the write path ----------------------------------------------------

    async def test_check_consistency_asks_the_vector_store(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"id": "a", "text": "alpha"})
        assert await store.check_consistency("a") == {
            "has_document": True,
            "has_vector": True,
            "vector_status": "synced",
            "vector_write_success": True,
            "vector_write_error": None,
        }
        await store.vector.delete(["a"])
        assert (await store.check_consistency("a"))["has_vector"] is False
        missing = await store.check_consistency("zzz")
        assert missing["has_document"] is False and missing["has_vector"] is False

    async def test_report_finds_missing_and_orphans_and_repair_fixes_them(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert_many([{"id": f"d{i}", "text": f"doc number {i}"} for i in range(5)])
        report = await store.get_consistency_report(None)
        assert report["total_documents"] == 5 and report["consistent_documents"] == 5
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
        await store.vector.delete(["d1"])
        vec = (await store.embedder.embed(["ghost"]))[0]
        await store.vector.upsert(["ghost"], [vec], [{}])
        report = await store.get_consistency_report(None)
        assert report["missing_vectors"] == 1 and report["orphaned_vectors"] == 1
        assert report["inconsistent_documents"] == 1
        assert (await store.get_consistency_report(100))["missing_vectors"] == 1
        planned = await store.repair(dry_run=True)
        assert planned["missing"] == 1 and planned["orphans_deleted"] == 1
        assert (await store.get_consistency_report(None))["missing_vectors"] == 1  # dry run changed nothing
        await store.repair()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0
        assert await store.vector.existing(["d1", "ghost"]) == {"d1"}

    async def test_eventual_failure_is_recorded_and_retried(self, make_store: MakeStore) -> None:
        # No automatic retries (max 0): the attempts counted below are the insert's and ours.
        store = await make_store(faults=True, vector_retry_delay_ms=1, vector_max_retries=0)
        store.vector.fail()
        id_ = await store.insert({"text": "survives an outage"})
        entry = await store.get(id_)
        assert entry["metadata"]["vectorStatus"] == "failed"
        assert entry["metadata"]["vectorWriteSuccess"] is False
        assert "injected failure" in entry["metadata"]["vectorWriteError"]
        assert await store.retry_vector_write(id_, max_retries=2) is False
        store.vector.heal()
        report = await store.get_consistency_report(10)
        assert report["failed"] == 1 and report["inconsistent_documents"] == 1
        [failure] = report["vector_write_failures"]
        assert failure["id"] == id_ and failure["attempts"] == 3 and "injected" in failure["error"]
        assert isinstance(failure["timestamp"], int)
        assert await store.retry_vector_write(id_, max_retries=2) is True
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "synced"
        assert (await store.get_consistency_report(10))["inconsistent_documents"] == 0
        with pytest.raises(DocumentNotFound):
            await store.retry_vector_write("nope")

    async def test_strict_failure_raises_and_stores_nothing(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, consistency="strict")
        await store.insert({"id": "old", "text": "old text", "metadata": {"v": 1}})
        store.vector.fail()
        with pytest.raises(VectorWriteError):
            await store.insert({"id": "new", "text": "never stored"})
        assert await store.get("new") is None
        with pytest.raises(VectorWriteError):
            await store.insert({"id": "old", "text": "replacement", "metadata": {"v": 2}})
        assert (await store.get("old"))["text"] == "old text"
        with pytest.raises(VectorWriteError):
            await store.insert_many([{"id": f"m{i}", "text": f"m{i}"} for i in range(5)])
        assert await store.count() == 1
        store.vector.heal()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0

    async def test_hanging_vector_store_is_bounded_by_the_timeout(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_timeout_ms=200)
        store.vector.hang()
        loop = asyncio.get_running_loop()
        start = loop.time()
        id_ = await store.insert({"text": "waits at most the timeout"})
        assert loop.time() - start < 2.0
        assert (await store.get(id_))["metadata"]["vectorStatus"] in ("pending", "failed")
        store.vector.heal()
        await store.flush()
        await store.retry_vector_write(id_, 1)
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "synced"

    async def test_dual_write_disabled_skips_vectors(self, make_store: MakeStore) -> None:
        store = await make_store(dual_write_enabled=False)
        id_ = await store.insert({"text": "no vector for me"})
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "skipped"
        assert await store.vector.count() == 0
        assert (await store.get_consistency_report(None))["inconsistent_documents"] == 0

    async def test_images_without_image_embedder_are_skipped(self, make_store: MakeStore) -> None:
        store = await make_store()
        id_ = await store.insert({"text": "https://example.org/cat.png", "metadata": {"type": "image", "caption": "c"}})
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "skipped"
        assert await store.vector.existing([id_]) == set()

    async def test_concurrent_inserts_share_batches(self, make_store: MakeStore) -> None:
        store = await make_store(faults=True, vector_batch_size=16)
        ids = await asyncio.gather(*(store.insert({"text": f"concurrent {i}"}) for i in range(100)))
        assert len(set(ids)) == 100 and await store.count() == 100
        assert store.embedder.calls["embed"] <= -(-100 // 16) + 2
        stats = store.get_queue_stats()
        assert stats["total_written"] == 100 and stats["batches"] <= -(-100 // 16) + 2

    async def test_queue_stats_shape(self, make_store: MakeStore) -> None:
        store = await make_store(vector_batch_size=7, vector_max_retries=2)
        stats = store.get_chroma_queue_stats()
        assert set(stats) == {
            "queue_length",
            "processing",
            "pending",
            "failed",
            "total_written",
            "total_failed",
            "batches",
            "last_flush_at",
            "config",
        }
        assert stats["config"] == {
            "batch_size": 7,
            "flush_interval_ms": 0,
            "max_retries": 2,
            "retry_delay_ms": store.config.vector_retry_delay_ms,
            "enabled": True,
        }

    async def test_drop_and_cleanup(self, make_store: MakeStore) -> None:
        store = await make_store()
        await store.insert({"text": "x"})
        await store.drop()
        assert await store.count() == 0 and await store.vector.count() == 0
        await store.insert({"text": "y"})
        assert await store.count() == 1
        await store.cleanup()
        await store.cleanup()  # idempotent
        with pytest.raises(SemanticStoreError):
            await store.insert({"text": "z"})

    async def test_async_context_manager_closes(self, make_store: MakeStore) -> None:
        store = await make_store()
        async with store as s:
            await s.insert({"text": "inside"})
        with pytest.raises(SemanticStoreError):
            await store.count()
