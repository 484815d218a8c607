"""Qdrant and Pinecone specifics. Neither server can run here: Qdrant is tested against the
official client's local mode (its in-process stand-in), Pinecone against the in-repo FAKE of
its data-plane REST API (``testing.pinecone_fake``) through the official SDK. With
``QDRANT_URL`` / ``PINECONE_API_KEY`` set, the conformance suites also run against the real
services (see conftest)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from promethean_persistence import BackendRejected, SemanticStore
from promethean_persistence._filters import parse
from promethean_persistence.testing.pinecone_fake import FakePinecone

from conftest import require_extra


def _unit(*values):
    v = np.zeros(8, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


# -- Qdrant (local mode: the client's stand-in) ----------------------------------------------


@pytest.fixture
def qdrant():
    require_extra("qdrant_client")
    from promethean_persistence.drivers.vector.qdrant import QdrantVector

    return QdrantVector


@pytest.mark.qdrant
async def test_qdrant_point_ids_are_uuid5_and_payload_keeps_metadata_apart(qdrant):
    from promethean_persistence.drivers.vector.qdrant import point_id

    v = qdrant("t_points", path=":memory:")
    await v.open()
    try:
        meta = {"id": "not ours", "metadata": {"x": 1}, "nested": {"a": [1, None]}}
        await v.upsert(["entry/1", "é"], [_unit(1), _unit(0, 1)], [meta, {}])
        assert point_id("entry/1") == str(uuid.uuid5(uuid.UUID("5b8f7c1e-2f0a-4c71-9a54-3f1d2e6b9c10"), "entry/1"))
        [point] = await v._client.retrieve("t_points", [point_id("entry/1")], with_payload=True)
        assert point.payload == {"id": "entry/1", "metadata": meta}  # the caller's keys stay theirs
        assert await v.existing(["entry/1", "é", "zz"]) == {"entry/1", "é"}
        hits = await v.query(_unit(1), 5, parse({"metadata.x": 1}))
        assert [h.id for h in hits] == ["entry/1"]
        hits = await v.query(_unit(1), 5, parse({"nested.a": {"$exists": True}}))
        assert [h.id for h in hits] == ["entry/1"]
    finally:
        await v.aclose()


@pytest.mark.qdrant
async def test_qdrant_filters_go_to_qdrant_where_they_mean_the_same(qdrant):
    from qdrant_client import models

    from promethean_persistence.drivers.vector.qdrant import qdrant_filter

    f = qdrant_filter(parse({"kind": "a", "n": {"$gte": 2}}))
    assert isinstance(f, models.Filter) and len(f.must) == 2
    assert qdrant_filter(parse({"kind": {"$ne": "a"}})) is None  # lists would differ: checked by us
    assert qdrant_filter(parse({"$or": [{"kind": "a"}, {"gone": None}]})) is None
    assert qdrant_filter(parse({"$or": [{"kind": "a"}, {"n": 3}]})).should


@pytest.mark.qdrant
async def test_qdrant_local_path_persists(qdrant, tmp_path):
    v = qdrant("t_persist", path=str(tmp_path / "q"))
    await v.open()
    await v.upsert(["a"], [_unit(1)], [{"k": "v"}])
    await v.aclose()
    v = qdrant("t_persist", path=str(tmp_path / "q"))
    await v.open()
    try:
        assert v.dims == 8 and await v.count() == 1
        assert [h.id for h in await v.query(_unit(1), 1, parse({"k": "v"}))] == ["a"]
    finally:
        await v.aclose()


@pytest.mark.qdrant
async def test_qdrant_needs_a_location():
    from promethean_persistence import ConfigurationError

    with pytest.raises(ConfigurationError, match="QDRANT_URL"):
        await SemanticStore.create(
            "t", config={"primaryDriver": "memory", "vectorDriver": "qdrant", "embeddingDriver": "hashing"}
        )


# -- Pinecone (the FAKE data plane, through the official SDK) ---------------------------------


@pytest.fixture
def fake():
    require_extra("pinecone")
    with FakePinecone("fake-key") as server:
        yield server


def _config(fake, **extra):
    return {
        "primaryDriver": "memory",
        "vectorDriver": "pinecone",
        "embeddingDriver": "hashing",
        "pinecone": {"api_key": fake.api_key, "host": fake.url},
        "vectorRetryDelayMs": 10,
        **extra,
    }


@pytest.mark.pinecone
async def test_pinecone_metadata_is_flattened_to_what_pinecone_accepts(fake):
    store = await SemanticStore.create("notes", config=_config(fake))
    try:
        meta = {"user": {"name": "Duck", "level": 2}, "tags": ["a", "b"], "nums": [1, 2], "gone": None, "ok": True}
        id_ = await store.insert({"text": "hello pond", "metadata": meta})
        [(values, stored, _)] = [fake.namespaces[store.name][id_]]
        assert stored["user.name"] == "Duck" and stored["user.level"] == 2  # nested -> dotted keys
        assert stored["tags"] == ["a", "b"] and stored["nums"] == "[1,2]" and "gone" not in stored
        assert len(values) == store.embedder.dimensions
        assert (await store.get(id_))["metadata"]["user"] == {"name": "Duck", "level": 2}
        hits = await store.get_most_relevant("hello pond", 5, where={"user.level": {"$gte": 2}, "gone": None})
        assert [h["id"] for h in hits] == [id_]
        assert store.vector.namespace == store.name  # one namespace per store
    finally:
        await store.cleanup()


@pytest.mark.pinecone
async def test_the_fake_refuses_what_pinecone_refuses(fake):
    import httpx

    async with httpx.AsyncClient(base_url=fake.url, headers={"Api-Key": fake.api_key}) as http:

        async def upsert(vectors):
            return await http.post("/vectors/upsert", json={"vectors": vectors, "namespace": "n"})

        for bad in ({"nested": {"a": 1}}, {"n": None}, {"l": [1, 2]}, {"big": "x" * 41_000}):
            response = await upsert([{"id": "v", "values": [0.1, 0.2], "metadata": bad}])
            assert response.status_code == 400, bad
        response = await upsert([{"id": f"v{i}", "values": [0.1, 0.2]} for i in range(1001)])
        assert response.status_code == 400 and "1000" in response.json()["message"]
        assert fake.namespaces.get("n", {}) == {}
        assert (await upsert([{"id": "ok", "values": [0.1, 0.2], "metadata": {"l": ["a"]}}])).status_code == 200
        response = await upsert([{"id": "dims", "values": [0.1, 0.2, 0.3]}])
        assert response.status_code == 400 and "dimension" in response.json()["message"]
        response = await http.post("/query", json={"topK": 1, "vector": [0.1, 0.2]}, headers={"Api-Key": "wrong"})
        assert response.status_code == 401


@pytest.mark.pinecone
async def test_pinecone_oversized_metadata_is_a_clear_failure_not_a_retry_loop(fake):
    store = await SemanticStore.create("notes", config=_config(fake))
    try:
        id_ = await store.insert({"text": "big", "metadata": {"blob": "x" * 50_000}})
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["failed"] == 1, report
        assert "40960 bytes" in report["vector_write_failures"][0]["error"]
        assert report["vector_write_failures"][0]["attempts"] == 1  # refused, not retried
        assert (await store.get(id_))["metadata"]["blob"].startswith("x")  # the entry itself is kept
    finally:
        await store.cleanup()


@pytest.mark.pinecone
async def test_pinecone_rate_limits_are_backpressure(fake):
    store = await SemanticStore.create("notes", config=_config(fake, vectorMaxRetries=20))
    try:
        await store.insert({"id": "warm", "text": "before the limit"})
        fake.fail_next(12, status=429)  # more than the SDK's own retries
        ids = await store.insert_many([{"text": f"during the limit {i}"} for i in range(50)])
        assert await store.count() == 51  # every insert was acknowledged and kept
        while fake._failures:
            await store.flush()
        await store.flush()
        report = await store.get_consistency_report(None)
        assert report["inconsistent_documents"] == 0 and report["total_documents"] == 51, report
        assert await store.vector.existing(ids) == set(ids)
        assert sum(r == "POST /vectors/upsert" for r in fake.requests) > 2
    finally:
        await store.cleanup()


@pytest.mark.pinecone
async def test_pinecone_late_visibility_still_reports_consistent(tmp_path):
    require_extra("pinecone")
    with FakePinecone("fake-key", visibility_delay=0.5) as fake:
        store = await SemanticStore.create("notes", config=_config(fake))
        try:
            id_ = await store.insert({"text": "eventually visible"})
            # fetch (used by the report) sees it at once; queries only once Pinecone indexed it
            assert (await store.get_consistency_report(None))["consistent_documents"] == 1
            assert await store.get_most_relevant("eventually visible", 1) == []
            await asyncio.sleep(0.6)
            assert [e["id"] for e in await store.get_most_relevant("eventually visible", 1)] == [id_]
        finally:
            await store.cleanup()


@pytest.mark.pinecone
async def test_pinecone_api_key_never_shows(fake):
    config = _config(fake)
    config["pinecone"]["api_key"] = "pcsk-very-secret-123"
    with pytest.raises(BackendRejected) as info:
        await SemanticStore.create("notes", config=config)
    assert "pcsk-very-secret-123" not in str(info.value) and "401" in str(info.value)
    assert fake.url.split("//")[1] in str(info.value)


# -- qdrant-edge: Qdrant's engine in-process (beta) ------------------------------------------


@pytest.mark.qdrant
async def test_qdrant_edge_shard_persists_and_filters_booleans_exactly(tmp_path):
    require_extra("qdrant_edge")
    from promethean_persistence.drivers.vector.qdrant_edge import QdrantEdgeVector

    v = QdrantEdgeVector("t_edge", str(tmp_path))
    await v.open()
    await v.upsert(["a", "b"], [_unit(1), _unit(1, 0.2)], [{"flag": True}, {"flag": False}])
    await v.aclose()
    v = QdrantEdgeVector("t_edge", str(tmp_path))
    await v.open()
    try:
        assert v.dims == 8 and await v.count() == 2
        # MatchValue(True) matches nothing in qdrant-edge 0.9: the driver must not rely on it
        assert [h.id for h in await v.query(_unit(1), 5, parse({"flag": True}))] == ["a"]
        assert [h.id for h in await v.query(_unit(1), 5, parse({"flag": {"$in": [False]}}))] == ["b"]
    finally:
        await v.aclose()
