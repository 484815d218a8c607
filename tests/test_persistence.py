"""A SQLite store closed and reopened in a new process returns the same entries, and
refuses an embedder of another model or dimension."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from promethean_persistence import EmbeddingMismatchError, SemanticStore

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from promethean_persistence import SemanticStore

    async def main():
        config = json.loads(sys.argv[1])
        store = await SemanticStore.create("notes", "text", "createdAt", config)
        if sys.argv[2] == "write":
            for i in range(20):
                await store.insert({"id": f"n{i}", "text": f"note number {i} about topic {i % 3}",
                                    "createdAt": 1_700_000_000_000 + i, "metadata": {"topic": i % 3, "tags": {"i": i}}})
            await store.delete("n5")
        out = {
            "recent": await store.get_most_recent(100),
            "relevant": await store.get_most_relevant("note number 7 about topic 1", 3),
            "count": await store.count(),
            "report": await store.get_consistency_report(None),
        }
        await store.cleanup()
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def run(config: dict, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config), mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reopen_in_a_new_process_returns_the_same_entries(tmp_path):
    config = {"primaryDriver": "sqlite", "vectorDriver": "local", "embeddingDriver": "hashing", "home": str(tmp_path)}
    written = run(config, "write")
    read = run(config, "read")
    assert written == read
    assert read["count"] == 19 and len(read["recent"]) == 19
    assert read["relevant"][0]["id"] == "n7"
    assert read["report"]["inconsistent_documents"] == 0 and read["report"]["orphaned_vectors"] == 0
    assert "n5" not in {e["id"] for e in read["recent"]}


async def test_other_embedding_dimension_is_refused(tmp_path):
    base = {"primaryDriver": "sqlite", "vectorDriver": "local", "embeddingDriver": "hashing", "home": str(tmp_path)}
    store = await SemanticStore.create("m", config=base)
    await store.insert({"text": "built with 256 dimensions"})
    await store.cleanup()
    with pytest.raises(EmbeddingMismatchError) as info:
        await SemanticStore.create("m", config={**base, "hashing": {"dimensions": 64}})
    assert "hashing-v1-256" in str(info.value) and "hashing-v1-64" in str(info.value)
    again = await SemanticStore.create("m", config=base)  # the data is untouched
    assert await again.count() == 1
    await again.cleanup()
