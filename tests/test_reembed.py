"""Re-embedding a collection side by side (SemanticStore.reembed, semantic-store reembed):
every store combination, searches during the run, writes during the run, resume."""

from __future__ import annotations

import asyncio
import json

import pytest

from promethean_persistence import EmbeddingMismatchError, SemanticStore
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

from conftest import base_config

TOPICS = ["cats purring on sofas", "stock markets falling", "sourdough bread baking", "rain over mountains"]


def entries(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"e{i:04d}", "text": f"{TOPICS[i % 4]} note {i}", "type": "note" if i % 3 else "todo"}
        for i in range(start, start + n)
    ]


class Gated(HashingEmbedder):
    """A hashing embedder that pauses at its ``pause_at``-th call until released, or fails there."""

    def __init__(self, dimensions: int, *, pause_at: int | None = None, fail_at: int | None = None) -> None:
        super().__init__(dimensions)
        self.calls = self.texts = 0
        self.pause_at, self.fail_at = pause_at, fail_at
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def embed(self, texts):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("embedding server crashed")
        if self.calls == self.pause_at:
            self.reached.set()
            await self.release.wait()
        self.texts += len(texts)
        return await super().embed(texts)


async def test_reembed_switches_every_store_combination(make_store):
    store = await make_store("re")
    await store.insert_many([{"text": e["text"], "id": e["id"], "metadata": {"type": e["type"]}} for e in entries(40)])
    await store.flush()
    old_vector, config = store.vector, store.config
    if config.vector_driver == "pinecone":  # an index has one dimension: refused before any work
        with pytest.raises(EmbeddingMismatchError, match="needs another index"):
            await store.reembed("hashing-v1-64")
        assert (await store.primary.get_manifest()).reembed is None
        assert (await store.get_consistency_report(None))["consistent_documents"] == 40
        return
    report = await store.reembed("hashing-v1-64", batch_size=16)
    assert report["status"] == "switched" and report["embedded"] == 40
    assert report["to"] == {"model": "hashing-v1-64", "dimensions": 64}
    assert store.embedder.model == "hashing-v1-64" and store.vector is not old_vector
    consistency = await store.get_consistency_report(None)
    assert consistency["consistent_documents"] == 40 and consistency["orphaned_vectors"] == 0
    hits = await store.get_most_relevant("markets falling", 5, where={"type": "note"})
    assert len(hits) == 5 and all("stock markets" in h["text"] for h in hits[:3])
    assert all(h["metadata"]["vectorStatus"] == "synced" for h in hits)
    manifest = await store.primary.get_manifest()
    assert (manifest.embedding_model, manifest.dimensions, manifest.reembed) == ("hashing-v1-64", 64, None)
    assert manifest.vector_collection == report["vector_collection"]
    await store.cleanup()
    if "memory" in (store.config.primary_driver, store.config.vector_driver) or config.qdrant.path == ":memory:":
        return  # its data lives in the driver object only

    with pytest.raises(EmbeddingMismatchError):
        await SemanticStore.create("re", config=config)  # the old model is refused now
    async with await SemanticStore.create(
        "re", config=config.model_copy(update={"embedding_function": "hashing-v1-64"})
    ) as reopened:
        assert (await reopened.get_consistency_report(None))["consistent_documents"] == 40
        assert (await reopened.get_most_relevant("bread baking", 1))[0]["text"].startswith("sourdough")
        assert (await reopened.reembed("hashing-v1-64"))["status"] == "unchanged"


async def test_searches_and_writes_go_on_during_the_run(tmp_path):
    config = base_config(tmp_path, "sqlite", "local")
    async with await SemanticStore.create("live", config=config) as store:
        await store.insert_many(entries(60))
        target = Gated(64, pause_at=3)
        run = asyncio.create_task(store.reembed(embedder=target, embedding_driver="hashing", batch_size=10))
        await target.reached.wait()
        # mid-run: the old space answers searches and takes writes, updates and deletes
        hits = await store.get_most_relevant("cats purring", 3)
        assert len(hits) == 3 and all(h["text"].startswith("cats") for h in hits)
        await store.insert_many(entries(5, start=100))
        await store.insert({"id": "e0001", "text": "volcanoes erupting at night"})
        await store.delete("e0002")
        target.release.set()
        report = await run
        # e0001 changed behind the cursor: caught up; the new ids sort after it: the main pass
        assert report["status"] == "switched" and report["caught_up"] == 1 and report["embedded"] == 65
        assert store.embedder is target
        consistency = await store.get_consistency_report(None)
        assert consistency["total_documents"] == 64
        assert consistency["consistent_documents"] == 64 and consistency["orphaned_vectors"] == 0
        [best] = await store.get_most_relevant("volcanoes erupting", 1)
        assert best["id"] == "e0001"
        assert {h["id"] for h in await store.get_most_relevant("note 102", 64)} >= {"e0102"}
        assert "e0002" not in await store.vector.existing(["e0002", "e0003"])


