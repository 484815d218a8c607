"""What the SQL primaries (``sqlite``, ``postgres``) share: the catalog table, the columns a
record is read from, the filter fields kept in columns, the clock and the JSON encoding."""

from __future__ import annotations

import json
import time
from typing import Any

CATALOG = "_semantic_store_collections"  #: one row per collection: schema version and manifest
COLUMNS = (
    "id, text, timestamp, metadata, extra, version, vector_status, vector_attempts, vector_error, "
    "vector_next_at, vector_updated_at, vector_synced_at, content_hash, embedding_model, expires_at"
)
FILTER_COLUMNS = {"vectorStatus": "vector_status"}  #: filter fields read from a column, not the metadata


def now_ms() -> int:
    """The time now in epoch ms. Raises nothing."""
    return int(time.time() * 1000)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (non-ASCII kept). Raises ``TypeError`` for what JSON
    cannot hold."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
