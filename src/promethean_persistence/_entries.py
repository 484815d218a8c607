"""Validation of incoming entries (SPEC §2): a rejected entry raises ValidationError naming
the field, and nothing is written."""

from __future__ import annotations

import functools
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from ._errors import ValidationError
from ._types import Record

MANAGED_KEYS = frozenset({"vectorStatus", "vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp"})
MAX_ID_LENGTH = 512
MAX_DEPTH = 32
#: a larger ``limit`` is read as this one: "everything" on every driver (SQL bigint, BSON
#: int32, vector search sizes all hold it)
MAX_LIMIT = 2**31 - 1
# Integers must fit in 64 bits: BSON cannot hold larger ones and SQLite's JSON reads them as doubles.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
# JavaScript's Date range, so every stored timestamp stays readable by the original package.
MAX_EPOCH_MS = 8_640_000_000_000_000
#: the entry key of an entry's expiry time (epoch ms, a datetime or ISO-8601), never kept in ``extra``
EXPIRES_KEY = "expires_at"


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def content_hash(text: str) -> str:
    """The hash of ``text`` that a record's vector must represent."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16)  # one per model in use: writes fingerprint every record
def fingerprinter(model: str | None) -> Callable[[str], str]:
    """``fingerprint(text)``: what a vector of ``model`` computed from ``text`` (the embedded
    input: a text, or an image's path or URL) is recorded with, beside the vector
    (``FINGERPRINT_KEY``), so drift shows whatever caused it. One hash per text: the
    model's part is hashed once."""
    prefix = hashlib.blake2b(f"{model or ''}\n".encode(), digest_size=16)

    def fingerprint(text: str) -> str:
        h = prefix.copy()
        h.update(text.encode("utf-8"))
        return h.hexdigest()

    return fingerprint


def fingerprint(text: str, model: str | None) -> str:
    """The fingerprint of a vector of ``model`` computed from ``text`` (see ``fingerprinter``)."""
    return fingerprinter(model)(text)


#: a legacy vector without a fingerprint, described by the text its backend kept
TEXT_FINGERPRINT = "text:"


def _invalid(field: str, message: str, operation: str | None = "insert") -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field, operation=operation)


