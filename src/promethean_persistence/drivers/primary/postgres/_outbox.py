"""The PostgreSQL primary's outbox: claims of due records and tombstones under a lease
(``FOR UPDATE SKIP LOCKED``), vector states, outbox figures and worker heartbeats
(``Capabilities.outbox_stats``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

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


class Outbox:
    """Mixin of ``PostgresPrimary``: its outbox and worker heartbeats."""

    if TYPE_CHECKING:  # set by PostgresPrimary.__init__ and PoolUser
        collection: str
        _t: str
        _tomb: str
        _pool: Any
        _workers_ready: bool

        def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]: ...

    async def _apply_states(self, conn: Any, states: Sequence[VectorState]) -> int:
        records = [s for s in states if s.version != TOMBSTONE_VERSION]
        done = [s.id for s in states if s.version == TOMBSTONE_VERSION and s.status == "deleted"]
        retry = [s for s in states if s.version == TOMBSTONE_VERSION and s.status != "deleted"]
        applied = 0
        async with conn.cursor() as cur:
            if records:
                await cur.executemany(
                    f"UPDATE {self._t} SET vector_status = %s, vector_attempts = %s, vector_error = %s, "
                    "vector_next_at = %s, vector_updated_at = %s, vector_synced_at = COALESCE(%s, vector_synced_at), "
                    "embedding_model = COALESCE(%s, embedding_model) WHERE id = %s AND version = %s",
                    [
                        (
                            s.status,
                            s.attempts,
                            s.error,
                            s.next_at,
                            s.updated_at,
                            s.synced_at,
                            s.embedding_model,
                            s.id,
                            s.version,
                        )
                        for s in records
                    ],
                    returning=False,
                )
                applied += max(cur.rowcount, 0)
            if done:
                await cur.execute(f"DELETE FROM {self._tomb} WHERE id = ANY(%s)", (done,))
                applied += max(cur.rowcount, 0)
            if retry:
                await cur.executemany(
                    f"UPDATE {self._tomb} SET vector_attempts = %s, vector_error = %s, vector_next_at = %s, "
                    "vector_updated_at = %s WHERE id = %s",
                    [(s.attempts, s.error, s.next_at, s.updated_at, s.id) for s in retry],
                )
                applied += max(cur.rowcount, 0)
        return applied

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        """See ``PrimaryDriver.set_vector_state``."""
        if not states:
            return 0
        async with self._mapped("set_vector_state"), self._pool.connection() as conn, conn.transaction():
            return await self._apply_states(conn, states)

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        """See ``PrimaryDriver.claim``."""
        due_by = now if due_by is None else due_by
        until = now + lease_ms
        async with self._mapped("claim"), self._pool.connection() as conn, conn.transaction():
            lock = " FOR UPDATE SKIP LOCKED"
            rows = await (
                await conn.execute(due_records(self._t, COLUMNS, mark="%s", lock=lock), (now, due_by, limit))
            ).fetchall()
            tombs = await (
                await conn.execute(due_tombstones(self._tomb, mark="%s", lock=lock), (now, due_by, limit))
            ).fetchall()
            work = [record_of(r) for r in rows] + [Record.tombstone(i, n, u or 0, a, e) for i, a, e, n, u in tombs]
            work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
            work = work[:limit]
            records = [r.id for r in work if r.version != TOMBSTONE_VERSION]
            stones = [r.id for r in work if r.version == TOMBSTONE_VERSION]
            if records:
                await conn.execute(f"UPDATE {self._t} SET vector_next_at = %s WHERE id = ANY(%s)", (until, records))
            if stones:
                await conn.execute(f"UPDATE {self._tomb} SET vector_next_at = %s WHERE id = ANY(%s)", (until, stones))
        for r in work:
            r.vector_next_at = until
        return work

    # -- outbox figures and worker heartbeats (Capabilities.outbox_stats) ---------------------

    async def outbox_stats(self, now: int) -> dict[str, Any]:
        """See ``OutboxStatsPrimary.outbox_stats`` (``now``)."""
        async with self._mapped("outbox_stats"), self._pool.connection() as conn:
            rows = await (await conn.execute(backlog_sql(self._t, "%s"), (now,))).fetchall()
            tombstones = (await (await conn.execute(f"SELECT count(*) FROM {self._tomb}")).fetchone())[0]
            workers = []
            if (await (await conn.execute("SELECT to_regclass(%s)", (WORKERS,))).fetchone())[0] is not None:
                cur = await conn.execute(live_workers_sql("%s"), (self.collection, now))
                workers = await cur.fetchall()
        return stats_of(rows, tombstones, workers)

    async def _workers_table(self, conn: Any) -> None:
        if not self._workers_ready:  # two first beats at once must not race on CREATE TABLE
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"semantic-store:{WORKERS}",))
            await conn.execute(create_workers("bigint"))
            self._workers_ready = True

    async def beat_worker(self, worker: Mapping[str, Any], now: int, dead_at: int) -> None:
        """See ``OutboxStatsPrimary.beat_worker`` (``worker``, ``now``, ``dead_at``)."""
        async with self._mapped("beat_worker"), self._pool.connection() as conn, conn.transaction():
            await self._workers_table(conn)
            await conn.execute(beat_sql("%s"), beat_params(self.collection, worker, now, dead_at))
            await conn.execute(prune_sql("%s"), (now - FORGET_AFTER_MS,))

    async def forget_worker(self, worker_id: str) -> None:
        """See ``OutboxStatsPrimary.forget_worker`` (``worker_id``)."""
        async with self._mapped("forget_worker"), self._pool.connection() as conn, conn.transaction():
            await self._workers_table(conn)
            await conn.execute(forget_sql("%s"), (self.collection, worker_id))
