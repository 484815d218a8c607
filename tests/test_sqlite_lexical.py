"""The SQLite primary's FTS5 index: a store written before it gains it on open, the backfill
resumes where it stopped and runs safely beside writers, and writers outside the driver
(plain SQL) keep it too. FTS5's own ``integrity-check`` compares the index with the table."""

import sqlite3
import uuid

from promethean_persistence import SemanticStore
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.testing.primary import rec


def _check(path, collection: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f'INSERT INTO "{collection}__lexical" ("{collection}__lexical") VALUES (\'integrity-check\')')
    finally:
        conn.close()


async def _open(path, collection, lexical=True) -> SQLitePrimary:
    driver = SQLitePrimary(str(path), collection, lexical=lexical)
    await driver.open()
    return driver


async def _ids(driver, text):
    return [h.id for h in await driver.lexical_query(text, 500)]


async def test_an_older_store_gains_the_index_on_open(tmp_path, caplog):
    config = {
        "primary_driver": "sqlite",
        "vector_driver": "local",
        "embedding_driver": "hashing",
        "home": str(tmp_path),
    }
    async with await SemanticStore.create("old", config={**config, "lexical_index": False}) as store:
        await store.insert_many([{"id": f"e{i}", "text": f"entry {i} about walruses"} for i in range(2500)])
        await store.insert({"id": "rare", "text": "a narwhal"})
    caplog.set_level("INFO", logger="promethean_persistence")
    async with await SemanticStore.create("old", config=config) as store:
        assert [h["id"] for h in await store.get_most_relevant("narwhals", 5, mode="lexical")] == ["rare"]
        assert len(await store.get_most_relevant("walruses", 5000, mode="lexical")) == 2500
    assert "building the lexical index of 2501 entries" in caplog.text
    _check(tmp_path / "store.db", "duck_old")


async def test_backfill_resumes_and_runs_beside_writers(tmp_path):
    path, name = tmp_path / "s.db", f"c{uuid.uuid4().hex[:6]}"
    plain = await _open(path, name, lexical=False)
    await plain.put([rec(f"r{i:03d}", 1000 + i, f"record {i} mentions otters") for i in range(100)])
    await plain.aclose()

    first = await _open(path, name)
    steps = first.lexical_backfill(10)
    assert await steps.__anext__() == (10, 100)
    await steps.aclose()  # interrupted after one batch
    # writers meanwhile: a new record, a replaced and a deleted one the index does not hold yet
    await first.put([rec("new", 5000, "a new otter"), rec("r050", 5001, "replaced by beavers")])
    await first.delete(["r060"])
    await first.aclose()
    _check(path, name)

    second = await _open(path, name)
    rest = [step async for step in second.lexical_backfill(25)]
    assert rest[-1] == (88, 88) and len(rest) == 4  # 100 - 10 done - r050 (rewritten) - r060 (gone)
    assert [s async for s in second.lexical_backfill(25)] == []
    assert len(await _ids(second, "otters")) == 99  # 100 - r050 - r060 + new
    assert await _ids(second, "beavers") == ["r050"]
    await second.aclose()
    _check(path, name)


async def test_plain_sql_writers_keep_the_index(tmp_path):
    path, name = tmp_path / "s.db", "notes"
    driver = await _open(path, name)
    await driver.put([rec("a", 1, "the pelican flies")])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE notes SET text = 'the heron flies' WHERE id = 'a'")
        conn.execute(
            "INSERT INTO notes SELECT 'b', 'a pelican swims', timestamp, is_empty, metadata, extra, version, "
            "vector_status, vector_attempts, vector_error, vector_next_at, vector_updated_at, vector_synced_at, "
            "content_hash, embedding_model, expires_at FROM notes WHERE id = 'a'"
        )
    conn.close()
    assert await _ids(driver, "pelican") == ["b"]
    assert await _ids(driver, "heron") == ["a"]
    await driver.delete(["b"])
    assert await _ids(driver, "pelican") == []
    await driver.aclose()
    _check(path, name)


async def test_a_store_named_like_the_index_keeps_its_own_tables(tmp_path):
    path = tmp_path / "s.db"
    x = await _open(path, "x")
    shadow = await _open(path, "x__lexical")
    await x.put([rec("1", 1, "kestrel")])
    await shadow.put([rec("2", 1, "kestrel")])
    assert await _ids(x, "kestrel") == ["1"] and await _ids(shadow, "kestrel") == ["2"]
    assert [r.id for r in await shadow.most_recent(5)] == ["2"]
    await x.aclose()
    await shadow.aclose()


