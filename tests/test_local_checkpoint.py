"""When the local vector driver writes its HNSW checkpoint (only once enough changed: in the
background while writing, or on close), what a reopen replays from SQLite instead, recovery
from a SIGKILL, and float16 vector storage."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from promethean_persistence import StoreConfig
from promethean_persistence._errors import ConfigurationError, ValidationError
from promethean_persistence._filters import parse
from promethean_persistence.drivers.vector.local import LocalVector

DIMS = 32
CHECKPOINT = "promethean_persistence.drivers.vector.local._checkpoint"


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIMS))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def thresholds(monkeypatch, minimum: int, share: float = 0.0) -> None:
    monkeypatch.setattr(f"{CHECKPOINT}.CHECKPOINT_MIN", minimum)
    monkeypatch.setattr(f"{CHECKPOINT}.CHECKPOINT_SHARE", share)


async def opened(tmp_path, **kw) -> LocalVector:
    driver = LocalVector(str(tmp_path / "v.db"), "c", **{"exact_threshold": 0, "synchronous": "OFF", **kw})
    await driver.open()
    return driver


async def put(driver: LocalVector, x: np.ndarray, first: int = 0, batch: int = 250) -> list[str]:
    ids = [f"v{i}" for i in range(first, first + len(x))]
    for start in range(0, len(x), batch):
        chunk = slice(start, start + batch)
        await driver.upsert(ids[chunk], x[chunk], [{"n": int(i[1:])} for i in ids[chunk]])
    return ids


def files(tmp_path) -> tuple[str, tuple[int, int], list[str]]:
    """The sidecar's text, the graph file's (inode, mtime) and every graph file's name."""
    meta = (tmp_path / "v.db.c.json").read_text()
    graph = os.stat(tmp_path / json.loads(meta)["file"])
    return meta, (graph.st_ino, graph.st_mtime_ns), sorted(p.name for p in tmp_path.glob("*.hnsw"))


async def test_close_after_a_few_changes_leaves_the_checkpoint_and_reopen_replays_them(tmp_path, monkeypatch):
    thresholds(monkeypatch, 1)  # the first close writes one
    x = unit(3000, 1)
    driver = await opened(tmp_path)
    ids = await put(driver, x)
    await driver.wait_indexed()
    await driver.aclose()
    before = files(tmp_path)
    assert json.loads(before[0])["labels"] == 3000

    thresholds(monkeypatch, 500)
    driver = await opened(tmp_path)
    late = unit(40, 2)
    await put(driver, late, first=3000)
    await driver.delete(["v5", "v6"])
    await driver.upsert(["v7"], late[:1] * -1, [{"n": 7}])  # a new vector for an old id
    await driver.wait_indexed()
    assert not driver._delta and driver._unsaved == 41 + 3  # labels indexed (v7 anew) and deleted (v5, v6, v7)
    await driver.aclose()
    assert files(tmp_path) == before  # not rewritten

    reopened = await opened(tmp_path)
    assert len(reopened._delta) == 41  # the tail, replayed from SQLite
    assert await reopened.count() == 3000 + 40 - 2
    assert await reopened.existing(ids[:10] + ["v3039"]) == set(ids[:10]) - {"v5", "v6"} | {"v3039"}
    for k in (0, 17, 39):
        assert (await reopened.query(late[k], 1))[0].id == f"v{3000 + k}"
    assert [h.id for h in await reopened.query(-late[0], 1)] == ["v7"]
    assert (await reopened.query(x[1234], 1))[0].id == "v1234"
    await reopened.wait_indexed()
    assert not reopened._delta
    await reopened.aclose()


async def test_a_checkpoint_is_written_in_the_background_once_the_changes_pass_the_threshold(tmp_path, monkeypatch):
    thresholds(monkeypatch, 1000)
    driver = await opened(tmp_path)
    await put(driver, unit(600, 3))
    await driver.wait_indexed()
    assert not (tmp_path / "v.db.c.json").exists()  # 600 changes: none yet
    await put(driver, unit(900, 4), first=600)
    await driver.wait_indexed()
    meta = json.loads((tmp_path / "v.db.c.json").read_text())  # written while the store stays open
    assert meta["labels"] >= 1000 and meta["seq"] == driver._checkpoint_seq
    assert driver._unsaved == 1500 - meta["labels"] < 1000
    await driver.aclose()
    assert json.loads((tmp_path / "v.db.c.json").read_text()) == meta  # the rest is a short tail
    reopened = await opened(tmp_path)
    assert await reopened.count() == 1500 and len(reopened._delta) == 1500 - meta["labels"]
    await reopened.aclose()


