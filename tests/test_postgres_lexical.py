"""PostgreSQL's full-text index: the backfill of tables written before it (and after a change of
text search configuration), the trigger that indexes every writer's rows (raw SQL too), and
``lexical_index = false`` creating nothing. The shared contract is tests/test_lexical.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from promethean_persistence import BackendRejected, StoreConfig, ValidationError
from promethean_persistence.drivers._postgres import table_name
from promethean_persistence.drivers.primary._pg_lexical import SUFFIX, TODO_SUFFIX
from promethean_persistence.drivers.primary.postgres import PostgresPrimary
from promethean_persistence.testing.primary import rec

from conftest import PG, require_postgres

pytestmark = PG

TEXTS = {f"d{i:02d}": f"document {i} about {'zebras' if i % 3 == 0 else 'lions'} jumping" for i in range(10)}


def _name() -> str:
    return f"t{uuid.uuid4().hex[:8]}_lex"


async def _open(collection: str, **kw: object) -> PostgresPrimary:
    driver = PostgresPrimary(require_postgres(), "test", [], collection, **kw)  # type: ignore[arg-type]
    await driver.open()
    return driver


async def _ids(driver: PostgresPrimary, text: str) -> list[str]:
    return [h.id for h in await driver.lexical_query(text, 50)]


async def _objects(driver: PostgresPrimary) -> dict[str, object]:
    """What of the index exists: the column, the trigger's argument, the function, the indexes."""
    async with driver._pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'lexemes' "
                "AND NOT attisdropped), (SELECT tgargs FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s), "
                "to_regprocedure(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (
                    driver._t,
                    driver._t,
                    table_name(driver.collection, SUFFIX),
                    driver._ident(SUFFIX) + "()",
                    driver._ident(SUFFIX),
                    driver._ident(TODO_SUFFIX),
                ),
            )
        ).fetchone()
    column, args, function, gin, todo = row
    return {
        "column": column,
        "config": bytes(args).split(b"\0")[0].decode() if args is not None else None,
        "function": function,
        "gin": gin,
        "todo": todo,
    }


async def test_a_table_written_before_the_index_is_backfilled_in_resumable_batches():
    collection = _name()
    old = await _open(collection, lexical=False)  # the table as earlier versions created it
    await old.put([rec(i, 1000, t) for i, t in TEXTS.items()] + [rec("blank", 1000, "   ")])
    await old.aclose()

    driver = await _open(collection)
    try:
        assert await _ids(driver, "zebras") == []  # not indexed yet
        steps = driver.lexical_backfill(4)
        assert await anext(steps) == (4, 11)
        await steps.aclose()  # interrupted: the rest is still NULL, and found next time
        assert [s async for s in driver.lexical_backfill(4)] == [(4, 7), (7, 7)]
        assert [s async for s in driver.lexical_backfill(4)] == []  # nothing left to do
        assert await _ids(driver, "zebra") == ["d00", "d03", "d06", "d09"]  # stemmed: zebras ~ zebra
        assert len(await _ids(driver, "jump")) == 10
        assert (await driver.get(["d00"]))[0].text == TEXTS["d00"]  # the backfill rewrote nothing visible
    finally:
        await driver.aclose()


async def test_another_text_search_config_reindexes_on_open():
    collection = _name()
    driver = await _open(collection)
    await driver.put([rec(i, 1000, t) for i, t in TEXTS.items()])
    assert len(await _ids(driver, "jump")) == 10  # english stems jumping to jump
    assert (await _objects(driver))["config"] == "english"
    await driver.aclose()

    driver = await _open(collection, text_search_config="simple")
    try:
        assert (await _objects(driver))["config"] == "simple"
        assert [s async for s in driver.lexical_backfill(100)] == [(10, 10)]  # every row re-indexed
        assert await _ids(driver, "jump") == []  # simple does not stem
        assert len(await _ids(driver, "jumping")) == 10
        await driver.put([rec("new", 1000, "the jumping zebras")])  # the new trigger's config
        assert await _ids(driver, "the") == []  # a stop word is never looked up, whatever the config
        assert "new" in await _ids(driver, "zebras")
    finally:
        await driver.aclose()

    again = await _open(collection, text_search_config="SIMPLE")  # the same configuration: nothing to redo
    try:
        assert [s async for s in again.lexical_backfill(100)] == []
        assert len(await _ids(again, "jumping")) == 11
    finally:
        await again.aclose()


