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

Limits, the same on every driver: ``$and``/``$or`` nest at most ``MAX_DEPTH`` (32) levels
deep and a filter holds at most ``MAX_TERMS`` (10,000) comparisons (a ``$in``/``$nin``
list counts as one, however long); strings hold no NUL character or lone surrogate (no
stored value can), and numbers lie within the float range. Any other filter raises
ValidationError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, cast

from ._entries import MAX_INT, MIN_INT, shown, text_problem
from ._errors import ValidationError

__all__ = ["And", "Cmp", "Node", "Or", "evaluate", "narrow", "parse", "MISSING"]

MAX_DEPTH = 32  #: levels of $and/$or nesting
MAX_TERMS = 10_000  #: comparisons in one filter (use $in for long lists of values)
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
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise _fail(f"{where}: the value {problem}")
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(f"{where}: NaN and Infinity cannot be compared")
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                raise _fail(f"{where}: an integer of {value.bit_length()} bits is beyond the float range") from None
        return value
    raise _fail(
        f"{where}: values must be str, int, float, bool or None, not {type(value).__name__}"
        + (" (use $in for a list of values)" if isinstance(value, (list, tuple)) else "")
        + (" (use dotted keys for nested values)" if isinstance(value, Mapping) else "")
    )


def _key(key: Any) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise _fail(f"keys must be non-empty strings, got {shown(key)}")
    if key.startswith("$"):
        raise _fail(f"unknown operator {shown(key)}; allowed: {', '.join(LOGIC)} at the top level")
    parts = tuple(key.split("."))
    # quotes and control characters cannot be spliced into a JSON path; no stored key has a
    # NUL or a lone surrogate
    if any(not p or '"' in p or any(ord(c) < 32 for c in p) for p in parts) or text_problem(key):
        raise _fail(f"malformed key {shown(key)}")
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


class _Budget:
    """The comparisons a filter may still hold."""

    def __init__(self) -> None:
        self.left = MAX_TERMS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _fail(f"more than {MAX_TERMS} comparisons; use $in for long lists of values")


def _parse(spec: Any, depth: int, budget: _Budget) -> Node:
    if not isinstance(spec, Mapping):
        raise _fail(f"expected a mapping, got {type(spec).__name__}")
    items: list[Node] = []
    for key, value in spec.items():
        if key in LOGIC:
            if not isinstance(value, (list, tuple)) or not value:
                raise _fail(f"{key} takes a non-empty list of filters")
            if depth >= MAX_DEPTH:  # checked before descending: no input can exhaust the stack
                raise _fail(f"$and/$or nested deeper than {MAX_DEPTH} levels")
            parts = tuple(_parse(v, depth + 1, budget) for v in value)
            items.append(_join(And if key == "$and" else Or, parts))
            continue
        path = _key(key)
        if isinstance(value, Mapping):
            if not value:
                raise _fail(f"empty operator mapping for {key!r}")
            for op, operand in value.items():
                if not isinstance(op, str) or not op.startswith("$"):
                    raise _fail(f"nested objects are not compared; use dotted keys ({key}.{shown(op)})")
                budget.take()
                items.append(_comparison(path, op, operand))
        else:
            budget.take()
            items.append(_comparison(path, "$eq", value))
    if not items:
        raise _fail("a filter inside $and/$or must not be empty")
    return _join(And, tuple(items))


def _join(kind: type[And] | type[Or], items: tuple[Node, ...]) -> Node:
    """``kind(items)``, with one item unwrapped and nested nodes of the same kind merged (the
    same meaning, and shallower SQL)."""
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def parse(spec: Mapping[str, Any] | None) -> Node | None:
    """Check the filter ``spec`` and return its tree, or None for "match everything" (None or
    ``{}``). Raises ValidationError for a malformed filter or one beyond the limits (see the
    module's docstring).
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping) and not spec:
        return None
    return _parse(spec, 0, _Budget())


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


# -- for drivers whose numbers are 64-bit integers or doubles (SQLite, MongoDB) --------------


def narrow(node: Node) -> Node:
    """``node`` with every integer operand beyond 64 bits replaced, without changing which
    values match, for engines that cannot bind such integers but store only 64-bit integers
    and doubles: such an operand ``v`` becomes the double ``f`` nearest to it, and since no
    stored number lies strictly between ``v`` and ``f``, ``x > v`` is ``x >= f`` when
    ``f > v`` (else ``x > f``), and so on; ``x == v`` can only hold when ``f == v``."""
    if isinstance(node, (And, Or)):
        return type(node)(tuple(narrow(n) for n in node.items))
    op, value = node.op, node.value
    if op in ("in", "nin"):
        if not any(_wide(v) for v in value):
            return node
        return Cmp(node.path, op, tuple(float(v) if _wide(v) else v for v in value if not _wide(v) or float(v) == v))
    if not _wide(value):
        return node
    f = float(value)
    if op in ("eq", "ne"):
        if f == value:
            return Cmp(node.path, op, f)
        return Cmp(node.path, "in" if op == "eq" else "nin", ())  # never equal: nothing / everything
    above = f > value  # the double lies above the operand
    if op in ("gt", "gte"):
        return Cmp(node.path, "gte" if above or (op == "gte" and f == value) else "gt", f)
    return Cmp(node.path, "lte" if (not above and f != value) or (op == "lte" and f == value) else "lt", f)


def _wide(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT
