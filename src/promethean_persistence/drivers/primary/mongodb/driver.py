"""``MongoPrimary``, composed of the package's parts (see the package docstring)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...._deps import require
from ...._entries import content_hash
from ...._errors import ValidationError, redact
from ...._filters import Node
from ...._types import Record, VectorState
from ..._names import mongo_problem
from ...base import Capabilities, Order
from ._client import Connection
from ._filters import mongo_filter
from ._layout import _BLANK, _MANAGED, ALIASES, EXTRA, MANIFESTS, STATE, SUPERSEDED, TOMBSTONES
from ._legacy import Legacy, _epoch, _later, _plain, _write_view
from ._lexical import Lexical
from ._outbox import Outbox

if TYPE_CHECKING:
    from ...._config import StoreConfig


EXPIRES = f"{STATE}.expires"  #: when the record expires (epoch ms; null or missing: never)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _live(now: int) -> dict[str, Any]:
    """The query of the documents not expired at ``now`` (epoch ms): those the original wrote
    have no expiry."""
    return {"$or": [{EXPIRES: None}, {EXPIRES: {"$gt": now}}]}


class MongoPrimary(Connection, Legacy, Outbox, Lexical):
    """Primary driver on MongoDB (``pymongo.AsyncMongoClient``), data-compatible with the
    original ``DualStoreManager``.

    Lexical index (``Capabilities.lexical``): where the server has text indexes (MongoDB), a
    text index on the text field, ``semantic_store_text``, kept by the server with every write
    of every process. Where it has none (SecantusDB and other wire-compatible servers), an
    in-process tantivy index instead, built from the collection by ``lexical_backfill`` (on
    open, by the store) and kept with this driver's own writes: it sees the writes of other
    processes (or other driver instances) only after a reopen. Results are checked against
    the collection, so a record deleted elsewhere is never returned, but a text replaced
    elsewhere ranks by its old words until then.
    """

    name: ClassVar[str] = "mongodb"

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        *,
        options: Mapping[str, Any] | None = None,
        text_key: str = "text",
        time_key: str = "createdAt",
        transactions: bool | None = None,
        lexical: bool = True,
    ) -> None:
        """``uri`` is the MongoDB connection string (never shown with its password); ``database``
        and ``collection`` where the entries live; ``options`` extra keyword arguments for the
        client; ``text_key`` and ``time_key`` the document fields holding the text and the
        timestamp; ``transactions`` forces multi-document transactions on or off (None: use them
        when the server is a replica set); ``lexical`` keeps the lexical index of the texts.
        Nothing connects before ``open``.
        """
        problem = mongo_problem(database, collection, frozenset({ALIASES, MANIFESTS, TOMBSTONES}))
        if problem:  # refused at create: otherwise every write would fail
            raise ValidationError(f"Store collection {collection[:80]!r} cannot be used: {problem}", field="name")
        self._uri = uri
        self.shown = redact(uri)
        password = re.match(r"^[a-z+]+://[^:/@]*:([^@]*)@", uri)
        self._secret = password.group(1) if password else None
        self.database = database
        self.collection = collection
        # its own transactions (replica sets) never include a vector store's writes
        self.capabilities = Capabilities(
            dedupe=True, vector_aliases=True, field_names=True, lexical=lexical, expiry=True, outbox_stats=True
        )
        self.options = dict(options or {})
        self.text_key, self.time_key = text_key, time_key
        self._client: Any = None
        self._key: tuple[str, int] | None = None
        self._transactions = transactions
        self._txn = False
        self._unique = False
        self._dups = False  #: superseded duplicates exist (hidden from every read)
        self._alias: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> MongoPrimary:
        """See ``PrimaryDriver.from_config``."""
        m = config.mongodb
        return cls(
            m.uri.get_secret_value(),
            m.database,
            collection,
            options=m.options,
            transactions=m.transactions,
            lexical=config.lexical_index,
        )

    def use_keys(self, text_key: str, time_key: str) -> None:
        """The store's text and time field names (top-level fields, as the original).

        See ``FieldNames.use_keys``.
        """
        self.text_key, self.time_key = text_key, time_key

    def __repr__(self) -> str:
        return f"MongoPrimary({self.shown!r}, database={self.database!r}, collection={self.collection!r})"

    # -- documents ------------------------------------------------------------------------

    def _doc(self, r: Record) -> dict[str, Any]:
        extra = {k: v for k, v in r.extra.items() if k not in ("_id", STATE, SUPERSEDED)}
        meta = {**r.metadata, **_write_view(r.vector_status, r.vector_error, r.vector_synced_at)}
        return {
            **extra,
            "id": r.id,
            self.text_key: r.text,
            self.time_key: r.timestamp,
            "metadata": meta,
            STATE: {
                "v": r.version,
                "status": r.vector_status,
                "attempts": r.vector_attempts,
                "error": r.vector_error,
                "next": r.vector_next_at,
                "updated": r.vector_updated_at,
                "synced": r.vector_synced_at,
                "hash": r.content_hash,
                "model": r.embedding_model,
                "empty": r.is_empty,
                "expires": r.expires_at,
            },
        }

    def _record(self, doc: Mapping[str, Any]) -> Record:
        T, K = self.text_key, self.time_key
        raw_meta = doc.get("metadata")
        meta = _plain(raw_meta) if isinstance(raw_meta, Mapping) else {}
        view = {k: meta.pop(k, None) for k in _MANAGED}
        text = doc.get(T)
        text = text if isinstance(text, str) else "" if text is None else str(text)
        timestamp = _epoch(doc.get(K))
        if timestamp is None:
            timestamp = next((v for v in map(_epoch, (meta.get(K), meta.get("timeStamp"))) if v is not None), 0)
        extra = {k: _plain(v) for k, v in doc.items() if k not in ("_id", "id", T, K, "metadata", STATE, SUPERSEDED)}
        id_ = doc.get("id")
        id_ = str(doc["_id"]) if id_ is None else str(id_)
        state = doc.get(STATE)
        if isinstance(state, Mapping):
            return Record(
                id=id_,
                text=text,
                timestamp=timestamp,
                metadata=meta,
                extra=extra,
                version=state.get("v", 1),
                vector_status=state.get("status", "pending"),
                vector_attempts=state.get("attempts", 0),
                vector_error=state.get("error"),
                vector_next_at=state.get("next"),
                vector_updated_at=state.get("updated"),
                vector_synced_at=state.get("synced"),
                content_hash=state.get("hash") or content_hash(text),
                embedding_model=state.get("model"),
                expires_at=state.get("expires"),
            )
        # Written by the original: vectorWriteSuccess false is a failed write; anything else
        # (true, or no field at all in its oldest versions) claims a vector, checked by reports.
        failed = view["vectorWriteSuccess"] is False
        return Record(
            id=id_,
            text=text,
            timestamp=timestamp,
            metadata=meta,
            extra=extra,
            version=1,
            vector_status="failed" if failed else "synced",
            vector_attempts=1 if failed else 0,
            vector_error=(
                str(view["vectorWriteError"])
                if view["vectorWriteError"]
                else "vector write failed (recorded by the original package)"
            )
            if failed
            else None,
            vector_synced_at=None if failed else _epoch(view["vectorWriteTimestamp"]),
            content_hash=content_hash(text),
            legacy=True,
        )

    async def _current(self, ids: Sequence[str], session: Any = None, *, live: bool = False) -> dict[str, Record]:
        """The records of ``ids``, by id (the newest document of each); ``live``: only those not
        expired now (else expired ones too, as ``put`` needs)."""
        found: dict[str, Record] = {}
        newest: dict[str, Any] = {}
        alive = _live(_now_ms()) if live else {}
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            query = {"id": {"$in": chunk}, **self._visible()}
            async for doc in self._col.find({"$and": [query, alive]} if alive else query, session=session):
                record = self._record(doc)
                key = doc["_id"]
                if record.id not in newest or _later(key, newest[record.id]):
                    newest[record.id], found[record.id] = key, record
        return found

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        """See ``PrimaryDriver.put``."""
        records = list(records)
        if not records and not states:
            return []
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)

        async def work(session: Any) -> list[Record | None]:
            await self._apply_states(states, session)
            if not records:
                return []
            current = await self._current(list({r.id for r in records}), session)
            previous: list[Record | None] = []
            ops: list[Any] = []
            for r in records:
                prev = current.get(r.id)
                r.version = prev.version + 1 if prev else 1
                previous.append(prev)
                current[r.id] = r
                if self._unique:
                    ops.append(pymongo.ReplaceOne({"id": r.id}, self._doc(r), upsert=True))
                else:
                    ops += [pymongo.DeleteMany({"id": r.id}), pymongo.InsertOne(self._doc(r))]
            await self._col.bulk_write(ops, ordered=True, session=session)
            await self._tomb.delete_many(
                {"_id": {"$in": [self._tomb_id(i) for i in {r.id for r in records}]}}, session=session
            )
            return previous

        previous = await self._tx("put", work)
        self._lexical_wrote(records)
        return previous

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """See ``PrimaryDriver.get``."""
        ids = list(ids)
        if not ids:
            return []
        async with self._mapped("get"):
            found = await self._current(list(dict.fromkeys(ids)), live=True)
        return [found.get(i) for i in ids]

    async def versions(self, ids: Sequence[str]) -> dict[str, int]:
        """See ``PrimaryDriver.versions`` (the records are read whole: which of an id's
        documents is current depends on more than its version)."""
        return {r.id: r.version for r in await self.get(ids) if r is not None}

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        """See ``PrimaryDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)

        async def work(session: Any) -> list[str]:
            gone: set[str] = set()
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                gone |= {
                    d["id"]
                    async for d in self._col.find({"id": {"$in": chunk}, **self._visible()}, {"id": 1}, session=session)
                }
                await self._col.delete_many({"id": {"$in": chunk}}, session=session)
            existed = [i for i in ids if i in gone]
            if tombstone_at is not None and existed:
                await self._tomb.bulk_write(
                    [pymongo.ReplaceOne(*self._tombstone(i, tombstone_at)) for i in existed], session=session
                )
            return existed

        existed = await self._tx("delete", work)
        self._lexical_deleted(existed)
        return existed

    def _window(self, since: int | None, until: int | None, include_empty: bool) -> list[dict[str, Any]]:
        K = self.time_key
        clauses: list[dict[str, Any]] = []
        if not include_empty:
            clauses.append({f"{STATE}.empty": {"$ne": True}, self.text_key: {"$type": "string", "$not": _BLANK}})
        if since is not None or until is not None:
            bounds: dict[str, Any] = {}
            if since is not None:
                bounds["$gte"] = since
            if until is not None:
                bounds["$lte"] = until
            clauses.append({K: bounds})
        return clauses

    def _query(self, clauses: list[dict[str, Any]], where: Node | None) -> dict[str, Any]:
        """The query of every read: ``clauses`` and the filter ``where`` (None: none) ANDed with
        the visible (not superseded) documents not expired now."""
        clauses = [*clauses, *([self._visible()] if self._dups else [])]
        if where is not None:
            clauses.append(mongo_filter(where))
        clauses.append(_live(_now_ms()))
        return {} if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}

    async def most_recent(
        self,
        limit: int,
        where: Node | None = None,
        *,
        order: Order = "desc",
        since: int | None = None,
        until: int | None = None,
        include_empty: bool = False,
    ) -> list[Record]:
        """See ``PrimaryDriver.most_recent``."""
        direction = -1 if order == "desc" else 1
        query = self._query(self._window(since, until, include_empty), where)
        async with self._mapped("most_recent"):
            cursor = self._col.find(query).sort([(self.time_key, direction), ("id", direction)]).limit(limit)
            records = [self._record(d) async for d in cursor]
        return records

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
        """See ``PrimaryDriver.iterate``."""
        last = after
        while True:
            query = self._query([{"id": {"$gt": last}}] if last is not None else [], None)
            async with self._mapped("iterate"):
                docs = await self._col.find(query).sort("id", 1).limit(batch_size).to_list()
            if not docs:
                return
            batch: dict[str, Record] = {}
            for d in docs:  # a duplicate the original wrote after we opened: keep one
                batch[str(d.get("id"))] = self._record(d)
            yield list(batch.values())
            last = docs[-1]["id"]

    async def count(self, where: Node | None = None) -> int:
        """See ``PrimaryDriver.count``."""
        async with self._mapped("count"):
            found: int = await self._col.count_documents(self._query([], where))
            return found

    # -- expiry (Capabilities.expiry) -----------------------------------------------------

    async def purge_expired(self, now: int, limit: int) -> list[str]:
        """See ``ExpiringPrimary.purge_expired``: at most ``limit`` records expired at ``now``
        (epoch ms), soonest expiry first, deleted with a tombstone at ``now`` (in one
        transaction where the server has them, as every write)."""
        if limit <= 0:
            return []
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)
        expired = {EXPIRES: {"$lte": now}}

        async def work(session: Any) -> list[str]:
            query = {**expired, **self._visible()}
            cursor = self._col.find(query, {"id": 1}, session=session).sort([(EXPIRES, 1), ("id", 1)]).limit(limit)
            ids = list(dict.fromkeys([str(d["id"]) async for d in cursor]))
            if not ids:
                return []
            await self._col.delete_many({"id": {"$in": ids}, **expired}, session=session)
            await self._tomb.bulk_write([pymongo.ReplaceOne(*self._tombstone(i, now)) for i in ids], session=session)
            return ids

        gone = await self._tx("purge_expired", work)
        self._lexical_deleted(gone)
        return gone

    def _tombstone(self, id_: str, at: int) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """The ``ReplaceOne`` arguments (filter, document, upsert) of ``id_``'s tombstone at ``at``."""
        doc = {"collection": self.collection, "id": id_, "attempts": 0, "error": None, "next": at, "updated": at}
        return {"_id": self._tomb_id(id_)}, doc, True

    # -- maintenance ----------------------------------------------------------------------

    async def drop(self) -> None:
        """See ``PrimaryDriver.drop``."""
        async with self._mapped("drop"):
            await self._col.delete_many({})
            await self._tomb.delete_many({"collection": self.collection})
            await self._manifests.delete_one({"_id": self.collection})
            self._dups = False
        self._lexical_dropped()
