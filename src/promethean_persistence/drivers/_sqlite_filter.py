"""The filter language (``promethean_persistence._filters``) translated to SQLite SQL over a
JSON text column, with bound parameters, in a form that scales: ``$in``/``$nin`` lists go in
as one JSON array parameter (``json_each``), and long ``$and``/``$or`` lists are joined as
balanced trees, so neither the SQL expression depth nor the number of parameters grows
with the length of a list."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from typing import Any

from .._filters import And, Cmp, Node, Or, narrow

_FLAT = 4  #: terms joined in a row before the join is split in two halves


def json_path(path: tuple[str, ...]) -> str:
    """The SQLite JSON path of the key segments ``path`` (``$."a"."b"``). A backslash is
    written as stored JSON text writes it (``\\\\``): SQLite matches a quoted label against
    the key as written, and newer versions decode both sides alike."""
    return "$" + "".join('."' + p.replace("\\", "\\\\") + '"' for p in path)


def filter_sql(
    node: Node,
    column: str = "metadata",
    columns: dict[str, str] | None = None,
    indexed: Collection[tuple[str, ...]] = (),
) -> tuple[str, list[Any]]:
    """Translate a parsed filter ``node`` to an SQL boolean over the JSON ``column``.

    ``columns`` maps single-segment keys to plain TEXT columns (e.g. vectorStatus).
    Every comparison is wrapped in COALESCE(..., 0) so NOT never meets NULL. Integer operands
    beyond 64 bits, which sqlite3 cannot bind, are narrowed to doubles without changing the
    result (``_filters.narrow``). ``indexed``: key paths with an ``index_sql`` index; a top
    level ``$eq``/``$in`` on one of them also gets the bare comparison that index serves (the
    exact test still decides). Returns the SQL and its parameters.
    """
    params: list[Any] = []
    node = narrow(node)
    columns = columns or {}
    hints = _hints(node, column, set(indexed) - {(k,) for k in columns}, params) if indexed else []
    sql = _node_sql(node, column, columns, params)
    return " AND ".join([*hints, sql]), params


def index_sql(table: str, name: str, path: tuple[str, ...], column: str = "metadata", then: str = "") -> str:
    """The DDL of the index ``name`` (quoted) on ``table`` (quoted) over the value at the key
    ``path`` of the JSON ``column``, then the column ``then`` (e.g. ``timestamp``, for the
    newest entries of a filter), in the form ``filter_sql`` hints at."""
    extract = f"json_extract({column}, '{_sql_str(json_path(path))}')"
    return f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({extract}{', ' + then if then else ''})"


def metadata_paths(keys: Iterable[str]) -> list[tuple[str, ...]]:
    """The key paths of the metadata ``keys`` (``"a.b"``: ``("a", "b")``), as filters split them."""
    return [tuple(k.split(".")) for k in keys]


def key_digest(path: tuple[str, ...]) -> str:
    """A short stable name part for the key ``path`` (index names cannot hold every character)."""
    return hashlib.sha1(json.dumps(path).encode()).hexdigest()[:12]


def _hints(node: Node, column: str, indexed: set[tuple[str, ...]], params: list[Any]) -> list[str]:
    hints = []
    for cmp in node.items if isinstance(node, And) else (node,):
        if not isinstance(cmp, Cmp) or cmp.path not in indexed:
            continue
        extract = f"json_extract({column}, '{_sql_str(json_path(cmp.path))}')"
        values = cmp.value if cmp.op == "in" else (cmp.value,) if cmp.op == "eq" else ()
        # one kind only: a bare comparison of mixed kinds could miss a match that the exact test keeps
        if values and (all(isinstance(v, str) for v in values) or all(_number(v) for v in values)):
            if cmp.op == "eq":
                hints.append(f"{extract} = ?")
                params.append(cmp.value)
            else:
                hints.append(f"{extract} IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(list(values), ensure_ascii=False))
    return hints


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _node_sql(node: Node, column: str, columns: dict[str, str], params: list[Any]) -> str:
    if isinstance(node, (And, Or)):
        parts = [_node_sql(n, column, columns, params) for n in node.items]  # in order: params follow the text
        return _balanced(parts, " AND " if isinstance(node, And) else " OR ")
    assert isinstance(node, Cmp)
    plain = columns.get(node.path[0]) if len(node.path) == 1 else None
    if plain is not None:
        type_sql = f"(CASE WHEN {plain} IS NULL THEN NULL ELSE 'text' END)"
        value_sql = plain
    else:
        path = _sql_str(json_path(node.path))
        type_sql = f"json_type({column}, '{path}')"
        value_sql = f"json_extract({column}, '{path}')"

    op, value = node.op, node.value
    if op == "eq":
        expr = _eq(type_sql, value_sql, value, params)
    elif op == "ne":
        expr = f"NOT {_coalesce(_eq(type_sql, value_sql, value, params))}"
    elif op in ("in", "nin"):
        expr = _in(type_sql, value_sql, value, params)
        if op == "nin":
            expr = f"NOT {expr}"
    elif op == "exists":
        expr = f"({type_sql} IS {'NOT ' if value else ''}NULL)"
    else:
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        params.append(value)
        expr = _typed(type_sql, value_sql, value, sym)
    return _coalesce(expr)


def _balanced(parts: list[str], joiner: str) -> str:
    """``parts`` joined by ``joiner``, nested as a balanced tree: a flat chain of a thousand
    terms is a thousand levels deep for SQLite ("Expression tree is too large")."""
    if len(parts) <= _FLAT:
        return "(" + joiner.join(parts) + ")"
    middle = len(parts) // 2
    return "(" + _balanced(parts[:middle], joiner) + joiner + _balanced(parts[middle:], joiner) + ")"


def _typed(type_sql: str, value_sql: str, value: Any, op: str) -> str:
    """SQL for ``value_sql <op> ?`` that matches only values of the parameter's kind."""
    if isinstance(value, bool):
        return f"({type_sql} = {'true' if value else 'false'!r})"
    if isinstance(value, str):
        return f"({type_sql} = 'text' AND {value_sql} {op} ?)"
    return f"({type_sql} IN ('integer', 'real') AND {value_sql} {op} ?)"


def _eq(type_sql: str, value_sql: str, value: Any, params: list[Any]) -> str:
    if value is None:
        return f"({type_sql} IS NULL OR {type_sql} = 'null')"
    if not isinstance(value, bool):
        params.append(value)
    return _typed(type_sql, value_sql, value, "=")


def _in(type_sql: str, value_sql: str, values: tuple[Any, ...], params: list[Any]) -> str:
    """Whether the value is one of ``values``: each kind's values in one JSON array parameter
    looked up with ``IN (SELECT value FROM json_each(?))`` (SQLite indexes it once per query)."""
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    terms: list[str] = []
    for kinds, found in (("'text'", strings), ("'integer', 'real'", numbers)):
        if found:
            params.append(json.dumps(found, ensure_ascii=False))
            terms.append(f"({type_sql} IN ({kinds}) AND {value_sql} IN (SELECT value FROM json_each(?)))")
    terms += [f"({type_sql} = '{str(flag).lower()}')" for flag in (True, False) if any(v is flag for v in values)]
    if any(v is None for v in values):
        terms.append(f"({type_sql} IS NULL OR {type_sql} = 'null')")
    return "(" + " OR ".join(_coalesce(t) for t in terms) + ")" if terms else "0"


def _coalesce(expr: str) -> str:
    return f"COALESCE({expr}, 0)"


def _sql_str(text: str) -> str:
    # Paths come from validated keys (no quotes or control characters); double any ' anyway.
    return text.replace("'", "''")
