"""Boolean logic on filters of this package's language, for the framework filter translations:
True matches every entry and False none, so constant parts fold away."""

from __future__ import annotations

from typing import Any

_NEGATE = {"$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in"}
_ORDER_NEGATE = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


def both(parts: list[Any]) -> dict[str, Any] | bool:
    """Every one of ``parts`` (filters, True or False) at once."""
    if any(p is False for p in parts):
        return False
    parts = [p for p in parts if p is not True]
    return True if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def either(parts: list[Any]) -> dict[str, Any] | bool:
    """Any one of ``parts`` (filters, True or False)."""
    if any(p is True for p in parts):
        return True
    parts = [p for p in parts if p is not False]
    return False if not parts else parts[0] if len(parts) == 1 else {"$or": parts}


def negate(node: Any) -> dict[str, Any] | bool:
    """The negation of ``node``: a filter built by ``both``/``either`` from single comparisons
    ``{key: {op: value}}`` (our language has no ``$not``)."""
    if isinstance(node, bool):
        return not node
    if "$and" in node:
        return either([negate(n) for n in node["$and"]])
    if "$or" in node:
        return both([negate(n) for n in node["$or"]])
    [(key, cmp)] = node.items()
    [(op, value)] = cmp.items()
    if op in _NEGATE:
        return {key: {_NEGATE[op]: value}}
    # not (x > v): x <= v, or x missing or null
    return either([{key: {_ORDER_NEGATE[op]: value}}, {key: {"$eq": None}}])
