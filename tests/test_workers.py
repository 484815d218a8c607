"""Outbox workers: ``vector_writes="worker"`` writes stay in the outbox, ``run_worker`` and
``semantic-store worker`` drain them; workers share the work without embedding an item
twice, survive SIGKILL without losing anything and stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from promethean_persistence import ConfigurationError, EmbeddingError, SemanticStore, run_worker
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder
from promethean_persistence.testing.embedding_server import EmbeddingServer, hashing_encoder

from conftest import MONGO, PG, PRIMARY, base_config

MODEL = "stand-in"


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts: Counter[str] = Counter()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.update(texts)
        return await super().embed(texts)


class Recorder:
    """An encoder for the stand-in server: hashing vectors after a fixed ``delay`` per
    request, recording every text it was asked for (``seen``) as the request starts."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.seen: Counter[str] = Counter()
        self.started: list[list[str]] = []  #: the texts of each request, in arrival order
        self._lock = threading.Lock()
        self._encode = hashing_encoder(64)

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.seen.update(texts)
            self.started.append(list(texts))
        time.sleep(self.delay)
        return self._encode(texts)


@pytest.fixture
def server():
    recorder = Recorder()
    srv = EmbeddingServer({MODEL: recorder}).start()
    srv.recorder = recorder
    yield srv
    srv.stop()


def remote(server) -> dict:
    """Settings of an Ollama embedder on the stand-in server."""
    return {"embedding_driver": "ollama", "embedding_function": MODEL, "ollama": {"url": server.url, "dimensions": 64}}


VECTOR_OF = {"sqlite": "local", "postgresql": "pgvector", "mongodb": "local", "memory": "memory"}


# -- worker mode, in process -------------------------------------------------------------------


@pytest.mark.parametrize("primary", PRIMARY)
async def test_worker_mode_never_embeds_and_a_worker_drains_it(primary, tmp_path):
    cfg = base_config(tmp_path, primary, "memory", vector_writes="worker", vector_timeout_ms=200)
    embedder = CountingEmbedder()
    store = await SemanticStore.create("notes", config=cfg, embedder=embedder)
    try:
        await store.insert_many([{"id": f"n{i}", "text": f"note number {i}"} for i in range(40)])
        await store.insert({"id": "n1", "text": "note one, edited"})
        assert await store.delete("n2")
        await store.flush()  # waits (bounded) for workers; runs nothing here
        assert not embedder.texts, "a worker-mode store embedded for writing"
        assert not store._worker._task, "the background outbox worker runs in worker mode"
        assert (await store.get_outbox_stats())["pending"] == 39

        summary = await run_worker([store], once=True)
        assert summary["written"] == 39 and summary["failed"] == 0
        assert await store.vector_counts() == {"indexed": 39, "pending": 0, "failed": 0, "skipped": 0}
        assert set(embedder.texts.values()) == {1} and embedder.texts["note one, edited"] == 1
        hits = await store.get_most_relevant("note number 7", 1)
        assert hits[0]["id"] == "n7"
        assert (await store.get_outbox_stats())["pending"] == 0
    finally:
        await store.cleanup()


class WarmingEmbedder(CountingEmbedder):
    """A counting embedder with a model to load: its first ``warm`` fails, later ones log
    ``"warm"`` into ``events``."""

    capabilities = dataclasses.replace(CountingEmbedder.capabilities, warm=True)

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.fail = True

    async def warm(self) -> None:
        if self.fail:
            self.fail = False
            raise EmbeddingError("model not loaded yet", driver="hashing")
        self.events.append("warm")


def _spy(events: list[str], name: str, call):
    """``call``, logging ``name`` into ``events`` first."""

    def spied(*args, **kwargs):
        events.append(name)
        return call(*args, **kwargs)

    return spied


async def test_a_worker_warms_its_embedder_before_it_beats_or_claims(tmp_path, caplog):
    events: list[str] = []
    cfg = base_config(tmp_path, "memory", "memory", vector_writes="worker")
    store = await SemanticStore.create("warm", config=cfg, embedder=WarmingEmbedder(events))
    primary = store.primary
    for name in ("beat_worker", "claim"):
        setattr(primary, name, _spy(events, name, getattr(primary, name)))
    try:
        await store.insert_many([{"text": f"warm entry {i}"} for i in range(5)])
        summary = await run_worker([store], once=True)
        # the first warm failed: logged, and the batch's own warm loaded the model
        assert "warming the embedder of" in caplog.text
        assert summary["written"] == 5 and summary["failed"] == 0
        assert events.index("beat_worker") < events.index("claim") < events.index("warm")
        events.clear()
        await store.insert_many([{"text": f"warm entry {i}"} for i in range(5, 8)])
        assert (await run_worker([store], once=True))["written"] == 3
        assert events.index("warm") < events.index("beat_worker") < events.index("claim")
    finally:
        await store.cleanup()


