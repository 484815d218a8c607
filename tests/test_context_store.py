"""ContextStore (SPEC §8): the original's tests (reference §12.C) re-expressed, the exact
output of the documented example, the bug fixes, and a run over real stores."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from promethean_persistence import ContextStore, DocumentNotFound, ValidationError, format_message
from promethean_persistence._context import iso_time
from promethean_persistence.cli import cli


class StubStore:
    def __init__(self, relevant=(), images=(), latest=()):
        self.relevant, self.images, self.latest = list(relevant), list(images), list(latest)
        self.relevant_calls = []
        self.closed = False

    async def get_most_relevant(self, queries, limit, where=None):
        self.relevant_calls.append({"queries": list(queries), "limit": limit, "where": where})
        source = self.images if (where or {}).get("type") == "image" else self.relevant
        return source[:limit]

    async def get_most_recent(self, limit=10):
        return self.latest[:limit]

    async def cleanup(self):
        self.closed = True


def doc(id_, text, ts, **meta):
    return {"id": id_, "text": text, "timestamp": ts, "metadata": meta}


def make_docs(base):
    return {
        "relevant": [
            doc("rel-1", "assistant reply", base - 30, userName="Duck", isThought=False),
            doc("rel-2", "duplicate", base - 20, userName="Alice"),
        ],
        "images": [doc("img-1", "https://image", base - 10, type="image", userName="Duck", caption="Diagram")],
        "latest": [
            doc("lat-1", "duplicate", base - 50, userName="Alice"),
            doc("lat-2", "fresh update", base - 5, userName="Bob"),
        ],
    }


def factory_for(stubs):
    calls = []

    async def factory(name, text_key, time_key):
        calls.append((name, text_key, time_key))
        return stubs[name]

    factory.calls = calls
    return factory


async def test_create_collection_stores_and_blocks_duplicates():
    stub = StubStore()
    store = ContextStore(store_factory=factory_for({"alpha": stub}))
    assert await store.create_collection("alpha", "text", "timestamp") is stub
    assert store.collection_count() == 1
    with pytest.raises(ValidationError, match="already exists"):
        await store.create_collection("alpha", "text", "timestamp")


async def test_get_or_create_reuses_existing():
    existing, new = StubStore(), StubStore()
    factory = factory_for({"new": new})
    store = ContextStore(store_factory=factory)
    store.collections["existing"] = existing
    assert await store.get_or_create_collection("existing") is existing
    assert await store.get_or_create_collection("new") is new
    assert factory.calls == [("new", "text", "timestamp")]
    assert store.collection_count() == 2


async def test_collection_helpers():
    store = ContextStore(store_factory=factory_for({}))
    alpha, beta = StubStore(), StubStore()
    store.collections.update(alpha=alpha, beta=beta)
    assert store.collection_count() == 2 and set(store.list_collection_names()) == {"alpha", "beta"}
    assert store.get_collection("alpha") is alpha
    with pytest.raises(DocumentNotFound, match="does not exist"):
        store.get_collection("gamma")


async def test_related_and_latest_aggregate_across_collections():
    alpha = StubStore(relevant=[doc("a1", "a", 1)], latest=[doc("a1", "a", 1)])
    beta = StubStore(relevant=[doc("b1", "b", 2)], latest=[doc("b1", "b", 2)])
    store = ContextStore(store_factory=factory_for({}))
    store.collections.update(alpha=alpha, beta=beta)
    related = await store.get_all_related_documents(["query"], 5, {"type": "note"})
    assert [d["id"] for d in related] == ["a1", "b1"]
    assert alpha.relevant_calls[0]["where"] == {"type": "note"}
    assert await store.get_all_related_documents([], 5) == []
    assert sorted(d["id"] for d in await store.get_latest_documents(10)) == ["a1", "b1"]


async def test_compile_context_exact_output_of_the_documented_example():
    base = int(time.time() * 1000)
    stub = StubStore(**make_docs(base))
    store = ContextStore(store_factory=factory_for({}))
    store.collections["alpha"] = stub
    messages = await store.compile_context(
        ["seed question"], recent_limit=2, query_limit=3, limit=5, format_assistant_messages=True
    )
    assert messages == [
        {"role": "assistant", "content": f"Duck said ({iso_time(base - 30)}): assistant reply"},
        {"role": "user", "content": f"Alice said ({iso_time(base - 20)}): duplicate"},
        {"role": "assistant", "content": "Diagram", "images": ["https://image"]},
        {"role": "user", "content": f"Bob said ({iso_time(base - 5)}): fresh update"},
    ]
    assert any(c["where"] == {"type": "image"} for c in stub.relevant_calls)
    assert all("seed question" in c["queries"] for c in stub.relevant_calls)


async def test_compile_context_legacy_positional_arguments():
    base = int(time.time() * 1000)
    stub = StubStore(**make_docs(base))
    store = ContextStore(store_factory=factory_for({}))
    store.collections["alpha"] = stub
    messages = await store.compile_context(["legacy prompt"], 1, 1, 3, False)
    assert messages == [
        {"role": "assistant", "content": "assistant reply"},
        {"role": "user", "content": f"Alice said ({iso_time(base - 20)}): duplicate"},
        {"role": "assistant", "content": "Diagram", "images": ["https://image"]},
    ]
    # fixed: the caller's own text is queried even when recent entries fill query_limit
    assert stub.relevant_calls[0]["queries"] == ["legacy prompt"]


async def test_duplicates_keep_the_newest_and_thoughts_are_system():
    stub = StubStore(
        relevant=[doc("old", "same words", 100, userName="Alice", source="old")],
        latest=[
            doc("new", "same words", 900, userName="Alice", source="new"),
            doc("t", "I should check the logs", 500, userName="Duck", isThought=True),
        ],
    )
    store = ContextStore(store_factory=factory_for({}))
    store.collections["c"] = stub
    messages = await store.compile_context("question", format_assistant_messages=False)
    assert messages == [
        {"role": "system", "content": "I should check the logs"},
        {"role": "user", "content": f"Alice said ({iso_time(900)}): same words"},
    ]


def test_format_message():
    entry = doc("x", "hello", 1704067200000, userName="Alice")
    assert format_message(entry) == "Alice said (2024-01-01T00:00:00.000Z): hello"
    assert format_message(doc("y", "hmm", 0, isThought=True), lambda ms: "then") == "Unknown user thought (then): hmm"


async def test_over_real_stores_related_documents_come_from_search(tmp_path):
    config = {"primaryDriver": "memory", "vectorDriver": "memory", "embeddingDriver": "hashing", "home": str(tmp_path)}
    context = ContextStore(config=config)
    notes = await context.create_collection("notes", "text", "createdAt")
    chat = await context.create_collection("chat", "text", "createdAt")
    await notes.insert(
        {
            "id": "gold",
            "text": "the launch codes are kept in the blue binder",
            "createdAt": 1,
            "metadata": {"userName": "Archivist"},
        }
    )
    for i in range(30):  # newer filler, so the note is far outside every recent window
        await notes.insert(
            {"text": f"filler note {i} about lunch menus", "createdAt": 1000 + i, "metadata": {"userName": "Bot"}}
        )
    await chat.insert({"text": "hello there", "createdAt": 5000, "metadata": {"userName": "Alice"}})
    messages = await context.compile_context(
        ["where are the launch codes kept"], recent_limit=2, query_limit=1, limit=3
    )
    contents = [m["content"] for m in messages]
    assert any("blue binder" in c for c in contents)  # reachable only through vector search
    assert not any("filler note 0 " in c for c in contents)
    await context.cleanup()
    assert context.collection_count() == 0


def test_cli_context(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_STORE_HOME", str(tmp_path))
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")
    runner = CliRunner()
    assert (
        runner.invoke(
            cli, ["--store", "a", "insert", "the blue binder holds the codes", "-m", '{"userName": "Alice"}']
        ).exit_code
        == 0
    )
    assert runner.invoke(cli, ["--store", "b", "insert", "Duck is here", "-m", '{"userName": "Duck"}']).exit_code == 0
    result = runner.invoke(cli, ["--json", "context", "blue binder", "--collections", "a,b"])
    assert result.exit_code == 0, result.output
    messages = json.loads(result.stdout)
    assert {m["role"] for m in messages} == {"user", "assistant"}
    assert any("blue binder" in m["content"] for m in messages)
    text = runner.invoke(cli, ["context", "binder", "-c", "a"]).stdout
    assert "user: Alice said" in text
