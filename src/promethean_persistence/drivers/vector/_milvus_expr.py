"""Milvus's side of the ``milvus`` driver: collection names Milvus can hold, and the filter
language as a Milvus boolean expression on the ``metadata`` JSON field.

The expression is never narrower than the exact filter (the driver checks the exact one on
each hit's metadata), so anything Milvus might read differently is left out of it:

* keys other than ``[A-Za-z0-9_-]`` parts, and strings with quotes, backslashes or control
  characters (Milvus 2.4/2.5 has no expression templates, and its escapes are C's);
* ``$ne``, ``$nin``, ``$exists`` and ``None`` values (missing keys match those);
* integers beyond int64, and numbers compared strictly: a JSON number may be stored as a
  double, so ``>``/``<`` become ``>=``/``<=`` and ``$eq`` a closed range (rounding to a
  double is monotonic, so these admit every exact match);
* a ``$in`` list of numbers (Milvus asserts its literals share one type): an ``or`` of ranges.
"""

from __future__ import annotations

import re

from ..._entries import MAX_INT, MIN_INT
from ..._filters import Cmp, Node, Or
from .._names import digest

MILVUS_MAX = 255
_MILVUS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_UNSAFE_TEXT = re.compile(r'["\\\x00-\x1f\x7f]')


def milvus_valid(name: str) -> bool:
    """Whether Milvus accepts the collection ``name``: a letter or ``_`` then letters, digits
    and ``_``, at most 255 characters. Raises nothing."""
    return bool(_MILVUS_NAME.match(name))


def milvus_ok(name: str) -> bool:
    """Whether ``name`` is kept as it is for a Milvus collection: what Milvus accepts (a
    letter or ``_`` then letters, digits and ``_``, at most 255) without ``__``, which only
    encoded names hold. Raises nothing."""
    return bool(_MILVUS_NAME.match(name)) and "__" not in name


def milvus_rule(name: str) -> str:
    """A sentence saying why Milvus cannot hold the pinned collection ``name``. Raises nothing."""
    return (
        f"Milvus collection name {name!r} is not allowed: Milvus takes 1-{MILVUS_MAX} characters, "
        "a letter or '_' first, then letters, digits and '_'"
    )


def milvus_name(name: str) -> str:
    """The Milvus collection of the store collection ``name``: itself when ``milvus_ok``, else
    ``{readable head}__{16 hex digits of its hash}`` (a kept name never holds ``__``, so the
    two never meet, and the hash keeps names differing in case or punctuation apart).
    Returns it; raises nothing."""
    if milvus_ok(name):
        return name
    head = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:80]
    if not head or head[0].isdigit():
        head = "c_" + head if head else "c"
    return f"{head}__{digest(name)}"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _literal(value: object) -> str | None:
    """``value`` as a Milvus literal, or None where Milvus could read it differently."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if MIN_INT <= value <= MAX_INT else None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and not _UNSAFE_TEXT.search(value):
        return f'"{value}"'
    return None


def _condition(node: Cmp) -> str | None:
    if not all(_PLAIN_KEY.match(p) for p in node.path):
        return None
    field = "metadata" + "".join(f'["{p}"]' for p in node.path)
    op, value = node.op, node.value
    # A list stored under the key never equals a scalar in our semantics: whatever Milvus
    # does with it here can only admit more.
    if op == "eq":
        literal = _literal(value) if value is not None else None
        if literal is None:
            return None
        if _number(value):
            return f"({field} >= {literal} and {field} <= {literal})"
        return f"{field} == {literal}"
    if op == "in" and value and all(v is not None for v in value):
        if all(isinstance(v, str) for v in value):
            literals = [_literal(v) for v in value]
            if any(lit is None for lit in literals):
                return None
            return f"{field} in [{', '.join(lit for lit in literals if lit)}]"
        parts = [_condition(Cmp(node.path, "eq", v)) for v in value]
        return None if any(p is None for p in parts) else "(" + " or ".join(p for p in parts if p) + ")"
    if op in ("gt", "gte", "lt", "lte") and (_number(value) or isinstance(value, str)):
        literal = _literal(value)
        if literal is None:
            return None
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if _number(value):
            symbol = symbol[0] + "="  # never narrower under rounding to a double
        return f"{field} {symbol} {literal}"
    return None


def milvus_filter(node: Node) -> str | None:
    """Milvus's share of the parsed filter ``node``: a boolean expression on the ``metadata``
    JSON field that admits every match of ``node`` (perhaps more), or None when Milvus can
    check nothing of it. Raises nothing."""
    if isinstance(node, Cmp):
        return _condition(node)
    parts = [milvus_filter(n) for n in node.items]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else "(" + " or ".join(p for p in parts if p) + ")"
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else "(" + " and ".join(kept) + ")"
