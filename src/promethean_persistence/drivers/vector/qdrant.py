"""Qdrant vector store (``AsyncQdrantClient``): a server (``url`` + ``api_key``) or the
client's local mode (``path``, or ``":memory:"``).

Qdrant point ids are UUIDs or integers, so an entry id maps to the UUIDv5 of it; the payload
is ``{"id": <entry id>, "metadata": <entry metadata>}``, which keeps nested metadata as it is
(dotted filter keys reach into it) and never mixes our keys with the caller's. Filters go to
Qdrant as far as its conditions mean the same (never narrower); the exact filter is checked on
the payload, widening the search until ``limit`` matches are found.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import require
from ..._errors import ConfigurationError, ValidationError, redact
from ..._filters import Cmp, Node, Or
from ..._types import FINGERPRINT_KEY, VectorHit
from ..._urls import basic_auth_header, without_userinfo
from .._names import encoded, file_safe, qdrant_ok, qdrant_rule
from .._remote import mapped
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors, stored_fingerprint
from ._widen import Rows, widening_search

if TYPE_CHECKING:
    from ..._config import StoreConfig

EXTRA = "qdrant"
NAMESPACE = uuid.UUID("5b8f7c1e-2f0a-4c71-9a54-3f1d2e6b9c10")  #: fixed: point ids stay stable
_BATCH = 256
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
log = logging.getLogger("promethean_persistence.qdrant")


def point_id(id_: str) -> str:
    """The Qdrant point id of the entry id ``id_`` (UUIDv5, deterministic). Returns the UUID
    as a str; raises nothing."""
    return str(uuid.uuid5(NAMESPACE, id_))


class QdrantVector:
    """Vector driver on Qdrant (cosine distance, collection sized by the first vectors).

    Client errors become ``BackendUnavailable`` (connection, timeout, 429, 5xx) or
    ``BackendRejected``; messages never carry the API key."""

    name: ClassVar[str] = "qdrant"
    capabilities: ClassVar[Capabilities] = Capabilities()  # local mode stands in for a server

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        pinned: bool = False,
    ) -> None:
        """``collection``: the store's collection. ``url``: a server (with ``api_key``; a
        user and password in it go as HTTP basic auth, never in logged URLs), or ``path``: a
        directory for the client's local mode (``":memory:"``: in memory). ``timeout``:
        seconds per call. ``pinned``: ``collection`` is the configured Qdrant name, used as
        it is; otherwise a name Qdrant cannot hold (or, in a directory, one that is not
        file-safe) gets a stable encoding (``_names``). Raises ``ConfigurationError`` without
        a url or a path, or for a pinned name Qdrant cannot hold."""
        if not url and not path:
            raise ConfigurationError(
                "The qdrant driver needs qdrant.url (QDRANT_URL) or qdrant.path "
                "(QDRANT_PATH; ':memory:' for an in-process collection)",
                driver=self.name,
            )
        if pinned and not qdrant_ok(collection):
            raise ConfigurationError(f"qdrant.collection: {qdrant_rule(collection)}", driver=self.name)
        self.collection = collection
        on_disk = bool(path) and path != ":memory:" and not url
        kept = pinned or (file_safe(collection) if on_disk else qdrant_ok(collection))
        #: the Qdrant collection: the name itself where Qdrant (and a directory) can hold it
        self._name = collection if kept else encoded(collection)
        self.url, self.path = (without_userinfo(url) if url else url), path
        self._headers = basic_auth_header(url) if url else {}
        self._api_key = api_key
        self.timeout = timeout
        self.shown = redact(url, api_key) if url else f"path {path}"
        self.dims: int | None = None
        self._client: Any = None
        self._indexed: set[str] = set()

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> QdrantVector:
        """See ``VectorDriver.from_config``: ``config.qdrant`` (a configured ``collection``
        wins; ``url`` beats ``path``)."""
        q = config.qdrant
        return cls(
            q.collection or collection,
            url=q.url,
            path=q.path if not q.url else None,
            api_key=q.api_key.get_secret_value() if q.api_key else None,
            pinned=bool(q.collection),
        )

    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> QdrantVector:
        """See ``VectorDriver.for_collection``: these settings for another collection (a
        configured name is replaced)."""
        return cls.from_config(
            config.model_copy(update={"qdrant": config.qdrant.model_copy(update={"collection": None})}), collection
        )

    def __repr__(self) -> str:
        return f"QdrantVector({self.shown!r}, collection={self.collection!r})"

    def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]:
        return mapped(
            f"Qdrant at {self.shown}", driver=self.name, operation=operation, secret=self._api_key, timeout=self.timeout
        )

    async def open(self) -> None:
        """See ``VectorDriver.open``: ``MissingDependencyError`` without the ``qdrant``
        extra."""
        qdrant_client = require("qdrant_client", extra=EXTRA, driver=self.name)
        async with self._mapped("open"):
            if self.url:
                self._client = qdrant_client.AsyncQdrantClient(
                    url=self.url, api_key=self._api_key, timeout=int(self.timeout), headers=self._headers or None
                )
            elif self.path == ":memory:":
                self._client = qdrant_client.AsyncQdrantClient(location=":memory:")
            else:
                self._client = qdrant_client.AsyncQdrantClient(path=self.path)
            try:
                if self._name != self.collection and qdrant_ok(self.collection):
                    if await self._client.collection_exists(self.collection):
                        self._name = self.collection  # made by an earlier version: keeps opening
                await self._load_dims()
            except BaseException:
                await self.aclose()
                raise

    async def _load_dims(self) -> None:
        self.dims = None
        if await self._client.collection_exists(self._name):
            info = await self._client.get_collection(self._name)
            vectors = info.config.params.vectors
            self.dims = int(vectors.size) if hasattr(vectors, "size") else None

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose``."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _ensure(self, dims: int) -> None:
        if self.dims is not None:
            return
        models = require("qdrant_client.models", extra=EXTRA, driver=self.name)
        if not await self._client.collection_exists(self._name):
            try:
                await self._client.create_collection(
                    self._name, vectors_config=models.VectorParams(size=dims, distance=models.Distance.COSINE)
                )
            except Exception:  # noqa: BLE001 - another store may have created it meanwhile
                if not await self._client.collection_exists(self._name):
                    raise
        await self._load_dims()
        if self.dims != dims:
            raise ValidationError(
                f"vector dimension {dims} does not match the collection's {self.dims}",
                field="vectors",
                driver=self.name,
            )

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``: the first vectors create the collection with their
        dimension; writes wait until applied."""
        models = require("qdrant_client.models", extra=EXTRA, driver=self.name)
        ids = list(ids)
        if not ids:
            return
        payloads: list[dict[str, Any]] = [{"id": i, "metadata": dict(m)} for i, m in zip(ids, metadata)]
        async with self._mapped("upsert"):
            if vectors is None:
                missing_vectors(ids, await self.existing(ids), self.name)
                ops = [
                    models.OverwritePayloadOperation(
                        overwrite_payload=models.SetPayload(payload=p, points=[point_id(p["id"])])
                    )
                    for p in payloads
                ]
                for start in range(0, len(ops), _BATCH):
                    await self._client.batch_update_points(self._name, ops[start : start + _BATCH], wait=True)
                return
            matrix = matrix_for(ids, vectors, self.dims, self.name)
            await self._ensure(int(matrix.shape[1]))
            for start in range(0, len(ids), _BATCH):
                points = [
                    models.PointStruct(id=point_id(p["id"]), vector=v.tolist(), payload=p)
                    for p, v in zip(payloads[start : start + _BATCH], matrix[start : start + _BATCH])
                ]
                await self._client.upsert(self._name, points=points, wait=True)

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: a broader native filter (a server gets payload indexes
        for its keys), the exact one checked on the payload, widening the search."""
        async with self._mapped("query"):
            if self.dims is None:
                await self._load_dims()
                if self.dims is None:
                    return []
            query = as_matrix(vector, self.dims, self.name)[0].tolist()
            native = qdrant_filter(where) if where is not None else None
            if native is not None and self.url:
                assert where is not None  # native is only built from a filter
                await self._index(where)

            async def search(k: int) -> Rows:
                result = await self._client.query_points(
                    self._name,
                    query=query,
                    limit=k,
                    query_filter=native,
                    with_payload=["id", "metadata"] if where is not None else ["id"],
                )
                return [(p.payload["id"], float(p.score), (p.payload or {}).get("metadata")) for p in result.points]

            return await widening_search(search, limit, where, self.count)

    async def _index(self, where: Node) -> None:
        """Payload indexes for the keys a server is filtered on (created once, best effort)."""
        models = require("qdrant_client.models", extra=EXTRA, driver=self.name)
        for node in _leaves(where):
            key = "metadata." + ".".join(node.path)
            values = node.value if isinstance(node.value, tuple) else (node.value,)
            if key in self._indexed or not values or values[0] is None:
                continue
            kind = (
                models.PayloadSchemaType.BOOL
                if isinstance(values[0], bool)
                else models.PayloadSchemaType.KEYWORD
                if isinstance(values[0], str)
                else models.PayloadSchemaType.FLOAT
            )
            self._indexed.add(key)
            try:
                await self._client.create_payload_index(self._name, key, field_schema=kind, wait=False)
            except Exception as exc:  # noqa: BLE001 - an index only speeds filters up
                log.info("payload index on %s not created: %s", key, exc)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return set()
        found: set[str] = set()
        async with self._mapped("existing"):
            for start in range(0, len(ids), 1000):
                points = await self._client.retrieve(
                    self._name, [point_id(i) for i in ids[start : start + 1000]], with_payload=["id"]
                )
                found.update(p.payload["id"] for p in points)
        return found

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return {}
        found: dict[str, str | None] = {}
        async with self._mapped("fingerprints"):
            for start in range(0, len(ids), 1000):
                points = await self._client.retrieve(
                    self._name,
                    [point_id(i) for i in ids[start : start + 1000]],
                    with_payload=["id", f"metadata.{FINGERPRINT_KEY}"],
                )
                found.update((p.payload["id"], stored_fingerprint(p.payload.get("metadata"))) for p in points)
        return found

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return {}
        found: dict[str, np.ndarray] = {}
        async with self._mapped("fetch"):
            for start in range(0, len(ids), 1000):
                points = await self._client.retrieve(
                    self._name,
                    [point_id(i) for i in ids[start : start + 1000]],
                    with_payload=["id"],
                    with_vectors=True,
                )
                found.update((p.payload["id"], np.asarray(p.vector, dtype=np.float32)) for p in points)
        return found

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        models = require("qdrant_client.models", extra=EXTRA, driver=self.name)
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return
        async with self._mapped("delete"):
            for start in range(0, len(ids), 1000):
                await self._client.delete(
                    self._name,
                    models.PointIdsList(points=[point_id(i) for i in ids[start : start + 1000]]),
                    wait=True,
                )

    async def count(self) -> int:
        """See ``VectorDriver.count`` (an exact count)."""
        if self.dims is None:
            return 0
        async with self._mapped("count"):
            return int((await self._client.count(self._name, exact=True)).count)

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (scrolled)."""
        if self.dims is None:
            return
        offset = None
        while True:
            async with self._mapped("iter_ids"):
                points, offset = await self._client.scroll(
                    self._name, limit=batch_size, offset=offset, with_payload=["id"]
                )
            if points:
                yield [p.payload["id"] for p in points]
            if offset is None:
                return

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the collection is deleted (the next vectors create it
        again, with their dimension)."""
        async with self._mapped("drop"):
            if await self._client.collection_exists(self._name):
                await self._client.delete_collection(self._name)
            self.dims = None
            self._indexed.clear()


# -- the filter language as a Qdrant Filter (never narrower than the exact filter) ----------


def _leaves(node: Node) -> list[Cmp]:
    return [node] if isinstance(node, Cmp) else [leaf for n in node.items for leaf in _leaves(n)]


class Kit:
    """Constructors of Qdrant filter objects: qdrant-client's models or qdrant-edge's classes."""

    def __init__(
        self,
        *,
        field: Callable[..., Any],
        match_value: Callable[..., Any],
        match_any: Callable[..., Any],
        range_: Callable[..., Any],
        filter_: Callable[..., Any],
        filter_type: Any,
        bools: bool = True,
    ) -> None:
        """``field``: makes a field condition (``key``, ``match`` or ``range``).
        ``match_value`` and ``match_any``: make value matches. ``range_``: makes a range
        (``gt``, ``gte``, ``lt``, ``lte``). ``filter_``: makes a filter of ``must`` or
        ``should`` conditions; ``filter_type`` is its class. ``bools``: whether a boolean
        value match works. Raises nothing."""
        self.field, self.match_value, self.match_any = field, match_value, match_any
        self.range, self.filter, self.filter_type = range_, filter_, filter_type
        self.bools = bools  #: whether a boolean MatchValue works (not in qdrant-edge 0.9)


def client_kit() -> Kit:
    """The ``Kit`` of qdrant-client's models. Raises ``MissingDependencyError`` without the
    ``qdrant`` extra."""
    models = require("qdrant_client.models", extra=EXTRA, driver="qdrant")
    return Kit(
        field=lambda key, match=None, range=None: models.FieldCondition(key=key, match=match, range=range),
        match_value=lambda v: models.MatchValue(value=v),
        match_any=lambda vs: models.MatchAny(any=vs),
        range_=lambda **kw: models.Range(**kw),
        filter_=lambda must=None, should=None: models.Filter(must=must, should=should),
        filter_type=models.Filter,
    )


def _condition(node: Cmp, kit: Kit) -> Any:
    if not all(_PLAIN_KEY.match(p) for p in node.path):
        return None  # Qdrant's key syntax would read it differently
    key = "metadata." + ".".join(node.path)
    op, value = node.op, node.value

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    # A list value matches by its elements in Qdrant and never in our semantics: conditions
    # below can only admit more, and $ne/$nin/$exists are left to the exact check.
    if op == "eq":
        if isinstance(value, bool) and not kit.bools:
            return None
        if isinstance(value, (str, bool)):
            return kit.field(key, match=kit.match_value(value))
        if number(value):
            return kit.field(key, range=kit.range(gte=value, lte=value))
        return None
    if op == "in" and value and all(v is not None for v in value):
        if all(isinstance(v, str) for v in value):
            return kit.field(key, match=kit.match_any(list(value)))
        parts = [_condition(Cmp(node.path, "eq", v), kit) for v in value]
        return None if any(p is None for p in parts) else kit.filter(should=parts)
    if op in ("gt", "gte", "lt", "lte") and number(value):
        return kit.field(key, range=kit.range(**{op: value}))
    return None


def qdrant_filter(node: Node, kit: Kit | None = None) -> Any:
    """Qdrant's share of the parsed filter ``node``, built with ``kit`` (default
    ``client_kit()``): a filter never narrower than it, or None when Qdrant can check nothing
    of it. Raises ``MissingDependencyError`` without a ``kit`` and the ``qdrant`` extra."""
    kit = kit or client_kit()
    if isinstance(node, Cmp):
        condition = _condition(node, kit)
        if condition is None or isinstance(condition, kit.filter_type):
            return condition
        return kit.filter(must=[condition])
    parts = [qdrant_filter(n, kit) for n in node.items]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else kit.filter(should=parts)
    kept = [p for p in parts if p is not None]
    return kit.filter(must=kept) if kept else None
