"""Haystack's filter language translated to this package's (used by ``integrations.haystack``;
Haystack must be installed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from haystack.errors import FilterError

from .. import _filters
from .._errors import ValidationError
from ._logic import both, either, negate

__all__ = ["translate_filters", "where"]

_COMPARE = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "in": "$in", "not in": "$nin"}
_ORDERED = ("$gt", "$gte", "$lt", "$lte")


def translate_filters(filters: dict[str, Any] | None) -> dict[str, Any] | bool:
    """The Haystack filter ``filters`` in this package's filter language; True matches every
    document and False none. Malformed filters raise Haystack's FilterError.
    """
    if not filters:
        return True
    return _translate(filters)


def _translate(f: Any) -> dict[str, Any] | bool:
    if not isinstance(f, dict):
        raise FilterError(f"a filter must be a dict, got {type(f).__name__}")
    if "field" in f:
        return _comparison(f)
    if "operator" not in f:
        raise FilterError(f"'operator' key missing in {f}")
    if "conditions" not in f or not isinstance(f["conditions"], list):
        raise FilterError(f"'conditions' list missing in {f}")
    parts = [_translate(c) for c in f["conditions"]]
    op = f["operator"]
    if op == "AND":
        return both(parts)
    if op == "OR":
        return either(parts)
    if op == "NOT":
        return negate(both(parts))
    raise FilterError(f"unknown logical operator {op!r}; use AND, OR or NOT")


def _comparison(f: dict[str, Any]) -> dict[str, Any] | bool:
    for key in ("field", "operator", "value"):
        if key not in f:
            raise FilterError(f"{key!r} key missing in {f}")
    field, op, value = f["field"], f["operator"], f["value"]
    if not isinstance(field, str) or not field.startswith("meta.") or len(field) == 5:
        raise FilterError(f"only meta fields can be filtered here ('meta.<name>'), got {field!r}")
    if op not in _COMPARE:
        raise FilterError(f"unknown comparison operator {op!r}")
    ours = _COMPARE[op]
    if ours in ("$in", "$nin") and not isinstance(value, list):
        raise FilterError(f"{op!r} takes a list, got {type(value).__name__}")
    if ours in _ORDERED:
        if value is None:
            return False
        if isinstance(value, (list, dict)):
            raise FilterError(f"{op!r} cannot compare with a {type(value).__name__}")
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise FilterError(f"{op!r} compares numbers or ISO dates, got the string {value!r}") from None
    if isinstance(value, (list, tuple)) and ours in ("$eq", "$ne") or isinstance(value, dict):
        raise FilterError(f"{op!r} cannot compare with a {type(value).__name__}")
    return {field[5:]: {ours: value}}


def where(filters: dict[str, Any] | None) -> dict[str, Any] | None | Literal[False]:
    """The Haystack ``filters`` in our language (None: everything, False: nothing), checked:
    values our language cannot compare are a FilterError too."""
    ours = translate_filters(filters)
    if isinstance(ours, bool):
        return None if ours else False
    try:
        _filters.parse(ours)
    except ValidationError as exc:
        raise FilterError(str(exc)) from None
    return ours
