"""Behaviour every VectorDriver must show."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from .._entries import TEXT_FINGERPRINT, content_hash
from .._errors import SemanticStoreError
from .._filters import evaluate, parse
from .._types import FINGERPRINT_KEY
from ..drivers.base import DocumentVector, VectorDriver
from .capabilities import check_declared

DIMS = 8


def unit(*values: float) -> list[float]:
    """The unit vector with ``values`` first, zero elsewhere."""
    v = np.zeros(DIMS, dtype=np.float32)
    v[: len(values)] = values
    unit_values: list[float] = (v / np.linalg.norm(v)).tolist()
    return unit_values


def basis(i: int) -> list[float]:
    """The ``i``-th basis vector (``i`` modulo the suite's dimensions)."""
    v = [0.0] * DIMS
    v[i % DIMS] = 1.0
    return v


class VectorDriverSuite:
    """Subclass and provide an async ``vector`` fixture yielding an opened, empty driver."""

    async def test_declared_capabilities_hold(self, vector: VectorDriver) -> None:
        check_declared(vector, "vector")
        assert vector.dims is None  # empty: no dimension yet
        assert isinstance(vector.collection, str) and vector.collection
        if vector.capabilities.stores_documents:  # the text it keeps describes a vector without a fingerprint
            documents = cast(DocumentVector, vector)
            await documents.upsert(["a"], [unit(1)], [{}], documents=["kept text"], timestamps=[1])
            assert await vector.fingerprints(["a"]) == {"a": TEXT_FINGERPRINT + content_hash("kept text")}
        else:
            await vector.upsert(["a"], [unit(1)], [{}])
        assert vector.dims == DIMS

    async def test_starts_empty(self, vector: VectorDriver) -> None:
        assert await vector.count() == 0
        assert await vector.existing(["a"]) == set()
        assert await vector.query(unit(1), 5) == []

    async def test_query_orders_by_cosine_similarity(self, vector: VectorDriver) -> None:
        await vector.upsert(
            ["same", "near", "far", "opposite"],
            [unit(1, 0), unit(1, 1), unit(0, 1), unit(-1, 0)],
            [{}, {}, {}, {}],
        )
        hits = await vector.query(unit(1, 0), 4)
        assert [h.id for h in hits] == ["same", "near", "far", "opposite"]
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == pytest.approx(1.0, abs=1e-5)
        assert scores[1] == pytest.approx(np.sqrt(0.5), abs=1e-4)
        assert scores[3] == pytest.approx(-1.0, abs=1e-5)
        assert [h.id for h in await vector.query(unit(1, 0), 2)] == ["same", "near"]

    async def test_upsert_is_idempotent_and_replaces(self, vector: VectorDriver) -> None:
        await vector.upsert(["a"], [unit(1)], [{"v": 1}])
        await vector.upsert(["a"], [unit(1)], [{"v": 1}])
        assert await vector.count() == 1
        await vector.upsert(["a", "b"], [unit(0, 1), unit(1)], [{"v": 2}, {}])
        hits = await vector.query(unit(0, 1), 1)
        assert hits[0].id == "a"
        assert [h.id for h in await vector.query(unit(0, 1), 5, parse({"v": 2}))] == ["a"]

    async def test_fetch_returns_the_stored_vectors(self, vector: VectorDriver) -> None:
        await vector.upsert(["a", "b"], [unit(1, 2), unit(0, 1)], [{}, {}])
        found = await vector.fetch(["a", "missing", "b"])
        assert set(found) == {"a", "b"}
        np.testing.assert_allclose(found["a"], unit(1, 2), atol=1e-6)
        np.testing.assert_allclose(found["b"], unit(0, 1), atol=1e-6)
        assert await vector.fetch([]) == {}

    async def test_metadata_only_upsert_keeps_the_vector(self, vector: VectorDriver) -> None:
        await vector.upsert(["a", "b"], [unit(1), unit(0, 1)], [{"tag": "x"}, {"tag": "x"}])
        await vector.upsert(["a"], None, [{"tag": "y"}])
        hits = await vector.query(unit(1), 5, parse({"tag": "y"}))
        assert [h.id for h in hits] == ["a"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)

    async def test_filters_inside_the_search(self, vector: VectorDriver) -> None:
        n = 40
        ids = [f"v{i:02d}" for i in range(n)]
        meta = [{"n": i, "kind": "even" if i % 2 == 0 else "odd", "deep": {"k": i % 5}} for i in range(n)]
        rng = np.random.default_rng(7)
        vectors = rng.normal(size=(n, DIMS)).astype(np.float32)
        await vector.upsert(ids, vectors, meta)
        query = vectors[0]
        specs: list[dict[str, Any]] = [
            {"kind": "odd"},
            {"n": {"$gte": 30}},
            {"deep.k": {"$in": [1, 3]}},
            {"$or": [{"n": 5}, {"n": 7}]},
            {"kind": {"$ne": "odd"}, "n": {"$lt": 10}},
            {"n": 39},  # very selective: the match is far from the query
        ]
        for spec in specs:
            node = parse(spec)
            matching = [i for i, m in zip(ids, meta) if evaluate(node, m)]
            hits = await vector.query(query, 5, node)
            assert len(hits) == min(5, len(matching)), spec
            assert {h.id for h in hits} <= set(matching), spec
            # and they are the best matching ones
            sims = {
                i: float(np.dot(vectors[k], query) / np.linalg.norm(vectors[k]) / np.linalg.norm(query))
                for k, i in enumerate(ids)
            }
            best = sorted(matching, key=lambda i: -sims[i])[: len(hits)]
            assert {h.id for h in hits} == set(best), spec

    async def test_existing_and_delete(self, vector: VectorDriver) -> None:
        await vector.upsert(["a", "b", "c"], [unit(1), unit(0, 1), unit(0, 0, 1)], [{}, {}, {}])
        assert await vector.existing(["a", "c", "zz"]) == {"a", "c"}
        await vector.delete(["a", "zz"])
        await vector.delete(["zz"])  # missing ids are not an error
        assert await vector.existing(["a", "b", "c"]) == {"b", "c"}
        assert await vector.count() == 2
        assert "a" not in {h.id for h in await vector.query(unit(1), 5)}

    async def test_fingerprints_read_back_with_the_metadata(self, vector: VectorDriver) -> None:
        await vector.upsert(
            ["a", "b"], [unit(1), unit(0, 1)], [{FINGERPRINT_KEY: "fp-a", "tag": "x", "deep": {"k": 1}}, {"x": 1}]
        )
        assert await vector.fingerprints(["a", "b", "missing"]) == {"a": "fp-a", "b": None}
        assert await vector.fingerprints([]) == {}
        # ordinary keys still filter with the reserved key beside them
        assert [h.id for h in await vector.query(unit(1), 5, parse({"tag": "x"}))] == ["a"]
        assert [h.id for h in await vector.query(unit(1), 5, parse({"deep.k": 1}))] == ["a"]
        assert [h.id for h in await vector.query(unit(1), 5, parse({"x": 1}))] == ["b"]
        # a metadata-only upsert replaces the fingerprint with the rest of the metadata
        await vector.upsert(["a"], None, [{FINGERPRINT_KEY: "fp-a2", "tag": "y"}])
        assert await vector.fingerprints(["a", "b"]) == {"a": "fp-a2", "b": None}
        assert [h.id for h in await vector.query(unit(1), 5, parse({"tag": "y"}))] == ["a"]
        await vector.upsert(["b"], None, [{FINGERPRINT_KEY: "fp-b", "x": 2}])
        assert await vector.fingerprints(["b"]) == {"b": "fp-b"}
        await vector.upsert(["b"], None, [{"x": 3}])  # and one without a fingerprint drops it
        assert await vector.fingerprints(["b"]) == {"b": None}
        await vector.delete(["a"])
        assert await vector.fingerprints(["a", "b"]) == {"b": None}

    async def test_iter_ids_lists_everything(self, vector: VectorDriver) -> None:
        ids = [f"i{k}" for k in range(23)]
        await vector.upsert(ids, [basis(k) for k in range(23)], [{}] * 23)
        seen = [i async for batch in vector.iter_ids(5) for i in batch]
        assert sorted(seen) == sorted(ids)

    async def test_wrong_dimension_is_rejected(self, vector: VectorDriver) -> None:
        await vector.upsert(["a"], [unit(1)], [{}])
        with pytest.raises(SemanticStoreError):
            await vector.upsert(["b"], [[1.0, 0.0]], [{}])
        with pytest.raises(SemanticStoreError):
            await vector.query([1.0, 0.0, 0.0], 1)
        assert await vector.count() == 1

    async def test_drop_empties(self, vector: VectorDriver) -> None:
        await vector.upsert(["a"], [unit(1)], [{}])
        await vector.drop()
        assert await vector.count() == 0
        assert await vector.existing(["a"]) == set()
