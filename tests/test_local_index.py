"""The local vector driver's HNSW accelerator: recall against exact search, filters,
and recovery from a crash, a stale, a missing or a corrupt index file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from promethean_persistence._filters import parse
from promethean_persistence.drivers.vector.local import LocalVector

DIMS = 32
CHECKPOINT = "promethean_persistence.drivers.vector.local._checkpoint"


@pytest.fixture
def every_close_checkpoints(monkeypatch):
    """A checkpoint on every close after a change: these tests are about loading one."""
    monkeypatch.setattr(f"{CHECKPOINT}.CHECKPOINT_MIN", 1)
    monkeypatch.setattr(f"{CHECKPOINT}.CHECKPOINT_SHARE", 0.0)


def low_rank(n: int, seed: int = 0, rank: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, DIMS)) + 0.05 * rng.normal(size=(n, DIMS))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int, mask=None) -> list[int]:
    scores = x @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return [int(i) for i in np.argsort(-scores)[:k] if np.isfinite(scores[i])]


async def open_local(tmp_path, **kw) -> LocalVector:
    driver = LocalVector(str(tmp_path / "v.db"), "c", exact_threshold=0, synchronous="OFF", **kw)
    await driver.open()
    return driver


async def fill(driver, x: np.ndarray) -> list[str]:
    ids = [f"v{i}" for i in range(len(x))]
    for start in range(0, len(x), 500):
        chunk = slice(start, start + 500)
        await driver.upsert(
            ids[chunk], x[chunk], [{"n": i, "even": i % 2 == 0} for i in range(start, min(start + 500, len(x)))]
        )
    return ids


async def test_graph_recall_and_filters(tmp_path):
    x = low_rank(4000)
    driver = await open_local(tmp_path)
    ids = await fill(driver, x)
    await driver.wait_indexed()
    assert not driver._delta and driver._graph is not None  # answered by the graph
    queries = low_rank(50, seed=9)
    recall = np.mean(
        [len({h.id for h in await driver.query(q, 10)} & {ids[i] for i in exact_top(x, q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95
    broad = parse({"even": True})
    mask = np.arange(len(x)) % 2 == 0
    hits = await driver.query(queries[0], 10, broad)
    assert len(hits) == 10 and all(int(h.id[1:]) % 2 == 0 for h in hits)
    selective = parse({"n": {"$in": [5, 77, 3999]}})
    hits = await driver.query(queries[0], 10, selective)
    assert sorted(h.id for h in hits) == ["v3999", "v5", "v77"]
    assert (
        len(
            {h.id for h in await driver.query(queries[1], 10, broad)}
            & {ids[i] for i in exact_top(x, queries[1], 10, mask)}
        )
        >= 9
    )
    # changes after indexing are visible at once
    await driver.delete(["v1", "v2"])
    await driver.upsert(["v3"], [queries[2]], [{"n": 3}])
    top = await driver.query(queries[2], 3)
    assert top[0].id == "v3" and top[0].score == pytest.approx(1.0, abs=1e-4)
    assert await driver.existing(["v1", "v2", "v3"]) == {"v3"}
    assert await driver.count() == 3998
    await driver.aclose()


async def test_checkpoint_is_reused_and_changes_replayed(tmp_path, every_close_checkpoints):
    x = low_rank(3000)
    driver = await open_local(tmp_path)
    await fill(driver, x)
    await driver.wait_indexed()
    await driver.aclose()  # writes the checkpoint
    meta = json.loads((tmp_path / "v.db.c.json").read_text())
    assert meta["labels"] == 3000

    other = await open_local(tmp_path)  # another writer after the checkpoint, which then dies
    await other.delete(["v0"])
    await other.upsert(["late"], [x[10]], [{}])
    if other._indexing is not None:  # it dies: its background indexing stops with it
        other._indexing.cancel()
    await other._db.close()  # no new checkpoint
    assert json.loads((tmp_path / "v.db.c.json").read_text()) == meta

    reopened = await open_local(tmp_path)
    assert reopened._graph is not None and set(reopened._delta) == {reopened._labels["late"]}
    assert await reopened.count() == 3000
    top = await reopened.query(x[10], 2)
    assert {h.id for h in top} == {"late", "v10"}
    assert await reopened.existing(["v0"]) == set()
    await reopened.aclose()


@pytest.mark.parametrize("damage", ["corrupt", "missing", "stale-meta", "ids-corrupt", "ids-missing"])
async def test_bad_index_files_are_rebuilt_from_sqlite(tmp_path, damage, every_close_checkpoints):
    x = low_rank(2500)
    driver = await open_local(tmp_path)
    ids = await fill(driver, x)
    await driver.wait_indexed()
    await driver.aclose()
    meta_path = tmp_path / "v.db.c.json"
    meta = json.loads(meta_path.read_text())
    index_file = tmp_path / meta["file"]
    if damage == "corrupt":
        index_file.write_bytes(b"\x00garbage" * 100)
    elif damage == "ids-corrupt":  # the graph is used, the ids read from SQLite
        (tmp_path / meta["ids"]).write_text('{"labels": [1, 2], "ids": ["a", "b"]}')
    elif damage == "ids-missing":
        (tmp_path / meta["ids"]).unlink()
    elif damage == "missing":
        index_file.unlink()
    else:
        meta["labels"] = 17
        meta_path.write_text(json.dumps(meta))
    reopened = await open_local(tmp_path)
    if damage.startswith("ids"):
        assert reopened._graph is not None and not reopened._delta
    assert await reopened.count() == 2500
    q = x[1234]
    assert (await reopened.query(q, 1))[0].id == ids[1234]
    await reopened.wait_indexed()
    assert (await reopened.query(q, 1))[0].id == ids[1234]
    await reopened.aclose()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from promethean_persistence.drivers.vector.local import LocalVector

    async def main():
        d = LocalVector(sys.argv[1], "c", exact_threshold=0)
        await d.open()
        rng = np.random.default_rng(1)
        i = 0
        while True:
            x = rng.normal(size=(50, 32)).astype(np.float32)
            ids = [f"k{i + j}" for j in range(50)]
            await d.upsert(ids, x, [{}] * 50)
            i += 50
            print(i, flush=True)

    asyncio.run(main())
    """
)


