"""Behaviour every PrimaryDriver must show."""

from __future__ import annotations

from typing import Any, cast

from .._filters import evaluate, parse
from .._types import Manifest, Record, VectorState
from ..drivers.base import Dedupe, PrimaryDriver, TransactionalPrimary, VectorAliases
from .capabilities import check_declared


class _Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def rec(id_: str, ts: int = 1000, text: str | None = None, **kw: Any) -> Record:
    """A Record ``id_`` at ``ts`` with ``text`` (default: ``"text of <id_>"``) and a content hash
    of it; other keywords set Record fields.
    """
    text = f"text of {id_}" if text is None else text
    return Record(id=id_, text=text, timestamp=ts, content_hash=f"h-{text}", **kw)


FILTERS: list[dict[str, Any]] = [
    {"kind": "a"},
    {"n": {"$gt": 2}},
    {"n": {"$gte": 2, "$lt": 4}},
    {"kind": {"$in": ["a", "c"]}},
    {"kind": {"$nin": ["a"]}},
    {"kind": {"$ne": "a"}},
    {"flag": True},
    {"flag": {"$exists": False}},
    {"nested.level": 2},
    {"$or": [{"kind": "b"}, {"n": 0}]},
    {"$and": [{"kind": {"$exists": True}}, {"n": {"$lte": 1}}]},
    {"name": {"$gt": "m"}},
    {"gone": None},
    {"vectorStatus": "failed"},
]


def sample() -> list[Record]:
    """Six records with varied metadata for the filter and window tests."""
    out = []
    for i in range(6):
        meta: dict[str, Any] = {"n": i, "kind": "abc"[i % 3], "name": "alpha beta mike zulu xray oscar".split()[i]}
        if i % 2:
            meta["flag"] = i % 4 == 1
        if i < 3:
            meta["nested"] = {"level": i}
        out.append(rec(f"id{i}", ts=1000 + i * 10, metadata=meta, vector_status="failed" if i == 4 else "pending"))
    return out


