"""The milvus driver beyond the conformance suites (which run it in conftest's matrix):
milvus-lite (Milvus's engine on a local file) always, a real server when MILVUS_URI is set."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promethean_persistence import StoreConfig
from promethean_persistence._config import from_env
from promethean_persistence._errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigurationError,
    MissingDependencyError,
    ValidationError,
)
from promethean_persistence._filters import evaluate, parse
from promethean_persistence.drivers.vector import _milvus_expr as expr
from promethean_persistence.drivers.vector import milvus as milvus_module
from promethean_persistence.drivers.vector.milvus import MilvusVector
from promethean_persistence.drivers.vector.qdrant import point_id
from promethean_persistence.testing.filter_strategies import filters, metadata

from conftest import REAL_MILVUS, require_extra

pytestmark = pytest.mark.milvus
require_extra("pymilvus", "milvus_lite")

# milvus-lite always; a real server too when MILVUS_URI is set
TARGETS = ["lite"] + (["real"] if REAL_MILVUS["uri"] else [])


def _driver(target: str, tmp: str, collection: str, **kwargs) -> MilvusVector:
    if target == "real":
        return MilvusVector(collection, uri=REAL_MILVUS["uri"], token=REAL_MILVUS["token"], **kwargs)
    return MilvusVector(collection, uri=os.path.join(tmp, "milvus.db"), **kwargs)


@pytest.fixture(params=TARGETS)
async def milvus(request, tmp_path_factory):
    tmp = str(tmp_path_factory.getbasetemp() / "milvus-lite")
    driver = _driver(request.param, tmp, f"m_{uuid.uuid4().hex[:8]}")
    await driver.open()
    yield driver
    await driver.drop()
    await driver.aclose()


# -- the filter property test: the shared strategies against the reference evaluator ---------


class _Loop:
    """One driver per target on one event loop, emptied between hypothesis examples."""

    def __init__(self, tmp: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.drivers = [_driver(t, tmp, f"p_{uuid.uuid4().hex[:8]}") for t in TARGETS]
        for d in self.drivers:
            self.run(d.open())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def fresh(self) -> list[MilvusVector]:
        for d in self.drivers:  # emptied, not dropped: creating a collection takes Milvus ~0.5 s
            ids = self.run(self._ids(d))
            self.run(d.delete(ids))
            assert self.run(d.count()) == 0
        return self.drivers

    @staticmethod
    async def _ids(driver: MilvusVector) -> list[str]:
        return [i async for batch in driver.iter_ids() for i in batch]

    def close(self) -> None:
        for d in self.drivers:
            self.run(d.drop())
            self.run(d.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def drivers(tmp_path_factory):
    d = _Loop(str(tmp_path_factory.mktemp("milvus-filters")))
    yield d
    d.close()


# more examples than test_filters.py: one driver, and emptying a collection is cheap
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metas=st.lists(metadata, min_size=1, max_size=12), specs=st.lists(filters, min_size=1, max_size=4))
def test_filters_match_the_reference(drivers, metas, specs):
    run = drivers.run
    ids = [f"id{i:02d}" for i in range(len(metas))]
    matrix = np.eye(len(ids), 16, dtype=np.float32) + 0.01
    for v in drivers.fresh():
        run(v.upsert(ids, matrix, metas))
    for spec in specs:
        node = parse(spec)
        expected = sorted(i for i, m in zip(ids, metas) if evaluate(node, m))
        for v in drivers.drivers:
            got = sorted(h.id for h in run(v.query(matrix[0], 100, node)))
            assert got == expected, (v.shown, spec, expr.milvus_filter(node), metas)


def test_numbers_compare_across_int_and_float(drivers):
    """Milvus may hold a JSON number as int64 or double: fractional operands against whole
    numbers, whole operands against fractions, and int64 beyond a double's precision."""
    run = drivers.run
    metas = [{"b": 2}, {"b": -1}, {"b": 2.5}, {"b": 3}, {"b": 2.0}, {"b": 2**60 + 2}, {"b": 2**60}]
    ids = [f"id{i}" for i in range(len(metas))]
    matrix = np.eye(len(ids), 16, dtype=np.float32) + 0.01
    for v in drivers.fresh():
        run(v.upsert(ids, matrix, metas))
    for spec in (
        {"b": {"$lt": 2.5}},
        {"b": {"$gt": -1.5}},
        {"b": 2},
        {"b": 2.0},
        {"b": {"$in": [2, 3.0]}},
        {"b": {"$gte": 2.5}},
        {"b": {"$lte": -0.5}},
        {"b": {"$gt": 2**60}},
        {"b": 2**60 + 2},
        {"b": {"$lt": 10**30}},
    ):
        node = parse(spec)
        expected = sorted(i for i, m in zip(ids, metas) if evaluate(node, m))
        for v in drivers.drivers:
            assert sorted(h.id for h in run(v.query(matrix[0], 100, node))) == expected, (v.shown, spec)


