"""SQL pieces shared by the SQL primary drivers."""

from __future__ import annotations

from typing import Any


def window(
    since: int | None, until: int | None, include_empty: bool, *, mark: str, non_empty: str
) -> tuple[list[str], list[Any]]:
    """WHERE clauses (and parameters) for a most-recent window; ``mark`` is the placeholder."""
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
    """Records whose vector work is due: params (now, due_by, limit)."""
    return (
        f"SELECT {columns} FROM {table} WHERE "
        f"(vector_status = 'pending' AND (vector_next_at IS NULL OR vector_next_at <= {mark})) OR "
        f"(vector_status = 'failed' AND vector_next_at IS NOT NULL AND vector_next_at <= {mark}) "
        f"ORDER BY vector_updated_at, timestamp, id LIMIT {mark}{lock}"
    )


def due_tombstones(table: str, *, mark: str, lock: str = "") -> str:
    """Tombstones due (new ones by now, failed ones by due_by): params (now, due_by, limit)."""
    return (
        f"SELECT id, vector_attempts, vector_error, vector_next_at, vector_updated_at FROM {table} "
        f"WHERE vector_next_at IS NULL OR vector_next_at <= "
        f"(CASE WHEN vector_attempts = 0 THEN {mark} ELSE {mark} END) "
        f"ORDER BY vector_updated_at, id LIMIT {mark}{lock}"
    )
