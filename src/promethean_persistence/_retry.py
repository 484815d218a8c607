"""Retry timing shared by the write path, the migration toolkit and the HTTP embedders."""

from __future__ import annotations

import random

MAX_BACKOFF_MS = 300_000  #: retries never wait longer than 5 minutes


def backoff_ms(attempts: int, base_ms: int, cap_ms: int = MAX_BACKOFF_MS) -> int:
    """Exponential backoff with jitter: ``base_ms`` doubled for each of ``attempts`` after
    the first, capped at ``cap_ms``, scaled by a random 0.5-1.0. Returns the delay in
    milliseconds; raises nothing."""
    delay = min(base_ms * 2 ** max(attempts - 1, 0), cap_ms)
    return int(delay * random.uniform(0.5, 1.0))
