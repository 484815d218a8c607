"""The lexical contract every primary driver that declares ``Capabilities.lexical`` keeps: the
same top results on a fixed corpus (engines rank a little differently, so only unambiguous
winners are compared), filters exactly as ``most_recent`` applies them, and an index that
follows every put, replace, delete and drop."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ..drivers.base import LexicalPrimary, PrimaryDriver
from .primary import rec

CORPUS: dict[str, tuple[str, dict[str, Any]]] = {
    "fox": ("The quick brown fox jumps over the lazy dog", {"kind": "a", "n": 1}),
    "forest": ("Foxes were running through the dark forest at night", {"kind": "b", "n": 2}),
    "postgres": ("PostgreSQL keeps documents in tables with indexes", {"kind": "a", "n": 3}),
    "sleep": ("The old dog sleeps all day long in the sun", {"kind": "b", "n": 4}),
    "zebra": ("Configure the zebra parser: zebra options and zebra files", {"kind": "c", "n": 5}),
    "quantum": ("Quantum entanglement experiments in the laboratory", {"kind": "c", "n": 6}),
    "blank": ("", {"kind": "a", "n": 7}),
    "tables": ("Kitchen tables and chairs made of oak", {"kind": "b", "n": 8}),
}

#: queries whose best match no reasonable ranking disputes
TOP: dict[str, str] = {
    "zebra": "zebra",
    "quantum laboratory": "quantum",
    "PostgreSQL indexes": "postgres",
    "jumping foxes": "fox",  # stemming: jumping ~ jumps
    "dogs sleeping in the sun": "sleep",
    "oak chairs": "tables",
}


def _lex(primary: PrimaryDriver) -> LexicalPrimary:
    if not primary.capabilities.lexical:
        pytest.skip(f"{primary.name} keeps no lexical index")
    return cast(LexicalPrimary, primary)


async def _load(primary: PrimaryDriver) -> LexicalPrimary:
    lex = _lex(primary)
    await primary.put([rec(i, 1000 + n, text, metadata=meta) for n, (i, (text, meta)) in enumerate(CORPUS.items())])
    return lex


async def _ids(lex: LexicalPrimary, text: str, limit: int = 10, where: Any = None) -> list[str]:
    from .._filters import parse

    return [h.id for h in await lex.lexical_query(text, limit, parse(where))]


class LexicalSuite:
    """Subclass and provide an async ``primary`` fixture yielding an opened, empty driver."""

    async def test_fixed_corpus_has_the_same_winners(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        found = {q: (await _ids(lex, q))[:1] for q in TOP}
        assert found == {q: [top] for q, top in TOP.items()}

    async def test_scores_are_positive_and_best_first(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        hits = await lex.lexical_query("zebra dog fox", 10)
        assert {h.id for h in hits} == {"zebra", "fox", "forest", "sleep"}  # any word; fox ~ foxes
        assert all(h.score > 0 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    async def test_stop_words_punctuation_and_empty_text_match_nothing(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        assert await lex.lexical_query("the of and in", 10) == []
        assert await lex.lexical_query(" ?! -- ", 10) == []
        assert "blank" not in await _ids(lex, "a the kind")

    async def test_query_syntax_is_only_words(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        for hostile in ('"zebra" OR NOT (dog*', "zebra) AND ({$where: 1}", "zebra' | !dog & <->", "zebra:* ^2 ~1"):
            assert (await _ids(lex, hostile))[:1] == ["zebra"], hostile
        pasted = " ".join(f"w{i}" for i in range(20_000)) + " zebra"
        assert await _ids(lex, pasted) == []  # only the first MAX_TERMS words count

    async def test_limit(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        assert len(await _ids(lex, "dog fox zebra tables", 2)) == 2
        assert await _ids(lex, "zebra", 1) == ["zebra"]

    async def test_filters_apply_exactly(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        assert await _ids(lex, "dog", where={"kind": "b"}) == ["sleep"]
        assert set(await _ids(lex, "dog tables zebra", where={"$or": [{"kind": "c"}, {"n": {"$gte": 8}}]})) == {
            "zebra",
            "tables",
        }
        assert await _ids(lex, "zebra", where={"kind": "a"}) == []
        # a filter keeping one of many matches still finds it (no top-k-then-filter loss)
        many = [rec(f"m{i:03d}", 5000 + i, f"zebra crossing number {i}", metadata={"kind": "m"}) for i in range(120)]
        many[-1].metadata = {"kind": "rare"}
        await primary.put(many)
        assert await _ids(lex, "zebra crossing", where={"kind": "rare"}) == ["m119"]

    async def test_index_follows_replace_delete_and_drop(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        await primary.put([rec("zebra", 2000, "Lions rest in the savanna", metadata={"kind": "c"})])
        assert await _ids(lex, "zebra") == []
        assert await _ids(lex, "lions") == ["zebra"]
        await primary.delete(["zebra", "fox"], tombstone_at=3000)
        assert await _ids(lex, "lions jumps quick") == []
        await primary.put([rec("fox", 4000, "A quick one came back")])
        assert await _ids(lex, "quick") == ["fox"]
        await primary.drop()
        assert await _ids(lex, "fox dog tables quantum") == []

    async def test_words_beyond_ascii_match_in_any_case(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        await primary.put([rec("de", 1000, "Die große Straße in MÜNCHEN"), rec("el", 1000, "Ο Σίσυφος και η πέτρα")])
        assert await _ids(lex, "STRASSE straße") == ["de"]
        assert await _ids(lex, "München") == ["de"]
        assert await _ids(lex, "ΣΊΣΥΦΟΣ") == ["el"]

    async def test_equal_scores_tie_by_id(self, primary: PrimaryDriver) -> None:
        lex = _lex(primary)
        await primary.put([rec(i, 1000, "identical twin text") for i in ("t3", "t1", "t2")])
        assert await _ids(lex, "twin") == ["t1", "t2", "t3"]

    async def test_backfill_finishes_with_everything_indexed(self, primary: PrimaryDriver) -> None:
        lex = await _load(primary)
        steps = [step async for step in lex.lexical_backfill(3)]
        assert all(0 <= done <= total for done, total in steps)
        assert (await _ids(lex, "zebra"))[:1] == ["zebra"]
