"""The words a lexical search looks up, and reciprocal-rank fusion, on their own."""

import math

from promethean_persistence._lexical import MAX_TERMS, fetch_depth, query_terms, rrf


def test_query_terms_are_the_words_only():
    assert query_terms("How do I parse a DATE from a string?") == ["parse", "date", "string"]
    assert query_terms("I'm sure it doesn't; you're right") == ["sure", "right"]
    assert query_terms('shutil.copytree(dirs_exist_ok=True) OR "x" NOT y*') == [
        "shutil", "copytree", "dirs", "exist", "ok", "true", "x", "y",
    ]  # fmt: skip
    assert query_terms("Straße café ΣΊΣΥΦΟΣ 42") == ["straße", "café", "σίσυφος", "42"]
    assert query_terms("the of and, ?! --") == []
    assert query_terms("zebra Zebra ZEBRA") == ["zebra"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(1000)))) == MAX_TERMS


def test_fusion_and_depth():
    fused = rrf([["a", "b", "c"], ["c", "a"]], 60)
    assert math.isclose(fused["a"], 1 / 61 + 1 / 62) and math.isclose(fused["c"], 1 / 63 + 1 / 61)
    assert math.isclose(fused["b"], 1 / 62)
    assert sorted(fused, key=lambda i: -fused[i]) == ["a", "c", "b"]
    assert fetch_depth(10, None) == 50 and fetch_depth(20, None) == 80 and fetch_depth(10, 5) == 10
