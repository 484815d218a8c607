"""Hypothesis strategies for the filter property tests: random metadata (``metadata``) and
random filters over it (``filters``), for checking a driver against the reference evaluator
(``promethean_persistence._filters.evaluate``). Needs ``hypothesis`` (the ``test`` extra);
kept out of the package's ``__init__`` so that the conformance suites do not need it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["KEYS", "filters", "metadata"]

#: the metadata keys, one of them dotted (a nested field)
KEYS = ["a", "b", "c.d"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 2.5]),
    st.sampled_from(["", "x", "y", "xy", "é"]),
)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[key] = value
    return out


#: metadata of up to three of ``KEYS`` (a dotted key nested), scalar values
metadata = st.dictionaries(st.sampled_from(KEYS), _scalars, max_size=3).map(_nest)
_ordered = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 2.5]), st.sampled_from(["", "x", "xy", "y"]))
_comparison = st.one_of(
    _scalars,
    st.fixed_dictionaries({"$eq": _scalars}),
    st.fixed_dictionaries({"$ne": _scalars}),
    st.fixed_dictionaries({"$gt": _ordered}),
    st.fixed_dictionaries({"$gte": _ordered}),
    st.fixed_dictionaries({"$lt": _ordered}),
    st.fixed_dictionaries({"$lte": _ordered}),
    st.fixed_dictionaries({"$in": st.lists(_scalars, max_size=3)}),
    st.fixed_dictionaries({"$nin": st.lists(_scalars, max_size=3)}),
    st.fixed_dictionaries({"$exists": st.booleans()}),
)
_leaf = st.dictionaries(st.sampled_from(KEYS), _comparison, min_size=1, max_size=2)
#: filters of every operator on ``KEYS``, nested in ``$and``/``$or`` (up to six leaves)
filters = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"$and": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"$or": st.lists(inner, min_size=1, max_size=3)}),
    ),
    max_leaves=6,
)
