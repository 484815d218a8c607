"""The filter language shared by ``get_most_recent(filter=...)`` and ``get_most_relevant(where=...)``.

``parse`` checks a filter and returns a small tree that drivers translate natively;
``evaluate`` is the reference semantics every driver must reproduce:

* keys are metadata keys; dots reach nested keys (``{"a.b": 1}``);
* ``{"k": v}`` is ``{"k": {"$eq": v}}``; several keys or operators are ANDed;
* values are scalars (str, int, float, bool, None); numbers compare with numbers,
  strings with strings, booleans only equal booleans (``True`` never equals ``1``);
* ``$eq None`` matches a null or missing key; ``$ne``/``$nin`` match missing keys;
* ``$gt $gte $lt $lte`` take a number or a string and never match another type;
* ``$exists: True`` matches a present key, even when its value is null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, cast

from ._errors import ValidationError

__all__ = ["And", "Cmp", "Node", "Or", "evaluate", "parse", "MISSING"]

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
LOGIC = ("$and", "$or")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Cmp:
    """A comparison: the metadata value at key ``path`` ``op`` (``eq``, ``gt``, ``in``...) ``value``."""

    path: tuple[str, ...]
    op: str  # one of COMPARISONS without the "$"
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    """Every one of ``items`` matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one of ``items`` matches."""

    items: tuple[Node, ...]


Node = Union[Cmp, And, Or]


def _fail(message: str, field: str = "filter") -> ValidationError:
    return ValidationError(f"Invalid filter: {message}", field=field, operation="filter")


def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(f"{where}: NaN and Infinity cannot be compared")
        return value
    raise _fail(
        f"{where}: values must be str, int, float, bool or None, not {type(value).__name__}"
        + (" (use $in for a list of values)" if isinstance(value, (list, tuple)) else "")
        + (" (use dotted keys for nested values)" if isinstance(value, Mapping) else "")
    )


def _key(key: Any) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise _fail(f"keys must be non-empty strings, got {key!r}")
    if key.startswith("$"):
        raise _fail(f"unknown operator {key!r}; allowed: {', '.join(LOGIC)} at the top level")
    parts = tuple(key.split("."))
    if any(not p or '"' in p or any(ord(c) < 32 for c in p) for p in parts):
        raise _fail(f"malformed key {key!r}")
    return parts


def _comparison(path: tuple[str, ...], op: str, value: Any) -> Cmp:
    name = ".".join(path)
    where = f"{name}.{op}"
    if op not in COMPARISONS:
        raise _fail(f"unknown operator {op!r} on {name!r}; allowed: {', '.join(COMPARISONS)}")
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple)):
            raise _fail(f"{where} takes a list")
        return Cmp(path, op[1:], tuple(_scalar(v, where) for v in value))
    if op == "$exists":
        if not isinstance(value, bool):
            raise _fail(f"{where} takes true or false")
        return Cmp(path, "exists", value)
    value = _scalar(value, where)
    if op in ("$gt", "$gte", "$lt", "$lte") and (value is None or isinstance(value, bool)):
        raise _fail(f"{where} takes a number or a string")
    return Cmp(path, op[1:], value)


def _parse(spec: Any) -> Node:
    if not isinstance(spec, Mapping):
        raise _fail(f"expected a mapping, got {type(spec).__name__}")
    items: list[Node] = []
    for key, value in spec.items():
        if key in LOGIC:
            if not isinstance(value, (list, tuple)) or not value:
                raise _fail(f"{key} takes a non-empty list of filters")
            parts = tuple(_parse(v) for v in value)
            items.append(And(parts) if key == "$and" else Or(parts))
            continue
        path = _key(key)
        if isinstance(value, Mapping):
            if not value:
                raise _fail(f"empty operator mapping for {key!r}")
            for op, operand in value.items():
                if not isinstance(op, str) or not op.startswith("$"):
                    raise _fail(f"nested objects are not compared; use dotted keys ({key}.{op})")
                items.append(_comparison(path, op, operand))
        else:
            items.append(_comparison(path, "$eq", value))
    return items[0] if len(items) == 1 else And(tuple(items))


def parse(spec: Mapping[str, Any] | None) -> Node | None:
    """Check the filter ``spec`` and return its tree, or None for "match everything" (None or
    ``{}``). Raises ValidationError for a malformed filter.
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping) and not spec:
        return None
    return _parse(spec)


def lookup(metadata: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at key ``path`` in ``metadata`` (nested mappings), or MISSING when absent."""
    value: Any = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    return "other"


def _eq(actual: Any, expected: Any) -> bool:
    if expected is None:
        return actual is MISSING or actual is None
    return _kind(actual) == _kind(expected) and actual == expected


def _compare(node: Cmp, actual: Any) -> bool:
    op, expected = node.op, node.value
    if op == "eq":
        return _eq(actual, expected)
    if op == "ne":
        return not _eq(actual, expected)
    if op == "in":
        return any(_eq(actual, e) for e in expected)
    if op == "nin":
        return not any(_eq(actual, e) for e in expected)
    if op == "exists":
        return (actual is not MISSING) is expected
    if _kind(actual) != _kind(expected):
        return False
    if op == "gt":
        return cast(bool, actual > expected)
    if op == "gte":
        return cast(bool, actual >= expected)
    if op == "lt":
        return cast(bool, actual < expected)
    return cast(bool, actual <= expected)


def evaluate(node: Node | None, metadata: Mapping[str, Any]) -> bool:
    """Reference semantics: does ``metadata`` match the parsed filter ``node``?"""
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(n, metadata) for n in node.items)
    if isinstance(node, Or):
        return any(evaluate(n, metadata) for n in node.items)
    return _compare(node, lookup(metadata, node.path))
