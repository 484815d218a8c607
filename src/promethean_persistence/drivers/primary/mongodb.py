"""MongoDB primary store, in the original package's layout (SPEC §6, reference §2).

Documents live in database ``database``, collection ``{agent_name}_{name}``, shaped
``{id, <text_key>, <time_key>: epoch ms, ...extra, metadata: {..., vectorWriteSuccess,
vectorWriteError, vectorWriteTimestamp}}`` so the original package keeps reading them. Our
outbox fields ride in one sub-document, ``_semantic_store``; documents without it were
written by the original and are read as *legacy* records. Tombstones and manifests live in
the side collections ``semantic_store_tombstones`` and ``semantic_store_manifests``.

Multi-document writes use a transaction where the server has them (replica sets, mongos,
wire-compatible servers that announce a replica set) unless ``mongodb.transactions`` is
false; a standalone ``mongod`` gets each batch as ordered single-document writes, every one
of them idempotent by id.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, ClassVar

from ..._deps import require
from ..._entries import content_hash
from ..._errors import BackendRejected, BackendUnavailable, redact
from ..._filters import And, Cmp, Node, Or, evaluate
from ..._types import SCHEMA_VERSION, TOMBSTONE_VERSION, Manifest, Record, VectorState
from ..base import Order

EXTRA = "mongodb"
STATE = "_semantic_store"  #: our outbox fields; absent on documents the original wrote
SUPERSEDED = "_semantic_store_superseded"  #: older duplicates of an id (the original never upserted)
ALIASES = "collection_aliases"
MANIFESTS = "semantic_store_manifests"
TOMBSTONES = "semantic_store_tombstones"
_MANAGED = ("vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp", "vectorStatus")
_BLANK = re.compile(r"^\s*$")

# One client per server and event loop, shared by every store of the process (reference counted).
_CLIENTS: dict[tuple[str, int], tuple[Any, int]] = {}


def _plain(value: Any) -> Any:
    """BSON values as JSON values (legacy documents may hold dates, ObjectIds, ...)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return str(value)


def _epoch(value: Any) -> int | None:
    """A legacy timestamp (number, ISO string, date) as epoch ms; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return _epoch(parsed)
    return None


def _write_view(status: str, error: str | None, synced_at: int | None) -> dict[str, Any]:
    """The original's three metadata keys for a vector state (what its readers look at)."""
    return {
        "vectorWriteSuccess": True if status == "synced" else False if status == "failed" else None,
        "vectorWriteError": error,
        "vectorWriteTimestamp": synced_at if status == "synced" else None,
    }


