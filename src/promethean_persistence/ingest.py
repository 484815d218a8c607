"""Ingest files into a store: text and Markdown files split into passages, JSON Lines entries.

Ingesting is incremental (like LangChain's indexing API, on every store driver):

* A passage's id is ``<source>:<offset>``. Its source is the file's resolved path relative to
  the declared ``root``, or else its resolved absolute path (POSIX form), so a file named by
  a relative, absolute, ``./`` or symlinked path is one source. Its metadata holds ``path``
  (the source), ``offset``, ``type: "passage"`` and ``hash`` (the hash of its text); its time
  is the file's modification time.
* A JSONL entry keeps its ``id``. One without gets ``content_id`` (``ids="content"``, the
  default), so the same entry ingested twice is stored once; ``ids="random"`` lets the store
  make an id, so every ingest adds it again.
* An entry the store holds with the same id, text and metadata (and time, where a JSONL
  entry gives one; a passage's time is not compared) is left untouched: nothing written or
  embedded. A changed file's new and changed passages are upserted and the passages it no
  longer has are deleted. ``cleanup="full"`` also deletes the passages of files gone from
  the paths ingested (and passages stored by earlier versions, whose ids were
  ``<path as typed>:<offset>``). JSONL entries are never deleted.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._entries import build_record, content_hash, user_metadata
from ._errors import ValidationError

if TYPE_CHECKING:
    from ._store import SemanticStore
    from ._types import Record
    from .drivers.base import Warmable

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PASSAGE_CHARS = 1000
ID_MODES = ("content", "random")
CLEANUP_MODES = ("none", "full")
_SOURCES_PER_QUERY = 200  # keeps each metadata filter's $in list small

Progress = Callable[[int, int], None]


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """The files named in ``paths``, plus the text/Markdown/JSONL files under directories named, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ValidationError(f"No such file or directory: {str(path)!r}", field="paths", operation="ingest")
    return files


def passages(text: str, max_chars: int = PASSAGE_CHARS) -> Iterator[tuple[int, str]]:
    """(offset, passage) pairs of ``text``: paragraphs packed up to ``max_chars``; longer ones are cut."""
    start, buf_start, buf = 0, 0, ""
    for block in text.split("\n\n"):
        offset = start
        start += len(block) + 2
        if not block.strip():
            continue
        if buf and len(buf) + len(block) + 2 > max_chars:
            yield buf_start, buf
            buf = ""
        if not buf:
            buf_start = offset
        buf = f"{buf}\n\n{block}" if buf else block
        while len(buf) > max_chars:
            yield buf_start, buf[:max_chars]
            buf, buf_start = buf[max_chars:], buf_start + max_chars
    if buf.strip():
        yield buf_start, buf


def source_key(path: str | Path, root: str | Path | None = None) -> str:
    """The source of the file ``path`` that its passage ids start with: its resolved path
    relative to ``root`` (a directory, or None), else its resolved absolute path; POSIX form.
    Raises ``ValidationError`` when the file is not under ``root``."""
    resolved = Path(path).resolve()
    if root is None:
        return resolved.as_posix()
    try:
        return resolved.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise ValidationError(
            f"{str(path)!r} is not under the root {str(root)!r}", field="root", operation="ingest"
        ) from None


def _record(entry: Mapping[str, Any], text_key: str, time_key: str) -> Record:
    # the size limit is the store's to check at insert; this is only the entry's shape
    return build_record(entry, text_key=text_key, time_key=time_key, max_text_bytes=sys.maxsize, now=0)


def _gives_time(entry: Mapping[str, Any], time_key: str) -> bool:
    meta = entry.get("metadata")
    return entry.get(time_key) is not None or (isinstance(meta, Mapping) and meta.get("timeStamp") is not None)


def content_id(entry: Mapping[str, Any], text_key: str = "text", time_key: str = "createdAt") -> str:
    """The id ``ids="content"`` gives a JSONL ``entry`` without one: the 32-hex-digit
    BLAKE2b-128 hash of the compact, key-sorted JSON of its ``text``, ``metadata`` (JSON
    form, store-managed keys dropped), ``time`` (epoch ms, null when the entry gives none) and
    ``extra`` (its other top-level fields). ``text_key`` and ``time_key``: the entry keys of
    the text and the time. Raises ``ValidationError`` for a malformed entry."""
    record = _record(entry, text_key, time_key)
    canonical = {
        "text": record.text,
        "metadata": record.metadata,
        "time": record.timestamp if _gives_time(entry, time_key) else None,
        "extra": record.extra,
    }
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(data.encode("utf-8"), digest_size=16).hexdigest()


