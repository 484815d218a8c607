"""The filter language: parsing errors, and every driver agreeing with the reference
evaluator on random data and random filters (hypothesis)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promethean_persistence import ValidationError
from promethean_persistence._filters import evaluate, parse
from promethean_persistence._types import Record
from promethean_persistence.drivers.primary.memory import MemoryPrimary
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.drivers.vector.local import LocalVector
from promethean_persistence.drivers.vector.memory import MemoryVector
from promethean_persistence.testing.filter_strategies import filters, metadata

from conftest import MONGO_URI, PG_DSN


@pytest.mark.parametrize(
    "bad",
    [
        "type",
        ["a"],
        {"$where": "x"},
        {"k": {"$regex": "a"}},
        {"k": {"$in": "abc"}},
        {"k": {"$exists": 1}},
        {"k": {"$gt": True}},
        {"k": {"$lt": None}},
        {"k": [1, 2]},
        {"k": {"nested": 1}},
        {"k": {}},
        {"$and": []},
        {"$or": {"a": 1}},
        {"": 1},
        {"a..b": 1},
        {'a"b': 1},
        {"k": float("nan")},
        {"k": {"$eq": object()}},
        {1: "x"},
    ],
)
def test_malformed_filters_raise_validation_error(bad):
    with pytest.raises(ValidationError) as info:
        parse(bad)
    assert info.value.field == "filter"


def test_empty_filter_matches_everything():
    assert parse(None) is None and parse({}) is None
    assert evaluate(parse({}), {"a": 1})


@pytest.mark.parametrize(
    "spec, meta, expected",
    [
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({"a": None}, {}, True),
        ({"a": None}, {"a": None}, True),
        ({"a": {"$ne": 1}}, {}, True),
        ({"a": {"$nin": [1]}}, {}, True),
        ({"a": {"$gt": 1}}, {"a": "2"}, False),
        ({"a": {"$exists": True}}, {"a": None}, True),
        ({"a.b.c": 3}, {"a": {"b": {"c": 3}}}, True),
        ({"a.b": 3}, {"a": [3]}, False),
        ({"a": {"$gte": "b"}}, {"a": "ba"}, True),
    ],
)
def test_reference_semantics(spec, meta, expected):
    assert evaluate(parse(spec), meta) is expected


# -- property: every driver returns what the reference evaluator returns ---------------------


def _engine(found, what: str) -> bool:
    """Whether a driver's engine is here; in CI it must be (never a silent gap)."""
    if not found and os.environ.get("CI"):
        pytest.fail(f"{what} is missing: the filter property test must cover every driver in CI")
    return bool(found)


