"""Milvus vector store (``pymilvus.AsyncMilvusClient``): a server or cluster (``uri`` +
``token``), or milvus-lite, Milvus's engine run by pymilvus for a local file (a ``uri``
ending in ``.db``; the default is ``<home>/milvus.db``).

The layout follows the Qdrant driver: the primary key ``pk`` is the UUIDv5 of the entry id
(``qdrant.point_id``), the fields ``id`` and ``metadata`` (JSON) hold the entry id and its
metadata as they are (dotted filter keys reach into nested metadata), and ``vector`` the
unit vector (COSINE). Filters go to Milvus as an expression never narrower than the exact
filter (``_milvus_expr``); the exact filter is checked on the metadata, widening the search
until ``limit`` matches are found. Milvus returns at most 16,384 hits per search; a wider
search scans the (natively filtered) collection instead.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import require
from ..._errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigurationError,
    MissingDependencyError,
    ValidationError,
    redact,
)
from ..._filters import Node
from ..._types import VectorHit
from ..._urls import userinfo, without_userinfo
from .._remote import transient
from ..base import Capabilities
from ._exact import as_matrix, matrix_for, missing_vectors, stored_fingerprint
from ._milvus_expr import milvus_filter, milvus_name, milvus_rule, milvus_valid
from ._widen import Rows, widening_search
from .qdrant import point_id

if TYPE_CHECKING:
    from ..._config import StoreConfig

EXTRA = "milvus"
TOPK_MAX = 16_384  #: Milvus's most hits of one search (and rows of one query)
_BATCH = 1000  #: rows per upsert
_READ = 1000  #: ids per get
_ID_BYTES = 2048  #: the id field's size: 512 characters of up to 4 UTF-8 bytes
_LAYOUT = frozenset({"pk", "id", "vector", "metadata"})  #: the fields of a collection of ours
#: gRPC codes and Milvus messages about reaching the server (the write queue retries them)
_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
_UNAVAILABLE_TEXT = ("server unavailable", "Fail connecting", "rate limit", "ratelimit", "not ready")


def _query_values(vector: Any, dims: int | None, driver: str) -> list[float]:
    """``vector`` as the floats a search sends (``dims`` long; ``driver`` names it in errors).
    Milvus's COSINE scores do not depend on a query's length, so a float32 array of the
    right size (what the store searches with) is only checked for NaN and Infinity, not made
    a unit vector: between two network calls ``as_matrix``'s small numpy calls took 35-60 us,
    3-4% of a search on milvus-lite. Anything else goes through ``as_matrix``. Raises its
    ``ValidationError``."""
    if isinstance(vector, np.ndarray) and vector.dtype == np.float32 and vector.ndim == 1 and vector.size == dims:
        values: list[float] = vector.tolist()
        if math.isfinite(sum(values)):  # NaN or Infinity anywhere makes the sum so
            return values
    unit: list[float] = as_matrix(vector, dims, driver)[0].tolist()
    return unit


def _transient(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "code", None)
        try:
            name = getattr(code() if callable(code) else code, "name", None)  # a gRPC error's StatusCode
        except Exception:  # noqa: BLE001 - some other callable named code
            name = None
        if name in _UNAVAILABLE or any(t.lower() in str(seen).lower() for t in _UNAVAILABLE_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return transient(exc)


def start_lite(path: str, driver: str = "milvus") -> None:
    """Start (once per process) the milvus-lite engine for the file ``path``, so the client's
    own start does not block the event loop. ``driver``: the name errors carry. Returns None;
    raises ``MissingDependencyError`` without milvus-lite (or, for milvus-lite 2.x, without
    ``pkg_resources``: setuptools<82), ``BackendUnavailable`` when the engine does not start."""
    with warnings.catch_warnings():
        # milvus-lite 2.x imports pkg_resources for its version, which warns on import
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        try:
            manager = require("milvus_lite.server_manager", extra=EXTRA, driver=driver)
        except ImportError as exc:
            if isinstance(exc, MissingDependencyError) or exc.name != "pkg_resources":
                raise
            raise MissingDependencyError(
                f"The {driver!r} driver's milvus-lite needs pkg_resources: pip install 'setuptools<82' "
                f"(or pip install 'promethean-persistence[{EXTRA}]')",
                driver=driver,
            ) from None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if manager.server_manager_instance.start_and_get_uri(path) is None:
        raise BackendUnavailable(
            f"milvus-lite could not open {path} (another process may hold the file)", driver=driver, operation="open"
        )


class MilvusVector:
    """Vector driver on Milvus (COSINE metric, collection sized by the first vectors, Strong
    consistency: a write is seen by the next read).

    Client errors become ``BackendUnavailable`` (connection, timeout, rate limits) or
    ``BackendRejected``; messages never carry the token."""

    name: ClassVar[str] = "milvus"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        collection: str,
        *,
        uri: str,
        token: str | None = None,
        db_name: str | None = None,
        index_type: str = "AUTOINDEX",
        index_params: Mapping[str, Any] | None = None,
        search_params: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        pinned: bool = False,
    ) -> None:
        """``collection``: the store's collection. ``uri``: a server (``http://host:19530``,
        with ``token``: ``user:password`` or an API key) or a milvus-lite file (a path ending
        in ``.db``). ``db_name``: the Milvus database (None: the server's default).
        ``index_type``, ``index_params``: the vector index a new collection gets (COSINE);
        ``search_params``: the index's search parameters (``{"ef": 64}``...). ``timeout``:
        seconds per call. ``pinned``: ``collection`` is the configured Milvus name, used as
        it is; otherwise a name Milvus cannot hold gets a stable encoding. Raises
        ``ConfigurationError`` without a uri, or for a pinned name Milvus cannot hold."""
        if not uri:
            raise ConfigurationError(
                "The milvus driver needs milvus.uri (MILVUS_URI): a server URL or a milvus-lite file ending in .db",
                driver=self.name,
            )
        if pinned and not milvus_valid(collection):
            raise ConfigurationError(f"milvus.collection: {milvus_rule(collection)}", driver=self.name)
        self.collection = collection
        self._name = collection if pinned else milvus_name(collection)
        self.local = uri.endswith(".db") and "://" not in uri
        self.uri = str(Path(uri).absolute()) if self.local else uri
        self._token = token
        password = (userinfo(uri) or ("", ""))[1]
        #: what errors never show: the token, its password part, a password in the uri
        self._secrets = tuple(s for s in (token, token.partition(":")[2] if token else None, password) if s)
        self.db_name = db_name
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        self.timeout = timeout
        self.shown = f"milvus-lite {self.uri}" if self.local else redact(without_userinfo(uri), *self._secrets)
        self.dims: int | None = None
        self._client: Any = None
        self._handler: Any = None  #: the client's handler for column upserts (False: none)

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> MilvusVector:
        """See ``VectorDriver.from_config``: ``config.milvus`` (a configured ``collection``
        wins; no ``uri``: the milvus-lite file ``<home>/milvus.db``)."""
        m = config.milvus
        return cls(
            m.collection or collection,
            uri=m.uri or str(Path(config.home) / "milvus.db"),
            token=m.token.get_secret_value() if m.token else None,
            db_name=m.db_name,
            index_type=m.index_type,
            index_params=m.index_params,
            search_params=m.search_params,
            timeout=m.timeout,
            pinned=bool(m.collection),
        )

    @classmethod
    def for_collection(cls, config: StoreConfig, collection: str) -> MilvusVector:
        """See ``VectorDriver.for_collection``: these settings for another collection (a
        configured name is replaced)."""
        return cls.from_config(
            config.model_copy(update={"milvus": config.milvus.model_copy(update={"collection": None})}), collection
        )

    def __repr__(self) -> str:
        return f"MilvusVector({self.shown!r}, collection={self.collection!r})"

    @asynccontextmanager
    async def _mapped(self, operation: str) -> AsyncIterator[None]:
        """The body, bounded by the timeout, with client errors as ours (never chained when a
        token is set: the client's exception may carry it)."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except (ValidationError, BackendRejected, BackendUnavailable, MissingDependencyError):
            raise
        except Exception as exc:  # noqa: BLE001 - every client error becomes ours
            cls = BackendUnavailable if _transient(exc) else BackendRejected
            text = redact(str(exc), *self._secrets) or type(exc).__name__
            error = cls(f"Milvus at {self.shown}: {operation} failed: {text}", driver=self.name, operation=operation)
            raise error from (None if self._secrets else exc)

    async def open(self) -> None:
        """See ``VectorDriver.open``: a milvus-lite file starts its engine (once per process).
        ``MissingDependencyError`` without the ``milvus`` extra."""
        pymilvus = require("pymilvus", extra=EXTRA, driver=self.name)
        if self.local:
            await asyncio.to_thread(start_lite, self.uri, self.name)
        async with self._mapped("open"):
            # dedicated: pymilvus otherwise shares one channel per address across the process,
            # bound to the event loop that made it (a later loop's calls hang on it)
            kwargs: dict[str, Any] = {"uri": self.uri, "timeout": self.timeout, "dedicated": True}
            if self._token:
                kwargs["token"] = self._token
            if self.db_name:
                kwargs["db_name"] = self.db_name
            self._client = pymilvus.AsyncMilvusClient(**kwargs)
            self._handler = None
            try:
                await self._load_dims()
            except BaseException:
                await self.aclose()
                raise

    async def _load_dims(self) -> None:
        self.dims = None
        if await self._client.has_collection(self._name):
            info = await self._client.describe_collection(self._name)
            fields = {f.get("name"): f for f in info.get("fields", [])}
            if not _LAYOUT <= set(fields):
                raise BackendRejected(
                    f"Milvus at {self.shown}: collection {self._name!r} exists with other fields "
                    f"({', '.join(sorted(map(str, fields)))}), not this driver's ({', '.join(sorted(_LAYOUT))})",
                    driver=self.name,
                    operation="open",
                )
            self.dims = int(fields["vector"]["params"]["dim"])
            await self._client.load_collection(self._name)

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose`` (a milvus-lite engine keeps running for the process)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _ensure(self, dims: int) -> None:
        if self.dims is not None:
            return
        pymilvus = require("pymilvus", extra=EXTRA, driver=self.name)
        if not await self._client.has_collection(self._name):
            schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", pymilvus.DataType.VARCHAR, is_primary=True, max_length=36)
            schema.add_field("id", pymilvus.DataType.VARCHAR, max_length=_ID_BYTES)
            schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dims)
            schema.add_field("metadata", pymilvus.DataType.JSON)
            index = pymilvus.MilvusClient.prepare_index_params()
            index.add_index("vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
            try:
                await self._client.create_collection(
                    self._name, schema=schema, index_params=index, consistency_level="Strong"
                )
            except Exception:  # noqa: BLE001 - another store may have created it meanwhile
                if not await self._client.has_collection(self._name):
                    raise
        await self._load_dims()
        if self.dims != dims:
            raise ValidationError(
                f"vector dimension {dims} does not match the collection's {self.dims}",
                field="vectors",
                driver=self.name,
            )

    async def _get(self, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _READ):
            pks = [point_id(i) for i in ids[start : start + _READ]]
            rows.extend(await self._client.get(self._name, ids=pks, output_fields=fields))
        return rows

    async def upsert(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]]) -> None:
        """See ``VectorDriver.upsert``: the first vectors create the collection with their
        dimension; a metadata-only upsert writes the stored vectors back with the new
        metadata (Milvus replaces whole rows)."""
        ids = list(ids)
        if not ids:
            return
        if len(metadata) != len(ids):
            raise ValidationError("ids and metadata must have the same length", driver=self.name)
        async with self._mapped("upsert"):
            if vectors is None:
                stored = {r["id"]: r["vector"] for r in await self._get(ids, ["id", "vector"])} if self.dims else {}
                missing_vectors(ids, set(stored), self.name)
                matrix = np.asarray([stored[i] for i in ids], dtype=np.float32)
            else:
                matrix = matrix_for(ids, vectors, self.dims, self.name)
                await self._ensure(int(matrix.shape[1]))
            # a dict as it is (the client only reads it): no copy per row of a bulk write
            meta = [m if type(m) is dict else dict(m) for m in metadata]
            for start in range(0, len(ids), _BATCH):
                part = slice(start, start + _BATCH)
                await self._write(ids[part], matrix[part], meta[part])

    async def _write(self, ids: list[str], matrix: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        """Upsert one batch, column by column where this pymilvus allows it: its row API packs
        each row's fields one call at a time (measured 15 against 5 ms of CPU per 500 rows,
        about a fifth of a bulk write), while the column request it builds for its own ORM
        packs each field in one go. The client has no public column upsert, so this reaches
        its connection handler; a pymilvus without one gets the rows, and so does a batch the
        column request refuses (the row API refreshes a collection schema that changed and
        tries again, the column one does not; real bad data fails there too)."""
        pks = [point_id(i) for i in ids]
        vectors = matrix.tolist()
        handler = await self._columns()
        if handler is not None:
            from pymilvus import DataType
            from pymilvus.exceptions import DataNotMatchException, ParamError, SchemaMismatchRetryableException

            columns = [
                {"name": "pk", "type": DataType.VARCHAR, "values": pks},
                {"name": "id", "type": DataType.VARCHAR, "values": ids},
                {"name": "vector", "type": DataType.FLOAT_VECTOR, "values": vectors},
                {"name": "metadata", "type": DataType.JSON, "values": metadata},
            ]
            try:
                await handler.upsert(
                    self._name, columns, timeout=self.timeout, context=self._client._generate_call_context()
                )
                return
            except TypeError:  # another handler signature: never again, and the rows now (an upsert repeats safely)
                self._handler = False
            except (DataNotMatchException, ParamError, SchemaMismatchRetryableException):
                pass
        rows = [{"pk": p, "id": i, "vector": v, "metadata": m} for p, i, v, m in zip(pks, ids, vectors, metadata)]
        await self._client.upsert(self._name, rows)

    async def _columns(self) -> Any:
        """The client's connection handler for column upserts, or None where this pymilvus has
        none (checked once)."""
        if self._handler is None:
            connect = getattr(self._client, "_get_connection", None)
            handler = (
                await connect() if connect is not None and hasattr(self._client, "_generate_call_context") else None
            )
            self._handler = handler if callable(getattr(handler, "upsert", None)) else False
        return self._handler or None

    async def query(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``VectorDriver.query``: a broader native filter, the exact one checked on the
        metadata, widening the search (past 16,384 hits: a scan of the collection)."""
        async with self._mapped("query"):
            if self.dims is None:
                await self._load_dims()
                if self.dims is None:
                    return []
            query = _query_values(vector, self.dims, self.name)
            expr = milvus_filter(where) if where is not None else None
            fields = ["id", "metadata"] if where is not None else ["id"]
            params: dict[str, Any] = {"metric_type": "COSINE", "params": self.search_params}

            async def search(k: int) -> Rows:
                if k > TOPK_MAX:
                    return await self._scan(as_matrix(query, self.dims, self.name)[0], expr, k)
                result = await self._client.search(
                    self._name,
                    [query],
                    limit=k,
                    filter=expr or "",
                    output_fields=fields,
                    search_params=params,
                )
                return [
                    (h["entity"]["id"], float(h["distance"]), h["entity"].get("metadata"))
                    for h in (result[0] if result else [])
                ]

            return await widening_search(search, limit, where, self.count)

    async def _scan(self, query: np.ndarray, expr: str | None, k: int) -> Rows:
        """The ``k`` best rows matching ``expr``, scored exactly over every such row (for
        searches wider than Milvus's 16,384 hits)."""
        rows: Rows = []
        async for page in self._pages(["id", "vector", "metadata"], expr, TOPK_MAX // 4):
            matrix = np.asarray([r["vector"] for r in page], dtype=np.float32).reshape(len(page), -1)
            scores = matrix @ query
            rows.extend((r["id"], float(s), r.get("metadata")) for r, s in zip(page, scores))
        rows.sort(key=lambda row: -row[1])
        return rows[:k]

    async def _pages(self, fields: list[str], expr: str | None, size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row matching ``expr`` once, in pages of ``size`` by ascending ``pk`` (a
        query's rows come ordered by primary key; UUIDs need no escaping)."""
        last: str | None = None
        while True:
            after = f'pk > "{last}"' if last is not None else ""
            condition = " and ".join(c for c in (after, f"({expr})" if expr else "") if c)
            page = await self._client.query(self._name, filter=condition, limit=size, output_fields=["pk", *fields])
            if page:
                page = sorted(page, key=lambda r: r["pk"])
                last = page[-1]["pk"]
                yield page
            if len(page) < size:
                return

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """See ``VectorDriver.existing``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return set()
        async with self._mapped("existing"):
            return {r["id"] for r in await self._get(ids, ["id"])}

    async def fingerprints(self, ids: Sequence[str]) -> dict[str, str | None]:
        """See ``VectorDriver.fingerprints``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return {}
        async with self._mapped("fingerprints"):
            return {r["id"]: stored_fingerprint(r.get("metadata")) for r in await self._get(ids, ["id", "metadata"])}

    async def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """See ``VectorDriver.fetch``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return {}
        async with self._mapped("fetch"):
            return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in await self._get(ids, ["id", "vector"])}

    async def delete(self, ids: Sequence[str]) -> None:
        """See ``VectorDriver.delete``."""
        ids = list(dict.fromkeys(ids))
        if not ids or self.dims is None:
            return
        async with self._mapped("delete"):
            for start in range(0, len(ids), _READ):
                pks = [point_id(i) for i in ids[start : start + _READ]]
                await self._client.delete(self._name, ids=pks)

    async def count(self) -> int:
        """See ``VectorDriver.count`` (an exact count, Strong consistency)."""
        if self.dims is None:
            return 0
        async with self._mapped("count"):
            rows = await self._client.query(self._name, filter="", output_fields=["count(*)"])
            return int(rows[0]["count(*)"]) if rows else 0

    async def iter_ids(self, batch_size: int = 1000) -> AsyncIterator[list[str]]:
        """See ``VectorDriver.iter_ids`` (pages by primary key; ``batch_size`` is capped at
        Milvus's 16,384 rows per query)."""
        if self.dims is None:
            return
        pages = self._pages(["id"], None, max(1, min(batch_size, TOPK_MAX)))
        while True:
            async with self._mapped("iter_ids"):
                page = await anext(pages, None)
            if page is None:
                return
            yield [r["id"] for r in page]

    async def drop(self) -> None:
        """See ``VectorDriver.drop``: the collection is dropped (the next vectors create it
        again, with their dimension)."""
        async with self._mapped("drop"):
            if await self._client.has_collection(self._name):
                await self._client.drop_collection(self._name)
            self.dims = None
