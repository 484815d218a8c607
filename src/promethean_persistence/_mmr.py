"""Maximal marginal relevance (Carbonell and Goldstein, 1998): a diverse subset of the
nearest entries, each chosen for its similarity to the queries minus its similarity to
those already chosen."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._errors import ValidationError


def check_mmr(limit: int, fetch_k: Any, lambda_mult: Any, operation: str) -> int:
    """Validate the MMR arguments of ``operation``: ``fetch_k`` an int >= 1 (raised to
    ``limit``, the number of entries wanted) and ``lambda_mult`` a number in [0, 1].
    Returns the candidates to fetch; raises ``ValidationError`` naming the argument."""
    if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1:
        raise ValidationError(f"fetch_k must be an int >= 1, got {fetch_k!r}", field="fetch_k", operation=operation)
    if (
        isinstance(lambda_mult, bool)
        or not isinstance(lambda_mult, (int, float))
        or not (math.isfinite(lambda_mult) and 0 <= lambda_mult <= 1)
    ):
        raise ValidationError(
            f"lambda_mult must be a number from 0 to 1, got {lambda_mult!r}", field="lambda_mult", operation=operation
        )
    return max(fetch_k, limit)


def mmr_order(queries: np.ndarray, candidates: np.ndarray, limit: int, lambda_mult: float) -> list[int]:
    """The indexes of up to ``limit`` rows of ``candidates`` (vectors, one per row) in the
    order MMR picks them for ``queries`` (vectors, one per row; a candidate's relevance is
    its best cosine to any of them). ``lambda_mult`` weighs relevance against diversity: 1 is
    plain relevance order, 0 the most diverse. Returns a list; raises nothing."""
    if not len(candidates):
        return []
    candidates, queries = _unit(candidates), _unit(queries)
    relevance = (candidates @ queries.T).max(axis=1)
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)  # best cosine to a chosen candidate
    left = np.ones(len(candidates), dtype=bool)
    while len(chosen) < min(limit, len(candidates)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(left, lambda_mult * relevance - (1 - lambda_mult) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return chosen


def _unit(rows: np.ndarray) -> np.ndarray:
    """``rows`` scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, 1e-12)
    return unit
