"""Scoped views (SPEC §13): ``store.scope(user="ada")`` is the store API confined to the entries
whose metadata holds those fields. See ``ScopedStore``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from . import _filters
from ._entries import MANAGED_KEYS, MAX_INT, MAX_LIMIT, MIN_INT, check_limit, shown, text_problem, validate_id
from ._errors import DocumentNotFound, SemanticStoreError, ValidationError
from ._report import ID_CHUNK, Consistency

if TYPE_CHECKING:
    from ._store import SemanticStore
    from ._types import Record

__all__ = ["ScopedStore"]

_STATES = {"synced": "indexed", "pending": "pending", "failed": "failed", "skipped": "skipped"}
_DROP_BATCH = 100  #: entries deleted at once by ``drop_scope``


def _check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The scope ``fields`` checked: metadata keys (non-empty, no dot, ``$`` or quote, not a
    store-managed key) mapped to a str, int, float or bool (not None: ``$eq None`` would match
    entries without the key)."""
    if not fields:
        raise ValidationError("a scope needs at least one metadata field, e.g. scope(user='ada')", field="scope")
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key or '"' in key:
            raise ValidationError(f"scope keys are plain metadata keys, got {shown(key)}", field="scope")
        if key in MANAGED_KEYS or any(ord(c) < 32 for c in key) or text_problem(key):
            raise ValidationError(f"{shown(key)} cannot scope a store", field=f"scope.{key!a}")
        bad = (
            not isinstance(value, (str, int, float))  # bool is an int
            or (isinstance(value, str) and text_problem(value) is not None)
            or (isinstance(value, float) and not math.isfinite(value))
            or (isinstance(value, int) and not MIN_INT <= value <= MAX_INT)
        )
        if bad:
            raise ValidationError(
                f"scope field {key!r} must be a str, int, finite float or bool, got {shown(value)}",
                field=f"scope.{key}",
            )
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """``a`` equals the scope value ``b`` as the filter language sees it (True is not 1)."""
    return isinstance(a, bool) is isinstance(b, bool) and isinstance(a, (str, int, float)) and a == b


