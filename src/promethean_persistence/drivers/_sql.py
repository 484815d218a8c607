"""SQL pieces shared by the SQL primary drivers."""

from __future__ import annotations

from typing import Any


def window(since: int | None, until: int | None, include_empty: bool, *, mark: str, non_empty: str
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
