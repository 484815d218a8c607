"""Declared metadata indexes (``metadata_indexes``): the SQLite primary creates an expression
index per key, selective filters on those keys use it (SQLite's own query plan says so), and
every filter answers exactly as without the index and as the reference evaluator."""

from __future__ import annotations

import sqlite3

import pytest

from promethean_persistence import StoreConfig
from promethean_persistence._errors import ConfigurationError
from promethean_persistence._filters import evaluate, parse
from promethean_persistence.drivers._sqlite_filter import filter_sql
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.testing.primary import rec

KEYS = ("user", "a.b", "n")
FILTERS = [
    {"user": "u7"},
    {"user": {"$in": ["u1", "u2", "nobody"]}},
    {"n": 3},
    {"n": {"$in": [1, 2.0]}},
    {"a.b": "x3"},
    {"user": "u7", "kind": "k1"},
    {"user": {"$in": ["u1", 7]}},  # mixed kinds: no bare comparison, the exact test alone
    {"n": True},
    {"user": None},
    {"$or": [{"user": "u1"}, {"n": 4}]},
    {"user": {"$ne": "u1"}, "n": {"$gte": 3}},
    {"vectorStatus": "pending"},  # a plain column, never a JSON path
]


def _records(count: int) -> list:
    out = []
    for i in range(count):
        meta = {"user": f"u{i % 50}", "kind": f"k{i % 3}", "n": i % 5, "a": {"b": f"x{i % 7}"}}
        if i % 97 == 0:
            meta["user"] = i  # another kind under the same key
        if i % 89 == 0:
            meta["n"] = i % 2 == 0  # booleans never equal numbers
        out.append(rec(f"r{i:05d}", 1_000 + i, metadata=meta))
    return out


async def _open(path, indexes) -> SQLitePrimary:
    driver = SQLitePrimary(str(path), "c", metadata_indexes=indexes)
    await driver.open()
    return driver


async def test_filters_on_indexed_keys_use_the_index_and_answer_as_without_it(tmp_path):
    records = _records(3_000)
    indexed = await _open(tmp_path / "i.db", KEYS)
    plain = await _open(tmp_path / "p.db", ())
    try:
        await indexed.put(records)
        await plain.put(records)
        for spec in FILTERS:
            node = parse(spec)
            expected = sorted((r.id for r in records if evaluate(node, r.to_entry()["metadata"])), reverse=True)
            got = [r.id for r in await indexed.most_recent(5_000, node)]
            assert sorted(got, reverse=True) == expected, spec
            assert [r.id for r in await plain.most_recent(5_000, node)] == got, spec
            assert await indexed.count(node) == len(expected), spec
    finally:
        await indexed.aclose()
        await plain.aclose()

    conn = sqlite3.connect(tmp_path / "i.db")
    try:
        for spec, uses in (({"user": "u7"}, True), ({"a.b": "x3"}, True), ({"n": {"$in": [1, 2]}}, True)):
            sql, params = filter_sql(parse(spec), indexed=[tuple(k.split(".")) for k in KEYS])
            plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM c WHERE {sql}", params))
            assert ("c__meta_" in plan) is uses, (spec, plan)
        sql, params = filter_sql(parse({"kind": "k1"}), indexed=[tuple(k.split(".")) for k in KEYS])
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM c WHERE {sql}", params))
        assert "c__meta_" not in plan and "SCAN" in plan  # an undeclared key scans
    finally:
        conn.close()


def test_the_setting_takes_a_list_or_a_comma_separated_string_and_refuses_bad_keys(monkeypatch):
    assert StoreConfig(metadata_indexes=["user", "a.b", "user"]).metadata_indexes == ("user", "a.b")
    monkeypatch.setenv("METADATA_INDEXES", "user, a.b")
    assert StoreConfig.resolve().metadata_indexes == ("user", "a.b")
    with pytest.raises(ConfigurationError, match="metadata_indexes: '\\$x' is not a metadata key"):
        StoreConfig(metadata_indexes=["$x"])


async def test_the_local_vector_driver_filters_through_the_same_indexes(tmp_path):
    from promethean_persistence import SemanticStore

    config = {
        "home": str(tmp_path),
        "embedding_driver": "hashing",
        "metadata_indexes": ["user"],
        "local": {"exact_threshold": 0},
    }
    store = await SemanticStore.create("idx", config=config)
    try:
        await store.insert_many([{"text": f"note {i}", "metadata": {"user": f"u{i % 20}"}} for i in range(400)])
        await store.flush()
        hits = await store.get_most_relevant("note 7", 50, {"user": "u7"})
        assert len(hits) == 20 and {h["metadata"]["user"] for h in hits} == {"u7"}
        vector = store.vector
        sql, params = filter_sql(parse({"user": "u7"}), indexed=vector._indexed)
        conn = sqlite3.connect(tmp_path / "store.db")
        try:
            plan = " ".join(
                row[-1]
                for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT label FROM {vector._table} WHERE {sql}", params)
            )
        finally:
            conn.close()
        assert "USING INDEX" in plan and "__vectors_meta_" in plan, plan
        # the exact search over the filter's matches then reads their vectors by label, by index
        conn = sqlite3.connect(tmp_path / "store.db")
        try:
            by_label = f"EXPLAIN QUERY PLAN SELECT label, vector FROM {vector._table} WHERE label IN (1, 2)"
            assert "__vectors_label" in " ".join(row[-1] for row in conn.execute(by_label))
        finally:
            conn.close()
    finally:
        await store.cleanup()
