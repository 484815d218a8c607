"""The search-mode suite on every store configuration (see conftest.py's ``make_store``)."""

from dataclasses import replace

from promethean_persistence.testing.search import SearchSuite


class TestSearchModes(SearchSuite):
    pass


async def test_hybrid_embeds_its_queries_beside_the_lexical_ranking(tmp_path):
    """An embedder with ``embed_beside`` (``Capabilities.beside`` (the local ONNX model, on a core fewer: the lexical
    ranking runs on the one left)) embeds a hybrid search's queries, once, all of them; the vector mode
    keeps ``embed``; and the hits are the same as without it."""
    from promethean_persistence import SemanticStore

    config = {"home": str(tmp_path), "embedding_driver": "hashing", "hashing": {"dimensions": 64}}
    texts = ["the cat sleeps on the mat", "dogs chase cats", "a recipe for chocolate cake", "stock markets fell"]
    queries = ["cat on a mat", "chocolate cake recipe", "markets"]
    async with await SemanticStore.create("beside", config=config) as store:
        await store.insert_many([{"id": f"d{i}", "text": t} for i, t in enumerate(texts * 3)])
        await store.flush()
        before = [await store.get_most_relevant(q, 5, mode="hybrid", distinct_texts=False) for q in queries]
        embedder, calls = store.embedder, []

        async def embed_beside(batch):
            calls.append(list(batch))
            return await embedder.embed(batch)

        embedder.embed_beside = embed_beside
        embedder.capabilities = replace(embedder.capabilities, beside=True)
        after = [await store.get_most_relevant(q, 5, mode="hybrid", distinct_texts=False) for q in queries]
        assert after == before and all(after)
        assert calls == [[q] for q in queries]
        await store.get_most_relevant(queries[0], 5, mode="vector")
        assert len(calls) == len(queries)
        await store.get_most_relevant(queries[:2], 5, mode="hybrid")
        assert calls[-1] == queries[:2]
