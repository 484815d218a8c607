"""The search-mode suite on every store configuration (see conftest.py's ``make_store``)."""

from dataclasses import replace

from promethean_persistence.testing.search import SearchSuite


class TestSearchModes(SearchSuite):
    pass


def _watched(store, events, *, remote: bool):
    """Record on ``events`` when ``store``'s embedder starts and ends (taking 50 ms) and when its
    lexical rankings start; ``remote``: the embedder says it computes elsewhere (a model server)."""
    import asyncio

    embedder, primary = store.embedder, store.primary
    embed, lexical_query = embedder.embed, primary.lexical_query

    async def slow_embed(batch):
        events.append("embed")
        await asyncio.sleep(0.05)
        events.append("embedded")
        return await embed(batch)

    async def ranked(*args, **kwargs):
        events.append("lexical")
        return await lexical_query(*args, **kwargs)

    embedder.embed, primary.lexical_query = slow_embed, ranked
    embedder.capabilities = replace(embedder.capabilities, in_process=not remote, warm=False)


async def _filled(tmp_path, name):
    from promethean_persistence import SemanticStore

    config = {"home": str(tmp_path / name), "embedding_driver": "hashing", "hashing": {"dimensions": 64}}
    texts = ["the cat sleeps on the mat", "dogs chase cats", "a recipe for chocolate cake", "stock markets fell"]
    store = await SemanticStore.create(name, config=config)
    await store.insert_many([{"id": f"d{i}", "text": t} for i, t in enumerate(texts * 3)])
    await store.flush()
    return store


async def test_hybrid_ranks_lexically_after_a_local_model_and_while_a_remote_one_embeds(tmp_path):
    """A model computing here (on every core) embeds first, then the lexical ranking runs while
    the vectors are searched; a remote one is waited for while the lexical ranking runs. Both
    give the hits the store gave before, for one query and for several."""
    queries = ["cat on a mat", "chocolate cake recipe", ["markets", "cat"]]
    for remote in (False, True):
        async with await _filled(tmp_path, f"remote{remote}") as store:
            before = [await store.get_most_relevant(q, 5, mode="hybrid", distinct_texts=False) for q in queries]
            events: list[str] = []
            _watched(store, events, remote=remote)
            for q, hits in zip(queries, before):
                events.clear()
                assert await store.get_most_relevant(q, 5, mode="hybrid", distinct_texts=False) == hits
                assert hits
                first = events.index("lexical") < events.index("embedded")
                assert first == remote, (remote, events)


async def test_mmr_ranks_lexically_as_hybrid_search_does(tmp_path):
    """MMR in the lexical and hybrid modes orders its work as hybrid search does (its queries'
    vectors are needed in every mode), picks what it picked before, and an embedding failure
    reaches the caller."""
    import pytest

    from promethean_persistence._errors import EmbeddingError

    for remote in (False, True):
        async with await _filled(tmp_path, f"mmr{remote}") as store:
            before = {m: await store.max_marginal_relevance("cat cake", 3, mode=m) for m in ("lexical", "hybrid")}
            events: list[str] = []
            _watched(store, events, remote=remote)
            for mode in ("lexical", "hybrid"):
                events.clear()
                assert await store.max_marginal_relevance("cat cake", 3, mode=mode) == before[mode]
                assert (events.index("lexical") < events.index("embedded")) == remote, (mode, events)

            async def failing(batch):
                raise EmbeddingError("model gone")

            store.embedder.embed = failing
            for mode in ("lexical", "hybrid"):
                with pytest.raises(EmbeddingError, match="model gone"):
                    await store.max_marginal_relevance("cat cake", 3, mode=mode)
                with pytest.raises(EmbeddingError, match="model gone"):
                    await store.get_most_relevant("cat cake", 3, mode="hybrid")