# -- the native expression ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, native",
    [
        ({"a": "x"}, 'metadata["a"] == "x"'),
        ({"a": True}, 'metadata["a"] == true'),
        ({"c.d": 2}, '(metadata["c"]["d"] >= 2 and metadata["c"]["d"] <= 2)'),
        ({"a": {"$gt": 1.5}}, 'metadata["a"] >= 1.5'),  # strict becomes closed: never narrower
        ({"a": {"$lt": "m"}}, 'metadata["a"] < "m"'),
        ({"a": {"$in": ["x", "y"]}}, 'metadata["a"] in ["x", "y"]'),
        (
            {"a": {"$in": [1, 2.5]}},
            '((metadata["a"] >= 1 and metadata["a"] <= 1) or (metadata["a"] >= 2.5 and metadata["a"] <= 2.5))',
        ),
        ({"a": "x", "b": {"$ne": 1}}, 'metadata["a"] == "x"'),  # $ne is left to the exact check
        ({"$or": [{"a": "x"}, {"b": {"$exists": True}}]}, None),  # an or with an unknown side: nothing
        ({"a": 'say "hi"'}, None),  # quotes: not spliced into an expression
        ({"a": "two\nlines"}, None),
        ({"a b": 1}, None),  # a key Milvus's path syntax could read differently
        ({"a": None}, None),
        ({"a": {"$gt": 10**30}}, None),  # beyond int64
    ],
)
def test_native_expression(spec, native):
    assert expr.milvus_filter(parse(spec)) == native


async def test_filters_with_text_milvus_cannot_hold_are_still_exact(milvus):
    metas = [{"a": 'say "hi"'}, {"a": "back\\slash"}, {"a": "two\nlines"}, {"a": "plain"}]
    ids = ["q", "b", "n", "p"]
    await milvus.upsert(ids, np.eye(4, 8, dtype=np.float32) + 0.01, metas)
    for value, want in (('say "hi"', ["q"]), ("back\\slash", ["b"]), ("two\nlines", ["n"])):
        assert [h.id for h in await milvus.query(np.ones(8), 10, parse({"a": value}))] == want


# -- layout, names, reopening ------------------------------------------------------------


async def test_primary_keys_are_the_qdrant_uuid5_and_fields_keep_id_and_metadata(milvus):
    meta = {"nested": {"k": [1, "two", None]}, "n": 2.5, "flag": False}
    await milvus.upsert(["entry/1"], [[1.0] + [0.0] * 7], [meta])
    rows = await milvus._client.get(milvus._name, ids=[point_id("entry/1")], output_fields=["id", "metadata"])
    assert rows[0]["pk"] == point_id("entry/1") and rows[0]["id"] == "entry/1"
    assert rows[0]["metadata"] == meta


class _OtherHandler:
    """A connection handler whose ``upsert`` takes other arguments (another pymilvus)."""

    async def upsert(self, rows):
        raise AssertionError("not reached: the call itself fails")


