"""Shared plumbing for the PostgreSQL drivers: connection pools shared (and reference
counted) per server, error mapping that never shows a password, identifiers, and the filter
language translated to SQL over a JSONB column with bound parameters."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar

from .._deps import require
from .._entries import MAX_INT, MIN_INT
from .._errors import BackendRejected, BackendUnavailable, ValidationError, redact
from .._filters import And, Cmp, Node, Or

EXTRA = "postgres"
# (conninfo, event loop) -> (pool, users). A pool belongs to the loop that opened it: a second
# asyncio.run() in the same process must not reuse one bound to a finished loop.
_POOLS: dict[tuple[str, int], tuple[Any, int]] = {}


def _key(info: str) -> tuple[str, int]:
    return info, id(asyncio.get_running_loop())


def conninfo(section: Any, fallback: Any = None) -> tuple[str, str, list[str]]:
    """(conninfo, shown-as, secrets) from a postgresql/pgvector config ``section``; settings it
    lacks come from ``fallback`` (pgvector falls back to postgresql's section).
    """
    psycopg = require("psycopg", extra=EXTRA, driver="postgresql")
    dsn = section.dsn.get_secret_value() if section.dsn else None
    if dsn is None and fallback is not None and not getattr(section, "host", None):
        return conninfo(fallback)
    if dsn:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    else:
        info = {"host": section.host, "port": section.port, "dbname": section.database}
        if section.username:
            info["user"] = section.username
        if section.password:
            info["password"] = section.password.get_secret_value()
    info = {k: v for k, v in info.items() if v is not None}
    secrets = [info["password"]] if info.get("password") else []
    shown = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    return psycopg.conninfo.make_conninfo(**info), shown, secrets


async def acquire_pool(
    info: str, shown: str, secrets: list[str], *, min_size: int, max_size: int, idle_timeout: float, driver: str
) -> Any:
    """A pool for this server, shared by every store of the process (reference counted).

    ``info`` is the connection string (the pool's key), ``shown`` it with the password hidden
    and ``secrets`` the strings never to show in messages; ``min_size``, ``max_size`` and
    ``idle_timeout`` (seconds) size a new pool; ``driver`` names the driver in errors. Raises
    MissingDependencyError without psycopg, BackendUnavailable when the server cannot be
    reached.
    """
    key = _key(info)
    entry = _POOLS.get(key)
    if entry is not None:
        _POOLS[key] = (entry[0], entry[1] + 1)
        return entry[0]
    pool_mod = require("psycopg_pool", extra=EXTRA, driver=driver)
    pool = pool_mod.AsyncConnectionPool(
        info,
        min_size=min_size,
        max_size=max_size,
        max_idle=idle_timeout,
        open=False,
        kwargs={"autocommit": True},
        configure=_configure,
        name=f"semantic-store {shown}",
    )
    try:
        await pool.open(wait=True, timeout=10)
    except Exception as exc:  # noqa: BLE001 - mapped below, without the password
        await pool.close()
        raise BackendUnavailable(
            f"Cannot connect to PostgreSQL at {shown}: {redact(str(exc), *secrets)}", driver=driver, operation="open"
        ) from None
    _POOLS[key] = (pool, 1)
    return pool


def _json_int(text: str) -> int | float:
    # jsonb keeps numbers as decimals and prints an integral 1e22 as 10000000000000000000000;
    # no stored integer is beyond 64 bits (the entry rules), so such a number was a float
    value = int(text) if len(text) < 25 else MAX_INT + 1
    return value if MIN_INT <= value <= MAX_INT else float(text)


_decoder = json.JSONDecoder(parse_int=_json_int)


def _json_loads(data: str | bytes) -> Any:
    return _decoder.decode(data if isinstance(data, str) else bytes(data).decode("utf-8"))


async def _configure(conn: Any) -> None:
    require("psycopg.types.json", extra=EXTRA, driver="postgresql").set_json_loads(_json_loads, conn)


async def release_pool(info: str) -> None:
    """Drop one use of the pool for connection string ``info``, closing it after its last."""
    key = _key(info)
    entry = _POOLS.get(key)
    if entry is None:
        return
    pool, users = entry
    if users > 1:
        _POOLS[key] = (pool, users - 1)
        return
    del _POOLS[key]
    await pool.close()


@asynccontextmanager
async def mapped(
    shown: str, secrets: list[str], driver: str, operation: str, timeout: float | None = None
) -> AsyncIterator[None]:
    """Turn psycopg errors into ours (BackendUnavailable, BackendRejected) for ``operation`` by
    ``driver``, naming the server as ``shown``; messages never carry the password or any of
    ``secrets``. ``timeout`` (seconds) bounds the body: a server that stops answering fails
    the call with BackendUnavailable.
    """
    psycopg = require("psycopg", extra=EXTRA, driver=driver)
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        error = BackendUnavailable(
            f"PostgreSQL {operation} at {shown} did not answer within {timeout:g} s", driver=driver, operation=operation
        )
        error.timed_out = True  # the server may still have applied it
        raise error from None
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(
            f"PostgreSQL {operation} failed at {shown}: {redact(str(exc), *secrets)}",
            driver=driver,
            operation=operation,
        ) from None
    except psycopg.Error as exc:
        raise BackendRejected(
            f"PostgreSQL {operation} failed at {shown}: {redact(str(exc), *secrets)}",
            driver=driver,
            operation=operation,
        ) from None


#: the suffixes of a store's own extra tables and indexes (tombstones, pgvector's vectors, the
#: full-text index of ``primary/_pg_lexical.py``, whose trigger and function share its name)
RESERVED_SUFFIXES = ("__tombstones", "__vectors", "__vectors_hnsw", "__lexemes", "__lexemes_todo")


class PoolUser:
    """What both PostgreSQL drivers do with their shared pool."""

    name: ClassVar[str]

    def __init__(self, info: str, shown: str, secrets: list[str], collection: str, pool: Any = None) -> None:
        """``info`` is the libpq connection string, ``shown`` the same with the password hidden,
        ``secrets`` the strings never to show; ``collection`` names the table; ``pool`` the pool
        settings (None: the defaults).
        """
        if collection.endswith(RESERVED_SUFFIXES):
            # one schema holds every store's tables: "x__tombstones" would be store x's tombstones
            raise ValidationError(
                f"store name {collection!r} ends with {', '.join(RESERVED_SUFFIXES)}, which name the "
                "PostgreSQL tables of other stores; choose another name",
                field="name",
                operation="open",
            )
        self._info, self.shown, self._secrets = info, shown, secrets
        self.collection = collection
        self._pool_settings = pool
        self._pool: Any = None

    def _ident(self, suffix: str = "") -> str:
        """This collection's table (or index) name with ``suffix``, quoted."""
        sql = require("psycopg", extra=EXTRA, driver=self.name).sql
        ident: str = sql.Identifier(table_name(self.collection, suffix)).as_string(None)
        return ident

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown!r}, collection={self.collection!r})"

    #: seconds a call may take (None: no bound); the vector driver bounds its calls
    call_timeout: float | None = None

    def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]:
        return mapped(self.shown, self._secrets, self.name, operation, self.call_timeout)

    async def _acquire(self) -> None:
        p = self._pool_settings
        self._pool = await acquire_pool(
            self._info,
            self.shown,
            self._secrets,
            min_size=p.min if p else 1,
            max_size=p.max if p else 10,
            idle_timeout=p.idle_timeout if p else 300,
            driver=self.name,
        )

    async def aclose(self) -> None:
        """Give this driver's share of the pool back; the pool closes when no store uses it."""
        if self._pool is not None:
            self._pool = None
            await release_pool(self._info)


