"""``doctor``: check the configuration and every configured backend, one line each."""

from __future__ import annotations

import importlib.metadata
import platform
import sqlite3
import time
from typing import Any, Literal

from . import _registry
from ._config import StoreConfig
from ._errors import SemanticStoreError, redact

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
    "pymongo",
    "psycopg",
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


async def doctor(name: str, config: StoreConfig | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Checks of config, primary, vector and embedding drivers for collection ``name`` opened
    with ``config``; each ``{component, ok, detail}``. Failures are reported, not raised.
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
    checks.append(await _probe_store_driver("primary", cfg.primary_driver, cfg, collection))
    checks.append(await _probe_store_driver("vector", cfg.vector_driver, cfg, collection))
    checks.append(await _probe_embedder(cfg))
    return checks


async def _probe_store_driver(
    kind: Literal["primary", "vector"], driver_name: str, cfg: StoreConfig, collection: str
) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        driver = _registry.build(kind, cfg, collection)
        await driver.open()
        try:
            count = await driver.count()
        finally:
            await driver.aclose()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return _check(kind, False, f"{driver_name}: {redact(str(exc))}")
    ms = (time.perf_counter() - started) * 1000
    return _check(kind, True, f"{driver_name} reachable, {count} entries in {collection!r} ({ms:.0f} ms)")


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