class _RefusingHandler:
    """A connection handler whose column request is refused (a schema cached before the
    collection changed elsewhere): the rows go, which refresh the schema."""

    def __init__(self) -> None:
        self.calls = 0

    async def upsert(self, name, columns, **kwargs):
        from pymilvus.exceptions import DataNotMatchException

        self.calls += 1
        raise DataNotMatchException(message="stale schema")


@pytest.mark.parametrize("handler", ["columns", "none", "other", "refusing"])
async def test_column_and_row_writes_store_the_same_rows(milvus, monkeypatch, handler):
    # the installed pymilvus must take the column path (a faster request, through its
    # handler): an upgrade that drops it fails here instead of silently writing rows
    if handler == "none":
        milvus._handler = False
    elif handler == "other":
        milvus._handler = _OtherHandler()
    elif handler == "refusing":
        milvus._handler = refusing = _RefusingHandler()
    calls = []
    row_upsert = milvus._client.upsert

    async def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return await row_upsert(*args, **kwargs)

    monkeypatch.setattr(milvus._client, "upsert", counted)
    ids = ["c/0", "c/1", "c/2"]
    metas = [{"i": i, "nested": {"k": [i, "x", None]}, "s": "ü"} for i in range(3)]
    await milvus.upsert(ids, np.eye(3, 8) + 0.5, metas)
    assert calls == ([] if handler == "columns" else [3])
    # a handler of another signature is not tried again; one that refused a batch is
    assert (milvus._handler is False) == (handler in ("none", "other"))
    if handler == "refusing":
        assert refusing.calls == 1
    rows = await milvus._client.get(milvus._name, ids=[point_id(i) for i in ids], output_fields=["id", "metadata"])
    assert {r["pk"]: (r["id"], r["metadata"]) for r in rows} == {point_id(i): (i, m) for i, m in zip(ids, metas)}
    fetched = await milvus.fetch(ids)
    for i, row in zip(ids, np.eye(3, 8) + 0.5):
        np.testing.assert_allclose(fetched[i], row / np.linalg.norm(row), atol=1e-6)


async def test_a_query_of_any_length_scores_as_its_unit_vector(milvus):
    # float32 queries go to Milvus as they are (COSINE does not depend on their length)
    await milvus.upsert(["a", "b", "c"], np.eye(3, 8, dtype=np.float32) + 0.1, [{}, {}, {}])
    query = np.array([3.0, 1.0, 0.5] + [0.0] * 5, dtype=np.float32)
    unit = [(h.id, round(h.score, 5)) for h in await milvus.query(query / np.linalg.norm(query), 3)]
    for same in (query * 1000, query.astype(np.float64), query.tolist()):
        assert [(h.id, round(h.score, 5)) for h in await milvus.query(same, 3)] == unit
    assert [i for i, _ in unit] == ["a", "b", "c"]
    for bad in (np.array([np.nan] + [0.0] * 7, dtype=np.float32), np.array([np.inf] + [0.0] * 7, dtype=np.float32)):
        with pytest.raises(ValidationError, match="NaN or Infinity"):
            await milvus.query(bad, 3)
    with pytest.raises(ValidationError, match="dimension 4"):
        await milvus.query(np.ones(4, dtype=np.float32), 3)


async def test_metadata_only_upsert_keeps_the_vector_and_needs_one(milvus):
    vector = np.array([3.0, 4.0] + [0.0] * 6)
    await milvus.upsert(["a"], [vector], [{"v": 1}])
    await milvus.upsert(["a"], None, [{"v": 2}])
    np.testing.assert_allclose(milvus_vector := (await milvus.fetch(["a"]))["a"], vector / 5, atol=1e-6)
    assert milvus_vector.dtype == np.float32
    assert [h.id for h in await milvus.query(vector, 5, parse({"v": 2}))] == ["a"]
    with pytest.raises(Exception, match="without a vector"):
        await milvus.upsert(["missing"], None, [{}])