async def test_large_indexes_rank_rows_with_a_rare_word_first_with_exact_scores(tmp_path, monkeypatch):
    from promethean_persistence.drivers import _sqlite_lexical

    path, name = tmp_path / "s.db", "big"
    driver = await _open(path, name)
    rows = [
        rec(f"c{i:05d}", i, "river stone" + (" water" if i % 3 == 0 else "") + f" f{i % 50}") for i in range(21_000)
    ]
    rows += [rec(f"w{i}", i, "water water water water") for i in range(5)]  # short, only a common word
    # long, a rare word, and every other one a common word too
    rows += [rec(f"r{i:02d}", i, "heron " + "water " * (i % 2) + "filler " * (60 + i)) for i in range(30)]
    await driver.put(rows)
    conn = sqlite3.connect(path)
    fts = f'"{name}__lexical"'
    sql = f'SELECT t.id, -bm25({fts}) FROM {fts} JOIN "{name}" t ON t.rowid = {fts}.rowid WHERE {fts} MATCH ?'
    exact = dict(conn.execute(sql, ('"heron" OR "water"',)).fetchall())
    conn.close()
    by_bm25 = sorted(exact, key=lambda i: (-exact[i], i))
    assert by_bm25[:5] == [f"w{i}" for i in range(5)]  # BM25 alone ranks the short common rows first

    hits = await driver.lexical_query("heron water", 10)  # water is in a third of the rows: common
    assert [h.id for h in hits] == [i for i in by_bm25 if i.startswith("r")][:10]
    assert all(abs(h.score - exact[h.id]) < 1e-6 for h in hits)  # each score is the whole query's BM25
    hits = await driver.lexical_query("heron water", 20)  # rows with and without the common word
    assert [h.id for h in hits] == [i for i in by_bm25 if i.startswith("r")][:20]
    assert all(abs(h.score - exact[h.id]) < 1e-6 for h in hits)
    # too few rows with a rare word, a filter, or a smaller index: every match is ranked
    assert [h.id for h in await driver.lexical_query("heron water", 40)][:5] == by_bm25[:5]
    monkeypatch.setattr(_sqlite_lexical, "PRUNE_FROM_ROWS", 10**9)
    assert [h.id for h in await driver.lexical_query("heron water", 10)] == by_bm25[:10]
    await driver.aclose()


async def test_large_indexes_break_ties_across_the_cut_by_id(tmp_path):
    # the pruned ranking reads a few rows past the cut, deeper while they tie: ties go by id
    import random

    path, name = tmp_path / "s.db", "ties"
    driver = await _open(path, name)
    rows = [rec(f"c{i:05d}", i, f"river stone water f{i % 50}") for i in range(21_000)]
    tied = [f"t{i:02d}" for i in range(40)]
    random.Random(7).shuffle(tied)  # written in no particular order
    rows += [rec(i, 1, "heron water filler filler") for i in tied]
    rows += [rec(f"h{i}", 1, "heron heron water") for i in range(5)]
    await driver.put(rows)
    for limit in (3, 10, 30):
        hits = await driver.lexical_query("heron water", limit)
        expected = [f"h{i}" for i in range(5)] + [f"t{i:02d}" for i in range(40)]
        assert [h.id for h in hits] == expected[:limit]
        assert len({h.score for h in hits[5:]}) <= 1  # exactly tied
    await driver.aclose()


async def test_bulk_puts_index_their_rows_in_one_statement(tmp_path):
    path, name = tmp_path / "s.db", "bulk"
    driver = await _open(path, name)
    await driver.put([rec("kept", 1, "an old grebe")])
    batch = [rec(f"b{i:03d}", 10 + i, f"bulk row {i} of grebes") for i in range(600)]  # past one chunk
    # a repeated id (changed, then unchanged text) and a replaced row in the same put
    batch += [rec("b007", 700, "now about puffins"), rec("b008", 701, "bulk row 8 of grebes")]
    batch += [rec("kept", 702, "a new puffin")]
    await driver.put(batch)
    assert len(await driver.lexical_query("grebes", 1000)) == 599 and sorted(await _ids(driver, "puffins")) == [
        "b007",
        "kept",
    ]
    conn = sqlite3.connect(path)
    assert conn.execute('SELECT COUNT(*) FROM "bulk__lexical_bulk"').fetchone() == (0,)  # no mark left behind
    conn.close()
    await driver.aclose()
    _check(path, name)


async def test_an_earlier_versions_insert_trigger_is_replaced(tmp_path):
    # it indexed row by row; the store still opens, upgrades it, and keeps every row indexed
    path, name = tmp_path / "s.db", "older"
    driver = await _open(path, name)
    await driver.put([rec("a", 1, "a loon")])
    await driver.aclose()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute('DROP TRIGGER "older__lexical_ai"')
        conn.execute('DROP TABLE "older__lexical_bulk"')
        conn.execute(
            'CREATE TRIGGER "older__lexical_ai" AFTER INSERT ON "older" BEGIN '
            'INSERT INTO "older__lexical" (rowid, text) VALUES (new.rowid, new.text); END'
        )
    conn.close()
    driver = await _open(path, name)
    await driver.put([rec(f"n{i}", 2 + i, f"loon number {i}") for i in range(50)])
    assert len(await _ids(driver, "loon")) == 51
    await driver.aclose()
    conn = sqlite3.connect(path)
    [sql] = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'older__lexical_ai'").fetchone()
    conn.close()
    assert "WHEN NOT EXISTS" in sql
    _check(path, name)
