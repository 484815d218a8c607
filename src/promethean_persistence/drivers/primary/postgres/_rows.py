"""The PostgreSQL primary's table layout: the columns ``put`` writes, the expiry clause, and
records to rows and back."""

from __future__ import annotations

from typing import Any

from ...._types import Record
from .._sql_layout import COLUMNS, dumps

WRITTEN = ("id", "text", "timestamp", "is_empty", *COLUMNS.split(", ")[3:])  #: what put writes, in order
LIVE = "(expires_at IS NULL OR expires_at > %s)"  #: a record not expired at the parameter (epoch ms)


def row_of(record: Record) -> tuple[Any, ...]:
    """The row of ``record``, in the order of ``WRITTEN``. Raises ``TypeError`` for metadata
    JSON cannot hold."""
    r = record
    return (
        r.id,
        r.text,
        r.timestamp,
        r.is_empty,
        dumps(r.metadata),
        dumps(r.extra),
        r.version,
        r.vector_status,
        r.vector_attempts,
        r.vector_error,
        r.vector_next_at,
        r.vector_updated_at,
        r.vector_synced_at,
        r.content_hash,
        r.embedding_model,
        r.expires_at,
    )


def record_of(row: tuple[Any, ...]) -> Record:
    """A Record from ``row``, a row of ``COLUMNS``. Raises nothing."""
    return Record(
        id=row[0],
        text=row[1],
        timestamp=row[2],
        metadata=row[3],
        extra=row[4],
        version=row[5],
        vector_status=row[6],
        vector_attempts=row[7],
        vector_error=row[8],
        vector_next_at=row[9],
        vector_updated_at=row[10],
        vector_synced_at=row[11],
        content_hash=row[12],
        embedding_model=row[13],
        expires_at=row[14],
    )
