"""Expiry at the store level (SPEC §13): an entry's ``expires_at`` (or the config's ``ttl_ms``)
makes it invisible from that time on; ``purge_expired`` deletes such entries and their vectors.

The primary driver hides expired records from every read and purges them
(``Capabilities.expiry``, ``ExpiringPrimary``); the store checks that it can, and runs the
vector deletes the purge leaves in the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ._entries import EXPIRES_KEY, now_ms
from ._errors import ConfigurationError, ValidationError
from ._types import Record
from .outbox.worker import PURGE_BATCH

if TYPE_CHECKING:
    from ._config import StoreConfig
    from .drivers.base import ExpiringPrimary, PrimaryDriver
    from .outbox.planner import Job, Planner


def check_ttl(config: StoreConfig, primary: PrimaryDriver) -> None:
    """Refuse a ``config`` with ``ttl_ms`` when ``primary`` keeps no expiry. Returns None;
    raises ``ConfigurationError``."""
    if config.ttl_ms is not None and not primary.capabilities.expiry:
        raise ConfigurationError(
            f"ttl_ms is set but the primary driver {config.primary_driver!r} keeps no expiry "
            "(Capabilities.expiry); unset ttl_ms or use a primary driver with expiry",
            operation="config",
        )


def check_expiring(records: Sequence[Record], primary: PrimaryDriver, operation: str = "insert") -> None:
    """Refuse ``records`` holding an ``expires_at`` when ``primary`` keeps no expiry (it would
    drop it silently). ``operation``: the call, for the error. Returns None; raises
    ``ValidationError`` naming ``expires_at``."""
    if primary.capabilities.expiry:
        return
    for record in records:
        if record.expires_at is not None:
            raise ValidationError(
                f"{EXPIRES_KEY}: the primary driver keeps no expiry (Capabilities.expiry); "
                f"entry {record.id!r} cannot expire",
                field=EXPIRES_KEY,
                operation=operation,
                document_id=record.id,
            )


class Expiry:
    """``purge_expired`` of ``SemanticStore`` (a mixin of it)."""

    if TYPE_CHECKING:
        primary: PrimaryDriver
        config: StoreConfig
        _planner: Planner

        def _check_open(self) -> None: ...
        async def settle(self) -> None: ...
        async def _run_jobs(self, jobs: list[Job]) -> dict[str, BaseException]: ...

    async def purge_expired(self) -> int:
        """Delete the entries whose ``expires_at`` has come (they are already invisible to
        every read) and their vectors: the vector deletes run now, bounded by
        ``vector_timeout_ms``; one that fails stays in the outbox and is retried. The
        background worker also purges every minute. A primary driver without expiry has
        nothing to purge.

        Returns the number of entries purged. Raises ``SemanticStoreError`` once the store is
        closed, and ``BackendUnavailable`` or ``BackendRejected`` when a backend fails."""
        await self.settle()
        if not self.primary.capabilities.expiry:
            return 0
        primary = cast("ExpiringPrimary", self.primary)
        total = 0
        while True:
            now = now_ms()
            ids = await primary.purge_expired(now, PURGE_BATCH)
            total += len(ids)
            if ids and self.config.dual_write_enabled:
                # the tombstones are due at once: the worker (here or in another process) may
                # take one too; a vector delete is idempotent
                await self._run_jobs([self._planner.remove(i, Record.tombstone(i, now, now)) for i in ids])
            if len(ids) < PURGE_BATCH:
                return total


def expiring_entry(entry: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with the ``expires_at`` of the exported ``item`` (a JSONL line), if any."""
    if item.get(EXPIRES_KEY) is not None:
        entry[EXPIRES_KEY] = item[EXPIRES_KEY]
    return entry