class _Confined:
    """The store, seen by ``Consistency._scan`` with ``_records`` replaced by the scope's."""

    def __init__(self, store: SemanticStore, records: Callable[[int | None], AsyncIterator[Any]]) -> None:
        self._store = store
        self._records = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class ScopedStore:
    """A view of a ``SemanticStore`` confined to the entries whose metadata holds ``fields``
    (``store.scope(user="ada", agent="duck")``).

    Every write carries the fields (an entry setting one of them to another value is a
    ``ValidationError``, and so is an id taken by an entry outside the scope); every read,
    search, count, report and delete sees only the scope: the caller's filter is AND-ed with
    the scope's (``{"$and": [scope, filter]}``, so no filter, ``$or`` included, can widen it,
    and its ``$and``/``$or`` may nest one level less than on the store), and results are
    checked against the scope once more as they come back from the primary store.

    Offered, scoped: ``insert``/``add_entry``, ``insert_many``, ``get``, ``get_many``,
    ``get_most_recent``, ``get_most_relevant`` (every mode), ``max_marginal_relevance``,
    ``max_marginal_relevance_by_vector``, ``search_by_vector``, ``count``, ``iter_entries``,
    ``vector_counts``, ``check_consistency``, ``get_consistency_report`` (without orphan
    vectors: they hold no metadata to place them in a scope), ``repair`` (re-queues the
    scope's vectors; deletes no orphans, no ``dedupe``), ``retry_vector_write``, ``delete``,
    ``drop_scope`` and ``scope`` (a narrower view). Offered as on the store (they reveal no
    entries; see ``SHARED``): ``settle``, ``flush`` (the whole store's outbox),
    ``wake_outbox``, ``manifest``, ``wants_vector``, ``supports_images``, ``purge_expired``
    (store-wide: it deletes only entries that have expired, already invisible to every
    scope; it returns the store's count). Refused with
    ``SemanticStoreError`` (store-wide; see ``REFUSED``): ``drop``, ``cleanup``/``close``,
    ``reembed``, ``switch_embedding``, ``get_queue_stats``/``get_chroma_queue_stats``,
    ``get_outbox_stats``, ``create``, ``from_drivers``.

    Indexes: on PostgreSQL the scope is a JSONB containment test served by the metadata GIN
    index; SQLite has no index on metadata (``json_extract`` scans the candidates); MongoDB
    uses one only where ``metadata.<field>`` was indexed by the operator; the memory driver
    and the consistency report (``limit=None``) and ``iter_entries`` filter in process.
    """

    REFUSED: dict[str, str] = {
        "drop": "drop empties the whole store; use drop_scope()",
        "cleanup": "closing the view would close the store it shares; close the store",
        "close": "closing the view would close the store it shares; close the store",
        "reembed": "re-embedding moves the whole store to another vector collection",
        "switch_embedding": "switching the embedding space affects the whole store",
        "get_queue_stats": "the write queue's counters are the whole store's",
        "get_chroma_queue_stats": "the write queue's counters are the whole store's",
        "get_outbox_stats": "the outbox figures are the whole store's",
        "create": "open a store, then call store.scope(...)",
        "from_drivers": "open a store, then call store.scope(...)",
    }

    #: the store's own, offered as they are: they reveal no entries
    SHARED = frozenset(
        {"settle", "flush", "wake_outbox", "manifest", "wants_vector", "supports_images", "purge_expired"}
    )

    def __init__(self, store: SemanticStore, fields: Mapping[str, Any]) -> None:
        """Use ``SemanticStore.scope``. ``store``: the store viewed; ``fields``: the metadata
        fields of the scope (see ``SemanticStore.scope``). Raises ``ValidationError`` for bad
        fields."""
        self.store = store
        self.fields = _check_fields(fields)
        self._filter: dict[str, Any] = {k: {"$eq": v} for k, v in self.fields.items()}
        self._node = _filters.parse(self._filter)

    def __repr__(self) -> str:
        return f"ScopedStore({self.store!r}, {self.fields!r})"

    def __getattr__(self, name: str) -> Any:
        if name in ScopedStore.REFUSED:

            def refused(*args: Any, **kwargs: Any) -> NoReturn:
                raise SemanticStoreError(
                    f"{name} is not offered on a scoped view: {ScopedStore.REFUSED[name]}", operation=name
                )

            return refused
        if name in ScopedStore.SHARED:
            return getattr(self.store, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def scope(self, **fields: Any) -> ScopedStore:
        """A narrower view: this scope's fields and ``fields`` (more metadata fields). Raises
        ``ValidationError`` when one of them gives a scoped field another value."""
        for key, value in fields.items():
            if key in self.fields and not _same(value, self.fields[key]):
                raise ValidationError(f"the view is scoped to {key}={self.fields[key]!r}", field=f"scope.{key}")
        return ScopedStore(self.store, {**self.fields, **fields})

    def _where(self, where: Any) -> dict[str, Any]:
        """The caller's filter ``where`` AND-ed with the scope's (validated by the store)."""
        if where is None or (isinstance(where, Mapping) and not where):
            return self._filter
        return {"$and": [self._filter, where]}

    def _mine(self, entry: Mapping[str, Any] | None) -> bool:
        return entry is not None and _filters.evaluate(self._node, entry["metadata"])

    def _confine(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in entries if self._mine(e)]

    async def _owns(self, id_: str) -> bool:
        return self._mine(await self.store.get(id_))

    # -- writes ---------------------------------------------------------------------------

    def _scoped(self, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, Mapping):
            raise ValidationError(f"an entry must be a mapping, got {type(entry).__name__}", field="entry")
        meta = entry.get("metadata")
        meta = {} if meta is None else meta
        if not isinstance(meta, Mapping):
            raise ValidationError(f"metadata must be a mapping, got {type(meta).__name__}", field="metadata")
        for key, value in self.fields.items():
            if key in meta and not _same(meta[key], value):
                raise ValidationError(
                    f"metadata.{key} is {shown(meta[key])} but the view is scoped to {key}={value!r}; nothing written",
                    field=f"metadata.{key}",
                    operation="insert",
                )
        return {**entry, "metadata": {**meta, **self.fields}}

    async def insert(self, entry: Mapping[str, Any]) -> str:
        """``SemanticStore.insert`` of ``entry`` with the scope's metadata fields. Returns its
        id. Raises ``ValidationError`` also when the entry gives a scoped field another value
        or its id belongs to an entry outside the scope (nothing written)."""
        return (await self.insert_many([entry]))[0]

    add_entry = insert

    async def insert_many(self, entries: Sequence[Mapping[str, Any]]) -> list[str]:
        """``SemanticStore.insert_many`` of ``entries``, each with the scope's metadata fields.
        Returns the ids in input order; raises as ``insert`` (nothing written)."""
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise ValidationError("insert_many takes a sequence of entries", field="entries", operation="insert")
        scoped = [self._scoped(e) for e in entries]
        ids = list(dict.fromkeys(validate_id(e["id"]) for e in scoped if e.get("id") is not None))
        # An id of another scope must not be overwritten. A writer outside this view could
        # still take the id between this check and the write (no driver offers the test and
        # the write as one step).
        for start in range(0, len(ids), ID_CHUNK):
            found = await self.store.get_many(ids[start : start + ID_CHUNK])
            if taken := [e["id"] for e in found if e is not None and not self._mine(e)]:
                raise ValidationError(
                    f"id {taken[0]!r} belongs to an entry outside this scope; nothing written",
                    field="id",
                    operation="insert",
                    document_id=taken[0],
                )
        return await self.store.insert_many(scoped)

    async def delete(self, id_: str) -> bool:
        """``SemanticStore.delete`` of ``id_`` when that entry is in the scope. Returns True
        if it existed here (an entry outside the scope is missing: False, untouched)."""
        validate_id(id_, operation="delete")
        # as for insert, a writer outside the view could move the entry in between
        return await self._owns(id_) and await self.store.delete(id_)

    async def drop_scope(self) -> int:
        """Delete every entry of the scope with its vector (the store's delete path, in
        batches); entries outside it stay. Returns how many were deleted."""
        dropped = 0
        while batch := await self.store.get_most_recent(_DROP_BATCH, self._filter, include_empty=True):
            found = await asyncio.gather(*(self.delete(e["id"]) for e in batch))
            if not any(found):
                break  # deleted meanwhile by another caller: what is left is not ours to loop on
            dropped += sum(found)
        return dropped

    # -- reads ----------------------------------------------------------------------------

    async def get(self, id_: str) -> dict[str, Any] | None:
        """``SemanticStore.get`` of ``id_``: the entry, or None (also outside the scope)."""
        return (await self.get_many([id_]))[0]

    async def get_many(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """``SemanticStore.get_many`` of ``ids``: None where missing or outside the scope."""
        return [e if self._mine(e) else None for e in await self.store.get_many(ids)]

    async def get_most_recent(
        self, limit: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        """``SemanticStore.get_most_recent`` with ``limit``, ``filter`` (AND-ed with the
        scope) and its keyword ``options`` (``order``, ``since``, ``until``,
        ``include_empty``). Returns the scope's entries."""
        return self._confine(await self.store.get_most_recent(limit, self._where(filter), **options))

    async def get_most_relevant(
        self, query_texts: str | Sequence[str], limit: int = 10, where: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        """``SemanticStore.get_most_relevant`` for ``query_texts`` with ``limit``, ``where``
        (AND-ed with the scope) and its keyword ``options`` (``mode``, ``min_score``...).
        Returns the scope's entries, best first."""
        return self._confine(await self.store.get_most_relevant(query_texts, limit, self._where(where), **options))

    async def max_marginal_relevance(
        self, query_texts: str | Sequence[str], limit: int = 10, where: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        """``SemanticStore.max_marginal_relevance`` for ``query_texts`` with ``limit``,
        ``where`` (AND-ed with the scope) and its keyword ``options``."""
        entries = await self.store.max_marginal_relevance(query_texts, limit, self._where(where), **options)
        return self._confine(entries)

    async def max_marginal_relevance_by_vector(
        self, vector: Sequence[float], limit: int = 10, where: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        """``SemanticStore.max_marginal_relevance_by_vector`` for ``vector`` with ``limit``,
        ``where`` (AND-ed with the scope) and its keyword ``options``."""
        entries = await self.store.max_marginal_relevance_by_vector(vector, limit, self._where(where), **options)
        return self._confine(entries)

    async def search_by_vector(
        self, vector: Sequence[float], limit: int = 10, where: Mapping[str, Any] | None = None, **options: Any
    ) -> list[dict[str, Any]]:
        """``SemanticStore.search_by_vector`` for ``vector`` with ``limit``, ``where``
        (AND-ed with the scope) and its keyword ``options`` (``min_score``, ``distinct_texts``)."""
        return self._confine(await self.store.search_by_vector(vector, limit, self._where(where), **options))

    async def count(self) -> int:
        """Number of entries in the scope (the primary store counts them). Returns an int."""
        await self.store.settle()
        return await self.store.primary.count(self._node)

    async def iter_entries(self, batch_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """The scope's entries once each, in ascending id order; the store's are read
        ``batch_size`` at a time and filtered here. An async iterator of entry dicts."""
        async for entry in self.store.iter_entries(batch_size):
            if self._mine(entry):
                yield entry

    async def vector_counts(self, ids: Sequence[str] | None = None) -> dict[str, int]:
        """``SemanticStore.vector_counts`` of the scope's entries among ``ids`` (None: the
        whole scope). Returns a dict of ``indexed``, ``pending``, ``failed``, ``skipped``."""
        if ids is not None:
            if isinstance(ids, str) or not isinstance(ids, Sequence):
                raise ValidationError("vector_counts takes a sequence of ids or None", field="ids")
            unique = list(dict.fromkeys(ids))
            mine = [
                e["id"]
                for s in range(0, len(unique), ID_CHUNK)
                for e in await self.get_many(unique[s : s + ID_CHUNK])
                if e
            ]
            return await self.store.vector_counts(mine)
        await self.store.settle()
        return {
            key: await self.store.primary.count(_filters.parse({"$and": [self._filter, {"vectorStatus": state}]}))
            for state, key in _STATES.items()
        }

    # -- consistency ----------------------------------------------------------------------

    async def check_consistency(self, id_: str) -> dict[str, Any]:
        """``SemanticStore.check_consistency`` of ``id_``; an entry outside the scope is
        reported missing (no document, no vector). Returns the dict."""
        validate_id(id_, operation="check_consistency")
        if await self._owns(id_):
            return await self.store.check_consistency(id_)
        keys = ("has_document", "has_vector", "vector_status", "vector_write_success", "vector_write_error")
        return {k: False if k.startswith("has_") else None for k in keys}

    async def _scan(self, limit: int | None) -> dict[str, Any]:
        """``Consistency._scan`` of the scope's records (the ``limit`` newest, None: all)."""
        store = self.store

        async def records(_: int | None) -> AsyncIterator[tuple[list[Record], dict[str, str | None]]]:
            if limit is not None:
                batch = await store.primary.most_recent(limit, self._node, include_empty=True)
                yield batch, await store._fingerprints([r.id for r in batch])
                return
            async for batch in store.primary.iterate(ID_CHUNK):
                if mine := [r for r in batch if _filters.evaluate(self._node, r.metadata)]:
                    yield mine, await store._fingerprints([r.id for r in mine])

        # a limit, whatever it is, keeps _scan from counting the store's orphan vectors as ours
        return await Consistency._scan(cast(Any, _Confined(store, records)), MAX_LIMIT)

    async def get_consistency_report(self, limit: int | None = 100) -> dict[str, Any]:
        """``SemanticStore.get_consistency_report`` of the scope's ``limit`` newest entries
        (None: all of them). ``orphaned_vectors`` is always 0 (an orphan vector belongs to no
        scope); ``scope`` holds the fields. Returns the report dict."""
        await self.store.settle()
        scan = await self._scan(None if limit is None else check_limit(limit, operation="report"))
        return {**scan["report"], "scope": dict(self.fields)}

    async def repair(self, dry_run: bool = False, dedupe: bool = False, **options: Any) -> dict[str, Any]:
        """Re-queue the scope's missing, failed, stale and stuck vectors and delete the
        vectors of its entries that want none; with ``dry_run``, only count them. ``dedupe``
        and orphan vectors are the store's (``dedupe=True`` is a ``ValidationError``);
        ``options``: ``progress`` is not taken either. Returns the dict of
        ``SemanticStore.repair`` (``orphans_deleted`` counts unwanted vectors only)."""
        if dedupe or options:
            raise ValidationError("a scoped repair takes only dry_run; dedupe is store-wide", field="dedupe")
        store = self.store
        store._check_open()
        await store.flush()
        ids = (await self._scan(None))["ids"]
        requeue: list[Record] = ids["missing"] + ids["failed"] + ids["stale"] + ids["pending"]
        return store._requeue(ids, requeue, [r.id for r in ids["unwanted"]], {}, dry_run)

    async def retry_vector_write(self, id_: str, max_retries: int = 3) -> bool:
        """``SemanticStore.retry_vector_write`` of ``id_`` with ``max_retries``. Returns
        whether it landed; raises ``DocumentNotFound`` also for an entry outside the scope."""
        validate_id(id_, operation="retry_vector_write")
        if not await self._owns(id_):
            raise DocumentNotFound(f"No entry with id {id_!r}", operation="retry_vector_write", document_id=id_)
        return await self.store.retry_vector_write(id_, max_retries)