class MongoPrimary:
    """Primary driver on MongoDB (``pymongo.AsyncMongoClient``), data-compatible with the
    original ``DualStoreManager``."""

    name: ClassVar[str] = "mongodb"

    def __init__(self, uri: str, database: str, collection: str, *, options: Mapping[str, Any] | None = None,
                 text_key: str = "text", time_key: str = "createdAt", transactions: bool | None = None) -> None:
        self._uri = uri
        self.shown = redact(uri)
        password = re.match(r"^[a-z+]+://[^:/@]*:([^@]*)@", uri)
        self._secret = password.group(1) if password else None
        self.database = database
        self.collection = collection
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
    def from_config(cls, config, collection: str) -> MongoPrimary:
        m = config.mongodb
        return cls(m.uri.get_secret_value(), m.database, collection, options=m.options,
                   transactions=m.transactions)

    def use_keys(self, text_key: str, time_key: str) -> None:
        """The store's text and time field names (top-level fields, as the original)."""
        self.text_key, self.time_key = text_key, time_key

    def __repr__(self) -> str:
        return f"MongoPrimary({self.shown!r}, database={self.database!r}, collection={self.collection!r})"

    # -- connection -----------------------------------------------------------------------

    @asynccontextmanager
    async def _mapped(self, operation: str):
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        try:
            yield
        except (errors.ConnectionFailure, errors.ServerSelectionTimeoutError, errors.NetworkTimeout,
                errors.ExecutionTimeout, errors.WaitQueueTimeoutError) as exc:
            raise BackendUnavailable(
                f"MongoDB {operation} failed at {self.shown}: {redact(str(exc), self._secret)}",
                driver=self.name, operation=operation) from None
        except errors.PyMongoError as exc:
            raise BackendRejected(
                f"MongoDB {operation} failed at {self.shown}: {redact(str(exc), self._secret)}",
                driver=self.name, operation=operation) from None

    async def open(self) -> None:
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)
        self._key = (self._uri, id(asyncio.get_running_loop()))
        entry = _CLIENTS.get(self._key)
        if entry is None:
            options = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, **self.options}
            client = pymongo.AsyncMongoClient(self._uri, **options)
            _CLIENTS[self._key] = (client, 1)
        else:
            client = entry[0]
            _CLIENTS[self._key] = (client, entry[1] + 1)
        self._client = client
        try:
            async with self._mapped("open"):
                hello = await client.admin.command("hello")
                able = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
                self._txn = able if self._transactions is None else self._transactions and able
                db = client[self.database]
                self._col = db[self.collection]
                self._tomb = db[TOMBSTONES]
                self._manifests = db[MANIFESTS]
                self._alias = await db[ALIASES].find_one({"_id": self.collection})
                await self._check_schema()
                await self._indexes()
                await self._normalise_timestamps()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._key is None:
            return
        key, self._key, self._client = self._key, None, None
        client, users = _CLIENTS.pop(key, (None, 0))
        if users > 1:
            _CLIENTS[key] = (client, users - 1)
        elif client is not None:
            await client.close()

    async def _check_schema(self) -> None:
        doc = await self._manifests.find_one({"_id": self.collection}, {"schema_version": 1})
        if doc and doc.get("schema_version", 0) > SCHEMA_VERSION:
            raise BackendRejected(
                f"Collection {self.collection!r} has schema version {doc['schema_version']}; this version "
                f"of promethean-persistence reads up to {SCHEMA_VERSION}. Upgrade the package.",
                driver=self.name, operation="open")

    async def _indexes(self) -> None:
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        K = self.time_key
        try:
            await self._col.create_index([("id", 1)], unique=True, name="semantic_store_id")
            self._unique = True
        except errors.DuplicateKeyError:
            # The original inserted without upserting; its duplicates stay readable.
            await self._col.create_index([("id", 1)], name="semantic_store_id_dups")
            await self._hide_duplicates()
        except errors.OperationFailure as exc:  # an equivalent index under another name
            if exc.code not in (85, 86):
                raise
            info = await self._col.index_information()
            self._unique = any(i.get("key") == [("id", 1)] and i.get("unique") for i in info.values())
            if not self._unique:
                await self._hide_duplicates()
        self._dups = await self._col.count_documents({SUPERSEDED: True}, limit=1) > 0
        for keys, name in (
            ([(K, 1), ("id", 1)], "semantic_store_time"),
            ([(f"{STATE}.status", 1), (f"{STATE}.next", 1)], "semantic_store_outbox"),
        ):
            try:
                await self._col.create_index(keys, name=name)
            except errors.OperationFailure as exc:
                if exc.code not in (85, 86):
                    raise
        await self._tomb.create_index([("collection", 1), ("next", 1)], name="semantic_store_due")

    async def _hide_duplicates(self) -> None:
        """Mark all but the newest (last inserted) document of each duplicated id."""
        groups = await self._col.aggregate([
            {"$match": {SUPERSEDED: {"$ne": True}}},
            {"$group": {"_id": "$id", "n": {"$sum": 1}, "keep": {"$max": "$_id"}}},
            {"$match": {"n": {"$gt": 1}}},
        ])
        async for g in groups:
            await self._col.update_many({"id": g["_id"], "_id": {"$ne": g["keep"]}}, {"$set": {SUPERSEDED: True}})

    async def _normalise_timestamps(self) -> None:
        """Legacy ISO-string, date or missing times become epoch ms, as the original writes
        them today, so the time index orders every document."""
        K = self.time_key
        odd = {"$or": [{K: {"$not": {"$type": "number"}}}, {K: float("nan")}]}
        async for doc in self._col.find(odd, {K: 1, "metadata": 1}):
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
            ms = next((v for v in map(_epoch, (doc.get(K), meta.get(K), meta.get("timeStamp"))) if v is not None), None)
            if ms is None:
                generated = getattr(doc["_id"], "generation_time", None)
                ms = _epoch(generated) if generated else 0
            await self._col.update_one({"_id": doc["_id"]}, {"$set": {K: ms}})

    @asynccontextmanager
    async def _session(self, operation: str):
        """A transaction where the server supports them, else no session."""
        if self._client is None:
            raise BackendUnavailable(f"MongoDB {operation} at {self.shown}: the driver is closed",
                                     driver=self.name, operation=operation)
        async with self._mapped(operation):
            if not self._txn:
                yield None
                return
            async with self._client.start_session() as session, await session.start_transaction():
                yield session

    async def _tx(self, operation: str, work):
        """Run ``work(session)`` in a transaction, retried on transient conflicts."""
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        attempt = 0
        while True:
            try:
                async with self._session(operation) as session:
                    return await work(session)
            except BackendRejected as exc:
                cause = exc.__context__
                attempt += 1
                if attempt >= 20 or not (isinstance(cause, errors.PyMongoError)
                                         and cause.has_error_label("TransientTransactionError")):
                    raise
                await asyncio.sleep(0.005 * attempt)

    # -- documents ------------------------------------------------------------------------

    def _visible(self) -> dict[str, Any]:
        return {SUPERSEDED: {"$ne": True}} if self._dups else {}

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
                "v": r.version, "status": r.vector_status, "attempts": r.vector_attempts,
                "error": r.vector_error, "next": r.vector_next_at, "updated": r.vector_updated_at,
                "synced": r.vector_synced_at, "hash": r.content_hash, "model": r.embedding_model,
                "empty": r.is_empty,
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
                id=id_, text=text, timestamp=timestamp, metadata=meta, extra=extra, version=state.get("v", 1),
                vector_status=state.get("status", "pending"), vector_attempts=state.get("attempts", 0),
                vector_error=state.get("error"), vector_next_at=state.get("next"),
                vector_updated_at=state.get("updated"), vector_synced_at=state.get("synced"),
                content_hash=state.get("hash") or content_hash(text), embedding_model=state.get("model"),
            )
        # Written by the original: vectorWriteSuccess false is a failed write; anything else
        # (true, or no field at all in its oldest versions) claims a vector, checked by reports.
        failed = view["vectorWriteSuccess"] is False
        return Record(
            id=id_, text=text, timestamp=timestamp, metadata=meta, extra=extra, version=1,
            vector_status="failed" if failed else "synced", vector_attempts=1 if failed else 0,
            vector_error=(str(view["vectorWriteError"]) if view["vectorWriteError"] else
                          "vector write failed (recorded by the original package)") if failed else None,
            vector_synced_at=None if failed else _epoch(view["vectorWriteTimestamp"]),
            content_hash=content_hash(text), legacy=True,
        )

    async def _current(self, ids: Sequence[str], session=None) -> dict[str, Record]:
        found: dict[str, Record] = {}
        newest: dict[str, Any] = {}
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            async for doc in self._col.find({"id": {"$in": chunk}, **self._visible()}, session=session):
                record = self._record(doc)
                key = doc["_id"]
                if record.id not in newest or _later(key, newest[record.id]):
                    newest[record.id], found[record.id] = key, record
        return found

    async def put(self, records: Sequence[Record], *, states: Sequence[VectorState] = ()) -> list[Record | None]:
        records = list(records)
        if not records and not states:
            return []
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)

        async def work(session):
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
                {"_id": {"$in": [self._tomb_id(i) for i in {r.id for r in records}]}}, session=session)
            return previous

        return await self._tx("put", work)

    def _tomb_id(self, id_: str) -> str:
        return f"{self.collection}\x00{id_}"

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        ids = list(ids)
        if not ids:
            return []
        async with self._mapped("get"):
            found = await self._current(list(dict.fromkeys(ids)))
        return [found.get(i) for i in ids]

    async def delete(self, ids: Sequence[str], *, tombstone_at: int | None = None) -> list[str]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)

        async def work(session):
            gone = set()
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                gone |= {d["id"] async for d in self._col.find({"id": {"$in": chunk}, **self._visible()},
                                                               {"id": 1}, session=session)}
                await self._col.delete_many({"id": {"$in": chunk}}, session=session)
            existed = [i for i in ids if i in gone]
            if tombstone_at is not None and existed:
                await self._tomb.bulk_write([
                    pymongo.ReplaceOne({"_id": self._tomb_id(i)},
                                       {"collection": self.collection, "id": i, "attempts": 0, "error": None,
                                        "next": tombstone_at, "updated": tombstone_at}, upsert=True)
                    for i in existed], session=session)
            return existed

        return await self._tx("delete", work)

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
        clauses = [*clauses, *([self._visible()] if self._dups else [])]
        if where is not None:
            clauses.append(mongo_filter(where))
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
        direction = -1 if order == "desc" else 1
        query = self._query(self._window(since, until, include_empty), where)
        async with self._mapped("most_recent"):
            cursor = self._col.find(query).sort([(self.time_key, direction), ("id", direction)]).limit(limit)
            records = [self._record(d) async for d in cursor]
        return records

    async def iterate(self, batch_size: int, after: str | None = None) -> AsyncIterator[list[Record]]:
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
        async with self._mapped("count"):
            return await self._col.count_documents(self._query([], where))

    async def claim(self, limit: int, now: int, lease_ms: int, *, due_by: int | None = None) -> list[Record]:
        due_by = now if due_by is None else due_by
        lease_until = now + lease_ms
        token = uuid.uuid4().hex
        # one indexed query per kind of work (an $or of them defeats the outbox index)
        due_records = [
            {f"{STATE}.status": "pending", f"{STATE}.next": {"$not": {"$gt": now}}},
            {f"{STATE}.status": "failed", f"{STATE}.next": {"$lte": due_by}},  # null never compares
        ]
        due_tombs = [  # tombstones always carry a time
            {"collection": self.collection, "attempts": 0, "next": {"$lte": now}},
            {"collection": self.collection, "attempts": {"$gt": 0}, "next": {"$lte": due_by}},
        ]
        K = self.time_key
        # (collection, due filter, sort, projection, prefix of the lease fields, sort key of a hit)
        sources = [(self._col, due, [(f"{STATE}.updated", 1), (K, 1), ("id", 1)],
                    {"id": 1, f"{STATE}.updated": 1, K: 1}, f"{STATE}.",
                    lambda d: ((d.get(STATE) or {}).get("updated") or 0, d.get(K) or 0, d.get("id", "")))
                   for due in due_records]
        sources += [(self._tomb, due, [("updated", 1), ("id", 1)], None, "",
                     lambda d: (d.get("updated") or 0, 0, d["id"])) for due in due_tombs]
        work: list[Record] = []
        async with self._mapped("claim"):
            found = []  # (sort key, source, _id): the least recently touched across all sources
            for n, (target, due, sort, projection, _, key) in enumerate(sources):
                async for d in target.find(due, projection).sort(sort).limit(limit):
                    found.append((key(d), n, d["_id"]))
            found.sort(key=lambda f: f[0])
            for n, (target, due, _, _, prefix, _) in enumerate(sources):
                keys = [_id for _, source, _id in found[:limit] if source == n]
                if not keys:
                    continue
                lease = {f"{prefix}next": lease_until, f"{prefix}claim": token}
                await target.update_many({"_id": {"$in": keys}, **due}, {"$set": lease})  # re-checks due
                async for d in target.find({"_id": {"$in": keys}, f"{prefix}claim": token}):
                    work.append(self._record(d) if target is self._col else Record.tombstone(
                        d["id"], d["next"], d.get("updated") or 0, d["attempts"], d.get("error")))
        work.sort(key=lambda r: (r.vector_updated_at or 0, r.timestamp, r.id))
        return work

    async def _apply_states(self, states: Sequence[VectorState], session) -> int:
        pymongo = require("pymongo", extra=EXTRA, driver=self.name)
        ops, tomb_ops = [], []
        for s in states:
            if s.version == TOMBSTONE_VERSION:
                key = {"_id": self._tomb_id(s.id)}
                tomb_ops.append(pymongo.DeleteOne(key) if s.status == "deleted" else pymongo.UpdateOne(
                    key, {"$set": {"attempts": s.attempts, "error": s.error, "next": s.next_at, "updated": s.updated_at}}))
                continue
            matches = [{"id": s.id, f"{STATE}.v": s.version, **self._visible()}]
            if s.version == 1:  # a legacy document has no version yet: it counts as 1
                matches.append({"id": s.id, STATE: {"$exists": False}, **self._visible()})
            fields = {f"{STATE}.{k}": v for k, v in (
                ("status", s.status), ("attempts", s.attempts), ("error", s.error),
                ("next", s.next_at), ("updated", s.updated_at))}
            if s.synced_at is not None:
                fields[f"{STATE}.synced"] = s.synced_at
            if s.embedding_model is not None:
                fields[f"{STATE}.model"] = s.embedding_model
            view = _write_view(s.status, s.error, s.synced_at)
            if s.status == "synced" and s.synced_at is None:
                del view["vectorWriteTimestamp"]
            fields.update({f"metadata.{k}": v for k, v in view.items()})
            ops += [pymongo.UpdateOne(m, {"$set": fields, "$unset": {f"{STATE}.claim": ""}}) for m in matches]
        applied = 0
        if ops:
            result = await self._col.bulk_write(ops, ordered=False, session=session)
            applied += result.matched_count
            await self._adopt([s for s in states if s.version == 1], session)
        if tomb_ops:
            result = await self._tomb.bulk_write(tomb_ops, ordered=False, session=session)
            applied += result.matched_count + result.deleted_count
        return applied

    async def _adopt(self, states: Sequence[VectorState], session) -> None:
        """Legacy documents that just got a vector state get version, hash and emptiness."""
        if not states:
            return
        query = {"id": {"$in": [s.id for s in states]}, f"{STATE}.v": {"$exists": False}, **self._visible()}
        async for doc in self._col.find(query, {"id": 1, self.text_key: 1}, session=session):
            text = doc.get(self.text_key)
            text = text if isinstance(text, str) else ""
            await self._col.update_one({"_id": doc["_id"]}, {"$set": {
                f"{STATE}.v": 1, f"{STATE}.hash": content_hash(text), f"{STATE}.empty": not text.strip()}},
                session=session)

    async def set_vector_state(self, states: Sequence[VectorState]) -> int:
        if not states:
            return 0
        return await self._tx("set_vector_state", lambda session: self._apply_states(states, session))

    # -- manifest, aliases, maintenance ---------------------------------------------------

    async def get_manifest(self) -> Manifest | None:
        async with self._mapped("get_manifest"):
            doc = await self._manifests.find_one({"_id": self.collection})
        if doc and doc.get("manifest"):
            return Manifest.from_dict(doc["manifest"])
        embed = (self._alias or {}).get("embed")
        if isinstance(embed, Mapping) and embed.get("fn") and embed.get("dims"):
            # the original recorded its embedder on the alias: vectors there are in that space
            return Manifest(str(embed.get("driver") or "ollama"), str(embed["fn"]), int(embed["dims"]))
        return None

    async def set_manifest(self, manifest: Manifest) -> None:
        async with self._mapped("set_manifest"):
            await self._manifests.update_one(
                {"_id": self.collection},
                {"$set": {"manifest": manifest.to_dict(), "schema_version": SCHEMA_VERSION}}, upsert=True)

    async def vector_collection(self) -> str | None:
        """The original's alias lookup: ``collection_aliases[{agent}_{name}].target``."""
        target = (self._alias or {}).get("target")
        return str(target) if target else None

    async def dedupe(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete the older duplicates of ids the original inserted twice; return how many
        went per id (the vector of such an id may have come from an older copy). With
        ``dry_run``, only count them."""
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        async with self._mapped("dedupe"):
            await self._hide_duplicates()
            removed: dict[str, int] = {}
            async for doc in self._col.find({SUPERSEDED: True}, {"id": 1}):
                removed[str(doc.get("id"))] = removed.get(str(doc.get("id")), 0) + 1
            if dry_run:
                return removed
            await self._col.delete_many({SUPERSEDED: True})
            self._dups = False
            if not self._unique:
                try:
                    await self._col.create_index([("id", 1)], unique=True, name="semantic_store_id")
                    await self._col.drop_index("semantic_store_id_dups")
                    self._unique = True
                except errors.DuplicateKeyError:  # the original inserted another one meanwhile
                    pass
        return removed

    async def drop(self) -> None:
        async with self._mapped("drop"):
            await self._col.delete_many({})
            await self._tomb.delete_many({"collection": self.collection})
            await self._manifests.delete_one({"_id": self.collection})
            self._dups = False


def _later(a: Any, b: Any) -> bool:
    try:
        return a > b
    except TypeError:  # an ObjectId and a caller-chosen _id: the string form decides
        return str(a) > str(b)


# -- the filter language as a MongoDB query ---------------------------------------------------

_NOT_ARRAY = {"$not": {"$type": "array"}}


def _cmp(path: str, node: Cmp) -> dict[str, Any]:
    op, value = node.op, node.value
    if op == "eq":  # Mongo matches arrays by their elements; our values never equal a list
        return {path: {"$eq": value, **_NOT_ARRAY}}
    if op == "in":
        return {path: {"$in": list(value), **_NOT_ARRAY}}
    if op == "ne":
        return {"$or": [{path: {"$ne": value}}, {path: {"$type": "array"}}]}
    if op == "nin":
        return {"$or": [{path: {"$nin": list(value)}}, {path: {"$type": "array"}}]}
    if op == "exists":
        return {path: {"$exists": value}}
    # $gt & co. only compare within one BSON type bracket: numbers with numbers, strings with strings
    return {path: {f"${op}": value}}


def mongo_filter(node: Node) -> dict[str, Any]:
    """Translate a parsed filter; metadata keys live under ``metadata.``."""
    if isinstance(node, And):
        return {"$and": [mongo_filter(n) for n in node.items]}
    if isinstance(node, Or):
        return {"$or": [mongo_filter(n) for n in node.items]}
    if node.path == ("vectorStatus",):
        ours = {"$and": [{STATE: {"$exists": True}}, _cmp(f"{STATE}.status", node)]}
        branches = [ours]
        failed, synced = (evaluate(node, {"vectorStatus": s}) for s in ("failed", "synced"))
        if failed or synced:  # what a legacy document's state reads as
            legacy: dict[str, Any] = {STATE: {"$exists": False}}
            if failed != synced:
                legacy["metadata.vectorWriteSuccess"] = False if failed else {"$ne": False}
            branches.append(legacy)
        return {"$or": branches}
    return _cmp("metadata." + ".".join(node.path), node)