def shown(value: Any, width: int = 64) -> str:
    """The repr of ``value`` cut to about ``width`` characters, for messages: safe for any
    value (an int too long for ``str``, lone surrogates and control characters escaped)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"<an int of {value.bit_length()} bits>"
    return text if len(text) <= width else text[: width - 3] + "..."


def to_epoch_ms(value: Any, field: str, operation: str | None = "insert") -> int:
    """Epoch ms from ``value``: int/float ms, a datetime (naive = UTC) or an ISO-8601 string.
    Raises ValidationError naming ``field`` (and ``operation``, the call it is for) for
    anything else.
    """

    def invalid(message: str) -> ValidationError:
        return _invalid(field, message, operation)

    if isinstance(value, bool):
        raise invalid("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"timestamp must be finite, got {value!r}")
        ms = int(value)
    elif isinstance(value, datetime):
        ms = _datetime_ms(value)
    elif isinstance(value, date):
        ms = _datetime_ms(datetime(value.year, value.month, value.day))
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise invalid(f"unparsable timestamp {shown(value)}; use epoch ms, a datetime or ISO-8601") from None
        ms = _datetime_ms(parsed)
    else:
        raise invalid(f"expected epoch ms, a datetime or an ISO-8601 string, got {type(value).__name__}")
    if abs(ms) > MAX_EPOCH_MS:
        raise invalid(f"timestamp {shown(ms)} is out of range (at most {MAX_EPOCH_MS} ms from 1970)")
    return ms


def _datetime_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_json_value(value: Any, field: str, depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``; datetimes become ISO text. ``field`` names the value
    in errors and ``depth`` is the nesting level reached; raises ValidationError for values
    that have no JSON form, nest too deep, hold text no backend stores alike (see
    ``check_text``) or integers beyond 64 bits.
    """
    if depth > MAX_DEPTH:
        raise _invalid(field, f"nested deeper than {MAX_DEPTH} levels")
    if type(value) is dict:  # the usual metadata: past the other types' checks
        return _json_object(value, field, depth)
    if value is None or isinstance(value, (str, bool)):
        if isinstance(value, str):
            check_text(value, field, "string")
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise _invalid(
                field, f"integer of {value.bit_length()} bits; integers must fit in 64 bits (use a float or a string)"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(field, f"NaN and Infinity are not allowed, got {value!r}")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _json_object(value, field, depth)
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise _invalid(field, f"{type(value).__name__} is not JSON-serialisable")


def _json_object(value: Mapping[Any, Any], field: str, depth: int) -> dict[str, Any]:
    """``to_json_value`` of the mapping ``value`` (named ``field``, at ``depth``)."""
    out = {}
    nested = depth < MAX_DEPTH  # a value one level down is within the depth limit
    for key, item in value.items():
        if not isinstance(key, str):
            raise _invalid(field, f"keys must be strings, got {shown(key)}")
        if text_problem(key) is not None:  # an ASCII key without NUL is told apart at once
            check_text(key, key_field(field, key), "key")
        # the usual flat values are taken here, without a call and a path each (bulk
        # writes validate every entry); the others, and every error, take the full path
        kind = type(item)
        if nested and (
            (kind is str and text_problem(item) is None)
            or (kind is int and MIN_INT <= item <= MAX_INT)
            or (kind is float and math.isfinite(item))
            or kind is bool
            or item is None
        ):
            out[key] = item
        else:
            out[key] = to_json_value(item, key_field(field, key), depth + 1)
    return out


def key_field(field: str, key: str) -> str:
    """How errors name the key ``key`` of ``field``: dotted, or quoted and escaped when the
    key holds characters a message must not carry (NUL, lone surrogates, control characters)."""
    return f"{field}.{key}" if key.isprintable() else f"{field}[{key!a}]"


def text_problem(value: str) -> str | None:
    """What makes ``value`` unstorable alike on every backend, or None: a NUL character
    (PostgreSQL refuses it, SQLite and MongoDB keep it) or a lone surrogate (not encodable
    as UTF-8 at all)."""
    nul = value.find("\x00")
    if nul >= 0:
        return f"contains a NUL character ('\\x00') at position {nul}, which not every backend stores"
    if value.isascii():  # a lone surrogate is not ASCII
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({value[exc.start]!a}) at position {exc.start}: not valid Unicode text"
    return None


def check_text(value: str, field: str, what: str = "text", operation: str | None = "insert") -> None:
    """Raise ValidationError naming ``field`` (``what`` says which part: text, key, id) and
    ``operation`` when the string ``value`` holds a NUL character or a lone surrogate."""
    problem = text_problem(value)
    if problem is not None:
        raise _invalid(field, f"{what} {problem}", operation)


def check_record(record: Record) -> None:
    """Raise ValidationError (naming the field) when a stored ``record`` breaks a rule that
    ``build_record`` applies to its id, text, metadata and extra fields (those that keep data
    movable between drivers: no NUL character or lone surrogate, integers within 64 bits).
    For records read from a store (a migration's source), written before these rules or by
    another program."""
    check_text(record.id, "id", "id", "migrate")
    check_text(record.text, "text", "text", "migrate")
    for field, value in (("metadata", record.metadata), ("entry", record.extra)):
        try:
            to_json_value(value, field)
        except ValidationError as exc:
            exc.operation = "migrate"
            raise


def portable(records: list[Record], failed: dict[str, str]) -> list[Record]:
    """The ``records`` that pass ``check_record``; the error of each other one goes to
    ``failed`` (by id), for a migration to list instead of writing it."""
    kept = []
    for record in records:
        try:
            check_record(record)
        except ValidationError as exc:
            failed[record.id] = str(exc)
        else:
            kept.append(record)
    return kept


def validate_id(value: Any, field: str = "id", operation: str | None = "insert") -> str:
    """``value`` as an entry id (a string of 1 to MAX_ID_LENGTH characters, with no NUL or
    lone surrogate). Raises ValidationError naming ``field`` and ``operation`` (the call
    it is for) otherwise.
    """
    if not isinstance(value, str):
        raise _invalid(field, f"id must be a str, got {type(value).__name__}", operation)
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise _invalid(field, f"id must be 1-{MAX_ID_LENGTH} characters, got {len(value)}", operation)
    check_text(value, field, "id", operation)
    return value


def build_record(
    entry: Any,
    *,
    text_key: str,
    time_key: str,
    max_text_bytes: int,
    now: int | None = None,
    ttl_ms: int | None = None,
) -> Record:
    """Validate one input ``entry`` and return the Record to store (vector state not yet set).

    ``text_key`` and ``time_key`` are the entry keys of the text and the timestamp;
    ``max_text_bytes`` caps the UTF-8 size of the text; ``now`` (epoch ms) is the write time:
    the timestamp of an entry without one (default: the current time). ``ttl_ms``: an entry
    without ``expires_at`` expires ``ttl_ms`` after ``now`` (None: never). Raises
    ValidationError for a malformed entry.
    """
    if type(entry) is not dict and not isinstance(entry, Mapping):  # a dict skips the slower ABC check
        raise _invalid("entry", f"an entry must be a mapping, got {type(entry).__name__}")
    entry_id = validate_id(entry["id"]) if entry.get("id") is not None else str(uuid.uuid4())

    if text_key not in entry:
        raise _invalid(text_key, f"missing text field {text_key!r}")
    text = entry[text_key]
    if not isinstance(text, str):
        raise _invalid(text_key, f"text must be a str, got {type(text).__name__}")
    check_text(text, text_key)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > max_text_bytes:
        raise _invalid(text_key, f"text is {size} bytes; the limit (max_text_bytes) is {max_text_bytes}")

    raw_meta = entry.get("metadata")
    if raw_meta is None:
        raw_meta = {}
    if type(raw_meta) is not dict and not isinstance(raw_meta, Mapping):
        raise _invalid("metadata", f"metadata must be a mapping, got {type(raw_meta).__name__}")
    metadata = to_json_value({k: v for k, v in raw_meta.items() if k not in MANAGED_KEYS}, "metadata")

    raw_time = entry.get(time_key)
    field = time_key
    if raw_time is None and raw_meta.get("timeStamp") is not None:
        raw_time, field = raw_meta["timeStamp"], "metadata.timeStamp"
    written = now if now is not None else now_ms()
    timestamp = written if raw_time is None else to_epoch_ms(raw_time, field)
    raw_expiry = entry.get(EXPIRES_KEY)
    if raw_expiry is not None:
        expires_at: int | None = to_epoch_ms(raw_expiry, EXPIRES_KEY)
    else:
        expires_at = None if ttl_ms is None else min(written + ttl_ms, MAX_EPOCH_MS)

    extra = to_json_value(
        {k: v for k, v in entry.items() if k not in ("id", "metadata", text_key, time_key, EXPIRES_KEY)},
        "entry",
    )
    return Record(
        id=entry_id,
        text=text,
        timestamp=timestamp,
        metadata=metadata,
        extra=extra,
        content_hash=content_hash(text),
        expires_at=expires_at,
    )


def user_metadata(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a returned ``entry`` without the store-managed keys."""
    return {k: v for k, v in entry["metadata"].items() if k not in MANAGED_KEYS}


def check_limit(limit: Any, field: str = "limit", operation: str | None = None) -> int:
    """``limit`` as a positive int, at most ``MAX_LIMIT`` (a larger one means "everything"
    and is read as ``MAX_LIMIT``); raises ValidationError naming ``field`` and ``operation``
    otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"{field} must be an int >= 1, got {shown(limit)}", field=field, operation=operation)
    return min(int(limit), MAX_LIMIT)