async def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    from promethean_persistence import _reembed

    # one machine, one clock: no margin for writers' clock skew, so the count below is exact
    monkeypatch.setattr(_reembed, "CLOCK_SKEW_MS", 0)
    config = base_config(tmp_path, "sqlite", "local")
    async with await SemanticStore.create("resume", config=config) as store:
        await store.insert_many(entries(50))
        await store.insert({"id": "e0003", "text": "changed before the run"})
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="crashed"):
            await store.reembed(embedder=Gated(64, fail_at=3), embedding_driver="hashing", batch_size=10)
        # the store still runs on the old space, and the checkpoint is in the manifest
        assert store.embedder.model == "hashing-v1-256"
        assert len(await store.get_most_relevant("bread", 3)) == 3
        checkpoint = (await store.primary.get_manifest()).reembed
        assert checkpoint["after"] == "e0019" and checkpoint["embedded"] == 20
        await store.insert({"id": "e0005", "text": "changed between the runs"})
    # a new process: reopen and run again
    async with await SemanticStore.create("resume", config=config) as store:
        target = Gated(64)
        report = await store.reembed(embedder=target, embedding_driver="hashing", batch_size=10)
        assert report["resumed"] is True and report["embedded"] == 50
        assert target.texts == 31  # what the first run had not done, and e0005
        consistency = await store.get_consistency_report(None)
        assert consistency["consistent_documents"] == 50
        assert (await store.get_most_relevant("sourdough bread baking note 2", 1))[0]["id"] == "e0002"
        assert (await store.get_most_relevant("changed between the runs", 1))[0]["id"] == "e0005"


def test_cli_reembed_moves_to_the_configured_model(sh, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    for e in entries(12):
        sh("insert", e["text"])
    monkeypatch.setenv("EMBEDDING_FUNCTION", "hashing-v1-32")
    # the configuration names the new model: opening is refused, reembed moves the data
    sh("count", code=1)
    result = json.loads(sh("--json", "reembed").output)
    assert result["from"]["model"] == "hashing-v1-256" and result["to"] == {"model": "hashing-v1-32", "dimensions": 32}
    assert int(sh("count").output.strip()) == 12
    assert "stock markets" in sh("search", "markets falling", "--limit", "1").output
    shown = sh("reembed", "--model", "hashing-v1-32").output
    assert "status: unchanged" in shown


KILLED_RUN = """
import asyncio, json, sys
from promethean_persistence import SemanticStore
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

class Slow(HashingEmbedder):
    async def embed(self, texts):
        await asyncio.sleep(0.05)
        return await super().embed(texts)

def progress(done, total):
    print(done, flush=True)

async def main():
    store = await SemanticStore.create("killed", config=json.load(open(sys.argv[1])))
    await store.reembed(embedder=Slow(64), embedding_driver="hashing", batch_size=10, progress=progress)

asyncio.run(main())
"""


async def test_a_killed_run_resumes_without_loss(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from promethean_persistence import StoreConfig

    config = StoreConfig(**base_config(tmp_path, "sqlite", "local"))
    async with await SemanticStore.create("killed", config=config) as store:
        await store.insert_many(entries(300))
    (tmp_path / "config.json").write_text(config.model_dump_json())
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path / "config.json")], stdout=subprocess.PIPE, text=True
    ) as child:
        for line in child.stdout:  # kill -9 mid-run, after a few checkpoints
            if int(line) >= 50:
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    async with await SemanticStore.create("killed", config=config) as store:
        assert store.embedder.model == "hashing-v1-256"  # never switched
        checkpoint = (await store.primary.get_manifest()).reembed
        assert 50 <= checkpoint["embedded"] < 300
        report = await store.reembed(embedder=HashingEmbedder(64), embedding_driver="hashing", batch_size=10)
        assert report["resumed"] is True and report["embedded"] == 300
        consistency = await store.get_consistency_report(None)
        assert consistency["consistent_documents"] == 300 and consistency["orphaned_vectors"] == 0
