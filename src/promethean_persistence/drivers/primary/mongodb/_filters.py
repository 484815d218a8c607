"""The filter language (``promethean_persistence._filters``) compiled to a MongoDB query."""

from __future__ import annotations

from typing import Any

from ...._filters import And, Cmp, Node, Or, evaluate, narrow
from ._layout import STATE

_NOT_ARRAY = {"$not": {"$type": "array"}}


def _cmp(path: str, node: Cmp) -> dict[str, Any]:
    op, value = node.op, node.value
    if op == "eq":  # Mongo matches arrays by their elements; our values never equal a list
        return {path: {"$eq": value, **_NOT_ARRAY}}
    if op == "in":
        return {path: {"$in": list(value), **_NOT_ARRAY}}
    if op == "ne":
        return {"$or": [{path: {"$ne": value}}, {path: {"$type": "array"}}]}
    if op == "nin":
        return {"$or": [{path: {"$nin": list(value)}}, {path: {"$type": "array"}}]}
    if op == "exists":
        return {path: {"$exists": value}}
    # $gt & co. only compare within one BSON type bracket: numbers with numbers, strings with strings
    return {path: {f"${op}": value}}


def mongo_filter(node: Node) -> dict[str, Any]:
    """Translate the parsed filter ``node`` to a MongoDB query; metadata keys live under
    ``metadata.``. Integer operands beyond 64 bits, which BSON cannot hold, are narrowed to
    doubles without changing the result (``_filters.narrow``)."""
    return _translate(narrow(node))


def _translate(node: Node) -> dict[str, Any]:
    if isinstance(node, And):
        return {"$and": [_translate(n) for n in node.items]}
    if isinstance(node, Or):
        return {"$or": [_translate(n) for n in node.items]}
    if node.path == ("vectorStatus",):
        ours = {"$and": [{STATE: {"$exists": True}}, _cmp(f"{STATE}.status", node)]}
        branches = [ours]
        failed, synced = (evaluate(node, {"vectorStatus": s}) for s in ("failed", "synced"))
        if failed or synced:  # what a legacy document's state reads as
            legacy: dict[str, Any] = {STATE: {"$exists": False}}
            if failed != synced:
                legacy["metadata.vectorWriteSuccess"] = False if failed else {"$ne": False}
            branches.append(legacy)
        return {"$or": branches}
    return _cmp("metadata." + ".".join(node.path), node)
