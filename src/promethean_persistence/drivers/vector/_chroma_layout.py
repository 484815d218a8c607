"""The original package's Chroma layout (reference §2.3) and our filter language as a Chroma
``where``: metadata flattened as ``toChromaMetadata`` did, the exact metadata kept as JSON,
collection names Chroma accepts, and the part of a filter Chroma can answer."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ..._entries import TEXT_FINGERPRINT, content_hash
from ..._filters import Cmp, Node, Or
from ._exact import stored_fingerprint

EXTRA = "chroma"
EXACT = "_semantic_store"  #: the metadata as JSON, for exact filtering
_MANAGED = ("vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_IPV4 = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")  #: Chroma refuses these


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_chroma_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The original's ``toChromaMetadata`` of ``metadata``: scalars kept, anything else as
    JSON text; nulls are left out (Chroma drops them anyway). Returns a new dict; raises
    nothing."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, (str, int, float, bool)) else _dumps(value)
    return out


def from_chroma_metadata(meta: Mapping[str, Any] | None, time_key: str | None) -> dict[str, Any]:
    """The exact metadata of a Chroma record's ``meta``: ours from its JSON copy; the
    original's unflattened as best we can, without the managed keys and the ``time_key``
    (None: no time key to drop). Returns a dict; raises nothing."""
    meta = dict(meta or {})
    exact = meta.get(EXACT)
    if isinstance(exact, str):
        try:
            return cast(dict[str, Any], json.loads(exact))
        except ValueError:
            pass
    for key in (*_MANAGED, time_key, EXACT):
        meta.pop(cast(str, key), None)  # a None time_key is never a key: popping it does nothing
    for key, value in meta.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                meta[key] = json.loads(value)
            except ValueError:
                pass
    return meta


def chroma_fingerprint(meta: Mapping[str, Any] | None, document: str | None) -> str | None:
    """The fingerprint a record was written with, read from its ``meta``; for a record
    without one (the original package's), the hash of ``document``, the text Chroma kept;
    else None. Raises nothing."""
    meta = meta or {}
    exact = meta.get(EXACT)
    parsed: Any = None
    if isinstance(exact, str):  # ours: the JSON copy is rewritten whole, the flattened keys
        try:  # are merged by Chroma's update and may be stale
            parsed = json.loads(exact)
        except ValueError:
            pass
    fp = stored_fingerprint(parsed if isinstance(parsed, Mapping) else meta)
    if fp is None and isinstance(document, str):
        return TEXT_FINGERPRINT + content_hash(document)
    return fp


def chroma_name(collection: str) -> str:
    """The Chroma name of ``collection``: Chroma allows 3-512 characters of
    ``[a-zA-Z0-9._-]``, alphanumeric at both ends; other names map to a readable,
    collision-free one. Returns the name; raises nothing."""
    if _NAME.match(collection) and ".." not in collection and not _IPV4.match(collection):
        return collection
    digest = hashlib.blake2b(collection.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    # a head Chroma takes: no "..", alphanumeric at both ends
    head = re.sub(r"\.{2,}", "_", re.sub(r"[^a-zA-Z0-9._-]", "_", collection)).strip("._-")[:400]
    return f"{head}-{digest}" if head else f"c-{digest}"


# -- the filter language as a Chroma ``where`` (never narrower than the exact filter) ------------


def _typed(values: Sequence[Any]) -> dict[type, list[Any]]:
    groups: dict[type, list[Any]] = {}
    for v in values:
        groups.setdefault(type(v), []).append(v)
    return groups


def _native(node: Cmp) -> dict[str, Any] | None:
    if len(node.path) != 1 or node.path[0] == EXACT:
        return None  # dotted keys reach into JSON text: checked exactly afterwards
    key, op, value = node.path[0], node.op, node.value
    # Chroma truncates a fractional operand when it meets an int value (2 < 2.5 is false
    # there): ranges are widened to whole numbers, $ne/$nin with fractions stay with us.
    fractional = any(
        isinstance(v, float) and not v.is_integer() for v in (value if isinstance(value, tuple) else (value,))
    )
    if op in ("eq", "ne"):
        return None if value is None or (op == "ne" and fractional) else {key: {f"${op}": value}}
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if fractional:
            return {key: {"$gte": math.floor(value)}} if op in ("gt", "gte") else {key: {"$lte": math.ceil(value)}}
        return {key: {f"${op}": value}}
    if op in ("in", "nin"):
        if not value or any(v is None for v in value) or (op == "nin" and fractional):
            return None
        parts = [{key: {f"${op}": vs}} for vs in _typed(value).values()]
        return _join("$or" if op == "in" else "$and", parts)
    return None  # $exists: nulls are not stored by Chroma


def _join(op: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {op: parts}


def chroma_where(node: Node) -> dict[str, Any] | None:
    """Chroma's share of the parsed filter ``node``: a ``where`` never narrower than it, or
    None when Chroma can check nothing of it. Raises nothing."""
    if isinstance(node, Cmp):
        return _native(node)
    parts = [chroma_where(n) for n in node.items]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else _join("$or", parts)  # type: ignore[arg-type]
    kept = [p for p in parts if p is not None]
    return _join("$and", kept) if kept else None
