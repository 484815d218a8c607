"""The connection: one client per server and event loop, shared by every store of the process
(reference counted); pymongo's errors mapped to the package's; the checks and indexes made on
open; sessions and transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ...._deps import require
from ...._errors import BackendRejected, BackendUnavailable, redact
from ...._types import SCHEMA_VERSION
from ._layout import ALIASES, EXTRA, MANIFESTS, STATE, SUPERSEDED, TOMBSTONES

# One client per server and event loop, shared by every store of the process (reference counted).
_CLIENTS: dict[tuple[str, int], tuple[Any, int]] = {}

_T = TypeVar("_T")


class Connection:
    """Connecting, closing, sessions and transactions of ``MongoPrimary`` (a mixin: the
    driver holds the state)."""

    if TYPE_CHECKING:  # the driver's state and the other mixins' methods used here
        name: ClassVar[str]
        shown: str
        database: str
        collection: str
        options: dict[str, Any]
        time_key: str
        _uri: str
        _secret: str | None
        _transactions: bool | None
        _client: Any
        _key: tuple[str, int] | None
        _txn: bool
        _unique: bool
        _dups: bool
        _col: Any
        _tomb: Any
        _manifests: Any
        _alias: dict[str, Any] | None

        async def _normalise_timestamps(self) -> None: ...
        async def _hide_duplicates(self) -> None: ...
        async def _open_lexical(self) -> None: ...

    # -- connection -----------------------------------------------------------------------

    @asynccontextmanager
    async def _mapped(self, operation: str) -> AsyncIterator[None]:
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        bson_errors = require("bson.errors", extra=EXTRA, driver=self.name)
        try:
            yield
        except (bson_errors.BSONError, OverflowError) as exc:  # a value BSON cannot encode
            raise BackendRejected(
                f"MongoDB {operation} at {self.shown}: cannot encode the request: {redact(str(exc), self._secret)}",
                driver=self.name,
                operation=operation,
            ) from None
        except (
            errors.ConnectionFailure,
            errors.ServerSelectionTimeoutError,
            errors.NetworkTimeout,
            errors.ExecutionTimeout,
            errors.WaitQueueTimeoutError,
        ) as exc:
            raise BackendUnavailable(
                f"MongoDB {operation} failed at {self.shown}: {redact(str(exc), self._secret)}",
                driver=self.name,
                operation=operation,
            ) from None
        except errors.PyMongoError as exc:
            raise BackendRejected(
                f"MongoDB {operation} failed at {self.shown}: {redact(str(exc), self._secret)}",
                driver=self.name,
                operation=operation,
            ) from None

    async def open(self) -> None:
        """See ``PrimaryDriver.open``."""
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
                await self._open_lexical()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """See ``PrimaryDriver.aclose``."""
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
                driver=self.name,
                operation="open",
            )

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
            ([(f"{STATE}.expires", 1)], "semantic_store_expires"),
        ):
            try:
                await self._col.create_index(keys, name=name)
            except errors.OperationFailure as exc:
                if exc.code not in (85, 86):
                    raise
        await self._tomb.create_index([("collection", 1), ("next", 1)], name="semantic_store_due")

    @asynccontextmanager
    async def _session(self, operation: str) -> AsyncIterator[Any]:
        """A transaction where the server supports them, else no session."""
        if self._client is None:
            raise BackendUnavailable(
                f"MongoDB {operation} at {self.shown}: the driver is closed", driver=self.name, operation=operation
            )
        async with self._mapped(operation):
            if not self._txn:
                yield None
                return
            async with self._client.start_session() as session, await session.start_transaction():
                yield session

    async def _tx(self, operation: str, work: Callable[[Any], Awaitable[_T]]) -> _T:
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
                if attempt >= 20 or not (
                    isinstance(cause, errors.PyMongoError) and cause.has_error_label("TransientTransactionError")
                ):
                    raise
                await asyncio.sleep(0.005 * attempt)