def _jsonl_lines(path: Path) -> list[str]:
    """The lines of a JSONL file: UTF-8 (JSON's encoding), a leading byte order mark ignored.
    Raises ValidationError for any other encoding, before anything is stored."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        raise ValidationError(
            f"{path}: not UTF-8 text (byte {exc.start}{', UTF-16 it seems' if utf16 else ''}); "
            "JSON Lines files must be UTF-8",
            field="paths",
            operation="ingest",
        ) from None
    return list(io.StringIO(text, newline=None))  # lines as a text file reads them (\n, \r\n, \r)


def _jsonl_entries(path: Path, text_key: str, time_key: str, ids: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(_jsonl_lines(path), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also an int too long to read, or nesting too deep
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "nested too deep"
            raise ValidationError(f"{path}:{number}: not JSON ({why})", field="entry", operation="ingest") from None
        if not isinstance(entry, dict):
            raise ValidationError(f"{path}:{number}: an entry must be a JSON object", field="entry", operation="ingest")
        try:  # checked now, so a bad entry stores nothing
            if entry.get("id") is None and ids == "content":
                entry["id"] = content_id(entry, text_key, time_key)
            else:
                _record(entry, text_key, time_key)
        except ValidationError as exc:
            raise ValidationError(f"{path}:{number}: {exc.message}", field=exc.field, operation="ingest") from None
        entries.append(entry)
    return entries


def _passage_entries(path: Path, key: str, text_key: str, time_key: str) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text", field="paths", operation="ingest") from None
    mtime = int(path.stat().st_mtime * 1000)
    entries = [
        {
            "id": f"{key}:{offset}",
            text_key: chunk,
            time_key: mtime,
            "metadata": {"path": key, "offset": offset, "type": "passage", "hash": content_hash(chunk)},
        }
        for offset, chunk in passages(text)
    ]
    for entry in entries:
        try:
            _record(entry, text_key, time_key)
        except ValidationError as exc:
            raise ValidationError(f"{path}: {exc.message}", field=exc.field, operation="ingest") from None
    return entries


async def ingest(
    store: SemanticStore,
    paths: Iterable[str | Path],
    *,
    root: str | Path | None = None,
    cleanup: str | None = None,
    ids: str = "content",
    batch_size: int = 256,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
) -> dict[str, Any]:
    """Ingest the files of ``paths`` (files and directories) into ``store`` incrementally (see
    the module's docstring): read every file first (a bad file stores nothing), then write
    what changed in batches of ``batch_size`` and wait until every vector is written or has
    really failed (``ingest_entries``; ``progress`` and ``index_progress`` are its bars).

    ``root``: a directory the passage sources are relative to (files must lie under it), or
    None for absolute sources. ``cleanup``: ``"full"`` also deletes the passages of files no
    longer under ``paths``; None or ``"none"`` does not. ``ids``: ``"content"`` or
    ``"random"``, the ids of JSONL entries without one.

    Returns the report of ``ingest_entries``, with ``files`` read. Raises ValidationError for
    a bad option or an unreadable or malformed file."""
    started = time.perf_counter()
    if cleanup not in (None, *CLEANUP_MODES):
        raise ValidationError(f"cleanup must be 'none' or 'full', got {cleanup!r}", field="cleanup")
    if ids not in ID_MODES:
        raise ValidationError(f"ids must be 'content' or 'random', got {ids!r}", field="ids")
    if root is not None and not Path(root).is_dir():
        raise ValidationError(f"root {str(root)!r} is not a directory", field="root", operation="ingest")
    base = None if root is None else Path(root).resolve()
    paths = list(paths)
    seen: set[Path] = set()
    entries: list[dict[str, Any]] = []
    keys: list[str] = []
    for path in expand(paths):
        if path.resolve() in seen:  # one file named twice, or through a symlink
            continue
        seen.add(path.resolve())
        if path.suffix.lower() in JSONL_SUFFIXES:
            entries += _jsonl_entries(path, store.text_key, store.time_key, ids)
        else:
            keys.append(source_key(path, base))
            entries += _passage_entries(path, keys[-1], store.text_key, store.time_key)
    current = {e["id"] for e in entries if e.get("id") is not None}
    delete = await _stale(store, keys, current)
    if cleanup == "full":
        scope = [Path(p).resolve() for p in paths]
        delete += await _gone(store, scope, base, current)
    return await ingest_entries(
        store,
        entries,
        batch_size=batch_size,
        progress=progress,
        index_progress=index_progress,
        started=started,
        files=len(seen),
        skip_unchanged=True,
        delete=delete,
    )


async def _passages_where(store: SemanticStore, where: Mapping[str, Any]) -> list[dict[str, Any]]:
    # every match: no store has more entries than it counts
    limit = max(1, await store.count())
    return await store.get_most_recent(limit, {"type": "passage", **where}, include_empty=True)


async def _stale(store: SemanticStore, keys: Sequence[str], current: set[str]) -> list[str]:
    """Ids of ingested passages of the sources ``keys`` that this job no longer has."""
    stale: list[str] = []
    for start in range(0, len(keys), _SOURCES_PER_QUERY):
        found = await _passages_where(store, {"path": {"$in": list(keys[start : start + _SOURCES_PER_QUERY])}})
        stale += [e["id"] for e in found if "hash" in e["metadata"] and e["id"] not in current]
    return stale


def _location(metadata: Mapping[str, Any], root: Path | None) -> Path | None:
    """The file an ingested passage came from, when it can be told."""
    path = metadata.get("path")
    if not isinstance(path, str) or "offset" not in metadata:
        return None  # not a passage this module wrote
    if "hash" not in metadata:  # written before ingest was incremental: the path as typed
        return Path(path).resolve()
    if Path(path).is_absolute():
        return Path(path)
    return None if root is None else root / path


async def _gone(store: SemanticStore, scope: Sequence[Path], root: Path | None, current: set[str]) -> list[str]:
    """Ids of ingested passages from files under ``scope`` that this job does not have."""
    gone = []
    for entry in await _passages_where(store, {}):
        where = _location(entry["metadata"], root)
        if entry["id"] not in current and where is not None and any(where.is_relative_to(s) for s in scope):
            gone.append(entry["id"])
    return gone


def _unchanged(stored: Mapping[str, Any], entry: Mapping[str, Any], text_key: str, time_key: str) -> bool:
    """Whether writing ``entry`` over ``stored`` would change nothing that reads can see."""
    record = _record(entry, text_key, time_key)
    if record.extra or stored["text"] != record.text or user_metadata(stored) != record.metadata:
        return False  # other top-level fields are not read back: they cannot be compared
    if record.metadata.get("type") == "passage" and "hash" in record.metadata:
        return True  # a passage's time is its file's mtime: touching the file changes no passage
    return not _gives_time(entry, time_key) or stored["timestamp"] == record.timestamp


async def _warm(store: SemanticStore) -> float:
    """Load the store's embedding model now (seconds taken), so write rates leave it out."""
    embedder = getattr(store, "embedder", None)
    if embedder is None or not embedder.capabilities.warm:
        return 0.0
    started = time.perf_counter()
    await cast("Warmable", embedder).warm()
    return time.perf_counter() - started


async def ingest_entries(
    store: SemanticStore,
    entries: list[dict[str, Any]],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
    started: float | None = None,
    files: int | None = None,
    skip_unchanged: bool = False,
    delete: Iterable[str] = (),
) -> dict[str, Any]:
    """Upsert ``entries`` into ``store`` in batches of ``batch_size`` (``progress`` is called
    with ``(done, total)`` after each; of a repeated id, the last entry is written), delete
    the ids of ``delete``, then flush the store (``index_progress`` follows the embedding
    work) so the job ends indexed. ``skip_unchanged``: leave alone an entry the store holds
    with the same text and metadata (and time, where the entry gives one). The embedding
    model is loaded before the first write and timed apart. ``started`` (a ``perf_counter``
    time) and ``files`` count earlier work (reading) into the report.

    Returns a dict: ``files``; ``entries`` (entries given, written or left unchanged);
    ``added``, ``updated`` and ``unchanged`` (distinct ids); ``deleted``; the job's entries
    by vector state (``indexed``, ``pending``, ``failed``, ``skipped``); ``seconds`` (wall
    time without the model load), ``model_load_s`` and ``entries_per_s`` (entries written
    per second). Raises what ``insert_many``, ``delete`` and ``flush`` raise."""
    started = time.perf_counter() if started is None else started
    # ids repeated in the input: the last entry wins (as in insert_many), counted once
    by_id = {e["id"]: e for e in entries if e.get("id") is not None}
    todo = [e for e in entries if e.get("id") is None or by_id[e["id"]] is e]
    counts = dict.fromkeys(("added", "updated", "unchanged", "deleted"), 0)
    ids: list[str] = []
    load, warmed = 0.0, False
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        known = [e["id"] for e in batch if e.get("id") is not None]
        stored = dict(zip(known, await store.get_many(known))) if known else {}
        write = []
        for entry in batch:
            old = stored.get(entry["id"]) if entry.get("id") is not None else None
            if old is not None and skip_unchanged and _unchanged(old, entry, store.text_key, store.time_key):
                counts["unchanged"] += 1
                ids.append(entry["id"])
                continue
            counts["added" if old is None else "updated"] += 1
            write.append(entry)
        if write:
            if not warmed:
                load, warmed = await _warm(store), True
            ids += await store.insert_many(write)
        if progress:
            progress(start + len(batch), len(todo))
    for id_ in dict.fromkeys(delete):
        counts["deleted"] += await store.delete(id_)
    await store.flush(progress=index_progress)
    seconds = time.perf_counter() - started - load
    return {
        "files": files,
        "entries": len(entries),
        **counts,
        **await store.vector_counts(ids),
        "seconds": round(seconds, 2),
        "model_load_s": round(load, 2),
        "entries_per_s": round((counts["added"] + counts["updated"]) / seconds, 1) if seconds > 0 else None,
    }