async def test_a_close_after_a_long_tail_saves_what_it_indexed(tmp_path, monkeypatch):
    """Sessions too short to index everything they replay still make progress: at close the
    tail (changes in the graph and the delta) decides."""
    thresholds(monkeypatch, 400)
    monkeypatch.setattr("promethean_persistence.drivers.vector.local._indexing.INDEX_CHUNK", 300)
    driver = await opened(tmp_path, exact_threshold=5000)  # no background indexing
    await put(driver, unit(1000, 5))
    assert driver._unsaved == 0
    await driver._db.run(driver._index_step)  # one step: fewer than 400 labels
    assert 0 < driver._unsaved < 400 < driver._unsaved + len(driver._delta)
    await driver.aclose()
    meta = json.loads((tmp_path / "v.db.c.json").read_text())
    assert meta["labels"] == 1000 - len(driver._delta)


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from promethean_persistence.drivers.vector.local import LocalVector, _checkpoint

    _checkpoint.CHECKPOINT_MIN, _checkpoint.CHECKPOINT_SHARE = 1000, 0.0

    async def main():
        d = LocalVector(sys.argv[1], "c", exact_threshold=0)
        await d.open()
        rng = np.random.default_rng(1)
        i = 0
        while True:
            x = rng.normal(size=(100, 32)).astype(np.float32)
            await d.upsert([f"k{i + j}" for j in range(100)], x, [{}] * 100)
            i += 100
            print(i, d._checkpoint_seq, flush=True)

    asyncio.run(main())
    """
)


async def test_after_a_sigkill_the_store_answers_from_the_last_checkpoint_and_catches_up(tmp_path):
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "v.db")], stdout=subprocess.PIPE, text=True
    ) as proc:
        acknowledged = checkpoints = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            acknowledged, seq = (int(v) for v in line.split())
            checkpoints += seq != -1
            if checkpoints and acknowledged >= 4000:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    meta = json.loads((tmp_path / "v.db.c.json").read_text())
    reopened = await opened(tmp_path)
    assert reopened._graph is not None and reopened._checkpoint_seq == meta["seq"]  # loaded, not rebuilt
    assert 0 < len(reopened._delta) < acknowledged  # only the tail replayed
    ids = [f"k{i}" for i in range(acknowledged)]
    assert await reopened.existing(ids) == set(ids)
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(100, 32)).astype(np.float32) for _ in range(acknowledged // 100)]
    for i in (7, acknowledged // 2 + 3, acknowledged - 1):
        assert (await reopened.query(batches[i // 100][i % 100], 1))[0].id == f"k{i}"
    await reopened.wait_indexed()
    assert not reopened._delta and reopened._graph.element_count >= acknowledged
    assert (await reopened.query(batches[-1][99], 1))[0].id == f"k{acknowledged - 1}"
    await reopened.aclose()


def blob_sizes(tmp_path) -> dict[str, int]:
    with sqlite3.connect(tmp_path / "v.db") as conn:
        return dict(conn.execute('SELECT id, length(vector) FROM "c__vectors"').fetchall())


async def test_float16_vectors_take_half_the_bytes_and_read_back_close(tmp_path):
    x = unit(300, 6)
    driver = await opened(tmp_path, vector_dtype="float16")
    ids = await put(driver, x)
    stored = await driver.fetch(ids)
    assert all(v.dtype == np.float32 for v in stored.values())
    np.testing.assert_allclose(np.stack([stored[i] for i in ids]), x, atol=1e-3)
    assert set(blob_sizes(tmp_path).values()) == {2 * DIMS + 1}
    before = await driver.query(x[42], 3)
    assert before[0].id == "v42"
    await driver.aclose()
    reopened = await opened(tmp_path, vector_dtype="float16")
    assert len(reopened._delta) == 300  # read back from the float16 rows
    assert await reopened.query(x[42], 3) == before  # the writer searched the stored (rounded) vectors too
    await reopened.aclose()


@pytest.mark.parametrize("first, then", [("float32", "float16"), ("float16", "float32")])
async def test_rows_of_either_dtype_read_back_whatever_the_setting(tmp_path, first, then, monkeypatch):
    thresholds(monkeypatch, 1)
    x = unit(800, 7)
    driver = await opened(tmp_path, vector_dtype=first)
    await put(driver, x[:400])
    await driver.wait_indexed()
    await driver.aclose()
    driver = await opened(tmp_path, vector_dtype=then)
    await put(driver, x[400:], first=400)
    await driver.aclose()
    assert sorted(set(blob_sizes(tmp_path).values())) == [2 * DIMS + 1, 4 * DIMS]

    for dtype in (first, then):
        driver = await opened(tmp_path, vector_dtype=dtype)
        assert await driver.count() == 800
        stored = await driver.fetch([f"v{i}" for i in range(800)])
        np.testing.assert_allclose(np.stack([stored[f"v{i}"] for i in range(800)]), x, atol=1e-3)
        for k in (3, 399, 400, 799):
            assert (await driver.query(x[k], 1))[0].id == f"v{k}"
            mixed = parse({"n": {"$in": [3, 399, 400, 799]}})  # exact search over rows of both kinds
            assert (await driver.query(x[k], 1, mixed))[0].id == f"v{k}"
        await driver.aclose()


def test_a_bad_vector_dtype_is_rejected_naming_the_choices(tmp_path):
    with pytest.raises(ValidationError, match="float32, float16") as info:
        LocalVector(str(tmp_path / "v.db"), "c", vector_dtype="int8")
    assert info.value.field == "vector_dtype"
    with pytest.raises(ConfigurationError, match="vector_dtype") as config_info:
        StoreConfig(vector_dtype="half")
    assert "float32" in str(config_info.value) and "float16" in str(config_info.value)


def test_vector_dtype_reaches_the_local_driver(tmp_path):
    config = StoreConfig.resolve(None, env={"VECTOR_DTYPE": "Float16", "SEMANTIC_STORE_HOME": str(tmp_path)})
    assert config.vector_dtype == "float16"
    assert LocalVector.from_config(config, "c").vector_dtype == "float16"
    assert LocalVector.from_config(StoreConfig(home=str(tmp_path)), "c").vector_dtype == "float32"


def test_a_writing_child_that_hangs_is_killed():
    # a save must never hold a close forever
    import os
    import time

    from promethean_persistence.drivers.vector.local._checkpoint import _exited_ok

    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    began = time.monotonic()
    assert _exited_ok(pid, limit_s=0.2) is False
    assert time.monotonic() - began < 5
    try:
        os.kill(pid, 0)
        raise AssertionError("the child still runs")
    except ProcessLookupError:
        pass
    quick = os.fork()
    if quick == 0:
        os._exit(0)
    assert _exited_ok(quick) is True
