"""MongoDB + ChromaDB: the original DualStoreManager's data, opened and repaired by our store.

MongoDB here is SecantusDB, a MongoDB wire-protocol server (no mongod can be installed on
these machines), spoken to with the real pymongo client; Chroma is a real ``chroma run``
server. Data is written by ``testing.original.OriginalWriter`` exactly as the original did.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

from promethean_persistence import (
    BackendUnavailable,
    EmbeddingMismatchError,
    MissingDependencyError,
    SemanticStore,
)
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.testing import engines

from conftest import require_server

pytestmark = [pytest.mark.mongodb, pytest.mark.chroma]


@pytest.fixture
def servers():
    return require_server("TEST_MONGODB_URI", "SecantusDB"), require_server("TEST_CHROMA_URL", "a Chroma server")


def _config(mongo: str, chroma: str, agent: str, **extra) -> dict:
    return {
        "primary_driver": "mongodb",
        "vector_driver": "chromadb",
        "embedding_driver": "hashing",
        "mongodb": {"uri": mongo},
        "chromadb": {"url": chroma},
        "agent_name": agent,
        "vector_retry_delay_ms": 10,
        **extra,
    }


def _sync_embed(texts):
    """The stand-in for the original's Ollama embedding function: our hashing embedder."""
    return [HashingEmbedder().embed_one(t).tolist() for t in texts]


@pytest.fixture
def original(servers):
    from promethean_persistence.testing.original import OriginalWriter

    mongo, chroma = servers
    agent = f"o{uuid.uuid4().hex[:8]}"
    writers = []

    def make(name="memories", **kw):
        w = OriginalWriter(mongo, chroma, family=f"{agent}_{name}", embed=_sync_embed, **kw)
        writers.append(w)
        return w

    make.agent = agent
    yield make
    for w in writers:
        w.close()


async def test_our_writes_use_the_original_layout(servers, original):
    mongo, chroma = servers
    w = original()  # only to read raw documents back
    store = await SemanticStore.create("memories", "content", "created_at", _config(mongo, chroma, original.agent))
    try:
        id_ = await store.insert(
            {
                "content": "hello duck",
                "created_at": 1732400000000,
                "channel": "c1",
                "metadata": {"userName": "Duck", "nested": {"level": 1}, "tags": ["a", "b"]},
            }
        )
        await store.flush()  # vector states are written with the next write, or within 20 ms
        [doc] = await asyncio.to_thread(w.raw, id_)
        assert doc["id"] == id_ and doc["content"] == "hello duck" and doc["channel"] == "c1"
        assert doc["created_at"] == 1732400000000 and isinstance(doc["created_at"], int)
        meta = doc["metadata"]
        assert meta["userName"] == "Duck" and meta["nested"] == {"level": 1}
        assert meta["vectorWriteSuccess"] is True and meta["vectorWriteError"] is None
        assert isinstance(meta["vectorWriteTimestamp"], int)
        record = await asyncio.to_thread(w.chroma_record, id_)
        assert record["document"] == "hello duck"
        assert record["metadata"]["nested"] == '{"level":1}' and record["metadata"]["tags"] == '["a","b"]'
        assert record["metadata"]["created_at"] == 1732400000000 and record["metadata"]["userName"] == "Duck"
        # what the original's getMostRecent maps: {id, text: doc[T], timestamp: doc[K], metadata}
        assert (await store.get(id_))["text"] == "hello duck"
    finally:
        await store.cleanup()


