"""The SQLite primary's table layout: the names a collection takes, the upsert's updates, the
expiry clause, and records to rows and back."""

from __future__ import annotations

import json
from typing import Any

from ...._types import Record
from ..._sqlite_lexical import SUFFIXES
from .._sql_layout import COLUMNS, dumps

_TRIGGERS = ("__lexical_ai", "__lexical_ad", "__lexical_au")
NAMES = ("", "__tombstones", "__time", "__outbox", "__expires", *SUFFIXES, *_TRIGGERS)  #: the names a collection takes
UPDATES = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ") if c != "id") + ", is_empty = excluded.is_empty"
LIVE = "(expires_at IS NULL OR expires_at > ?)"  #: a record not expired at the parameter (epoch ms)

_decode = json.JSONDecoder().decode


def row_of(record: Record) -> tuple[Any, ...]:
    """The row of ``record``, in the order ``put`` inserts it. Raises ``TypeError`` for
    metadata JSON cannot hold."""
    return (
        record.id,
        record.text,
        record.timestamp,
        int(record.is_empty),
        dumps(record.metadata),
        dumps(record.extra) if record.extra else "{}",  # mostly empty: no encoder call
        record.version,
        record.vector_status,
        record.vector_attempts,
        record.vector_error,
        record.vector_next_at,
        record.vector_updated_at,
        record.vector_synced_at,
        record.content_hash,
        record.embedding_model,
        record.expires_at,
    )


def record_of(row: tuple[Any, ...]) -> Record:
    """A Record from ``row``, a row of ``COLUMNS`` (in the dataclass's field order, ``legacy``
    False before ``expires_at``: positional is the cheapest way to build a hundred thousand of
    them for a whole-store report). Raises nothing for a row this driver wrote."""
    r = row
    extra = _decode(r[4]) if r[4] != "{}" else {}
    return Record(
        r[0], r[1], r[2], _decode(r[3]), extra, r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], False, r[14]
    )
