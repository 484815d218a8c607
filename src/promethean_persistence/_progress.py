"""A progress bar with rate and ETA on stderr, for long library calls and the CLI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """Call with ``(done, total)``; draws only when stderr is a terminal, and remembers the
    last ``done`` and ``total`` either way (the CLI reports them when interrupted)."""

    def __init__(self, label: str, enabled: bool = True, *, kept: str = "entries stored") -> None:
        """``label`` prefixes the bar; ``enabled`` False draws nothing. ``kept`` names what
        ``done`` counts, for a report of work kept (e.g. ``"entries stored"``). Raises nothing."""
        self.label = label
        self.kept = kept
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.perf_counter()
        self.done = 0  #: the last ``done`` reported
        self.total = 0  #: the last ``total`` reported
        self.mid_line = False  #: a bar is drawn and its line not ended

    def __call__(self, done: int, total: int) -> None:
        if done < self.done:
            self.started = time.perf_counter()  # a new phase: its own rate and ETA
        self.done, self.total = done, total
        if not self.enabled or not total:
            return
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed else 0.0
        eta = (total - done) / rate if rate else 0.0
        filled = 30 * min(done, total) // total
        self.mid_line = done < total
        end = "" if self.mid_line else "\n"
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {rate:,.0f}/s ETA {eta:,.0f}s {end}"
        )
        sys.stderr.flush()


def progress_callback(progress: bool | Callable[[int, int], None] | None, label: str) -> Callable[[int, int], None]:
    """The ``(done, total)`` callback for ``progress``: ``True``, a bar on stderr labelled
    ``label``; a callable: itself; ``False``/None: nothing.
    """
    if callable(progress):
        return progress
    return Progress(label) if progress else (lambda done, total: None)