class _Drivers:
    """One instance of every driver, opened once and emptied between hypothesis examples."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.drivers: list = []
        self.fake = None

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def fresh(self):
        if self.drivers:
            for d in self.drivers:
                self.run(d.drop())
            return self.drivers
        name = f"p_{uuid.uuid4().hex[:8]}"
        drivers = [
            MemoryPrimary(name),
            SQLitePrimary(f"{self.tmp}/filters.db", name, synchronous="OFF"),
            MemoryVector(name),
            LocalVector(f"{self.tmp}/filters.db", name, synchronous="OFF"),
        ]
        if _engine(MONGO_URI, "TEST_MONGODB_URI"):  # SecantusDB, a MongoDB wire-protocol server
            from promethean_persistence.drivers.primary.mongodb import MongoPrimary

            drivers.append(MongoPrimary(MONGO_URI, "semantic_store_tests", name))
        if _engine(importlib.util.find_spec("chromadb"), "chromadb"):
            from promethean_persistence.drivers.vector.chroma import ChromaVector

            drivers.append(ChromaVector(name, path=f"{self.tmp}/chroma"))  # exact search under a filter
            drivers.append(ChromaVector(f"{name}_h", path=f"{self.tmp}/chroma", exact_threshold=0))  # HNSW
        if _engine(importlib.util.find_spec("qdrant_client"), "qdrant_client"):  # the client's local mode
            from promethean_persistence.drivers.vector.qdrant import QdrantVector

            drivers.append(QdrantVector(name, path=":memory:"))
        if _engine(importlib.util.find_spec("qdrant_edge"), "qdrant_edge"):  # Qdrant's engine in-process
            from promethean_persistence.drivers.vector.qdrant_edge import QdrantEdgeVector

            drivers.append(QdrantEdgeVector(name, f"{self.tmp}/edge"))
        if _engine(importlib.util.find_spec("pinecone"), "pinecone"):  # the FAKE Pinecone data plane
            from promethean_persistence.drivers.vector.pinecone import PineconeVector
            from promethean_persistence.testing.pinecone_fake import FakePinecone

            self.fake = FakePinecone("k").start()
            drivers.append(PineconeVector(name, api_key="k", host=self.fake.url))
        if _engine(PG_DSN, "TEST_POSTGRES_DSN"):
            from promethean_persistence.drivers.primary.postgres import PostgresPrimary
            from promethean_persistence.drivers.vector.pgvector import PgvectorVector

            info = (PG_DSN, "test", [])
            drivers += [PostgresPrimary(*info, name), PgvectorVector(*info, name)]
        for d in drivers:
            self.run(d.open())
        self.drivers = drivers
        return drivers

    def close(self) -> None:
        for d in self.drivers:
            self.run(d.drop())
            self.run(d.aclose())
        self.loop.close()
        if self.fake is not None:
            self.fake.stop()


@pytest.fixture(scope="module")
def all_drivers(tmp_path_factory):
    d = _Drivers(str(tmp_path_factory.mktemp("filters")))
    yield d
    d.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metas=st.lists(metadata, min_size=1, max_size=12), specs=st.lists(filters, min_size=1, max_size=4))
def test_every_driver_matches_the_reference(all_drivers, metas, specs):
    run = all_drivers.run
    drivers = all_drivers.fresh()
    primaries = [d for d in drivers if hasattr(d, "most_recent")]
    vectors = [d for d in drivers if not hasattr(d, "most_recent")]
    ids = [f"id{i:02d}" for i in range(len(metas))]
    records = [
        Record(id=i, text=f"t {i}", timestamp=k, metadata=m, content_hash="h")
        for k, (i, m) in enumerate(zip(ids, metas))
    ]
    matrix = np.eye(len(ids), 16, dtype=np.float32) + 0.01
    for p in primaries:
        run(p.put(records))
    for v in vectors:
        run(v.upsert(ids, matrix, metas))
    for spec in specs:
        node = parse(spec)
        expected = sorted(i for i, m in zip(ids, metas) if evaluate(node, m))
        for p in primaries:
            got = sorted(r.id for r in run(p.most_recent(100, node)))
            assert got == expected, (p.name, spec, metas)
        for v in vectors:
            got = sorted(h.id for h in run(v.query(matrix[0], 100, node)))
            assert got == expected, (v.name, spec, metas)


def test_fractional_operands_against_whole_numbers(all_drivers):
    """Found by the property test: Chroma truncates 2.5 to 2 when comparing with an int."""
    run = all_drivers.run
    drivers = all_drivers.fresh()
    metas = [{"b": 2}, {"b": -1}, {"b": 2.5}, {"b": 3}]
    ids = [f"id{i}" for i in range(len(metas))]
    records = [
        Record(id=i, text=i, timestamp=k, metadata=m, content_hash="h") for k, (i, m) in enumerate(zip(ids, metas))
    ]
    matrix = np.eye(len(ids), 16, dtype=np.float32) + 0.01
    for d in drivers:
        run(d.put(records) if hasattr(d, "most_recent") else d.upsert(ids, matrix, metas))
    for spec in (
        {"b": {"$lt": 2.5}},
        {"b": {"$gt": -1.5}},
        {"b": {"$ne": 2.5}},
        {"b": {"$nin": [2.5, -1]}},
        {"b": {"$gte": 2.5}},
        {"b": {"$lte": -0.5}},
    ):
        node = parse(spec)
        expected = sorted(i for i, m in zip(ids, metas) if evaluate(node, m))
        for d in drivers:
            if hasattr(d, "most_recent"):
                got = sorted(r.id for r in run(d.most_recent(100, node)))
            else:
                got = sorted(h.id for h in run(d.query(matrix[0], 100, node)))
            assert got == expected, (d.name, spec)