class GatedEmbedder(CountingEmbedder):
    """A counting embedder whose first request waits for ``go``, announcing itself on ``started``."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.started.set()
        await self.go.wait()
        return await super().embed(texts)


async def test_after_a_partial_batch_a_worker_looks_again_at_once(tmp_path):
    cfg = base_config(tmp_path, "memory", "memory", vector_writes="worker")
    embedder = GatedEmbedder()
    store = await SemanticStore.create("trickle", config=cfg, embedder=embedder)
    await store.insert_many([{"text": f"early entry {i}"} for i in range(3)])  # a partial batch
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker([store], batch_size=8, poll_ms=60_000, stop=stop))
    try:
        await asyncio.wait_for(embedder.started.wait(), 10)
        await store.insert_many([{"text": f"later entry {i}"} for i in range(3)])  # written meanwhile
        embedder.go.set()
        deadline = time.monotonic() + 10  # far below the poll interval
        while (await store.vector_counts())["indexed"] < 6:
            assert time.monotonic() < deadline, "the worker slept a poll interval with work due"
            await asyncio.sleep(0.02)
        stop.set()
        assert (await asyncio.wait_for(worker, 10))["written"] == 6
        assert set(embedder.texts.values()) == {1}
    finally:
        stop.set()
        await asyncio.gather(worker, return_exceptions=True)
        await store.cleanup()


@pytest.mark.parametrize(
    "primary", ["sqlite", pytest.param("postgresql", marks=PG), pytest.param("mongodb", marks=MONGO)]
)
async def test_run_worker_by_name_and_every_store(primary, tmp_path):
    cfg = base_config(tmp_path, primary, VECTOR_OF[primary])
    writer = await SemanticStore.create("inbox", config={**cfg, "vector_writes": "worker"})
    other = await SemanticStore.create("archive", config={**cfg, "vector_writes": "worker"})
    try:
        await writer.insert_many([{"text": f"inbox entry {i}"} for i in range(30)])
        await other.insert_many([{"text": f"archived entry {i}"} for i in range(5)])
        summary = await run_worker(["inbox"], cfg, once=True, batch_size=8)
        assert summary["stores"] == ["inbox"] and summary["written"] == 30
        assert (await writer.vector_counts())["indexed"] == 30
        assert (await other.vector_counts())["pending"] == 5
        everything = await run_worker(None, cfg, once=True)
        assert set(everything["stores"]) == {"inbox", "archive"} and everything["written"] == 5
        assert (await other.vector_counts())["indexed"] == 5
        assert (await writer.get_most_relevant("inbox entry 3", 1))[0]["text"] == "inbox entry 3"
    finally:
        await writer.cleanup()
        await other.cleanup()


async def test_a_worker_of_every_store_finds_new_stores_and_stops_on_its_event(tmp_path, monkeypatch):
    from promethean_persistence import _workers

    monkeypatch.setattr(_workers, "RESCAN_MS", 200)
    cfg = base_config(tmp_path, "sqlite", "local")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(None, cfg, poll_ms=20, heartbeat_ms=100, stop=stop))
    await asyncio.sleep(0.3)  # no store yet: it waits for one
    assert not worker.done()
    store = await SemanticStore.create("late", config={**cfg, "vector_writes": "worker"})
    try:
        await store.insert_many([{"text": f"late entry {i}"} for i in range(12)])
        deadline = time.monotonic() + 20
        while (await store.vector_counts())["indexed"] < 12:
            assert time.monotonic() < deadline, "the worker never found the new store"
            await asyncio.sleep(0.05)
        stats = await store.get_outbox_stats()
        assert stats["workers"] == 1 and stats["worker_list"][0]["pid"] == os.getpid()
        stop.set()
        summary = await asyncio.wait_for(worker, 20)
        assert summary["stores"] == ["late"] and summary["written"] == 12
        assert (await store.get_outbox_stats())["workers"] == 0  # it removed its heartbeat
    finally:
        stop.set()
        await store.cleanup()


async def test_memory_stores_must_be_passed_open(tmp_path):
    cfg = base_config(tmp_path, "memory", "memory")
    with pytest.raises(ConfigurationError, match="memory"):
        await run_worker(["notes"], cfg, once=True)
    with pytest.raises(ConfigurationError, match="cannot list"):
        await run_worker(None, cfg, once=True)


@pytest.mark.parametrize(
    "primary", ["sqlite", pytest.param("postgresql", marks=PG), pytest.param("mongodb", marks=MONGO)]
)
async def test_two_workers_never_embed_the_same_item_twice(primary, tmp_path, server):
    server.recorder.delay = 0.01
    cfg = {**base_config(tmp_path, primary, VECTOR_OF[primary]), **remote(server)}
    writer = await SemanticStore.create("shared", config={**cfg, "vector_writes": "worker"})
    stop = asyncio.Event()
    workers = [asyncio.create_task(run_worker(["shared"], cfg, batch_size=8, poll_ms=20, stop=stop)) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while (await writer.get_outbox_stats())["workers"] < 2:  # both are up
            assert time.monotonic() < deadline and not any(w.done() for w in workers)
            await asyncio.sleep(0.05)
        texts = [f"shared entry {i}" for i in range(240)]
        await writer.insert_many([{"text": t} for t in texts])
        while (await writer.get_outbox_stats())["pending"]:
            assert time.monotonic() < deadline, "the workers did not drain the outbox"
            await asyncio.sleep(0.05)
        stop.set()
        a, b = await asyncio.gather(*workers)
        assert a["written"] > 0 and b["written"] > 0, (a, b)  # they shared the work
        assert a["written"] + b["written"] == 240
        assert set(server.recorder.seen) == set(texts)
        assert [t for t, n in server.recorder.seen.items() if n > 1] == []
        assert await writer.vector_counts() == {"indexed": 240, "pending": 0, "failed": 0, "skipped": 0}
        assert await writer.vector.count() == 240
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await writer.cleanup()


# -- worker processes ---------------------------------------------------------------------------


def _toml(path: Path, cfg: dict) -> Path:
    """``cfg`` (flat keys and one level of tables) as a TOML file."""
    lines, tables = [], []
    for key, value in cfg.items():
        (tables if isinstance(value, dict) else lines).append((key, value))
    out = [f"{k} = {json.dumps(v)}" for k, v in lines]
    for name, table in tables:
        out += [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(out) + "\n")
    return path


def _worker(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promethean_persistence.cli",
            "--config",
            str(config),
            "--store",
            "jobs",
            "worker",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def process_setup(tmp_path, server):
    """A SQLite store whose vectors the worker processes write through the stand-in server
    (0.4 s per request, 10 texts per claim, leases of 3 s, beats every 300 ms)."""
    server.recorder.delay = 0.4
    cfg = {
        **base_config(tmp_path, "sqlite", "local"),
        **remote(server),
        "vector_batch_size": 10,
        "vector_timeout_ms": 1000,
    }
    return cfg, _toml(tmp_path / "stores.toml", cfg)


async def test_sigkill_mid_batch_loses_nothing(process_setup, server):
    cfg, path = process_setup
    writer = await SemanticStore.create("jobs", config={**cfg, "vector_writes": "worker"})
    texts = [f"job entry {i}" for i in range(50)]
    try:
        await writer.insert_many([{"text": t} for t in texts])
        proc = _worker(path, "--heartbeat-ms", "300")
        try:
            await asyncio.to_thread(_wait, lambda: len(server.recorder.started) >= 2, 60, "the second batch")
            await asyncio.sleep(0.1)  # mid-request
            stats = await writer.get_outbox_stats()
            assert stats["workers"] == 1 and stats["worker_list"][0]["pid"] == proc.pid
        finally:
            proc.kill()
            proc.communicate(timeout=10)
        killed = set(server.recorder.started[-1])
        stats = await writer.get_outbox_stats()
        assert stats["in_progress"] >= 1, stats  # the dead worker's leases
        await asyncio.sleep(1.0)
        assert (await writer.get_outbox_stats())["workers"] == 0  # three beats missed: dead
        # its claims come back when their lease (3 s) ends; another worker takes them
        deadline = time.monotonic() + 15
        while (await writer.get_outbox_stats())["in_progress"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        server.recorder.delay = 0.01
        second = await asyncio.to_thread(_worker(path, "--once", "--json").communicate, timeout=120)
        assert json.loads(second[0])["failed"] == 0, second
        assert await writer.vector_counts() == {"indexed": 50, "pending": 0, "failed": 0, "skipped": 0}
        assert await writer.vector.count() == 50
        assert set(server.recorder.seen) == set(texts)
        twice = {t for t, n in server.recorder.seen.items() if n > 1}
        assert twice <= killed, "only the batch in hand when killed may be embedded again"
        hits = await writer.get_most_relevant("job entry 42", 1)
        assert hits[0]["text"] == "job entry 42"
    finally:
        await writer.cleanup()


async def test_sigterm_finishes_the_batch_in_hand_and_exits_0(process_setup, server):
    cfg, path = process_setup
    writer = await SemanticStore.create("jobs", config={**cfg, "vector_writes": "worker"})
    try:
        await writer.insert_many([{"id": f"j{i}", "text": f"job entry {i}"} for i in range(40)])
        proc = _worker(path)
        try:
            await asyncio.to_thread(_wait, lambda: len(server.recorder.started) >= 1, 60, "the first batch")
            in_hand = set(server.recorder.started[-1])
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        records = [r for r in await writer.primary.get([f"j{i}" for i in range(40)]) if r is not None]
        synced = {r.text for r in records if r.vector_status == "synced"}
        assert in_hand <= synced, "the batch in hand was not finished"
        stats = await writer.get_outbox_stats()
        assert stats["pending"] == 40 - len(synced) > 0  # it stopped instead of draining everything
        assert stats["in_progress"] == 0  # no lease left behind: claimable at once
        assert stats["workers"] == 0  # its heartbeat is gone
    finally:
        await writer.cleanup()


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_worker_stats_and_doctor(tmp_path):
    from promethean_persistence.cli import cli

    cfg = {**base_config(tmp_path, "sqlite", "local"), "vector_writes": "worker"}
    path = _toml(tmp_path / "stores.toml", cfg)
    runner = CliRunner()

    def sh(*args: str, code: int = 0):
        result = runner.invoke(cli, ["--config", str(path), "--store", "cli", *args])
        assert result.exit_code == code, result.output
        return result

    for i in range(3):
        sh("insert", f"cli entry {i}")
    stats = json.loads(sh("--json", "stats").stdout)
    assert stats["outbox"]["pending"] == 3 and stats["outbox"]["oldest_pending_ms"] >= 0
    assert stats["queue_length"] == 0  # this process's queue: the writes are not its
    assert "outbox (stored, every process):" in sh("stats").stdout
    time.sleep(1.1)
    doctor = sh("doctor", "--backlog-warn-s", "1").stdout
    assert "WARN outbox" in doctor and "semantic-store worker" in doctor
    assert "WARN" not in sh("doctor").stdout  # under the default 300 s
    summary = json.loads(sh("worker", "--once", "--json").stdout)
    assert summary["stores"] == ["cli"] and summary["written"] == 3
    stats = json.loads(sh("--json", "stats").stdout)
    assert stats["outbox"]["pending"] == 0 and stats["outbox"]["oldest_pending_ms"] is None
    # without --store: every store of the agent in the file
    assert runner.invoke(cli, ["--config", str(path), "--store", "other", "insert", "elsewhere"]).exit_code == 0
    result = runner.invoke(cli, ["--config", str(path), "worker", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stores"] == ["cli", "other"]
    assert json.loads(result.stdout)["written"] == 1


def test_env_selects_worker_mode(tmp_path, monkeypatch):
    cfg = base_config(tmp_path, "sqlite", "local")
    monkeypatch.setenv("VECTOR_WRITES", "worker")

    async def go() -> dict:
        store = await SemanticStore.create("env", config=cfg, embedder=CountingEmbedder())
        try:
            await store.insert({"text": "from the environment"})
            assert not store.embedder.texts
            return await store.get_outbox_stats()
        finally:
            await store.cleanup()

    stats = asyncio.run(go())
    assert stats["pending"] == 1 and stats["vector_writes"] == "worker"
    assert os.environ["VECTOR_WRITES"] == "worker"
