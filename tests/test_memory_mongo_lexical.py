"""The lexical index of the memory and MongoDB primaries: the in-process tantivy index they
share (``drivers._tantivy``), the memory driver's, and MongoDB's two engines: the server's
text index (checked here with a stand-in collection: SecantusDB has no text indexes) and the
in-process fallback SecantusDB gets, rebuilt on reopen. The shared contract of every primary
is ``testing/lexical.py`` (tests/test_lexical.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from promethean_persistence import StoreConfig
from promethean_persistence._filters import parse
from promethean_persistence.drivers import _tantivy
from promethean_persistence.drivers._tantivy import TextIndex, filtered_search
from promethean_persistence.drivers.primary.memory import MemoryPrimary
from promethean_persistence.testing.primary import rec

CORPUS = {
    "runner": ("She runs every morning before work", {"kind": "sport"}),
    "cook": ("He cooks pasta and runs a small restaurant", {"kind": "food"}),
    "rare": ("A xylophone concert in the park", {"kind": "music"}),
    "park": ("Children play in the park every day", {"kind": "family"}),
    "empty": ("   ", {"kind": "sport"}),
}


async def _load(p: Any) -> None:
    await p.put([rec(i, 1000 + n, text, metadata=meta) for n, (i, (text, meta)) in enumerate(CORPUS.items())])


async def _ids(p: Any, text: str, limit: int = 10, where: Any = None) -> list[str]:
    return [h.id for h in await p.lexical_query(text, limit, parse(where))]


# -- the shared in-process index ----------------------------------------------------------


def test_index_ranks_stems_and_replaces() -> None:
    index = TextIndex()
    for i, (text, _) in CORPUS.items():
        index.add(i, text)
    assert [i for i, _ in index.search(["xylophone", "park"], 10)][:1] == ["rare"]  # the rare word wins
    assert {i for i, _ in index.search(["running"], 10)} == {"runner", "cook"}  # running ~ runs
    assert all(score > 0 for _, score in index.search(["park"], 10))
    index.add("rare", "nothing musical")
    index.remove(["park"])
    assert index.search(["xylophone", "park"], 10) == []
    index.clear()
    assert index.search(["runs"], 10) == []
    assert index.search([], 10) == [] and index.search(["runs"], 0) == []


def test_index_ties_are_cut_by_id_at_any_limit() -> None:
    index = TextIndex()
    for n in reversed(range(40)):
        index.add(f"t{n:02d}", "identical twin text")
    index.add("best", "twin twin twin")
    assert [i for i, _ in index.search(["twin"], 4)] == ["best", "t00", "t01", "t02"]
    assert [i for i, _ in index.search(["twin"], 41)][-1] == "t39"


def test_index_takes_any_text_and_spills_bulk_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    index = TextIndex()
    index.add("s", "lone \ud800 surrogate zebra")  # the store refuses these; the index must not break
    index.add("nul", "nul \x00 zebra")
    index.add("blank", "")
    assert {i for i, _ in index.search(["zebra"], 10)} == {"s", "nul"}
    monkeypatch.setattr(_tantivy, "FLUSH_AT", 5)
    for n in range(12):
        index.add(f"b{n}", "bulk words")
    assert len(index._pending) < 5  # committed without a search
    assert len(index.search(["bulk"], 20)) == 12


async def test_filtered_search_widens_until_enough_pass() -> None:
    index = TextIndex()
    for n in range(300):
        index.add(f"d{n:03d}", "common words")
    asked: list[int] = []

    async def keep(ids: list[str]) -> set[str]:
        asked.append(len(ids))
        return {i for i in ids if i.endswith("9")}

    hits = await filtered_search(index, ["common"], 5, keep)
    assert [h.id for h in hits] == ["d009", "d019", "d029", "d039", "d049"]
    assert len(asked) > 1 and sum(asked) <= 300  # wider rounds ask only about new candidates
    assert await filtered_search(index, ["common"], 5, lambda ids: _none()) == []


async def _none() -> set[str]:
    return set()


# -- the memory primary -------------------------------------------------------------------


async def test_memory_declares_and_keeps_the_index() -> None:
    p = MemoryPrimary("c")
    assert p.capabilities.lexical
    await _load(p)
    assert (await _ids(p, "xylophone concert"))[:1] == ["rare"]
    assert set(await _ids(p, "running")) == {"runner", "cook"}
    assert await _ids(p, "running", where={"kind": "food"}) == ["cook"]
    assert await _ids(p, "the and of") == []
    assert "empty" not in await _ids(p, "runs park xylophone")
    await p.put([rec("rare", 5000, "Drums only")])
    assert await _ids(p, "xylophone") == [] and await _ids(p, "drums") == ["rare"]
    await p.delete(["park"])
    assert await _ids(p, "children") == []
    await p.drop()
    assert await _ids(p, "runs drums") == []
    assert [s async for s in p.lexical_backfill(10)] == []


async def test_memory_follows_the_lexical_index_setting(tmp_path: Any) -> None:
    cfg = StoreConfig(primary_driver="memory", vector_driver="memory", home=str(tmp_path), lexical_index=False)
    p = MemoryPrimary.from_config(cfg, "c")
    assert not p.capabilities.lexical
    await _load(p)
    assert await _ids(p, "runs") == []
    on = MemoryPrimary.from_config(
        StoreConfig(primary_driver="memory", vector_driver="memory", home=str(tmp_path)), "c"
    )
    assert on.capabilities.lexical


# -- MongoDB ------------------------------------------------------------------------------


def _mongo(uri: str, collection: str, **kw: Any) -> Any:
    from promethean_persistence.drivers.primary.mongodb import MongoPrimary

    return MongoPrimary(uri, "semantic_store_tests", collection, transactions=False, **kw)


@pytest.fixture
async def mongo_pair(mongodb_uri: str) -> Any:
    """A collection name and a factory of opened drivers on it; the collection is dropped after."""
    collection = f"lex_{uuid.uuid4().hex[:8]}"
    opened: list[Any] = []

    async def make(**kw: Any) -> Any:
        driver = _mongo(mongodb_uri, collection, **kw)
        await driver.open()
        opened.append(driver)
        return driver

    yield make
    if opened:
        await opened[0]._col.drop()
    for driver in opened:
        await driver.aclose()


@pytest.mark.mongodb
async def test_secantus_has_no_text_index_so_the_fallback_serves(mongo_pair: Any) -> None:
    p = await mongo_pair()
    assert p.capabilities.lexical and not p._server_text and p._lex is not None
    assert "semantic_store_text" not in await p._col.index_information()
    await _load(p)
    assert (await _ids(p, "xylophone park"))[:1] == ["rare"]
    assert set(await _ids(p, "running")) == {"runner", "cook"}
    assert await _ids(p, "running", where={"kind": "food"}) == ["cook"]
    assert await _ids(p, "and the") == []
    assert "empty" not in await _ids(p, "runs park xylophone")


@pytest.mark.mongodb
async def test_mongo_fallback_is_rebuilt_on_reopen(mongo_pair: Any) -> None:
    writer = await mongo_pair()
    await writer.put([rec(f"r{n:02d}", 1000 + n, f"entry {n} about gardening") for n in range(25)])
    await _load(writer)
    reader = await mongo_pair()
    steps = [s async for s in reader.lexical_backfill(10)]
    assert [done for done, _ in steps] == [10, 20, 30]
    assert all(total == 30 for _, total in steps)
    assert [s async for s in reader.lexical_backfill(10)] == []  # done once
    assert (await _ids(reader, "xylophone"))[:1] == ["rare"]
    assert len(await _ids(reader, "gardening", 100)) == 25
    # a write by another driver is not seen by this one's index until a reopen, but a delete
    # elsewhere never returns a missing record
    await writer.delete(["rare"])
    await writer.put([rec("late", 9000, "xylophone solo")])
    assert await _ids(reader, "xylophone") == []


@pytest.mark.mongodb
async def test_mongo_first_search_backfills_and_writes_win_over_a_backfill(mongo_pair: Any) -> None:
    writer = await mongo_pair()
    await _load(writer)
    reader = await mongo_pair()
    assert (await _ids(reader, "xylophone"))[:1] == ["rare"]  # no backfill run: the search ran it
    third = await mongo_pair()
    backfill = third.lexical_backfill(2)
    assert await backfill.__anext__() == (2, 5)  # read "runner", "cook"
    await third.put([rec("cook", 5000, "Baking bread")])  # after the read: the backfill must not undo it
    async for _ in backfill:
        pass
    assert await _ids(third, "pasta") == [] and await _ids(third, "bread") == ["cook"]
    await third.drop()
    assert await _ids(third, "bread xylophone children") == []


@pytest.mark.mongodb
async def test_mongo_lexical_index_can_be_off(mongo_pair: Any) -> None:
    p = await mongo_pair(lexical=False)
    assert not p.capabilities.lexical and p._lex is None
    await _load(p)
    assert await _ids(p, "xylophone") == []


# -- MongoDB's own text index (a stand-in collection: no server here has text indexes) ----


class _Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs, self.calls = docs, []

    def sort(self, *a: Any) -> _Cursor:
        self.calls.append(("sort", a))
        return self

    def limit(self, n: int) -> _Cursor:
        self.calls.append(("limit", n))
        return self

    async def to_list(self) -> list[dict[str, Any]]:
        return self.docs


class _Collection:
    """Enough of an AsyncCollection for the text-index paths."""

    def __init__(self, indexes: dict[str, Any], fail: bool = False, docs: list[dict[str, Any]] | None = None):
        self.indexes, self.fail, self.docs = indexes, fail, docs or []
        self.created: list[Any] = []
        self.finds: list[Any] = []
        self.cursor = _Cursor(self.docs)

    async def index_information(self) -> dict[str, Any]:
        return self.indexes

    async def create_index(self, keys: Any, **kw: Any) -> str:
        if self.fail:
            import pymongo.errors

            raise pymongo.errors.OperationFailure("text indexes are not supported", 67)
        self.created.append((keys, kw))
        return kw["name"]

    def find(self, query: Any, projection: Any = None) -> _Cursor:
        self.finds.append((query, projection))
        return self.cursor


TEXT_KEY = [("_fts", "text"), ("_ftsx", 1)]


@pytest.mark.parametrize(
    ("indexes", "fail", "server"),
    [
        ({}, False, True),  # none yet: ours is created
        ({}, True, False),  # the server refuses text indexes
        ({"semantic_store_text": {"key": TEXT_KEY, "weights": {"text": 1}}}, False, True),
        ({"semantic_store_text": {"key": TEXT_KEY, "weights": {"body": 1}}}, False, False),  # another text key
        ({"users_own": {"key": TEXT_KEY, "weights": {"text": 1, "title": 1}}}, False, False),  # one per collection
    ],
)
async def test_the_server_text_index_is_used_only_when_it_is_ours(indexes: Any, fail: bool, server: bool) -> None:
    pytest.importorskip("pymongo")
    p = _mongo("mongodb://127.0.0.1:1", "c")
    p._col = _Collection(dict(indexes), fail)
    await p._open_lexical()
    assert p._server_text is server and (p._lex is None) is server
    if server and not indexes:
        keys, kw = p._col.created[0]
        assert keys == [("text", "text")] and kw["name"] == "semantic_store_text"
        assert kw["default_language"] == "english" and kw["language_override"] == "_semantic_store_language"


async def test_text_search_query_filters_sorts_and_skips_empty_texts() -> None:
    pytest.importorskip("pymongo")
    p = _mongo("mongodb://127.0.0.1:1", "c")
    p.use_keys("body", "createdAt")
    docs = [{"id": "b", "_semantic_store_score": 2.5}, {"id": "a", "_semantic_store_score": 1.0}]
    p._col = _Collection({}, docs=docs)
    await p._open_lexical()
    p._col.finds.clear()
    hits = await p.lexical_query("The Running dogs OR -cats", 3, parse({"kind": "a"}))
    assert [(h.id, h.score) for h in hits] == [("b", 2.5), ("a", 1.0)]
    (query, projection), cursor = p._col.finds[0], p._col.cursor
    assert query["$text"] == {"$search": "running dogs cats", "$language": "english"}
    rest = query["$and"]
    assert {"_semantic_store.empty": {"$ne": True}, "body": rest[0]["body"]} == rest[0]  # empty texts never match
    assert rest[1] == {"metadata.kind": {"$eq": "a", "$not": {"$type": "array"}}}
    assert projection["_semantic_store_score"] == {"$meta": "textScore"}
    assert ("sort", ([("_semantic_store_score", {"$meta": "textScore"}), ("id", 1)],)) in cursor.calls
    assert ("limit", 3) in cursor.calls
    assert await p.lexical_query("the of", 3) == [] and len(p._col.finds) == 1  # no words: no query
    assert [s async for s in p.lexical_backfill(10)] == []  # the server keeps its index
