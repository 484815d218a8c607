"""Search modes (SPEC §13) on every combination of drivers: ``vector``, ``lexical`` and
``hybrid`` rank, score, filter and merge queries the same way whatever the drivers."""

from __future__ import annotations

import math

import pytest

from .._errors import ValidationError
from .._store import SemanticStore
from .store import MakeStore

DOCS = {
    "zebra": ("Configure the zebra parser with zebra options", "tools"),
    "quantum": ("Quantum entanglement experiments in the laboratory", "science"),
    "oak": ("Kitchen tables and chairs made of solid oak", "home"),
    "cat": ("A cat sleeps on the warm mat all afternoon", "home"),
    "market": ("Stock markets fell sharply on Monday", "news"),
    "xk": ("Error XK7731 means the disk quota is exceeded", "tools"),
}
SCORE_KEYS = ("score", "vector_score", "lexical_score")


async def _store(make_store: MakeStore, **config: object) -> SemanticStore:
    store: SemanticStore = await make_store(**config)
    await store.insert_many([{"id": i, "text": t, "metadata": {"kind": k}} for i, (t, k) in DOCS.items()])
    await store.flush()
    return store


class SearchSuite:
    """Subclass and provide the ``make_store`` fixture (see ``StoreSuite``)."""

    async def test_every_mode_scores_its_hits(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        vector = await store.get_most_relevant("zebra parser", 3, mode="vector")
        assert vector[0]["id"] == "zebra"
        assert all(h["score"] == h["vector_score"] and h["lexical_score"] is None for h in vector)
        lexical = await store.get_most_relevant("XK7731 quota", 3, mode="lexical")
        assert [h["id"] for h in lexical] == ["xk"]  # only entries holding a word
        assert lexical[0]["score"] == lexical[0]["lexical_score"] > 0 and lexical[0]["vector_score"] is None
        hybrid = await store.get_most_relevant("zebra parser", 3, mode="hybrid")
        top = hybrid[0]
        assert top["id"] == "zebra" and top["vector_score"] is not None and top["lexical_score"] is not None
        assert math.isclose(top["score"], 2 / 61)  # first in both rankings, rrf_k 60
        assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
        assert all(set(SCORE_KEYS) <= set(h) for h in hybrid)

    async def test_hybrid_keeps_what_either_ranking_finds_first(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        for query in ("error code XK7731", "laboratory experiments", "solid oak chairs"):
            firsts = {(await store.get_most_relevant(query, 1, mode=m))[0]["id"] for m in ("vector", "lexical")}
            assert firsts <= {h["id"] for h in await store.get_most_relevant(query, 3, mode="hybrid")}, query

    async def test_filters_and_queries_merge_in_every_mode(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        for mode in ("vector", "lexical", "hybrid"):
            hits = await store.get_most_relevant(
                ["zebra", "kitchen oak"], 10, {"kind": {"$in": ["home", "news"]}}, mode=mode
            )
            assert hits and all(h["metadata"]["kind"] in ("home", "news") for h in hits), mode
            assert hits[0]["id"] == "oak", mode
            both = {h["id"] for h in await store.get_most_relevant(["zebra", "quantum"], 10, mode=mode)}
            assert {"zebra", "quantum"} <= both, mode

    async def test_lexical_follows_updates_and_deletes(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        await store.insert({"id": "zebra", "text": "Lions rest in the savanna", "metadata": {"kind": "wild"}})
        await store.delete("quantum")
        assert [h["id"] for h in await store.get_most_relevant("zebra quantum lions", 5, mode="lexical")] == ["zebra"]
        assert (await store.get_most_relevant("lions", 1, mode="hybrid"))[0]["id"] == "zebra"

    async def test_config_sets_the_default_mode(self, make_store: MakeStore) -> None:
        store = await _store(make_store, search_mode="lexical", rrf_k=1)
        [hit] = await store.get_most_relevant("quota", 5)
        assert hit["id"] == "xk" and hit["score"] == hit["lexical_score"]
        hybrid = await store.get_most_relevant("zebra parser", 2, mode="hybrid")
        assert math.isclose(hybrid[0]["score"], 2 / 2)  # the store's rrf_k
        assert math.isclose((await store.get_most_relevant("zebra parser", 1, mode="hybrid", rrf_k=9))[0]["score"], 0.2)

    async def test_bad_search_arguments_are_refused(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        for kwargs, field in (
            ({"mode": "bm25"}, "mode"),
            ({"mode": 1}, "mode"),
            ({"fetch_k": 0}, "fetch_k"),
            ({"rrf_k": True}, "rrf_k"),
            ({"min_score": float("nan"), "mode": "hybrid"}, "min_score"),
        ):
            with pytest.raises(ValidationError) as refused:
                await store.get_most_relevant("zebra", 3, **kwargs)
            assert refused.value.field == field

    async def test_without_a_lexical_index_only_vector_search_runs(self, make_store: MakeStore) -> None:
        store = await _store(make_store, name="plain", lexical_index=False)
        assert (await store.get_most_relevant("zebra parser", 1))[0]["id"] == "zebra"
        for mode in ("lexical", "hybrid"):
            with pytest.raises(ValidationError, match="lexical index"):
                await store.get_most_relevant("zebra", 3, mode=mode)

    async def test_mmr_in_every_mode(self, make_store: MakeStore) -> None:
        store = await _store(make_store)
        for mode in ("vector", "lexical", "hybrid"):
            picked = await store.max_marginal_relevance("zebra quota oak", 3, mode=mode, lambda_mult=0.3)
            assert 1 <= len(picked) <= 3 and len({h["id"] for h in picked}) == len(picked), mode