async def test_original_data_is_read_classified_and_repaired(servers, original):
    mongo, chroma = servers
    w = original(text_key="content", time_key="created_at")
    base = 1_700_000_000_000
    w.insert_many(
        [
            {
                "id": f"ok{i}",
                "content": f"the duck swims in pond {i}",
                "created_at": base + i,
                "metadata": {"userName": "Duck", "nested": {"level": i}},
            }
            for i in range(5)
        ]
    )
    w.insert({"id": "dup", "content": "first version", "created_at": base + 10})
    w.insert({"id": "dup", "content": "second version", "created_at": base + 11})  # insertOne again
    w.insert({"id": "failed", "content": "ollama was down", "created_at": base + 20}, vector_ok=False)
    w.insert({"id": "gone", "content": "vector lost since", "created_at": base + 30}, vector=False)
    w.insert(
        {
            "id": "old",
            "content": "a document from an older version",
            "created_at": "2023-11-14T22:13:20Z",
            "metadata": {"type": "text"},
        },
        legacy=True,
    )
    w.insert(
        {"id": "stamp", "content": "time only in metadata.timeStamp", "metadata": {"timeStamp": base + 40}}, legacy=True
    )

    store = await SemanticStore.create("memories", "content", "created_at", _config(mongo, chroma, original.agent))
    try:
        assert (await store.get("dup"))["text"] == "second version"  # the newest of duplicates
        assert (await store.get("old"))["timestamp"] == 1700000000000  # ISO string read as epoch ms
        assert (await store.get("stamp"))["timestamp"] == base + 40
        assert (await store.get("ok1"))["metadata"]["nested"] == {"level": 1}
        assert await store.count() == 10
        recent = await store.get_most_recent(3)
        assert [e["id"] for e in recent] == ["stamp", "gone", "failed"]
        assert [e["id"] for e in await store.get_most_recent(20, {"nested.level": {"$gte": 3}})] == ["ok4", "ok3"]
        hits = await store.get_most_relevant("the duck swims in pond 3", 2)
        assert hits[0]["id"] == "ok3"  # legacy vectors (Chroma's l2 space) are searched

        report = await store.get_consistency_report(None)
        assert report["total_documents"] == 10
        assert report["legacy"] == 10  # none carries our outbox fields yet
        assert report["failed"] == 1
        assert report["vector_write_failures"][0]["id"] == "failed"
        assert report["vector_write_failures"][0]["error"] == "ollama: connection refused"
        assert report["missing_vectors"] == 1  # "gone"
        assert report["stale_vectors"] == 1  # "dup": Chroma kept the older copy's text
        assert report["consistent_documents"] == 7
        assert report["orphaned_vectors"] == 0

        preview = await store.repair(dry_run=True, dedupe=True)
        assert preview["duplicates_removed"] == 1 and "dup" in preview["requeued_ids"]
        assert len(await asyncio.to_thread(w.raw, "dup")) == 2  # a preview deletes nothing
        result = await store.repair(dedupe=True)
        assert result["duplicates_removed"] == 1
        assert set(result["requeued_ids"]) == {"failed", "gone", "dup"}  # dup: its vector was the older copy's
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0, report
        assert report["legacy"] == 7  # consistent ones are left as the original wrote them
        assert (await store.get_most_relevant("second version", 1))[0]["id"] == "dup"
        assert len(await asyncio.to_thread(w.raw, "dup")) == 1
        # the original can still read what repair wrote
        [doc] = await asyncio.to_thread(w.raw, "failed")
        assert doc["metadata"]["vectorWriteSuccess"] is True and doc["metadata"]["vectorWriteError"] is None
        assert (await asyncio.to_thread(w.chroma_record, "failed"))["document"] == "ollama was down"
        assert (await store.get_most_relevant("ollama was down", 1))[0]["id"] == "failed"
    finally:
        await store.cleanup()


async def test_original_drift_is_found_and_repaired(servers, original):
    """Drift the original's data can carry: an image it skipped but called a success, and a
    text its application edited in MongoDB after the vector was written."""
    mongo, chroma = servers
    w = original()
    w.insert(
        {"id": "img", "text": "https://example.org/duck.png", "createdAt": 1, "metadata": {"type": "image"}},
        vector=False,
    )  # the original skipped images, recording vectorWriteSuccess: true
    w.insert({"id": "note", "text": "ducks paddle on the pond", "createdAt": 2})
    w.insert({"id": "same", "text": "geese fly south in autumn", "createdAt": 3})
    w.docs.update_one({"id": "note"}, {"$set": {"text": "volcano ash covers the village"}})  # the app edits it
    store = await SemanticStore.create("memories", config=_config(mongo, chroma, original.agent))
    try:
        report = await store.get_consistency_report(None)
        assert report["skipped"] == 1 and report["missing_vectors"] == 0, report  # the image: skipped
        assert report["stale_vectors"] == 1 and report["consistent_documents"] == 2, report  # "note"
        result = await store.repair()
        assert result["requeued_ids"] == ["note"]  # never the image: a text model would embed its URL
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["stale_vectors"] == 0, report
        assert await asyncio.to_thread(w.chroma_record, "img") is None
        assert (await store.get_most_relevant("volcano ash village", 1))[0]["id"] == "note"
    finally:
        await store.cleanup()