async def test_kill_during_ingest_loses_no_acknowledged_vector(tmp_path):
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "v.db")], stdout=subprocess.PIPE, text=True
    ) as proc:
        acknowledged = 0
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 3000:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    reopened = await open_local(tmp_path)
    ids = [f"k{i}" for i in range(acknowledged)]
    assert await reopened.existing(ids) == set(ids)
    rng = np.random.default_rng(1)
    first = rng.normal(size=(50, 32)).astype(np.float32)
    assert (await reopened.query(first[7], 1))[0].id == "k7"
    await reopened.aclose()


def unit(rng, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIMS))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("saved_ids", [True, False], ids=["saved-ids", "ids-from-sqlite"])
async def test_reopening_reuses_the_checkpoint(tmp_path, monkeypatch, caplog, saved_ids):
    """Ten opens and closes above the threshold, with writes (new vectors, replaced vectors,
    metadata-only updates, deletes, another writer that dies) between some of them: every
    reopen loads the checkpoint, none rebuilds. Small index steps make a close land while
    the graph holds only part of the latest writes; a checkpoint threshold of 150 changes
    makes some closes write none, so later opens replay several sessions' tails. The ids of
    the graph's labels come from the checkpoint or, as for older checkpoints, from SQLite."""
    if not saved_ids:
        monkeypatch.setattr(f"{CHECKPOINT}._saved_ids", lambda folder, meta: None)
    monkeypatch.setattr("promethean_persistence.drivers.vector.local._indexing.INDEX_CHUNK", 40)
    monkeypatch.setattr(f"{CHECKPOINT}.CHECKPOINT_MIN", 150)
    saves = []
    monkeypatch.setattr(f"{CHECKPOINT}._write_files", _counting(saves))
    caplog.set_level("WARNING", logger="promethean_persistence.local")
    rng = np.random.default_rng(3)
    truth: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    path = str(tmp_path / "v.db")

    async def opened() -> LocalVector:
        driver = LocalVector(path, "c", exact_threshold=50, synchronous="OFF")
        await driver.open()
        graph = driver._graph
        if graph is not None:  # each label once in the graph, and never both there and in the delta
            labels = set(graph.get_ids_list())
            assert len(labels) == graph.element_count
            assert not labels & set(driver._delta)
        return driver

    async def upsert(driver, ids, vectors=None, metas=None):
        metas = metas or [{"n": int(i[1:]), "round": r} for i in ids]
        await driver.upsert(ids, vectors, metas)
        meta.update(zip(ids, metas))
        if vectors is not None:
            truth.update(zip(ids, vectors))

    n = 0
    for r in range(10):
        driver = await opened()
        if r % 3 != 2:
            new = [f"v{n + i}" for i in range(130)]
            n += len(new)
            await upsert(driver, new[:70], unit(rng, 70))
            if r:
                await upsert(driver, sorted(rng.choice(sorted(truth), 25, replace=False)), unit(rng, 25))
                await upsert(driver, sorted(rng.choice(sorted(truth), 15, replace=False)))  # metadata only
                gone = sorted(rng.choice(sorted(truth), 8, replace=False))
                await driver.delete(gone)
                for i in gone:
                    del truth[i], meta[i]
            await upsert(driver, new[70:], unit(rng, 60))
        elif r == 5:  # another writer after the checkpoint, which dies without writing one
            other = await opened()
            await upsert(other, sorted(rng.choice(sorted(truth), 15, replace=False)))
            await upsert(other, sorted(rng.choice(sorted(truth), 5, replace=False)), unit(rng, 5))
            if other._indexing is not None:
                other._indexing.cancel()
            await other._db.close()
        await driver.aclose()

    rebuilds = [rec.getMessage() for rec in caplog.records if "ignoring the HNSW checkpoint" in rec.getMessage()]
    assert rebuilds == []
    assert 2 <= len(saves) < 10  # some closes wrote a checkpoint, some left the tail to the next open
    driver = await opened()
    assert driver._graph is not None
    await driver.wait_indexed()
    assert not driver._delta
    assert await driver.count() == len(truth)
    ids = sorted(truth)
    assert await driver.existing([f"v{i}" for i in range(n)]) == set(ids)
    x = np.stack([truth[i] for i in ids])
    for k in rng.choice(len(ids), 40, replace=False):
        hits = await driver.query(x[k], 5)
        assert hits[0].id == ids[k] and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.id for h in hits] == [ids[i] for i in exact_top(x, x[k], 5)]
    some = ids[:: max(1, len(ids) // 20)]
    stored = await driver._db.run(
        lambda: dict(driver._db.conn.execute(f"SELECT id, metadata FROM {driver._table}").fetchall())
    )
    assert {i: json.loads(stored[i]) for i in some} == {i: meta[i] for i in some}
    await driver.aclose()


def _counting(saves: list):
    from promethean_persistence.drivers.vector.local import _checkpoint

    write = _checkpoint._write_files

    def counted(graph, ids, path):
        saves.append(path)
        return write(graph, ids, path)

    return counted
