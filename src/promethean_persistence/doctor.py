"""``doctor``: check the configuration and every configured backend, one line each."""

from __future__ import annotations

import importlib.metadata
import platform
import sqlite3
import time
from typing import Any, Literal, cast

from . import _registry
from ._config import StoreConfig
from ._errors import SemanticStoreError, redact
from .drivers.base import OutboxStatsPrimary

_VERSIONS = (
    "numpy",
    "pydantic",
    "hnswlib",
    "sentence-transformers",
    "torch",
    "chromadb",
    "qdrant-client",
    "qdrant-edge-py",
    "pinecone",
    "pymilvus",
    "milvus-lite",
    "pymongo",
    "psycopg",
    "onnxruntime",
    "tantivy",
)


def _check(component: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"component": component, "ok": ok, "detail": detail}


def versions() -> str:
    """The versions of Python, SQLite, this package and the installed drivers' packages, on one line."""
    found = [f"python {platform.python_version()}", f"sqlite {sqlite3.sqlite_version}"]
    for dist in ("promethean-persistence", *_VERSIONS):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


BACKLOG_WARN_MS = 300_000  #: the oldest pending entry's age that ``doctor`` warns about


async def doctor(
    name: str, config: StoreConfig | dict[str, Any] | None = None, *, backlog_warn_ms: int = BACKLOG_WARN_MS
) -> list[dict[str, Any]]:
    """Checks of config, primary, vector and embedding drivers for collection ``name`` opened
    with ``config``; each ``{component, ok, detail}``, and ``warning: True`` on a check that
    passed with a warning: the ``outbox`` check warns when the oldest pending entry is older
    than ``backlog_warn_ms`` (no worker is draining it, or too few). Failures are reported,
    not raised.
    """
    checks = [_check("versions", True, versions())]
    try:
        cfg = StoreConfig.resolve(config)
    except SemanticStoreError as exc:
        return checks + [_check("config", False, str(exc))]
    collection = cfg.collection_name(name)
    checks.append(
        _check(
            "config",
            True,
            f"primary={cfg.primary_driver} vector={cfg.vector_driver} "
            f"embedding={cfg.embedding_driver} consistency={cfg.consistency} "
            f"home={cfg.home}",
        )
    )
    primary = await _probe_store_driver("primary", cfg.primary_driver, cfg, collection)
    checks.append(primary)
    checks.append(await _probe_store_driver("vector", cfg.vector_driver, cfg, collection))
    checks.append(await _probe_embedder(cfg))
    backlog = _backlog(cfg, primary.get("outbox"), backlog_warn_ms)
    return checks + ([backlog] if backlog else [])


async def _probe_store_driver(
    kind: Literal["primary", "vector"], driver_name: str, cfg: StoreConfig, collection: str
) -> dict[str, Any]:
    started = time.perf_counter()
    outbox = None
    try:
        driver = _registry.build(kind, cfg, collection)
        await driver.open()
        try:
            count = await driver.count()
            if kind == "primary" and driver.capabilities.outbox_stats:
                outbox = await cast(OutboxStatsPrimary, driver).outbox_stats(int(time.time() * 1000))
                outbox["checked_at"] = int(time.time() * 1000)
        finally:
            await driver.aclose()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return _check(kind, False, f"{driver_name}: {redact(str(exc))}")
    ms = (time.perf_counter() - started) * 1000
    found = _check(kind, True, f"{driver_name} reachable, {count} entries in {collection!r} ({ms:.0f} ms)")
    if outbox is not None:
        oldest = outbox["oldest_pending_at"]
        outbox["oldest_pending_ms"] = None if oldest is None else max(0, outbox["checked_at"] - oldest)
        found["outbox"] = outbox
        found["detail"] += f"; outbox: {_outbox_line(outbox)}"
    return found


def _outbox_line(outbox: dict[str, Any]) -> str:
    age = outbox["oldest_pending_ms"]
    return (
        f"{outbox['pending']} pending"
        + (f" (oldest {age / 1000:.0f} s)" if age is not None else "")
        + f", {outbox['failed']} failed, {outbox['tombstones']} vector deletes, {len(outbox['workers'])} live workers"
    )


def _backlog(cfg: StoreConfig, outbox: dict[str, Any] | None, warn_ms: int) -> dict[str, Any] | None:
    """A warning (``ok`` True, ``warning`` True) when the oldest pending entry of ``outbox``
    (the primary check's figures) is older than ``warn_ms``; None otherwise."""
    if outbox is None or outbox["oldest_pending_ms"] is None or outbox["oldest_pending_ms"] <= warn_ms:
        return None
    if cfg.vector_writes == "worker" and not outbox["workers"]:
        hint = "no outbox worker is alive: start `semantic-store worker`"
    elif cfg.vector_writes == "worker":
        hint = "the workers do not keep up: start more"
    else:
        hint = "the writing processes leave it behind: run `semantic-store flush` or a worker"
    found = _check(
        "outbox",
        True,
        f"the oldest pending vector write waits for {outbox['oldest_pending_ms'] / 1000:.0f} s "
        f"(over {warn_ms / 1000:.0f} s): {hint}; {_outbox_line(outbox)}",
    )
    found["warning"] = True
    return found


async def _probe_embedder(cfg: StoreConfig) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        embedder = _registry.build("embedding", cfg)
        try:
            vectors = await embedder.embed(["doctor check"])
        finally:
            await embedder.aclose()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return _check("embedding", False, f"{cfg.embedding_driver}: {redact(str(exc))}")
    ms = (time.perf_counter() - started) * 1000
    detail = f"{cfg.embedding_driver} model={embedder.model} dimensions={vectors.shape[1]} ({ms:.0f} ms)"
    return _check("embedding", True, f"{detail} {embedder!r}")