async def test_duplicates_stay_hidden_until_dedupe(servers, original):
    mongo, chroma = servers
    w = original()
    for n in range(3):
        w.insert({"id": "x", "text": f"version {n}", "createdAt": 1000 + n})
    store = await SemanticStore.create("memories", config=_config(mongo, chroma, original.agent))
    try:
        assert await store.count() == 1
        assert [e["text"] for e in await store.get_most_recent(10)] == ["version 2"]
        assert [e["text"] async for e in store.iter_entries()] == ["version 2"]
        await store.insert({"id": "x", "text": "ours"})  # our upsert replaces every copy
        assert [d["text"] for d in await asyncio.to_thread(w.raw, "x")] == ["ours"]
    finally:
        await store.cleanup()


async def test_collection_alias_names_the_chroma_collection(servers, original):
    mongo, chroma = servers
    target = f"renamed_{uuid.uuid4().hex[:6]}"
    w = original(chroma_collection=target)
    w.alias(target=target)
    w.insert({"id": "a", "text": "stored under the alias target", "createdAt": 5})
    store = await SemanticStore.create("memories", config=_config(mongo, chroma, original.agent))
    try:
        assert store.vector.collection == target
        assert (await store.get_most_relevant("stored under the alias target", 1))[0]["id"] == "a"
        await store.insert({"id": "b", "text": "ours goes there too"})
        assert (await asyncio.to_thread(w.chroma_record, "b"))["document"] == "ours goes there too"
    finally:
        await store.cleanup()


async def test_alias_embedder_of_another_model_is_refused(servers, original):
    mongo, chroma = servers
    w = original()
    w.alias(embed={"driver": "ollama", "fn": "nomic-embed-text", "dims": 768, "version": "1"})
    with pytest.raises(EmbeddingMismatchError) as info:
        await SemanticStore.create("memories", config=_config(mongo, chroma, original.agent))
    assert "nomic-embed-text" in str(info.value) and "hashing" in str(info.value)


async def test_vectors_of_another_dimension_are_refused(servers, original):
    mongo, chroma = servers
    w = original()
    w.vectors.add(ids=["v"], embeddings=[[0.1] * 768], documents=["from nomic-embed-text"])
    w.docs.insert_one({"id": "v", "text": "from nomic-embed-text", "createdAt": 1, "metadata": {}})
    with pytest.raises(EmbeddingMismatchError) as info:
        await SemanticStore.create("memories", config=_config(mongo, chroma, original.agent))
    assert "768" in str(info.value)


@pytest.mark.slow
async def test_chroma_server_stopped_mid_ingest_then_restarted(tmp_path, servers):
    """Eventual mode: the real Chroma process dies mid-ingest; every acknowledged entry is
    synced once it is back, with a clean report."""
    mongo, _ = servers
    root = tmp_path / "chroma"
    port = engines._free_port()
    url = engines.start_chroma(root, port)
    store = await SemanticStore.create(
        "outage",
        config=_config(
            mongo,
            url,
            f"c{uuid.uuid4().hex[:8]}",
            vector_timeout_ms=1500,
            vector_retry_delay_ms=200,
            vector_max_retries=50,
            chromadb={"url": url, "timeout": 2},
        ),
    )
    try:
        ids = await store.insert_many([{"text": f"before the crash {i}"} for i in range(100)])
        await asyncio.to_thread(engines.stop_chroma, root)
        during = []
        for chunk in range(5):
            during += await store.insert_many([{"text": f"while chroma is down {chunk}-{i}"} for i in range(40)])
        assert await store.count() == 300  # every write was acknowledged and kept
        await asyncio.to_thread(engines.start_chroma, root, port)
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["total_documents"] == 300
        assert report["inconsistent_documents"] == 0 and report["orphaned_vectors"] == 0, report
        assert await store.vector.count() == 300
        assert set(ids + during) == {e["id"] async for e in store.iter_entries()}
    finally:
        await store.cleanup()
        await asyncio.to_thread(engines.stop_chroma, root)