async def test_rows_written_by_raw_sql_are_indexed_by_the_trigger():
    driver = await _open(_name())
    try:
        async with driver._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {driver._t} (id, text, timestamp, is_empty, metadata, extra, version, vector_status, "
                "vector_attempts, content_hash, lexemes) VALUES ('raw', 'Hand-written zebra notes', 1, false, "
                "'{}', '{}', 1, 'pending', 0, 'h', 'forged:1')"
            )
            assert await _ids(driver, "zebra notes") == ["raw"]
            assert await _ids(driver, "forged") == []  # a writer's own lexemes are replaced
            await conn.execute(f"UPDATE {driver._t} SET text = 'Lions only' WHERE id = 'raw'")
            assert await _ids(driver, "zebra") == [] and await _ids(driver, "lion") == ["raw"]
            # an update that leaves the text alone keeps the lexemes (and cannot forge them)
            await conn.execute(f"UPDATE {driver._t} SET text = text, lexemes = 'forged' WHERE id = 'raw'")
            assert await _ids(driver, "lion") == ["raw"] and await _ids(driver, "forged") == []
            await conn.execute(f"DELETE FROM {driver._t} WHERE id = 'raw'")
        assert await _ids(driver, "lion") == []
    finally:
        await driver.aclose()


async def test_a_text_too_big_for_a_tsvector_is_still_stored_and_found():
    driver = await _open(_name())
    try:
        # ~1 MB of distinct tokens: to_tsvector alone would refuse it (a tsvector holds 1 MB)
        junk = " ".join(f"{n:x}q{n * 7919 % 100_003:x}" for n in range(100_000))
        await driver.put([rec("big", 1000, "zebra " + junk)])
        assert await _ids(driver, "zebra") == ["big"]
    finally:
        await driver.aclose()


async def test_the_backfill_skips_rows_held_by_a_writer_and_a_later_run_takes_them():
    collection = _name()
    old = await _open(collection, lexical=False)
    await old.put([rec(i, 1000, t) for i, t in TEXTS.items()])
    await old.aclose()
    driver = await _open(collection)
    try:
        async with driver._pool.connection() as conn, conn.transaction():
            await conn.execute(f"SELECT 1 FROM {driver._t} WHERE id = 'd03' FOR UPDATE")
            steps = await asyncio.wait_for(_collect(driver), 10)  # never waits for the lock
        assert steps[-1] == (9, 10)
        assert "d03" not in await _ids(driver, "zebras")
        assert [s async for s in driver.lexical_backfill(4)] == [(1, 1)]
        assert "d03" in await _ids(driver, "zebras")
    finally:
        await driver.aclose()


async def _collect(driver: PostgresPrimary) -> list[tuple[int, int]]:
    return [s async for s in driver.lexical_backfill(4)]


async def test_concurrent_backfills_share_the_work():
    collection = _name()
    old = await _open(collection, lexical=False)
    await old.put([rec(f"r{i:04d}", 1000, f"row {i} zebra") for i in range(600)])
    await old.aclose()
    first, second = await _open(collection), await _open(collection)
    try:
        a, b = await asyncio.gather(_collect(first), _collect(second))
        done = (a[-1][0] if a else 0) + (b[-1][0] if b else 0)
        assert done == 600  # each row indexed once, by one of them
        assert len(await first.lexical_query("zebra", 1000)) == 600
    finally:
        await first.aclose()
        await second.aclose()


