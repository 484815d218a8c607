"""The read path of issue 22: unfiltered local searches answered on the caller's thread (and
only when memory matches the database), SQLite ``get`` of a few ids read there too, HNSW
``ef_search`` chosen from the limit and the collection's size, and pgvector searches as one
statement with iterative scans, exact on small tables."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from promethean_persistence import SemanticStore, StoreConfig
from promethean_persistence._filters import parse
from promethean_persistence._types import Record
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.drivers.vector._ef import MAX_EF, auto_ef, ef_for
from promethean_persistence.drivers.vector.local import LocalVector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from embedded import low_rank  # noqa: E402  the hard synthetic set of the benchmark


def unit(rows: int, dims: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dims)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_ef_grows_with_the_collection_and_the_limit():
    assert auto_ef(10, 1_000) < auto_ef(10, 10_000) < auto_ef(10, 100_000) < auto_ef(10, 1_000_000)
    assert auto_ef(100, 100_000) > auto_ef(10, 100_000)
    assert auto_ef(10, 100_000) >= 200  # 128 found 0.95 of the true top 10 there (issue 22)
    assert auto_ef(10, 10**12) == MAX_EF and auto_ef(5000, 10) == 5000  # never below the limit
    assert ef_for(40, 10, 10**6) == 40 and ef_for(40, 100, 10) == 100  # a configured value wins


async def test_local_default_ef_keeps_recall_on_the_hard_set(tmp_path):
    """recall@10 >= 0.98 through the graph with the defaults, on vectors where ef 40 does not reach it."""
    x, queries = low_rank(12_000, seed=1), low_rank(100, seed=2)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    driver = LocalVector(str(tmp_path / "v.db"), "hard", synchronous="OFF", exact_threshold=0)
    await driver.open()
    try:
        await driver.upsert([str(i) for i in range(len(x))], x, [{}] * len(x))
        await driver.wait_indexed()
        assert not driver._delta and driver._graph is not None

        async def recall() -> float:
            hits = [[int(h.id) for h in await driver.query(q, 10)] for q in queries]
            return float(np.mean([len(set(h) & set(t.tolist())) / 10 for h, t in zip(hits, exact)]))

        assert await recall() >= 0.98
        driver.ef_search = 20  # a fixed, too small setting is used as given: the rule is what keeps recall
        assert await recall() < 0.98
    finally:
        await driver.aclose()


async def test_local_search_here_sees_writes_of_another_process(tmp_path):
    path = str(tmp_path / "v.db")
    a = LocalVector(path, "c", synchronous="OFF", exact_threshold=0)
    b = LocalVector(path, "c", synchronous="OFF", exact_threshold=0)
    await a.open()
    await b.open()
    try:
        x = unit(300)
        await a.upsert([f"a{i}" for i in range(300)], x, [{}] * 300)
        await a.wait_indexed()
        assert a._search_here(x[0], 5) is not None  # settled: answered here
        await b.upsert(["new"], x[7:8], [{}])  # the same vector as a7, another id
        assert a._search_here(x[7], 5) is None  # memory is behind the file: the thread replays
        assert {h.id for h in await a.query(x[7], 2)} == {"a7", "new"}
        assert a._search_here(x[7], 2) is not None  # caught up
        await b.delete(["new", "a7"])
        assert "a7" not in {h.id for h in await a.query(x[7], 5)}
        assert "new" not in {h.id for h in await a.query(x[7], 5)}
    finally:
        await a.aclose()
        await b.aclose()


async def test_local_search_waits_for_work_on_the_connection_thread(tmp_path):
    driver = LocalVector(str(tmp_path / "v.db"), "c", synchronous="OFF", exact_threshold=0)
    await driver.open()
    try:
        x = unit(400)
        await driver.upsert([str(i) for i in range(200)], x[:200], [{}] * 200)
        await driver.wait_indexed()
        release = asyncio.Event()
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def hold() -> None:  # a job holding the connection's thread
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()

        job = asyncio.ensure_future(driver._db.run(hold))
        await started.wait()
        assert not driver._db.idle and driver._search_here(x[0], 3) is None
        release.set()
        await job
        assert driver._db.idle and [h.id for h in driver._search_here(x[0], 1)] == ["0"]
        # searches and writes at once: every search sees a settled state, none fails
        writes = [driver.upsert([str(i)], x[i : i + 1], [{}]) for i in range(200, 400)]
        reads = [driver.query(x[i], 1) for i in range(0, 200, 5)]
        results = await asyncio.gather(*writes, *reads)
        assert [r[0].id for r in results[200:]] == [str(i) for i in range(0, 200, 5)]
        assert [h.id for h in await driver.query(x[399], 1)] == ["399"]
    finally:
        await driver.aclose()


async def test_sqlite_get_reads_here_and_sees_every_commit(tmp_path):
    path = str(tmp_path / "p.db")
    primary = SQLitePrimary(path, "c", synchronous="OFF")
    other = SQLitePrimary(path, "c", synchronous="OFF")
    await primary.open()
    await other.open()
    try:
        await primary.put([Record(id="a", text="one", timestamp=1, metadata={"k": [1, {"x": None}]})])
        calls = 0
        read_here = primary._db.read_here

        def counted(fn):
            nonlocal calls
            calls += 1
            return read_here(fn)

        primary._db.read_here = counted
        (got,) = await primary.get(["a"])
        assert calls == 1 and got is not None and got.metadata == {"k": [1, {"x": None}]}
        await other.put([Record(id="b", text="two", timestamp=2, expires_at=10**13)])
        assert [r and r.text for r in await primary.get(["b", "a", "zz"])] == ["two", "one", None]
        await other.put([Record(id="b", text="gone", timestamp=2, expires_at=1)])  # expired: invisible
        assert await primary.get(["b"]) == [None]
        many = [f"m{i}" for i in range(100)]
        await primary.get(many)  # more than a few ids: through the connection's thread
        assert calls == 3
    finally:
        await primary.aclose()
        await other.aclose()


async def test_search_results_do_not_change(tmp_path):
    """The same hits and dicts as the thread path gives (ids, scores, entries)."""
    store = await SemanticStore.create(
        "same", config={"home": str(tmp_path), "embedding_driver": "hashing", "local": {"exact_threshold": 0}}
    )
    try:
        await store.insert_many(
            [{"id": f"e{i}", "text": f"entry {i} about {i % 7}", "metadata": {"n": i}} for i in range(300)]
        )
        await store.flush()
        await store.vector.wait_indexed()
        here = await store.get_most_relevant("entry about 3", 10)
        store.vector._search_here = lambda q, k: None  # force the thread
        there = await store.get_most_relevant("entry about 3", 10)
        assert here == there and len(here) == 10 and here[0]["metadata"]["vectorStatus"] == "synced"
    finally:
        await store.close()


# -- pgvector ---------------------------------------------------------------------------------


@pytest.fixture
def pg_dsn():
    from conftest import require_postgres

    return require_postgres()


async def _pgvector(dsn: str, **kwargs):
    from promethean_persistence.drivers.vector.pgvector import PgvectorVector

    driver = PgvectorVector(dsn, "test", [], f"rp_{uuid.uuid4().hex[:8]}", **kwargs)
    await driver.open()
    return driver


async def _drop_table(driver) -> None:
    async with driver._pool.connection() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {driver._t}")


@pytest.mark.postgres
async def test_pgvector_small_filtered_tables_return_every_match(pg_dsn):
    """HNSW on near-duplicate vectors can leave a row unreachable; small tables are exact."""
    from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

    embedder = HashingEmbedder(384)
    texts = [f"apple banana cherry {i}" for i in range(60)]
    vectors = await embedder.embed(texts)
    query = (await embedder.embed(["apple banana cherry"]))[0]
    for _ in range(4):  # a fresh graph each time: which row is lost was a matter of chance
        driver = await _pgvector(pg_dsn)
        try:
            await driver.upsert([f"n{i}" for i in range(60)], vectors, [{"rare": i >= 57} for i in range(60)])
            hits = await driver.query(query, 3, parse({"rare": True}))
            assert sorted(h.id for h in hits) == ["n57", "n58", "n59"]
            assert len(await driver.query(query, 60)) == 60
        finally:
            await _drop_table(driver)
            await driver.aclose()


@pytest.mark.postgres
async def test_pgvector_settings_stay_on_the_connection(pg_dsn):
    from promethean_persistence.drivers.vector import pgvector

    driver = await _pgvector(pg_dsn)
    try:
        assert driver._iterative == "relaxed_order"  # pgvector 0.8+ here
        x = unit(50)
        await driver.upsert([str(i) for i in range(50)], x, [{"i": i} for i in range(50)])
        hits = await driver.query(x[3], 5)
        assert hits[0].id == "3" and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        filtered = await driver.query(x[3], 5, parse({"i": {"$gte": 40}}))
        assert {h.id for h in filtered} <= {str(i) for i in range(40, 50)} and len(filtered) == 5
        async with driver._pool.connection() as conn:
            settings = pgvector._SESSIONS.get(conn)
            if settings is not None:  # the connection the searches ran on
                shown = await (await conn.execute("SELECT current_setting('hnsw.ef_search')")).fetchone()
                assert int(shown[0]) == settings[0] == auto_ef(5, 50)
                mode = await (await conn.execute("SELECT current_setting('hnsw.iterative_scan')")).fetchone()
                assert mode[0] == "relaxed_order"
        assert any(v == (auto_ef(5, 50), "relaxed_order") for v in pgvector._SESSIONS.values())
    finally:
        await _drop_table(driver)
        await driver.aclose()


@pytest.mark.postgres
async def test_pgvector_configured_ef_search_is_used(pg_dsn):
    from promethean_persistence.drivers.vector import pgvector

    driver = await _pgvector(pg_dsn, ef_search=77)
    try:
        x = unit(20)
        await driver.upsert([str(i) for i in range(20)], x, [{}] * 20)
        assert [h.id for h in await driver.query(x[1], 1)] == ["1"]
        assert (77, "relaxed_order") in set(pgvector._SESSIONS.values())
    finally:
        await _drop_table(driver)
        await driver.aclose()


def test_config_ef_search_defaults_to_the_rule():
    config = StoreConfig()
    assert config.local.hnsw.ef_search is None and config.pgvector.hnsw.ef_search is None
    assert StoreConfig(local={"hnsw": {"ef_search": 64}}).local.hnsw.ef_search == 64


@pytest.mark.postgres
def test_pgvector_benchmark_smoke(pg_dsn):
    from test_bench_smoke import assert_ratios, run_bench

    result = run_bench("pgvector.py", "--n", "1200", "--queries", "20", "--rounds", "3", "--dsn", pg_dsn)
    assert result["benchmark"] == "pgvector" and result["n"] == 1200
    assert 0 < result["recall_at_10"] <= 1 and 0 < result["raw_recall_at_10"] <= 1
    spreads = {
        f"result.{k}.{s}"
        for k in ("search_by_vector_ratio", "get_most_relevant_ratio")
        for s in ("min", "median", "max")
    }
    assert_ratios(result, spreads)
    for key in ("search_by_vector_ratio", "get_most_relevant_ratio"):
        r = result[key]
        assert r["min"] <= r["median"] <= r["max"]


async def test_local_exact_collection_stacks_its_matrix_on_the_thread(tmp_path):
    driver = LocalVector(str(tmp_path / "v.db"), "c", synchronous="OFF")  # below exact_threshold: no graph
    await driver.open()
    try:
        x = unit(1000)
        await driver.upsert([str(i) for i in range(1000)], x, [{}] * 1000)
        assert driver._delta_cache is None and driver._search_here(x[5], 3) is None  # not stacked here
        assert [h.id for h in await driver.query(x[5], 1)] == ["5"]  # the thread stacks it
        assert driver._delta_cache is not None and [h.id for h in driver._search_here(x[6], 1)] == ["6"]
    finally:
        await driver.aclose()


@pytest.mark.postgres
async def test_pgvector_short_graph_result_is_checked_exactly(pg_dsn):
    """Above EXACT_ROWS a filter matching fewer rows than ``limit`` still returns every match
    (the graph's iterative scan may give up; a short result is answered by a scan)."""
    from promethean_persistence.drivers.vector.pgvector import EXACT_ROWS

    driver = await _pgvector(pg_dsn)
    try:
        n = EXACT_ROWS + 100
        x = unit(n, dims=32, seed=3)
        metas = [{"rare": i % 500 == 7} for i in range(n)]
        await driver.upsert([str(i) for i in range(n)], x, metas)
        expected = sorted(str(i) for i in range(n) if i % 500 == 7)
        executed = []
        real = driver._statement

        def recorded(clause, exact):
            executed.append(exact)
            return real(clause, exact)

        driver._statement = recorded
        hits = await driver.query(-x[7], 10, parse({"rare": True}))
        assert sorted(h.id for h in hits) == expected
        assert executed[0] is False and executed[-1] is True  # the graph first, then the scan
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    finally:
        await _drop_table(driver)
        await driver.aclose()
