"""SQL pieces shared by the SQL primary drivers."""

from __future__ import annotations

from typing import Any

OUTBOX_STATES = ("pending", "failed")  #: the vector states the outbox index holds
#: the outbox index's predicate: SQLite uses a partial index only for a query that states it
OUTBOX_PREDICATE = f"vector_status IN ({', '.join(repr(s) for s in OUTBOX_STATES)})"


def window(
    since: int | None, until: int | None, include_empty: bool, *, mark: str, non_empty: str
) -> tuple[list[str], list[Any]]:
    """WHERE clauses (and parameters) for a most-recent window from ``since`` to ``until`` (epoch
    ms, each optional); ``include_empty`` keeps entries without text, else ``non_empty`` (the
    SQL for "has text") is added; ``mark`` is the placeholder.
    """
    clauses: list[str] = [] if include_empty else [non_empty]
    params: list[Any] = []
    if since is not None:
        clauses.append(f"timestamp >= {mark}")
        params.append(since)
    if until is not None:
        clauses.append(f"timestamp <= {mark}")
        params.append(until)
    return clauses, params


def due_records(table: str, columns: str, *, mark: str, lock: str = "") -> str:
    """SQL selecting the records of ``table`` (``columns``) whose vector work is due: params (now,
    due_by, limit). ``mark`` is the placeholder (``?`` or ``%s``), ``lock`` a locking clause to
    append (``FOR UPDATE SKIP LOCKED``) or empty.
    """
    # without the predicate, a scan of every row: 49 ms a claim at 100k rows
    return (
        f"SELECT {columns} FROM {table} WHERE {OUTBOX_PREDICATE} AND ("
        f"(vector_status = 'pending' AND (vector_next_at IS NULL OR vector_next_at <= {mark})) OR "
        f"(vector_status = 'failed' AND vector_next_at IS NOT NULL AND vector_next_at <= {mark})) "
        f"ORDER BY vector_updated_at, timestamp, id LIMIT {mark}{lock}"
    )


def due_tombstones(table: str, *, mark: str, lock: str = "") -> str:
    """SQL selecting the tombstones of ``table`` that are due (new ones by now, failed ones by
    due_by): params (now, due_by, limit). ``mark`` is the placeholder, ``lock`` a locking
    clause to append or empty.
    """
    return (
        f"SELECT id, vector_attempts, vector_error, vector_next_at, vector_updated_at FROM {table} "
        f"WHERE vector_next_at IS NULL OR vector_next_at <= "
        f"(CASE WHEN vector_attempts = 0 THEN {mark} ELSE {mark} END) "
        f"ORDER BY vector_updated_at, id LIMIT {mark}{lock}"
    )