async def test_unreachable_servers_name_the_url_never_the_password(tmp_path):
    port = engines._free_port()  # nothing listens there
    config = {
        "primary_driver": "mongodb",
        "vector_driver": "memory",
        "embedding_driver": "hashing",
        "mongodb": {"uri": f"mongodb://duck:s3cret-pw@127.0.0.1:{port}/", "options": {"serverSelectionTimeoutMS": 300}},
    }
    with pytest.raises(BackendUnavailable) as info:
        await SemanticStore.create("t", config=config)
    assert f"127.0.0.1:{port}" in str(info.value) and "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(info.value)
    config = {
        "primary_driver": "memory",
        "vector_driver": "chromadb",
        "embedding_driver": "hashing",
        "chromadb": {"url": f"http://127.0.0.1:{port}", "timeout": 2},
    }
    with pytest.raises(BackendUnavailable) as info:
        await SemanticStore.create("t", config=config)
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.parametrize(
    "driver, key, module, extra",
    [("mongodb", "primary_driver", "pymongo", "mongodb"), ("chromadb", "vector_driver", "chromadb", "chroma")],
)
async def test_missing_client_names_the_extra(monkeypatch, tmp_path, driver, key, module, extra):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    config = {
        "primary_driver": "memory",
        "vector_driver": "memory",
        "embedding_driver": "hashing",
        "home": str(tmp_path),
        key: driver,
    }
    with pytest.raises(MissingDependencyError) as info:
        await SemanticStore.create("t", config=config)
    assert f"promethean-persistence[{extra}]" in str(info.value)


def test_cli_on_original_data_by_environment(servers, original, monkeypatch):
    """The seed's way of choosing drivers: environment variables only."""
    import json

    from click.testing import CliRunner

    from promethean_persistence.cli import cli

    mongo, chroma = servers
    w = original()
    w.insert({"id": "x", "text": "old copy", "createdAt": 1})
    w.insert({"id": "x", "text": "new copy", "createdAt": 2})
    for var, value in {
        "PRIMARY_DRIVER": "mongodb",
        "VECTOR_DRIVER": "chromadb",
        "EMBEDDING_DRIVER": "hashing",
        "MONGODB_URI": mongo,
        "CHROMA_URL": chroma,
        "AGENT_NAME": original.agent,
        "SEMANTIC_STORE_NAME": "memories",
    }.items():
        monkeypatch.setenv(var, value)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(run("--json", "get", "x"))["text"] == "new copy"
    preview = json.loads(run("--json", "repair", "--dry-run", "--dedupe"))
    assert preview["duplicates_removed"] == 1 and len(w.raw("x")) == 2
    repaired = json.loads(run("--json", "repair", "--dedupe"))
    assert repaired["duplicates_removed"] == 1 and repaired["requeued_ids"] == ["x"]
    assert [d["text"] for d in w.raw("x")] == ["new copy"]
    assert json.loads(run("--json", "report", "--all"))["inconsistent_documents"] == 0
    assert json.loads(run("--json", "search", "new copy", "-k", "1"))[0]["id"] == "x"
    assert "mongodb" in run("doctor")


async def test_transactional_writes_one_call_at_a_time(servers):
    """The suites run SecantusDB without transactions (it deadlocks under concurrent ones);
    here the transactional path runs, one call at a time."""
    from promethean_persistence._types import Record, VectorState
    from promethean_persistence.drivers.primary.mongodb import MongoPrimary

    mongo, _ = servers
    p = MongoPrimary(mongo, "semantic_store_tests", f"tx_{uuid.uuid4().hex[:8]}", transactions=True)
    await p.open()
    try:
        assert p._txn
        rec = Record(id="a", text="one", timestamp=1, content_hash="h1")
        assert await p.put([rec]) == [None]
        prev = await p.put(
            [Record(id="a", text="two", timestamp=2, content_hash="h2")],
            states=[VectorState("a", 1, "synced", 1, None, None, 5, 5, "m")],
        )
        assert prev[0].text == "one" and prev[0].vector_status == "synced"  # the state landed first
        [got] = await p.get(["a"])
        assert got.text == "two" and got.version == 2
        assert await p.delete(["a"], tombstone_at=10) == ["a"]
        assert [r.id for r in await p.claim(10, 10, 1000)] == ["a"]
    finally:
        await p.drop()
        await p.aclose()