async def test_lexical_index_off_creates_nothing(tmp_path):
    cfg = StoreConfig(postgresql={"dsn": require_postgres()}, lexical_index=False)
    driver = PostgresPrimary.from_config(cfg, _name())
    assert not driver.capabilities.lexical and driver.capabilities.transactions
    await driver.open()
    try:
        await driver.put([rec("a", 1000, "zebra")])
        assert await _objects(driver) == {
            "column": False,
            "config": None,
            "function": False,
            "gin": False,
            "todo": False,
        }
        assert [s async for s in driver.lexical_backfill(10)] == []
        with pytest.raises(BackendRejected, match="no lexical index"):
            await driver.lexical_query("zebra", 5)
    finally:
        await driver.aclose()


async def test_settings_choose_the_configuration_and_names_stay_within_63_bytes():
    cfg = StoreConfig(postgresql={"dsn": require_postgres(), "text_search_config": "simple"})
    collection = "x" * 70 + uuid.uuid4().hex[:6]  # every name of the index is hashed
    driver = PostgresPrimary.from_config(cfg, collection)
    assert driver.capabilities.lexical
    await driver.open()
    try:
        assert await _objects(driver) == {
            "column": True,
            "config": "simple",
            "function": True,
            "gin": True,
            "todo": True,
        }
        await driver.put([rec("a", 1000, "the jumping zebras", metadata={"k": 1}), rec("b", 1000, "zebras")])
        hits = await driver.lexical_query("jumping zebras", 5)
        assert [h.id for h in hits] == ["a", "b"] and all(h.score > 0 for h in hits)
    finally:
        await driver.aclose()


async def test_an_unknown_configuration_is_refused_on_open():
    with pytest.raises(BackendRejected, match="klingon"):
        await _open(_name(), text_search_config="klingon")


@pytest.mark.parametrize("suffix", [SUFFIX, TODO_SUFFIX])
def test_store_names_cannot_take_the_index_names(suffix):
    with pytest.raises(ValidationError, match="ends with"):
        PostgresPrimary("dbname=x", "x", [], "store" + suffix)


async def test_rows_holding_a_rare_word_are_ranked_first_once_statistics_show_common_words():
    driver = await _open(_name())
    try:
        rows = [rec(f"c{i:04d}", i, f"river stone water f{i % 40}") for i in range(3000)]
        rows += [rec(f"w{i}", i, "water water water water") for i in range(5)]  # short, only a common word
        rows += [rec(f"r{i:02d}", i, "heron " + "filler " * (60 + i)) for i in range(30)]  # long, a rare word
        await driver.put(rows)

        async def exact() -> list[tuple[str, float]]:
            async with driver._pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT id, ts_rank(lexemes, q, 1) AS s FROM {driver._t}, "
                    "to_tsquery('english', 'heron | water') q WHERE lexemes @@ q ORDER BY s DESC, id"
                )
                return [(i, float(s)) for i, s in await cur.fetchall()]

        ranked = await exact()
        assert [i for i, _ in ranked[:5]] == [f"w{i}" for i in range(5)]  # ts_rank alone: the short common rows
        before = [h.id for h in await driver.lexical_query("heron water", 10)]
        assert before == [i for i, _ in ranked[:10]]  # no statistics yet: every match is ranked
        async with driver._pool.connection() as conn:
            await conn.execute(f"ANALYZE {driver._t}")
        driver._common_words = type(driver._common_words)(driver._common_words.table_name)  # forget the cache
        hits = await driver.lexical_query("heron water", 10)
        scores = dict(ranked)
        assert [h.id for h in hits] == [i for i, _ in ranked if i.startswith("r")][:10]
        assert all(abs(h.score - scores[h.id]) < 1e-6 for h in hits)  # ranked by every word of the query
        deep = await driver.lexical_query("heron water", 40)  # more than the rows holding heron
        assert [h.id for h in deep] == [i for i, _ in ranked[:40]]
    finally:
        await driver.drop()
        await driver.aclose()
