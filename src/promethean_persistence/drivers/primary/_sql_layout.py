"""What the SQL primaries (``sqlite``, ``postgres``) share: the catalog table, the columns a
record is read from, the filter fields kept in columns, the clock and the JSON encoding."""

from __future__ import annotations

import json
import time
from typing import Any

from ..._errors import BackendRejected
from ..._types import SCHEMA_VERSION

CATALOG = "_semantic_store_collections"  #: one row per collection: schema version and manifest
COLUMNS = (
    "id, text, timestamp, metadata, extra, version, vector_status, vector_attempts, vector_error, "
    "vector_next_at, vector_updated_at, vector_synced_at, content_hash, embedding_model, expires_at"
)
FILTER_COLUMNS = {"vectorStatus": "vector_status"}  #: filter fields read from a column, not the metadata


def now_ms() -> int:
    """The time now in epoch ms. Raises nothing."""
    return int(time.time() * 1000)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps with options builds one a call


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (non-ASCII kept). Raises ``TypeError`` for what JSON
    cannot hold."""
    return _ENCODER.encode(value)


def check_schema(version: int | None, collection: str, where: str, driver: str) -> None:
    """Refuse the collection ``collection`` whose stored schema ``version`` (None: new) is newer
    than this package reads; ``where`` says where it is (``at <server>``, ``in '<path>'``) and
    ``driver`` names the driver. Raises ``BackendRejected``."""
    if version is not None and version > SCHEMA_VERSION:
        raise BackendRejected(
            f"Collection {collection!r} {where} has schema version {version}; this version of "
            f"promethean-persistence reads up to {SCHEMA_VERSION}. Upgrade the package.",
            driver=driver,
            operation="open",
        )


def recent_sql(table: str, clauses: list[str], order: str, mark: str) -> str:
    """The query of ``most_recent``: the records of ``table`` matching every one of
    ``clauses``, newest first (``order`` ``"desc"``) or oldest first, ties by id, at most a
    ``mark`` (the driver's parameter marker) of them."""
    direction = "DESC" if order == "desc" else "ASC"
    return (
        f"SELECT {COLUMNS} FROM {table}"
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY timestamp {direction}, id {direction} LIMIT {mark}"
    )
