"""SQL of ``OutboxStatsPrimary`` shared by the SQL primary drivers (SQLite, PostgreSQL): the
outbox figures and the table of worker heartbeats (``WORKERS``, one per database)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._sql import OUTBOX_PREDICATE

WORKERS = "_semantic_store_workers"  #: worker heartbeats: one row per (collection, worker)
FORGET_AFTER_MS = 86_400_000  #: a worker dead this long is removed at the next beat
WORKER_COLUMNS = ("id", "host", "pid", "started_at", "last_beat_at")


def create_workers(bigint: str = "INTEGER") -> str:
    """The DDL of the heartbeat table; ``bigint`` is the 64-bit integer type's name."""
    return (
        f"CREATE TABLE IF NOT EXISTS {WORKERS} (collection TEXT NOT NULL, worker_id TEXT NOT NULL, "
        f"host TEXT NOT NULL, pid {bigint} NOT NULL, started_at {bigint} NOT NULL, beat_at {bigint} NOT NULL, "
        f"dead_at {bigint} NOT NULL, PRIMARY KEY (collection, worker_id))"
    )


def beat_sql(mark: str) -> str:
    """Upsert of one heartbeat: params (collection, worker_id, host, pid, started_at, beat_at,
    dead_at); ``mark`` is the placeholder."""
    return (
        f"INSERT INTO {WORKERS} (collection, worker_id, host, pid, started_at, beat_at, dead_at) "
        f"VALUES ({', '.join([mark] * 7)}) ON CONFLICT (collection, worker_id) DO UPDATE SET "
        "host = excluded.host, pid = excluded.pid, beat_at = excluded.beat_at, dead_at = excluded.dead_at"
    )


def beat_params(collection: str, worker: Any, now: int, dead_at: int) -> tuple[Any, ...]:
    """The parameters of ``beat_sql`` for ``worker`` (a mapping: id, host, pid, started_at)
    serving ``collection``, beating at ``now`` and dead from ``dead_at`` (epoch ms)."""
    return (
        collection,
        str(worker["id"]),
        str(worker["host"]),
        int(worker["pid"]),
        int(worker["started_at"]),
        now,
        dead_at,
    )


def prune_sql(mark: str) -> str:
    """Delete the heartbeats of workers dead before the parameter (epoch ms); ``mark`` is
    the placeholder."""
    return f"DELETE FROM {WORKERS} WHERE dead_at < {mark}"


def forget_sql(mark: str) -> str:
    """Delete one worker's heartbeat: params (collection, worker_id); ``mark`` is the
    placeholder."""
    return f"DELETE FROM {WORKERS} WHERE collection = {mark} AND worker_id = {mark}"


def live_workers_sql(mark: str) -> str:
    """The live workers of a collection: params (collection, now); ``mark`` is the
    placeholder."""
    return (
        f"SELECT worker_id, host, pid, started_at, beat_at FROM {WORKERS} "
        f"WHERE collection = {mark} AND dead_at > {mark} ORDER BY started_at, worker_id"
    )


def backlog_sql(table: str, mark: str) -> str:
    """Per outbox status of ``table``: (status, count, count with a lease or retry time after
    the parameter ``now``, count with any next time, oldest write time); ``mark`` is the
    placeholder. The WHERE clause is the outbox index's own predicate, so the index answers
    it."""
    return (
        f"SELECT vector_status, COUNT(*), SUM(CASE WHEN vector_next_at > {mark} THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN vector_next_at IS NOT NULL THEN 1 ELSE 0 END), MIN(COALESCE(vector_updated_at, timestamp)) "
        f"FROM {table} WHERE {OUTBOX_PREDICATE} GROUP BY vector_status"
    )


def stats_of(rows: Sequence[Sequence[Any]], tombstones: int, workers: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The ``OutboxStatsPrimary.outbox_stats`` dict from ``rows`` (of ``backlog_sql``), the
    ``tombstones`` count and ``workers`` (rows of ``live_workers_sql``)."""
    by = {str(r[0]): r for r in rows}
    pending, failed = by.get("pending"), by.get("failed")
    return {
        "pending": int(pending[1]) if pending else 0,
        "leased": int(pending[2] or 0) if pending else 0,
        "failed": int(failed[1]) if failed else 0,
        "retrying": int(failed[3] or 0) if failed else 0,
        "tombstones": int(tombstones),
        "oldest_pending_at": int(pending[4]) if pending and pending[4] is not None else None,
        "workers": [
            dict(zip(WORKER_COLUMNS, (str(w[0]), str(w[1]), int(w[2]), int(w[3]), int(w[4])))) for w in workers
        ],
    }
