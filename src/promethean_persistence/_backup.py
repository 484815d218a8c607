"""Backup and restore as JSON Lines (SPEC §7): ``export`` and ``import_``.

The first line is a header with the store's manifest; then one entry per line:
``{"id", "text", "timestamp", "metadata", "extra"?, "vector"?}``. Vectors are base64 of
little-endian float32 (exact and compact); a list of floats is accepted on import too.
Files ending in ``.gz`` are gzip. Both directions stream: memory stays flat.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from ._copy import Copier
from ._entries import build_record, check_limit, now_ms, text_problem
from ._errors import EmbeddingMismatchError, MigrationError, ValidationError
from ._expiry import expiring_entry
from ._migrate import _ready, _vectors_of, describe
from ._progress import progress_callback
from ._types import Manifest, Record

if TYPE_CHECKING:
    from ._store import SemanticStore

__all__ = ["export", "import_"]

FORMAT = "promethean-persistence/jsonl"
FORMAT_VERSION = 1
VECTOR_ENCODING = "base64-float32-le"
_LISTED = 100


def _open(path: Path, mode: str) -> IO[str]:
    # Reading: a leading BOM is skipped, and a byte that is not UTF-8 becomes a lone surrogate,
    # so its line is refused (and listed) by validation instead of stopping the import.
    encoding, errors = ("utf-8-sig", "surrogateescape") if mode == "r" else ("utf-8", "strict")
    if path.suffix == ".gz":
        return cast(IO[str], gzip.open(path, mode + "t", encoding=encoding, errors=errors, compresslevel=6))
    return open(path, mode, encoding=encoding, errors=errors)


async def export(
    store: SemanticStore,
    path: str | os.PathLike[str],
    with_vectors: bool = False,
    *,
    batch_size: int = 1000,
    progress: bool | Callable[[int, int], None] = False,
) -> dict[str, Any]:
    """Write every entry of ``store`` to ``path`` (JSON Lines; gzip if it ends in .gz).

    With ``with_vectors``, each entry's vector goes along, so an import into a store with
    the same embedding model needs no re-embedding. The file appears only once complete.
    ``batch_size``: entries read per batch (an int ≥ 1). ``progress``: True for a bar on
    stderr, a callable taking ``(done, total)``, or False.

    Returns a report dict: ``path``, ``entries``, ``vectors``, ``bytes``, ``seconds`` and
    the ``manifest`` written in the header. Raises ``ValidationError`` for a bad
    ``batch_size``, ``OSError`` when the file cannot be written, and ``BackendUnavailable``
    or ``BackendRejected`` when a backend fails."""
    batch_size = check_limit(batch_size, "batch_size")
    started = time.perf_counter()
    await _ready(store)
    manifest = await store.primary.get_manifest() or store.manifest()
    total = await store.count()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "store": store.name,
        "exported_at": now_ms(),
        "count": total,
        "manifest": manifest.copy(reembed=None, migration=None).to_dict(),
        "vectors": VECTOR_ENCODING if with_vectors else None,
    }
    final = Path(path)
    partial = final.with_name(final.name + ".partial" + (".gz" if final.suffix == ".gz" else ""))
    entries = vectors = 0
    report_progress = progress_callback(progress, "export")
    try:
        with _open(partial, "w") as out:
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            async for batch in store.primary.iterate(batch_size):
                found = await _vectors_of(store, batch, True) if with_vectors else {}
                lines = [_line(r, found.get(r.id)) for r in batch]
                await asyncio.to_thread(out.write, "".join(lines))
                entries += len(batch)
                vectors += len(found)
                report_progress(min(entries, total), total)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {
        "path": str(final),
        "entries": entries,
        "vectors": vectors,
        "bytes": final.stat().st_size,
        "seconds": round(time.perf_counter() - started, 3),
        "manifest": header["manifest"],
    }


def _line(record: Record, vector: Any) -> str:
    item: dict[str, Any] = {
        "id": record.id,
        "text": record.text,
        "timestamp": record.timestamp,
        "metadata": record.metadata,
    }
    if record.extra:
        item["extra"] = record.extra
    if record.expires_at is not None:
        item["expires_at"] = record.expires_at
    if vector is not None:
        item["vector"] = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return json.dumps(item, ensure_ascii=False) + "\n"


async def import_(
    store: SemanticStore,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 500,
    reembed: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    index_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Load a file written by ``export`` (or plain JSONL entries) into ``store``: upserts by
    id, so importing twice changes nothing. Vectors in the file are used as they are when
    the file's manifest names this store's embedding model and dimension; otherwise the
    import is refused (``EmbeddingMismatchError``) unless ``reembed=True``, which ignores
    them and embeds the texts. Bad lines (not JSON, or refused as ``insert`` refuses an entry:
    a NUL character, bytes that are not UTF-8...) are reported with their line number and
    id, not stored; the other lines are imported.
    ``path``: the file (gzip if it ends in .gz). ``batch_size``: entries written per batch
    (an int ≥ 1). ``reembed``: as above. ``progress``: True for a bar on stderr, a callable
    taking ``(done, total)``, or False. ``index_progress``: the final indexing's
    ``(done, total)`` callback (default: as ``progress``).

    Returns a report dict: ``status`` (``"ok"`` unless something failed), ``entries``,
    ``imported``, ``indexed``, ``pending``, ``failed``, ``errors`` (line and id, or id;
    message) and ``seconds``. Raises ``ValidationError`` for a missing file, one in UTF-16,
    a newer format version or a bad ``batch_size``, ``EmbeddingMismatchError`` as above,
    ``MigrationError`` when the store stays unreachable or a gzip file is damaged (what was
    read stays), and ``BackendUnavailable`` or ``BackendRejected`` when a backend fails."""
    batch_size = check_limit(batch_size, "batch_size")
    started = time.perf_counter()
    await _ready(store)
    file = Path(path)
    if not file.is_file():
        raise ValidationError(f"No such file: {str(file)!r}", field="path", operation="import")
    _check_encoding(file)
    copier = Copier(store)
    errors: list[dict[str, Any]] = []
    written: list[str] = []
    failed = read = 0
    header: dict[str, Any] | None = None
    report_progress = progress_callback(progress, "import")
    with _open(file, "r") as src:
        lines = _numbered(src, file)
        first = next(lines, None)
        pending: list[tuple[int, dict[str, Any]]] = []
        if first is not None:
            if isinstance(first[1], dict) and first[1].get("format") == FORMAT:
                header = first[1]
            else:
                pending.append(first)
        use_vectors = _check_header(store, header, file, reembed)
        total = header.get("count", 0) if header else 0

        async def flush() -> None:
            nonlocal failed
            records: list[Record] = []
            vectors: dict[str, Any] = {}
            for number, item in pending:
                try:
                    record, vector = _parse(store, item, header is not None, use_vectors)
                except (ValidationError, ValueError, TypeError) as exc:
                    failed += 1
                    if len(errors) < _LISTED:
                        errors.append({"line": number, **_listed_id(item), "error": str(exc)})
                    continue
                records.append(record)
                if vector is not None:
                    vectors[record.id] = vector
            pending.clear()
            records = list({r.id: r for r in records}.values())  # the last line of an id wins
            written.extend(r.id for r in records)
            for id_, error in (await copier.write(records, vectors)).items() if records else ():
                failed += 1
                if len(errors) < _LISTED:
                    errors.append({"id": id_, "error": error})

        for item in lines:
            pending.append(item)
            if len(pending) >= batch_size:
                read += len(pending)
                await flush()
                report_progress(min(read, total), total)
        read += len(pending)
        await flush()
        report_progress(min(read, total), total)
    await store.flush(progress=index_progress or progress_callback(progress, "indexing"))
    vectors = await store.vector_counts(written)
    return {
        "status": "ok" if not failed else "failed",
        "path": str(file),
        "store": describe(store),
        "entries": read,
        "imported": copier.counts["copied"],
        **{k: v for k, v in copier.counts.items() if k != "copied"},
        "indexed": vectors["indexed"],
        "pending": vectors["pending"],
        "failed": failed + vectors["failed"],  # not imported, or imported without the vector it needs
        "errors": errors,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _numbered(src: IO[str], file: Path) -> Iterator[tuple[int, Any]]:
    number = 0
    try:
        for number, raw in enumerate(src, 1):
            if raw.strip():
                try:
                    yield number, json.loads(raw)
                except (ValueError, RecursionError) as exc:  # not JSON, an int too long to read, nested too deep
                    yield number, exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a damaged or truncated gzip file
        raise MigrationError(
            f"{str(file)!r} cannot be read after line {number} ({exc}); the lines before stay imported",
            operation="import",
        ) from exc


def _check_encoding(file: Path) -> None:
    """Refuse a file in UTF-16 or UTF-32 (with a byte order mark) before importing anything."""
    with open(file, "rb") as raw:
        head = raw.read(4)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ValidationError(
            f"{str(file)!r} is UTF-16 (or UTF-32); export files are UTF-8", field="path", operation="import"
        )


def _listed_id(item: Any) -> dict[str, str]:
    """The id of a refused line, for the report (escaped if it cannot be printed as it is)."""
    id_ = item.get("id") if isinstance(item, dict) else None
    if not isinstance(id_, str):
        return {}
    return {"id": id_ if text_problem(id_) is None else ascii(id_)}


def _check_header(store: SemanticStore, header: dict[str, Any] | None, file: Path, reembed: bool) -> bool:
    """Whether the file's vectors can be used by ``store``; refuse ones of another space."""
    if header is None:
        return False
    if header.get("version", 0) > FORMAT_VERSION:
        raise ValidationError(
            f"{str(file)!r} is format version {header['version']}; this version reads up to "
            f"{FORMAT_VERSION}. Upgrade promethean-persistence.",
            field="path",
            operation="import",
        )
    if not header.get("vectors") or reembed:
        return False
    manifest = Manifest.from_dict(header.get("manifest") or {})
    model, dims = store.embedder.model, store.embedder.dimensions
    if (manifest.embedding_model, manifest.dimensions) != (model, dims):
        raise EmbeddingMismatchError(
            f"{str(file)!r} holds vectors of {manifest.embedding_model!r} ({manifest.dimensions} dimensions) but "
            f"{store.name!r} embeds with {model!r} ({dims} dimensions); import with reembed=True "
            "(semantic-store import --reembed) to embed the texts anew",
            operation="import",
        )
    return True


def _parse(store: SemanticStore, item: Any, ours: bool, use_vectors: bool) -> tuple[Record, Any]:
    if isinstance(item, Exception):
        raise ValidationError(f"not valid JSON: {item or 'nested too deep'}", field="line")
    if not isinstance(item, dict):
        raise ValidationError(f"a line must be a JSON object, got {type(item).__name__}", field="line")
    if not ours:  # plain entries in the store's own keys, as ``insert`` takes them
        return _record(store, item), None
    for key in ("id", "text", "timestamp"):
        if key not in item:
            raise ValidationError(f"missing key {key!r}", field=key)
    extra = item.get("extra") or {}
    if not isinstance(extra, dict):
        raise ValidationError("extra must be an object", field="extra")
    entry = {
        **extra,
        "id": item["id"],
        store.text_key: item["text"],
        store.time_key: item["timestamp"],
        "metadata": item.get("metadata") or {},
    }
    record = _record(store, expiring_entry(entry, item))
    vector = item.get("vector")
    if vector is None or not use_vectors:
        return record, None
    return record, _vector(record.id, vector, store.embedder.dimensions)


def _vector(id_: str, value: str | list[float], dims: int | None) -> Any:
    """A vector from base64 float32 (as exported) or a list of numbers, checked."""
    import numpy as np

    raw = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4") if isinstance(value, str) else value
    vector = np.asarray(raw, dtype=np.float32)
    if vector.shape != (dims,) or not np.isfinite(vector).all():
        raise ValidationError(
            f"vector of {id_!r} has shape {vector.shape}, expected ({dims},) finite floats", field="vector"
        )
    return vector


def _record(store: SemanticStore, entry: dict[str, Any]) -> Record:
    return build_record(
        entry,
        text_key=store.text_key,
        time_key=store.time_key,
        max_text_bytes=store.config.max_text_bytes,
        ttl_ms=store.config.ttl_ms,
    )
