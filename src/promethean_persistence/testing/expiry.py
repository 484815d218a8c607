"""The expiry contract every primary driver that declares ``Capabilities.expiry`` keeps: an
expired record (``expires_at`` at or before the time of the call) is invisible to every read,
and ``purge_expired`` deletes expired records leaving tombstones, as ``delete`` does."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest

from .._filters import parse
from ..drivers.base import ExpiringPrimary, LexicalPrimary, PrimaryDriver
from .primary import rec

HOUR = 3_600_000


def _now() -> int:
    return int(time.time() * 1000)


def _expiring(primary: PrimaryDriver) -> ExpiringPrimary:
    if not primary.capabilities.expiry:
        pytest.skip(f"{primary.name} keeps no expiry")
    return cast(ExpiringPrimary, primary)


async def _load(primary: PrimaryDriver) -> int:
    """Puts ``old`` (expired an hour ago), ``gone`` (expired just now), ``later`` (expires in
    an hour) and ``always`` (never), texts sharing the word "walrus"; returns the time used."""
    now = _now()
    await primary.put(
        [
            rec("always", 1000, "walrus always here", metadata={"kind": "a"}, vector_status="synced"),
            rec("gone", 1001, "walrus gone now", metadata={"kind": "a"}, expires_at=now, vector_status="synced"),
            rec("later", 1002, "walrus later", metadata={"kind": "b"}, expires_at=now + HOUR, vector_status="synced"),
            rec("old", 1003, "walrus old", metadata={"kind": "b"}, expires_at=now - HOUR, vector_status="synced"),
        ]
    )
    return now


async def _iterated(primary: PrimaryDriver, batch_size: int = 1) -> list[str]:
    return [r.id for batch in [b async for b in primary.iterate(batch_size)] for r in batch]


class ExpirySuite:
    """Subclass and provide an async ``primary`` fixture yielding an opened, empty driver."""

    async def test_expires_at_round_trips(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        now = await _load(primary)
        later, always = await primary.get(["later", "always"])
        assert later is not None and later.expires_at == now + HOUR
        assert later.to_entry()["expires_at"] == now + HOUR
        assert always is not None and always.expires_at is None
        assert "expires_at" not in always.to_entry()
        assert [r.expires_at for r in await primary.most_recent(1, parse({"kind": "b"}))] == [now + HOUR]

    async def test_expired_records_are_invisible_to_every_read(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        await _load(primary)
        got = await primary.get(["always", "gone", "later", "old", "never"])
        assert [r.id if r else None for r in got] == ["always", None, "later", None, None]
        assert await primary.versions(["always", "gone", "later", "old", "never"]) == {"always": 1, "later": 1}
        assert [r.id for r in await primary.most_recent(10)] == ["later", "always"]
        assert [r.id for r in await primary.most_recent(10, order="asc", include_empty=True)] == ["always", "later"]
        assert [r.id for r in await primary.most_recent(10, parse({"kind": "b"}))] == ["later"]
        assert [r.id for r in await primary.most_recent(10, parse({"kind": "a"}), since=1001)] == []
        assert await primary.count() == 2
        assert await primary.count(parse({"kind": "a"})) == 1
        assert await primary.count(parse({"kind": {"$in": ["a", "b"]}})) == 2
        assert await _iterated(primary) == ["always", "later"]
        assert await _iterated(primary, 10) == ["always", "later"]
        assert [r.id for b in [b async for b in primary.iterate(1, after="gone")] for r in b] == ["later"]

    async def test_expired_records_leave_lexical_results(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        if not primary.capabilities.lexical:
            pytest.skip(f"{primary.name} keeps no lexical index")
        lex = cast(LexicalPrimary, primary)
        await _load(primary)
        assert sorted(h.id for h in await lex.lexical_query("walrus", 10)) == ["always", "later"]
        assert [h.id for h in await lex.lexical_query("walrus old", 1)] != ["old"]
        assert [h.id for h in await lex.lexical_query("old", 10)] == []
        assert [h.id for h in await lex.lexical_query("walrus", 10, parse({"kind": "b"}))] == ["later"]
        assert [h.id for h in await lex.lexical_query("gone", 10, parse({"kind": "a"}))] == []

    async def test_a_record_disappears_when_it_expires(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        await primary.put([rec("soon", 1000, "walrus soon", expires_at=_now() + 300), rec("stay", 999)])
        assert [r.id if r else None for r in await primary.get(["soon"])] == ["soon"]
        assert await primary.count() == 2
        await asyncio.sleep(0.4)
        assert await primary.get(["soon"]) == [None]
        assert [r.id for r in await primary.most_recent(10)] == ["stay"]
        assert await primary.count() == 1
        assert await _iterated(primary) == ["stay"]
        if primary.capabilities.lexical:
            assert await cast(LexicalPrimary, primary).lexical_query("walrus", 10) == []

    async def test_purge_deletes_expired_records_leaving_tombstones(self, primary: PrimaryDriver) -> None:
        exp = _expiring(primary)
        now = await _load(primary)
        assert await exp.purge_expired(now, 0) == []
        first = await exp.purge_expired(now, 1)
        assert first == ["old"]  # the longest expired first
        second = await exp.purge_expired(now, 10)
        assert second == ["gone"]
        assert await exp.purge_expired(now, 10) == []
        assert await primary.count() == 2
        assert sorted(r.id for r in await primary.most_recent(10)) == ["always", "later"]
        # the deletions are the vector outbox's work now, as delete(ids, tombstone_at=now) leaves them
        claimed = await primary.claim(10, now=now, lease_ms=100)
        assert sorted((r.id, r.vector_status) for r in claimed) == [("gone", "deleting"), ("old", "deleting")]
        assert all(r.vector_updated_at == now for r in claimed)
        # a purge at a later time takes what expired by then
        assert await exp.purge_expired(now + 2 * HOUR, 10) == ["later"]
        assert [r.id for r in await primary.most_recent(10)] == ["always"]

    async def test_writing_an_expired_id_again_makes_it_visible(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        now = await _load(primary)
        await primary.put([rec("old", 1003, "walrus old again", expires_at=now + HOUR)])
        [old] = await primary.get(["old"])
        assert old is not None and old.text == "walrus old again" and old.expires_at == now + HOUR
        await primary.put([rec("gone", 1001, "walrus gone again")])
        [gone] = await primary.get(["gone"])
        assert gone is not None and gone.expires_at is None
        assert await primary.count() == 4
        if primary.capabilities.lexical:
            hits = await cast(LexicalPrimary, primary).lexical_query("walrus", 10)
            assert sorted(h.id for h in hits) == ["always", "gone", "later", "old"]

    async def test_claim_still_hands_out_expired_records(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        await primary.put([rec("x", 1000, expires_at=_now() - HOUR)])
        assert [r.id for r in await primary.claim(10, now=_now(), lease_ms=100)] == ["x"]

    async def test_many_expired_rows_do_not_hide_live_ones(self, primary: PrimaryDriver) -> None:
        _expiring(primary)
        now = _now()
        dead: list[Any] = [rec(f"d{i:02}", 2000 + i, f"walrus dead {i}", expires_at=now - 1) for i in range(30)]
        await primary.put([*dead, rec("zz", 1000, "walrus live")])
        assert [r.id for r in await primary.most_recent(5)] == ["zz"]
        assert await _iterated(primary, 4) == ["zz"]
        if primary.capabilities.lexical:
            assert [h.id for h in await cast(LexicalPrimary, primary).lexical_query("walrus", 3)] == ["zz"]
