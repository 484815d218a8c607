"""Declared capabilities must be true: each one names a Protocol whose members the driver
then has (the suites also exercise what each capability promises)."""

from __future__ import annotations

import inspect
from typing import Any

from ..drivers import base

PRIMARY = {
    "transactions": base.TransactionalPrimary,
    "dedupe": base.Dedupe,
    "vector_aliases": base.VectorAliases,
    "lexical": base.LexicalPrimary,
    "expiry": base.ExpiringPrimary,
    "outbox_stats": base.OutboxStatsPrimary,
    "field_names": base.FieldNames,
}
VECTOR = {
    "transactions": base.TransactionalVector,
    "stores_documents": base.DocumentVector,
    "collection_switch": base.CollectionSwitch,
    "field_names": base.FieldNames,
}
EMBEDDER = {
    "images": base.ImageEmbedder,
    "query_embedding": base.QueryEmbedder,
    "warm": base.Warmable,
}
_KIND_FLAGS = {"primary": PRIMARY, "vector": VECTOR, "embedder": EMBEDDER}
_OWN = {"primary": set(PRIMARY), "vector": set(VECTOR) | {"in_process"}, "embedder": set(EMBEDDER) | {"in_process"}}


def members(protocol: type) -> list[str]:
    """The methods the Protocol ``protocol`` declares."""
    return [name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)]


def check_declared(driver: Any, kind: str) -> None:
    """``driver.capabilities`` is a ``Capabilities``; every capability it declares comes with
    its Protocol's members, and capabilities of another kind of driver are not declared.
    ``driver`` is a driver (instance or class) of ``kind`` (``"primary"``, ``"vector"`` or
    ``"embedding"``); raises AssertionError otherwise.
    """
    caps = driver.capabilities
    assert isinstance(caps, base.Capabilities), f"{driver!r}.capabilities is {caps!r}"
    table = _KIND_FLAGS[kind]
    for flag, protocol in table.items():
        if getattr(caps, flag):
            for member in members(protocol):
                method = getattr(driver, member, None)
                assert callable(method), f"{driver!r} declares {flag} but has no {member}()"
                if member in (
                    "embed_images",
                    "embed_queries",
                    "warm",
                    "dedupe",
                    "vector_collection",
                    "lexical_query",
                    "purge_expired",
                    "outbox_stats",
                    "beat_worker",
                    "forget_worker",
                    "list_collections",
                ):
                    assert inspect.iscoroutinefunction(method), f"{driver!r}.{member} must be async"
    foreign = [f for f in base.Capabilities.__dataclass_fields__ if f not in _OWN[kind] and getattr(caps, f)]
    assert not foreign, f"{driver!r} declares capabilities of another kind of driver: {foreign}"