class PrimaryDriverSuite:
    """Subclass and provide an async ``primary`` fixture yielding an opened, empty driver."""

    async def test_declared_capabilities_hold(self, primary: PrimaryDriver) -> None:
        check_declared(primary, "primary")
        if primary.capabilities.transactions:  # a committed put_in shows; a failed one leaves nothing
            tx = cast(TransactionalPrimary, primary)
            async with tx.transaction() as conn:
                await tx.put_in(conn, [rec("kept")])
            try:
                async with tx.transaction() as conn:
                    await tx.put_in(conn, [rec("rolled-back")])
                    raise _Rollback
            except _Rollback:
                pass
            assert [r and r.id for r in await primary.get(["kept", "rolled-back"])] == ["kept", None]
        if primary.capabilities.dedupe:
            assert await cast(Dedupe, primary).dedupe(dry_run=True) == {}
        if primary.capabilities.vector_aliases:
            assert await cast(VectorAliases, primary).vector_collection() is None  # no alias for a fresh collection

    async def test_starts_empty(self, primary: PrimaryDriver) -> None:
        assert await primary.count() == 0
        assert await primary.get(["nope"]) == [None]
        assert await primary.most_recent(10) == []

    async def test_put_get_roundtrip_keeps_every_field(self, primary: PrimaryDriver) -> None:
        r = rec(
            "a",
            ts=-5,
            text="héllo 🌍\n",
            metadata={"nested": {"x": [1, 2.5, None, "s"]}, "ok": False},
            extra={"channel": "c1", "n": 3},
            vector_status="failed",
            vector_attempts=2,
            vector_error="boom",
            vector_next_at=123,
            vector_updated_at=100,
            vector_synced_at=90,
            embedding_model="m",
        )
        assert await primary.put([r]) == [None]
        assert r.version == 1
        assert await primary.get(["a"]) == [r]

    async def test_put_replaces_by_id_and_returns_what_it_replaced(self, primary: PrimaryDriver) -> None:
        first = rec("a", text="one")
        await primary.put([first])
        second = rec("a", text="two")
        [prev] = await primary.put([second])
        assert prev is not None
        assert prev.text == "one" and prev.version == 1 and second.version == 2
        [got] = await primary.get(["a"])
        assert got is not None
        assert (got.text, got.version) == ("two", 2)
        assert await primary.count() == 1
        third, fourth = rec("a", text="three"), rec("a", text="four")
        prevs = await primary.put([third, fourth])  # a repeated id sees its earlier write
        assert [p and p.text for p in prevs] == ["two", "three"] and fourth.version == 4
        [got] = await primary.get(["a"])
        assert got is not None and got.text == "four"

    async def test_versions_are_those_get_returns(self, primary: PrimaryDriver) -> None:
        assert await primary.versions([]) == {} and await primary.versions(["nope"]) == {}
        await primary.put([rec("a"), rec("b")])
        await primary.put([rec("a", text="again")])
        ids = ["b", "missing", "a", "b", *(f"x{i}" for i in range(600))]  # past one statement's chunk
        assert await primary.versions(ids) == {"a": 2, "b": 1}
        await primary.put([rec(f"x{i}") for i in range(0, 600, 7)])
        found = await primary.versions(ids)
        assert found == {r.id: r.version for r in await primary.get(ids) if r is not None} and len(found) == 88
        await primary.delete(["a"])
        assert "a" not in await primary.versions(["a"])

    async def test_get_is_aligned_with_input(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("a"), rec("b")])
        got = await primary.get(["b", "missing", "a", "b"])
        assert [r.id if r else None for r in got] == ["b", None, "a", "b"]

    async def test_delete_returns_existing_ids(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("a"), rec("b")])
        assert sorted(await primary.delete(["a", "zzz", "a"])) == ["a"]
        assert await primary.get(["a", "b"]) == [None, rec("b")]
        assert await primary.delete(["zzz"]) == []

    async def test_most_recent_orders_by_time_then_id(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("b", 10), rec("a", 10), rec("c", 30), rec("d", 20)])
        assert [r.id for r in await primary.most_recent(10)] == ["c", "d", "b", "a"]
        assert [r.id for r in await primary.most_recent(10, order="asc")] == ["a", "b", "d", "c"]
        assert [r.id for r in await primary.most_recent(2)] == ["c", "d"]

    async def test_most_recent_since_until_inclusive(self, primary: PrimaryDriver) -> None:
        await primary.put([rec(f"r{t}", t) for t in (10, 20, 30, 40)])
        got = await primary.most_recent(10, since=20, until=30)
        assert [r.id for r in got] == ["r30", "r20"]

    async def test_most_recent_skips_empty_text_unless_asked(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("full", 1), rec("blank", 2, text="  \n"), rec("empty", 3, text="")])
        assert [r.id for r in await primary.most_recent(10)] == ["full"]
        assert [r.id for r in await primary.most_recent(10, include_empty=True)] == ["empty", "blank", "full"]

    async def test_filters_match_reference_semantics(self, primary: PrimaryDriver) -> None:
        records = sample()
        await primary.put(records)
        for spec in FILTERS:
            node = parse(spec)
            expected = sorted(r.id for r in records if evaluate(node, {**r.metadata, "vectorStatus": r.vector_status}))
            got = sorted(r.id for r in await primary.most_recent(100, node))
            assert got == expected, spec
            assert await primary.count(node) == len(expected), spec

    async def test_iterate_yields_every_record_once_in_id_order(self, primary: PrimaryDriver) -> None:
        ids = [f"k{i:03d}" for i in range(25)]
        await primary.put([rec(i, ts=-int(i[1:])) for i in reversed(ids)])
        seen = [r.id async for batch in primary.iterate(7) for r in batch]
        assert seen == ids
        after = [r.id async for batch in primary.iterate(10, after="k019") for r in batch]
        assert after == ids[20:]

    async def test_count(self, primary: PrimaryDriver) -> None:
        await primary.put([rec(str(i)) for i in range(5)])
        assert await primary.count() == 5

    async def test_claim_takes_due_work_oldest_first_and_leases_it(self, primary: PrimaryDriver) -> None:
        await primary.put(
            [
                rec("p-old", vector_status="pending", vector_updated_at=1),
                rec("p-new", vector_status="pending", vector_updated_at=5),
                rec("p-leased", vector_status="pending", vector_next_at=10_000),
                rec("f-due", vector_status="failed", vector_next_at=50, vector_updated_at=3),
                rec("f-later", vector_status="failed", vector_next_at=5_000),
                rec("f-exhausted", vector_status="failed", vector_next_at=None),
                rec("done", vector_status="synced"),
                rec("skip", vector_status="skipped"),
            ]
        )
        claimed = await primary.claim(10, now=100, lease_ms=1000)
        assert [r.id for r in claimed] == ["p-old", "f-due", "p-new"]
        assert await primary.claim(10, now=200, lease_ms=1000) == []  # leased
        again = await primary.claim(10, now=1200, lease_ms=1000)
        assert sorted(r.id for r in again) == ["f-due", "p-new", "p-old"]
        assert len(await primary.claim(1, now=20_000, lease_ms=1000)) == 1

    async def test_vector_state_applies_only_to_its_version(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("a")])
        await primary.put([rec("a"), rec("b")])  # a is now version 2, b version 1
        applied = await primary.set_vector_state(
            [
                VectorState("a", 2, "synced", 1, None, None, 500, 500, "model-x"),
                VectorState("b", 7, "synced", 1, None, None, 500, 500, "model-x"),
                VectorState("missing", 1, "synced", 1, None, None, 500, 500, "model-x"),
            ]
        )
        assert applied == 1
        a, b = await primary.get(["a", "b"])
        assert a is not None and b is not None
        assert (a.vector_status, a.vector_synced_at, a.embedding_model, a.vector_attempts) == (
            "synced",
            500,
            "model-x",
            1,
        )
        assert b.vector_status == "pending"
        await primary.set_vector_state([VectorState("a", 2, "failed", 2, "down", 900, 600)])
        [a] = await primary.get(["a"])
        assert a is not None
        assert (a.vector_status, a.vector_error, a.vector_next_at, a.vector_synced_at) == ("failed", "down", 900, 500)

    async def test_tombstones_are_claimed_until_deleted(self, primary: PrimaryDriver) -> None:
        await primary.put([rec(i, vector_status="synced") for i in "abc"])
        assert sorted(await primary.delete(["a", "b", "zzz"], tombstone_at=50)) == ["a", "b"]
        assert await primary.claim(10, now=10, lease_ms=100) == []  # not due before 50
        claimed = await primary.claim(10, now=60, lease_ms=100)
        assert sorted((r.id, r.vector_status, r.version) for r in claimed) == [
            ("a", "deleting", 0),
            ("b", "deleting", 0),
        ]
        assert await primary.claim(10, now=100, lease_ms=100) == []  # leased
        await primary.set_vector_state(
            [VectorState("a", 0, "deleted", 1, None, None, 120), VectorState("b", 0, "deleting", 1, "down", 500, 120)]
        )
        assert await primary.claim(10, now=200, lease_ms=100) == []
        [b] = await primary.claim(10, now=500, lease_ms=100)
        assert (b.id, b.vector_attempts, b.vector_error) == ("b", 1, "down")
        await primary.put([rec("b")])  # writing the id again clears its tombstone
        assert [r.id for r in await primary.claim(10, now=10_000, lease_ms=100)] == ["b"]
        assert (await primary.claim(10, now=20_000, lease_ms=100))[0].vector_status == "pending"
        assert await primary.count() == 2
        assert await primary.delete(["c"]) == ["c"]  # without tombstone_at: none
        assert all(r.id != "c" for r in await primary.claim(10, now=99_999, lease_ms=1))

    async def test_claim_due_by_takes_future_retries(self, primary: PrimaryDriver) -> None:
        await primary.put([rec("f", vector_status="failed", vector_next_at=5_000)])
        assert await primary.claim(10, now=100, lease_ms=10) == []
        [f] = await primary.claim(10, now=100, lease_ms=10, due_by=10_000)
        assert f.id == "f" and f.vector_next_at == 110

    async def test_manifest_roundtrip_and_drop(self, primary: PrimaryDriver) -> None:
        assert await primary.get_manifest() is None
        manifest = Manifest("hashing", "hashing-v1-8", 8)
        await primary.set_manifest(manifest)
        assert await primary.get_manifest() == manifest
        # a re-embedding run keeps its checkpoint and target collection in the manifest
        manifest = manifest.copy(
            vector_collection="c__re_1",
            normalized=False,
            reembed={"after": "id-9", "embedding_model": "m2", "dimensions": 4},
        )
        await primary.set_manifest(manifest)
        assert await primary.get_manifest() == manifest
        await primary.put([rec("a")])
        await primary.drop()
        assert await primary.count() == 0
        assert await primary.get_manifest() is None