async def test_wide_searches_scan_past_milvus_topk_limit(milvus, monkeypatch):
    """Past Milvus's 16,384 hits a search scans the collection: here the limit is made small,
    so a filter matching only the worst-scored rows needs the scan."""
    n = 60
    ids = [f"r{i:03d}" for i in range(n)]
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(n, 8)).astype(np.float32)
    query = matrix[0]
    scores = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    worst = {ids[i] for i in np.argsort(scores)[:5]}
    metas = [{"pick": i in worst, "k": "v"} for i in ids]
    await milvus.upsert(ids, matrix, metas)
    monkeypatch.setattr(milvus_module, "TOPK_MAX", 8)
    # $ne leaves nothing native: only the scan reaches the five worst rows
    hits = await milvus.query(query, 5, parse({"pick": {"$ne": False}}))
    assert {h.id for h in hits} == worst
    assert [h.id for h in hits] == sorted(worst, key=lambda i: -scores[ids.index(i)])
    np.testing.assert_allclose([h.score for h in hits], sorted(scores[[ids.index(i) for i in worst]])[::-1], atol=1e-5)
    # and with a native share of the filter
    assert {h.id for h in await milvus.query(query, 5, parse({"k": "v", "pick": {"$ne": False}}))} == worst


async def test_iter_ids_pages_through_everything(milvus):
    ids = [f"i{i}" for i in range(25)]
    await milvus.upsert(ids, np.random.default_rng(1).normal(size=(25, 8)), [{}] * 25)
    batches = [b async for b in milvus.iter_ids(batch_size=10)]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert sorted(i for b in batches for i in b) == sorted(ids)


async def test_a_lite_file_keeps_its_vectors_across_reopening(tmp_path):
    uri = str(tmp_path / "sub" / "keep.db")  # its directory is created
    first = MilvusVector("kept", uri=uri)
    await first.open()
    await first.upsert(["a", "b"], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [{"x": 1}, {"x": 2}])
    await first.aclose()
    again = MilvusVector("kept", uri=uri)
    await again.open()
    assert again.dims == 3 and await again.count() == 2
    assert [h.id for h in await again.query([0.0, 1.0, 0.0], 1)] == ["b"]
    await again.aclose()


@pytest.mark.parametrize("name", ["agent_notes", "Agent-Notes", "ünïcode names", "9lives", "a__b", "x" * 300])
async def test_any_store_name_gets_a_collection(tmp_path, name):
    driver = MilvusVector(name, uri=str(tmp_path / "names.db"))
    await driver.open()
    await driver.upsert(["a"], [[1.0, 0.0]], [{}])
    assert await driver.existing(["a"]) == {"a"}
    assert expr.milvus_valid(driver._name)
    assert (driver._name == name) == expr.milvus_ok(name)
    await driver.aclose()


def test_encoded_names_never_meet_kept_names():
    assert expr.milvus_name("Agent-Notes") != expr.milvus_name("agent-notes")
    assert "__" in expr.milvus_name("a-b") and not expr.milvus_ok(expr.milvus_name("a-b"))
    assert expr.milvus_name("a__b") != "a__b"


def test_a_pinned_collection_must_be_a_milvus_name(tmp_path):
    config = StoreConfig(vector_driver="milvus", milvus={"uri": str(tmp_path / "x.db"), "collection": "bad-name"})
    with pytest.raises(ConfigurationError, match="bad-name"):
        MilvusVector.from_config(config, "store")
    pinned = MilvusVector.from_config(
        config.model_copy(update={"milvus": config.milvus.model_copy(update={"collection": "Good_Name"})}), "store"
    )
    assert pinned._name == "Good_Name"
    assert MilvusVector.for_collection(config, "side")._name == "side"


# -- configuration, secrets, errors ------------------------------------------------------


