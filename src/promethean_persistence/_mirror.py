"""MirrorStore: one store-shaped object over an old and a new store, for blue-green rollouts.

Writes go to both; reads come from one (``read_from``). A write the read side took is the
caller's success; if the other side fails it, the write waits in an ordered retry queue
instead of failing the caller. With ``compare``, reads are also asked of the other side and
differences are counted and logged: ``stats()`` shows whether the new store is ready.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ._config import StoreConfig
from ._entries import now_ms, user_metadata
from ._errors import ConfigurationError, SemanticStoreError, ValidationError
from ._retry import backoff_ms
from ._store import SemanticStore

__all__ = ["MirrorStore", "open_store"]

log = logging.getLogger("promethean_persistence.mirror")


class MirrorStore:
    """``MirrorStore(old, new, read_from="old", compare=True)``: writes to both stores, reads
    from one. Methods not listed here (reports, repair, iteration...) act on the read side."""

    def __init__(
        self,
        old: SemanticStore,
        new: SemanticStore,
        read_from: str = "old",
        compare: bool = True,
        *,
        retry_delay_ms: int = 1_000,
    ) -> None:
        """``old`` and ``new``: two open, different stores. ``read_from``: ``"old"`` or
        ``"new"``, the side reads come from (its write errors are the caller's).
        ``compare``: also ask the other side on reads and count differences.
        ``retry_delay_ms``: base delay of the backoff retrying the other side's writes.
        Raises ``ValidationError`` for another ``read_from`` or the same store twice."""
        if read_from not in ("old", "new"):
            raise ValidationError(f"read_from must be 'old' or 'new', got {read_from!r}", field="read_from")
        if old is new:
            raise ValidationError("old and new must be different stores", field="new")
        self.old, self.new, self.read_from, self.compare = old, new, read_from, bool(compare)
        self.reader, self.other = (old, new) if read_from == "old" else (new, old)
        self.retry_delay_ms = retry_delay_ms
        self._backlog: deque[tuple[str, Any]] = deque()  #: writes the other side still owes, in order
        self._retrier: asyncio.Task[None] | None = None
        self._counts = {
            "writes": 0,
            "mirrored": 0,
            "deferred": 0,
            "retried": 0,
            "rejected": 0,
            "reads_compared": 0,
            "mismatches": 0,
            "compare_errors": 0,
        }
        self._overlaps: list[float] = []
        self.rejected_ids: list[str] = []  #: entries the other side refused for good (bad for it)

    def __repr__(self) -> str:
        return f"MirrorStore(old={self.old!r}, new={self.new!r}, read_from={self.read_from!r})"

    @property
    def text_key(self) -> str:
        """The read side's text key (entries are translated for the other side)."""
        return self.reader.text_key

    @property
    def time_key(self) -> str:
        """The read side's time key (entries are translated for the other side)."""
        return self.reader.time_key

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "reader" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.reader, name)

    async def __aenter__(self) -> MirrorStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()

    # -- writes ---------------------------------------------------------------------------

    async def insert(self, entry: Mapping[str, Any]) -> str:
        """``insert_many([entry])``: store ``entry`` on both sides and return its id; raises
        what ``insert_many`` raises."""
        return (await self.insert_many([entry]))[0]

    add_entry = insert

    async def insert_many(self, entries: Sequence[Mapping[str, Any]]) -> list[str]:
        """Write ``entries`` (as for ``SemanticStore.insert_many``) to the read side, then
        to the other side, with the same ids and times. A failure on the other side does not
        fail the call: the write waits in an ordered retry queue (one it refuses for good is
        counted in ``stats()["rejected"]``).

        Returns the ids in input order. Raises ``ValidationError`` for a non-sequence and
        whatever the read side's ``insert_many`` raises (``ValidationError``,
        ``VectorWriteError``, ``BackendUnavailable`` or ``BackendRejected``)."""
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise ValidationError("insert_many takes a sequence of entries", field="entries")
        pinned = [self._pin(e) for e in entries]  # the same id and time on both sides
        ids = await self.reader.insert_many(pinned)
        self._counts["writes"] += len(pinned)
        await self._mirror("insert", [self._translate(e) for e in pinned])
        return ids

    async def delete(self, id_: str) -> bool:
        """Delete the entry ``id_`` on the read side, then on the other (retried there if it
        fails). Returns whether it existed on the read side; raises what the read side's
        ``delete`` raises."""
        existed = await self.reader.delete(id_)
        self._counts["writes"] += 1
        await self._mirror("delete", id_)
        return existed

    async def drop(self) -> None:
        """Delete all data on the read side, then on the other (retried there if it fails).
        Returns None; raises what the read side's ``drop`` raises."""
        await self.reader.drop()
        await self._mirror("drop", None)

    def _pin(self, entry: Any) -> Any:
        if not isinstance(entry, Mapping):
            return entry  # the read side raises the usual ValidationError
        pinned = dict(entry)
        if pinned.get("id") is None:
            pinned["id"] = str(uuid.uuid4())
        meta = pinned.get("metadata")
        has_time = pinned.get(self.time_key) is not None or (
            isinstance(meta, Mapping) and meta.get("timeStamp") is not None
        )
        if not has_time:
            pinned[self.time_key] = now_ms()
        return pinned

    def _translate(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The entry in the other side's text and time keys."""
        r, o = self.reader, self.other
        if (r.text_key, r.time_key) == (o.text_key, o.time_key):
            return entry
        out = {k: v for k, v in entry.items() if k not in (r.text_key, r.time_key)}
        for mine, theirs in ((r.text_key, o.text_key), (r.time_key, o.time_key)):
            if mine in entry:
                out[theirs] = entry[mine]
        return out

    async def _mirror(self, kind: str, payload: Any) -> None:
        if not self._backlog:  # nothing earlier waits: write now
            if await self._apply(kind, payload):
                return
        self._backlog.append((kind, payload))
        self._counts["deferred"] += 1
        self._start_retrier()

    async def _apply(self, kind: str, payload: Any) -> bool:
        """One write on the other side; False if it should be retried later."""
        try:
            if kind == "insert":
                await self.other.insert_many(payload)
            elif kind == "delete":
                await self.other.delete(payload)
            else:
                await self.other.drop()
        except ValidationError as exc:  # the other side refuses this input for good
            ids = [e.get("id") for e in payload] if kind == "insert" else [payload]
            self._counts["rejected"] += len(ids)
            self.rejected_ids += [str(i) for i in ids][: max(0, 1000 - len(self.rejected_ids))]
            log.error("%s refused a mirrored %s of %s: %s", self.other.name, kind, ids[:5], exc)
            return True
        except SemanticStoreError as exc:
            log.warning("%s: mirrored %s failed (%s); queued for retry", self.other.name, kind, exc)
            return False
        self._counts["mirrored"] += len(payload) if kind == "insert" else 1
        return True

    def _start_retrier(self) -> None:
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.get_running_loop().create_task(self._retry_backlog())

    async def _retry_backlog(self, *, once: bool = False) -> None:
        attempt = 0
        while self._backlog:
            kind, payload = self._backlog[0]
            if await self._apply(kind, payload):
                self._backlog.popleft()
                self._counts["retried"] += 1
                attempt = 0
                continue
            if once:
                return
            attempt += 1
            await asyncio.sleep(backoff_ms(attempt, self.retry_delay_ms) / 1000)

    # -- reads ----------------------------------------------------------------------------

    async def _both(self, call: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """The read side's answer (errors raised) and, with ``compare``, the other's (or None)."""
        mine = getattr(self.reader, call)(*args, **kwargs)
        if not self.compare:
            return await mine, None
        results = await asyncio.gather(mine, getattr(self.other, call)(*args, **kwargs), return_exceptions=True)
        if isinstance(results[0], BaseException):
            raise results[0]
        if isinstance(results[1], BaseException):
            self._counts["compare_errors"] += 1
            log.debug("comparing %s on %s failed: %s", call, self.other.name, results[1])
            return results[0], None
        self._counts["reads_compared"] += 1
        return results[0], results[1]

    def _mismatch(self, call: str, detail: str) -> None:
        self._counts["mismatches"] += 1
        log.warning("mirror mismatch in %s: %s", call, detail)

    async def get(self, id_: str) -> dict[str, Any] | None:
        """The read side's entry ``id_`` or None, compared as in ``get_many``; raises what
        ``SemanticStore.get`` raises."""
        return (await self.get_many([id_]))[0]

    async def get_many(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The read side's entries of ``ids`` (aligned, None where missing); with
        ``compare``, entries whose id, text, time or metadata differ on the other side count
        as a mismatch. Raises what the read side's ``get_many`` raises (the other side's
        errors only count in ``stats()["compare_errors"]``)."""
        mine, theirs = await self._both("get_many", ids)
        if theirs is not None:
            differ = [i for i, a, b in zip(ids, mine, theirs) if _content(a) != _content(b)]
            if differ:
                self._mismatch("get", f"{len(differ)} entries differ ({', '.join(map(str, differ[:5]))})")
        return cast(list[dict[str, Any] | None], mine)

    async def get_most_recent(
        self, limit: int = 10, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """The read side's ``get_most_recent(limit, filter, **kwargs)``: ``limit``, ``filter``
        and the keywords as for ``SemanticStore.get_most_recent``. With ``compare``, a
        different list of ids on the other side counts as a mismatch. Returns the entries;
        raises what the read side raises."""
        mine, theirs = await self._both("get_most_recent", limit, filter, **kwargs)
        if theirs is not None and [e["id"] for e in mine] != [e["id"] for e in theirs]:
            self._mismatch("get_most_recent", f"ids differ for limit={limit}")
        return cast(list[dict[str, Any]], mine)

    async def get_most_relevant(
        self, query_texts: str | Sequence[str], limit: int = 10, where: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """The read side's ``get_most_relevant(query_texts, limit, where, **kwargs)``:
        ``query_texts``, ``limit``, ``where`` and the keywords as for
        ``SemanticStore.get_most_relevant``. With ``compare``, the overlap of the two sides'
        result ids is recorded (``stats()["mean_overlap"]``), a difference counts as a
        mismatch. Returns the entries; raises what the read side raises."""
        mine, theirs = await self._both("get_most_relevant", query_texts, limit, where, **kwargs)
        if theirs is not None:
            a, b = {e["id"] for e in mine}, {e["id"] for e in theirs}
            overlap = len(a & b) / max(len(a), len(b)) if a or b else 1.0
            self._overlaps.append(overlap)
            if overlap < 1.0:
                self._mismatch("get_most_relevant", f"overlap {overlap:.2f} for {query_texts!r}")
        return cast(list[dict[str, Any]], mine)

    async def count(self) -> int:
        """The read side's number of entries; with ``compare``, a different count on the
        other side is a mismatch. Raises what the read side's ``count`` raises."""
        mine, theirs = await self._both("count")
        if theirs is not None and mine != theirs:
            self._mismatch("count", f"{self.reader.name}: {mine}, {self.other.name}: {theirs}")
        return int(mine)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def mismatches(self) -> int:
        """How many reads had answers that differed between the two stores (with
        ``compare``)."""
        return self._counts["mismatches"]

    def stats(self) -> dict[str, Any]:
        """Mirror counters: ``writes``, ``mirrored``, ``deferred``, ``retried``,
        ``rejected``, ``pending`` (writes the other side still owes), ``reads_compared``,
        ``mismatches``, ``compare_errors``, ``mean_overlap`` and up to 100 ``rejected_ids``.
        Returns a dict; raises nothing."""
        overlaps = self._overlaps
        return {
            "read_from": self.read_from,
            **self._counts,
            "pending": len(self._backlog),
            "relevance_compared": len(overlaps),
            "mean_overlap": round(sum(overlaps) / len(overlaps), 4) if overlaps else None,
            "rejected_ids": self.rejected_ids[:100],
        }

    def get_queue_stats(self) -> dict[str, Any]:
        """The read side's ``get_queue_stats()`` with this mirror's ``stats()`` under
        ``mirror``. Returns a dict; raises nothing."""
        return {**self.reader.get_queue_stats(), "mirror": self.stats()}

    async def flush(self, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Retry the other side's backlog once now, then flush both stores. ``progress``:
        called with ``(done, total)`` for the read side's work, as in
        ``SemanticStore.flush``. Returns None; raises what either store's ``flush`` raises."""
        await self._retry_backlog(once=True)
        await asyncio.gather(self.reader.flush(progress=progress), self.other.flush())

    async def cleanup(self) -> None:
        """Try the backlog once more, then close both stores. Writes the other side still
        owes are logged by id: ``semantic-store migrate`` copies them over later. Returns
        None; raises nothing of its own (``SemanticStore.cleanup`` logs what fails)."""
        try:
            await self._retry_backlog(once=True)
        finally:
            if self._retrier is not None:
                self._retrier.cancel()
                await asyncio.gather(self._retrier, return_exceptions=True)
            if self._backlog:
                ids = [e.get("id") for kind, p in self._backlog if kind == "insert" for e in p][:20]
                log.error(
                    "%s still misses %d mirrored writes (entries %s...); run `semantic-store migrate` "
                    "to bring it level",
                    self.other.name,
                    len(self._backlog),
                    ids,
                )
            await asyncio.gather(self.old.cleanup(), self.new.cleanup())

    close = cleanup


def _content(entry: dict[str, Any] | None) -> Any:
    """What both sides must agree on (not their own vector states)."""
    if entry is None:
        return None
    return entry["id"], entry["text"], entry["timestamp"], user_metadata(entry)


def mirror_settings(path: str | Path, profile: str | None) -> dict[str, Any] | None:
    """The ``mirror`` table of the ``profile`` (``[profiles.NAME.mirror]``) in the TOML
    file at ``path``, or None (also for a None ``profile``). Returns a dict with ``old``,
    ``new`` and optionally ``read_from`` and ``compare``; raises ``ConfigurationError`` for
    an unreadable file or a malformed table."""
    if profile is None:
        return None
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"Cannot read config file {str(path)!r}: {exc}") from exc
    settings: dict[str, Any] | None = data.get("profiles", {}).get(profile, {}).get("mirror")
    if settings is None:
        return None
    unknown = set(settings) - {"old", "new", "read_from", "compare"}
    if unknown or not {"old", "new"} <= set(settings):
        raise ConfigurationError(
            f"[profiles.{profile}.mirror] takes old = PROFILE, new = PROFILE, read_from = 'old'|'new', "
            f"compare = true|false; got {sorted(settings)}"
        )
    return settings


async def open_store(
    name: str,
    text_key: str = "text",
    time_key: str = "createdAt",
    *,
    config_file: str | Path | None = None,
    profile: str | None = None,
    background: bool = True,
) -> SemanticStore | MirrorStore:
    """The store a CLI invocation works on: a plain store, or a MirrorStore when the profile
    is a ``mirror`` of two other profiles of the same file.

    ``name``, ``text_key`` and ``time_key``: as for ``SemanticStore.create``.
    ``config_file``: a TOML file of settings (None: environment and defaults). ``profile``:
    the profile of that file to use. ``background``: as for ``SemanticStore.create``.
    Returns the open store; raises ``ConfigurationError`` for a bad file or profile, and
    what ``SemanticStore.create`` raises."""
    settings = mirror_settings(config_file, profile) if config_file else None
    if settings is None or config_file is None:
        config = StoreConfig.from_file(config_file, profile) if config_file else None
        return await SemanticStore.create(name, text_key, time_key, config, background=background)
    sides = [StoreConfig.from_file(config_file, settings[side]) for side in ("old", "new")]
    old = await SemanticStore.create(name, text_key, time_key, sides[0], background=background)
    try:
        new = await SemanticStore.create(name, text_key, time_key, sides[1], background=background)
    except BaseException:
        await old.cleanup()
        raise
    return MirrorStore(old, new, settings.get("read_from", "old"), settings.get("compare", True))
