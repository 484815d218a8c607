"""The seed's three migration tests ("Step 3: Testing Migration"), expressed in Python.

``SemanticStore.create`` without config reads the environment: the ``env_home`` fixture
points it at the embedded default on a temporary directory, with the hashing embedder.
"""

from __future__ import annotations

from promethean_persistence import DualStoreManager, SemanticStore, SemanticStoreFactory

VOLATILE = {"vectorWriteTimestamp"}


def comparable(entries):
    return [
        {"text": e["text"], "metadata": {k: v for k, v in e["metadata"].items() if k not in VOLATILE}} for e in entries
    ]


async def test_backward_compatibility(env_home):
    old_store = await SemanticStore.create("test", "text", "createdAt")
    await old_store.insert({"text": "test"})
    results = await old_store.get_most_recent(10)
    assert len(results) == 1
    await old_store.cleanup()
    assert (env_home / "store.db").exists()  # the embedded default: SQLite + local vectors


async def test_new_api_compatibility(env_home):
    new_store = await SemanticStoreFactory.create(
        "test",
        "text",
        "createdAt",
        {
            "primaryDriver": "memory",
            "vectorDriver": "memory",
        },
    )
    await new_store.insert({"text": "test"})
    results = await new_store.get_most_recent(10)
    assert len(results) == 1
    await new_store.cleanup()


async def test_api_parity(env_home):
    old_store = await SemanticStore.create("test-old", "text", "createdAt")
    new_store = await SemanticStoreFactory.create(
        "test-new",
        "text",
        "createdAt",
        {
            "primaryDriver": "memory",
            "vectorDriver": "memory",
        },
    )
    test_data = {"text": "comparison test", "metadata": {"test": True}}
    await old_store.insert(test_data)
    await new_store.insert(test_data)
    old_results = await old_store.get_most_recent(10)
    new_results = await new_store.get_most_recent(10)
    # ids are fresh UUIDs and timestamps "now" in each store; everything else is identical
    assert comparable(old_results) == comparable(new_results)
    assert [set(e) for e in old_results] == [set(e) for e in new_results]
    assert test_data == {"text": "comparison test", "metadata": {"test": True}}  # input not mutated
    await old_store.cleanup()
    await new_store.cleanup()


async def test_dual_store_manager_is_the_same_class(env_home):
    assert DualStoreManager is SemanticStore
    legacy = await DualStoreManager.create("thoughts", "text", "createdAt")
    assert legacy.name == "duck_thoughts"
    await legacy.insert({"text": "a thought", "createdAt": 1, "metadata": {"userName": "Duck"}})
    assert (await legacy.get_most_relevant(["a thought"], 1))[0]["text"] == "a thought"
    await legacy.cleanup()