def test_config_section_and_environment(tmp_path):
    env = {"MILVUS_URI": "http://milvus:19530", "MILVUS_TOKEN": "root:tok-S3cret", "MILVUS_DB_NAME": "prod"}
    config = StoreConfig(vector_driver="milvus", home=str(tmp_path), **from_env(env))
    assert config.milvus.uri == "http://milvus:19530" and config.milvus.db_name == "prod"
    assert "tok-S3cret" not in repr(config) and "tok-S3cret" not in config.model_dump_json()
    driver = MilvusVector.from_config(config, "c")
    assert driver._token == "root:tok-S3cret" and "S3cret" not in repr(driver)
    default = MilvusVector.from_config(StoreConfig(vector_driver="milvus", home=str(tmp_path)), "c")
    assert default.local and default.uri == str(tmp_path / "milvus.db")


async def test_an_unreachable_server_is_backend_unavailable_without_the_token(caplog):
    token = "root:tok-N3verShown"
    driver = MilvusVector("c", uri="http://root:tok-N3verShown@127.0.0.1:1", token=token, timeout=5)
    assert "N3ver" not in repr(driver)
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendUnavailable) as info:
        await driver.open()
    assert "127.0.0.1:1" in str(info.value)
    assert "N3ver" not in str(info.value) and info.value.__cause__ is None
    assert "N3ver" not in caplog.text


async def test_a_password_in_the_uri_never_shows():
    driver = MilvusVector("c", uri="http://root:pw-N0tShown@127.0.0.1:1", timeout=5)
    assert "N0tShown" not in repr(driver)
    with pytest.raises(BackendUnavailable) as info:
        await driver.open()
    assert "N0tShown" not in str(info.value) and info.value.__cause__ is None


def test_reaching_the_server_is_transient_and_refusals_are_not():
    import grpc
    from pymilvus.exceptions import MilvusException

    def rpc(code):
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")

    assert milvus_module._transient(rpc(grpc.StatusCode.UNAVAILABLE))
    assert milvus_module._transient(rpc(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert milvus_module._transient(MilvusException(code=8, message="rate limit exceeded[rate=10]"))
    assert not milvus_module._transient(rpc(grpc.StatusCode.INVALID_ARGUMENT))
    assert not milvus_module._transient(MilvusException(code=1100, message="invalid parameter"))


async def test_a_collection_of_another_shape_is_a_rejection_not_a_retry(tmp_path):
    from pymilvus import AsyncMilvusClient, DataType, MilvusClient

    uri = str(tmp_path / "shape.db")
    driver = MilvusVector("someone_elses", uri=uri)
    await driver.open()  # starts the engine for the file
    raw = AsyncMilvusClient(uri=uri)
    schema = MilvusClient.create_schema(auto_id=True)
    schema.add_field("key", DataType.INT64, is_primary=True)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=2)
    index = MilvusClient.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="L2")
    await raw.create_collection("someone_elses", schema=schema, index_params=index)
    await raw.close()
    with pytest.raises(BackendRejected, match="'someone_elses' exists with other fields \\(emb, key\\)"):
        await driver.upsert(["a"], [[1.0, 0.0]], [{}])
    await driver.aclose()
    with pytest.raises(BackendRejected, match="exists with other fields"):
        await MilvusVector("someone_elses", uri=uri).open()


async def test_missing_client_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependencyError, match=r"promethean-persistence\[milvus\]"):
        await MilvusVector("c", uri=str(tmp_path / "x.db")).open()


def test_benchmark_smoke():
    """bench/milvus.py runs end to end at a tiny size and prints its documented shape."""
    from test_bench_smoke import NUMBER, assert_ratios, assert_shape, run_bench

    result = run_bench("milvus.py", "--sizes", "300", "--queries", "20", "--batch", "100", "--rounds", "2")
    side = {
        "insert": {"ours_per_s": NUMBER, "raw_per_s": NUMBER, "ratio": NUMBER, "ratio_spread": dict},
        "query": {"ours_p50_ms": NUMBER, "raw_p50_ms": NUMBER, "ratio": NUMBER, "ratio_spread": dict},
    }
    assert_shape(result, {"batch": int, "queries": int, "rounds": int, "lite_300": side})
    assert_ratios(result, {"result.lite_300.insert.ratio", "result.lite_300.query.ratio"})
