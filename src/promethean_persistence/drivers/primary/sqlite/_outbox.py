"""The SQLite primary's outbox: claims of due records and tombstones under a lease, vector
states, outbox figures and worker heartbeats (``Capabilities.outbox_stats``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...._types import TOMBSTONE_VERSION, Record, VectorState
from ..._outbox_sql import (
    FORGET_AFTER_MS,
    WORKERS,
    backlog_sql,
    beat_params,
    beat_sql,
    create_workers,
    forget_sql,
    live_workers_sql,
    prune_sql,
    stats_of,
)
from ..._sql import due_records, due_tombstones
from .._sql_layout import COLUMNS
from ._rows import record_of

if TYPE_CHECKING:
    from ..._sqlite import SQLiteConnection


class Outbox:
    """Mixin of ``SQLitePrimary``: its outbox and worker heartbeats."""

    if TYPE_CHECKING:  # set by SQLitePrimary.__init__ and Schema._create
        name: ClassVar[str]
        collection: str
        _table: str
        _tombstones: str
        _db: SQLiteConnection

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by
        records_sql = due_records(self._table, COLUMNS, mark="?")
        tombstones_sql = due_tombstones(self._tombstones, mark="?")
        lease_until = now + lease_ms

        def claim(conn: sqlite3.Connection) -> list[Record]:
            work = [record_of(r) for r in conn.execute(records_sql, (now, due_by, limit))]
            work += [
                Record.tombstone(i, n, u or 0, a, e)
                for i, a, e, n, u in conn.execute(tombstones_sql, (now, due_by, limit))
            ]
            work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
            work = work[:limit]
            conn.executemany(
                f"UPDATE {self._table} SET vector_next_at = ? WHERE id = ?",
                [(lease_until, r.id) for r in work if r.version != TOMBSTONE_VERSION],
            )
            conn.executemany(
                f"UPDATE {self._tombstones} SET vector_next_at = ? WHERE id = ?",
                [(lease_until, r.id) for r in work if r.version == TOMBSTONE_VERSION],
            )
            for r in work:
                r.vector_next_at = lease_until
            return work

        return await self._db.run(self._db.quick_transaction, claim, operation="claim")

    def _state_writer(self, states: Sequence[VectorState]) -> Callable[[sqlite3.Connection], int]:
        """A function applying ``states`` on the connection thread; it returns the row count."""
        sql = (
            f"UPDATE {self._table} SET vector_status = ?, vector_attempts = ?, vector_error = ?, "
            "vector_next_at = ?, vector_updated_at = ?, "
            "vector_synced_at = COALESCE(?, vector_synced_at), "
            "embedding_model = COALESCE(?, embedding_model) WHERE id = ? AND version = ?"
        )
        rows = [
            (s.status, s.attempts, s.error, s.next_at, s.updated_at, s.synced_at, s.embedding_model, s.id, s.version)
            for s in states
            if s.version != TOMBSTONE_VERSION
        ]
        deleted = [(s.id,) for s in states if s.version == TOMBSTONE_VERSION and s.status == "deleted"]
        retry = [
            (s.attempts, s.error, s.next_at, s.updated_at, s.id)
            for s in states
            if s.version == TOMBSTONE_VERSION and s.status != "deleted"
        ]

        def apply(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            if rows:
                conn.executemany(sql, rows)
            if deleted:
                conn.executemany(f"DELETE FROM {self._tombstones} WHERE id = ?", deleted)
            if retry:
                conn.executemany(
                    f"UPDATE {self._tombstones} SET vector_attempts = ?, vector_error = ?, vector_next_at = ?, "
                    "vector_updated_at = ? WHERE id = ?",
                    retry,
                )
            return conn.total_changes - before

        return apply

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        if not states:
            return 0
        return await self._db.run(self._db.quick_transaction, self._state_writer(states), operation="set_vector_state")

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``)."""

        def read() -> dict[str, Any]:
            conn = self._db.conn
            rows = conn.execute(backlog_sql(self._table, "?"), (now,)).fetchall()
            tombstones = conn.execute(f"SELECT COUNT(*) FROM {self._tombstones}").fetchone()[0]
            workers = []
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (WORKERS,)).fetchone():
                workers = conn.execute(live_workers_sql("?"), (self.collection, now)).fetchall()
            return stats_of(rows, tombstones, workers)

        return await self._db.run(read, operation="outbox_stats")

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""

        def beat(conn: sqlite3.Connection) -> None:
            conn.execute(create_workers())
            conn.execute(beat_sql("?"), beat_params(self.collection, worker, now, dead_at))
            conn.execute(prune_sql("?"), (now - FORGET_AFTER_MS,))

        await self._db.run(self._db.quick_transaction, beat, operation="beat_worker")

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""

        def forget(conn: sqlite3.Connection) -> None:
            conn.execute(create_workers())
            conn.execute(forget_sql("?"), (self.collection, worker_id))

        await self._db.run(self._db.quick_transaction, forget, operation="forget_worker")