def table_name(collection: str, suffix: str = "") -> str:
    """The table name of ``collection`` with ``suffix``: PostgreSQL identifiers stop at 63 bytes,
    so long names keep a readable head and a hash.
    """
    name = collection + suffix
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
    return name.encode()[:50].decode(errors="ignore") + "_" + digest


def filter_sql(node: Node, column: str = "metadata", columns: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    """A parsed filter ``node`` as SQL over the JSONB ``column``, with its parameters;
    ``columns`` maps single-segment keys to plain columns.
    """
    params: list[Any] = []
    return _node(node, column, columns or {}, params), params


def _node(node: Node, column: str, columns: dict[str, str], params: list[Any]) -> str:
    if isinstance(node, (And, Or)):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_node(n, column, columns, params) for n in node.items) + ")"
    assert isinstance(node, Cmp)
    plain = columns.get(node.path[0]) if len(node.path) == 1 else None
    path = list(node.path)

    def eq(value: Any) -> str:
        if plain is not None:
            if value is None:
                return f"({plain} IS NULL)"
            params.append(value if isinstance(value, str) else json.dumps(value))
            return f"({plain} = %s)"
        if value is None:
            params.extend([path, path])
            return f"({column} #> %s IS NULL OR jsonb_typeof({column} #> %s) = 'null')"
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        params.append(json.dumps(nested))
        # containment of a scalar is type-aware (true is not 1, "1" is not 1) and uses GIN
        return f"({column} @> %s::jsonb)"

    op, value = node.op, node.value
    if op == "eq":
        expr = eq(value)
    elif op == "ne":
        expr = f"NOT COALESCE({eq(value)}, false)"
    elif op in ("in", "nin"):
        expr = "(" + " OR ".join(f"COALESCE({eq(v)}, false)" for v in value) + ")" if value else "false"
        if op == "nin":
            expr = f"NOT {expr}"
    elif op == "exists":
        if plain is not None:
            expr = f"({plain} IS {'NOT ' if value else ''}NULL)"
        else:
            params.append(path)
            expr = f"({column} #> %s IS {'NOT ' if value else ''}NULL)"
    else:
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if plain is not None:
            params.append(value)
            expr = f'({plain} {sym} %s COLLATE "C")' if isinstance(value, str) else "false"
        elif isinstance(value, str):
            params.extend([path, path, value])
            expr = (
                f"(CASE WHEN jsonb_typeof({column} #> %s) = 'string' "
                f'THEN ({column} #>> %s) COLLATE "C" {sym} %s ELSE false END)'
            )
        else:
            params.extend([path, path, value])
            expr = (
                f"(CASE WHEN jsonb_typeof({column} #> %s) = 'number' "
                f"THEN ({column} #>> %s)::numeric {sym} %s ELSE false END)"
            )
    return f"COALESCE({expr}, false)"
