"""Scoped views (SPEC §13) on every combination of drivers: ``store.scope(user=...)`` writes
carry the scope, and no read, search, count, report or delete ever crosses it, whatever the
caller's filter."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from .._errors import DocumentNotFound, SemanticStoreError, ValidationError
from .._scope import ScopedStore
from .._store import SemanticStore
from .store import MakeStore

TEXTS = ["the shared secret plan for monday", "notes about the garden and roses", "the secret recipe for soup"]
HOSTILE: list[dict[str, Any]] = [
    {"$or": [{"user": "eve"}, {"user": "ada"}]},
    {"user": {"$ne": "ada"}},
    {"user": {"$exists": False}},
    {"user": {"$in": ["eve", None]}},
    {"$or": [{"user": "eve"}, {"user": {"$exists": False}}, {"topic": {"$exists": True}}]},
]


async def _stores(make_store: MakeStore) -> tuple[Any, Any, ScopedStore]:
    """A store holding the same texts for ada (a0..), eve (e0..) and no one (n0..)."""
    store: SemanticStore = await make_store()  # Any, as its entries are indexed without checks
    ada, eve = store.scope(user="ada"), store.scope(user="eve")
    await ada.insert_many([{"id": f"a{i}", "text": t, "metadata": {"topic": i}} for i, t in enumerate(TEXTS)])
    await eve.insert_many([{"id": f"e{i}", "text": t, "metadata": {"topic": i}} for i, t in enumerate(TEXTS)])
    await store.insert_many([{"id": f"n{i}", "text": t, "metadata": {"topic": i}} for i, t in enumerate(TEXTS)])
    await store.flush()
    return store, ada, eve


def _ids(entries: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in entries}


class ScopeSuite:
    """Subclass and provide the ``make_store`` fixture (see ``StoreSuite``)."""

    async def test_writes_carry_the_scope(self, make_store: MakeStore) -> None:
        store, ada, _ = await _stores(make_store)
        assert (await store.get("a0"))["metadata"]["user"] == "ada"
        assert (await store.get("a0"))["metadata"]["topic"] == 0
        id_ = await ada.insert({"text": "more", "metadata": {"user": "ada", "k": True}})
        assert (await ada.get(id_))["metadata"]["user"] == "ada"
        for bad in ("eve", None, 1, ["ada"], {"x": "ada"}):
            with pytest.raises(ValidationError):
                await ada.insert({"id": "x", "text": "t", "metadata": {"user": bad}})
        with pytest.raises(ValidationError):  # nothing of a batch is written
            await ada.insert_many([{"id": "ok", "text": "t"}, {"id": "x", "text": "t", "metadata": {"user": "eve"}}])
        flagged = store.scope(flag=True)
        with pytest.raises(ValidationError):  # True is not 1
            await flagged.insert({"id": "x", "text": "t", "metadata": {"flag": 1}})
        assert await store.get_many(["ok", "x"]) == [None, None]

    async def test_an_id_of_another_scope_is_refused(self, make_store: MakeStore) -> None:
        store, ada, eve = await _stores(make_store)
        for taken in ("e0", "n0"):
            with pytest.raises(ValidationError, match="outside this scope"):
                await ada.insert({"id": taken, "text": "overwritten"})
        assert (await store.get("e0"))["text"] == TEXTS[0] and (await store.get("e0"))["metadata"]["user"] == "eve"
        await ada.insert({"id": "a0", "text": "replaced"})  # its own id: an upsert
        assert (await ada.get("a0"))["text"] == "replaced"

    async def test_reads_never_cross_the_scope(self, make_store: MakeStore) -> None:
        store, ada, eve = await _stores(make_store)
        mine = {"a0", "a1", "a2"}
        assert await ada.get("e0") is None and await ada.get("n0") is None
        assert [e and e["id"] for e in await ada.get_many(["a1", "e1", "n1"])] == ["a1", None, None]
        assert _ids(await ada.get_most_recent(100)) == mine
        assert [e["id"] async for e in ada.iter_entries(batch_size=2)] == ["a0", "a1", "a2"]
        assert await ada.count() == 3 and await eve.count() == 3 and await store.count() == 9
        query = await store.vector.fetch(["a0"])  # a stored vector as the query
        for where in [None, {}, {"topic": 0}, *HOSTILE]:
            assert _ids(await ada.get_most_recent(100, where)) <= mine, where
            for mode in ("vector", "lexical", "hybrid"):
                assert _ids(await ada.get_most_relevant("secret plan garden", 100, where, mode=mode)) <= mine
                hits = await ada.max_marginal_relevance("secret plan", 10, where, fetch_k=20, mode=mode)
                assert _ids(hits) <= mine, (where, mode)
            assert _ids(await ada.search_by_vector(query["a0"].tolist(), 100, where)) <= mine, where
            assert _ids(await ada.max_marginal_relevance_by_vector(query["a0"].tolist(), 10, where)) <= mine, where
        assert _ids(await ada.get_most_relevant(["secret", "garden"], 100, mode="vector")) == mine
        assert _ids(await ada.get_most_relevant("secret", 100, {"$or": [{"user": "eve"}, {"topic": 0}]})) == {"a0"}
        assert _ids(await ada.get_most_recent(100, {"user": "eve"})) == set()
        with pytest.raises(ValidationError):  # the caller's filter is still checked
            await ada.get_most_recent(10, {"$where": "1"})

    async def test_counts_and_reports_stay_in_the_scope(self, make_store: MakeStore) -> None:
        store, ada, _ = await _stores(make_store)
        counts = await ada.vector_counts()
        assert sum(counts.values()) == 3 and counts == await ada.vector_counts(["a0", "a1", "a2", "e0", "n0"])
        report = await ada.get_consistency_report(None)
        assert report["total_documents"] == 3 and report["consistent_documents"] == 3
        assert report["orphaned_vectors"] == 0 and report["scope"] == {"user": "ada"}
        assert (await ada.get_consistency_report(2))["total_documents"] == 2
        assert (await ada.check_consistency("e0"))["has_document"] is False
        assert (await ada.check_consistency("a0"))["has_vector"] is True
        repaired = await ada.repair(dry_run=True)
        assert repaired["requeued"] == 0 and repaired["orphans_deleted"] == 0
        with pytest.raises(DocumentNotFound):
            await ada.retry_vector_write("e0")
        assert await ada.retry_vector_write("a0") is True

    async def test_deletes_and_drop_scope_stay_in_the_scope(self, make_store: MakeStore) -> None:
        store, ada, eve = await _stores(make_store)
        assert await ada.delete("e0") is False and await ada.delete("n0") is False
        assert await store.get("e0") is not None and await store.get("n0") is not None
        assert await ada.delete("a0") is True and await ada.delete("a0") is False
        await ada.insert_many([{"text": f"extra {i}", "id": f"x{i}"} for i in range(5)] + [{"text": "", "id": "empty"}])
        await store.flush()
        assert await ada.drop_scope() == 8
        assert await ada.count() == 0 and await eve.count() == 3 and await store.count() == 6
        await store.flush()
        ada_ids = ["a1", "a2", "empty"] + [f"x{i}" for i in range(5)]
        assert await store.vector.existing(ada_ids) == set()
        assert await store.vector.existing(["e0", "e1", "e2", "n0", "n1", "n2"]) == {"e0", "e1", "e2", "n0", "n1", "n2"}
        assert await ada.drop_scope() == 0

    async def test_nested_scopes_narrow(self, make_store: MakeStore) -> None:
        store, ada, _ = await _stores(make_store)
        duck = ada.scope(agent="duck")
        assert duck.fields == {"user": "ada", "agent": "duck"}
        await duck.insert({"id": "d", "text": "quack"})
        assert (await store.get("d"))["metadata"]["user"] == "ada"
        assert await duck.count() == 1 and await ada.count() == 4
        assert await duck.get("a0") is None and (await ada.get("d"))["id"] == "d"
        with pytest.raises(ValidationError):
            ada.scope(user="eve")
        assert ada.scope(user="ada").fields == {"user": "ada"}
        assert await duck.drop_scope() == 1 and await ada.count() == 3

    async def test_bad_scopes_are_refused(self, make_store: MakeStore) -> None:
        store: SemanticStore = await make_store()
        bad: list[dict[str, Any]] = [
            {},
            {"user": None},
            {"user": ["a"]},
            {"user": float("nan")},
            {"user": "a\x00"},
            {"a.b": 1},
            {"$or": 1},
            {"vectorStatus": "synced"},
            {"user": 2**70},
        ]
        for fields in bad:
            with pytest.raises(ValidationError):
                store.scope(**fields)

    def test_every_store_method_is_scoped_or_refused(self) -> None:
        offered = {n for n in vars(ScopedStore) if not n.startswith("_")}
        public = {n for n in dir(SemanticStore) if not n.startswith("_") and n not in ("reranker", "scope")}
        unhandled = public - offered - set(ScopedStore.REFUSED) - ScopedStore.SHARED
        assert not unhandled, f"SemanticStore methods neither scoped nor refused on ScopedStore: {unhandled}"
        assert not offered & set(ScopedStore.REFUSED) and not offered & ScopedStore.SHARED
        for name in public & offered:  # offered ones are the view's own, not inherited
            assert inspect.getattr_static(ScopedStore, name) is not inspect.getattr_static(SemanticStore, name)

    async def test_refused_methods_raise(self, make_store: MakeStore) -> None:
        store, ada, _ = await _stores(make_store)
        for name in ScopedStore.REFUSED:
            with pytest.raises(SemanticStoreError, match="not offered on a scoped view"):
                await getattr(ada, name)()
        assert await store.count() == 9  # drop was not run
        await ada.flush()  # the store's own, shared
        assert ada.supports_images == store.supports_images and ada.manifest() == store.manifest()
        with pytest.raises(AttributeError):
            ada.no_such_method  # noqa: B018
