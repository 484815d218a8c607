"""Ingest files into a store: text and Markdown files split into passages, JSON Lines entries.

Passage ids are ``<path>:<offset>`` and JSONL entries keep their own ids, so ingesting the
same files again replaces entries instead of duplicating them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ValidationError

if TYPE_CHECKING:
    from ._store import SemanticStore

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PASSAGE_CHARS = 1000

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


def _file_entries(path: Path, text_key: str, time_key: str) -> list[dict[str, Any]]:
    mtime = int(path.stat().st_mtime * 1000)
    if path.suffix.lower() in JSONL_SUFFIXES:
        entries = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValidationError(
                        f"{path}:{number}: not JSON ({exc.msg})", field="entry", operation="ingest"
                    ) from None
                if not isinstance(entry, dict):
                    raise ValidationError(
                        f"{path}:{number}: an entry must be a JSON object", field="entry", operation="ingest"
                    )
                entries.append(entry)
        return entries
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text", field="paths", operation="ingest") from None
    return [
        {
            "id": f"{path}:{offset}",
            text_key: chunk,
            time_key: mtime,
            "metadata": {"path": str(path), "offset": offset, "type": "passage"},
        }
        for offset, chunk in passages(text)
    ]


async def ingest(
    store: SemanticStore,
    paths: Iterable[str | Path],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
) -> dict[str, Any]:
    """Read every file of ``paths`` first (a bad file stores nothing), then insert into ``store``
    in batches of ``batch_size`` and wait until every vector is written or has really failed
    (see ``ingest_entries``; ``progress`` and ``index_progress`` are its bars). Returns the
    counts and timings; raises ValidationError for an unreadable or malformed file.
    """
    started = time.perf_counter()
    files = expand(paths)
    entries = [e for f in files for e in _file_entries(f, store.text_key, store.time_key)]
    return await ingest_entries(
        store,
        entries,
        batch_size=batch_size,
        progress=progress,
        index_progress=index_progress,
        started=started,
        files=len(files),
    )


async def ingest_entries(
    store: SemanticStore,
    entries: list[dict[str, Any]],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
    started: float | None = None,
    files: int | None = None,
) -> dict[str, Any]:
    """Insert ``entries`` into ``store`` in batches of ``batch_size`` (``progress`` is called with ``(done, total)``
    after each), then flush the store (``index_progress`` follows the embedding work) so the
    job ends indexed. ``started`` (a ``perf_counter`` time) and ``files`` count earlier work
    (reading) into the report. Returns counts (``entries``, ``indexed``, ``pending``,
    ``failed``, ``skipped``) and timings.
    """
    started = time.perf_counter() if started is None else started
    ids: list[str] = []
    for start in range(0, len(entries), batch_size):
        batch = entries[start : start + batch_size]
        ids += await store.insert_many(batch)
        if progress:
            progress(len(ids), len(entries))
    await store.flush(progress=index_progress)
    seconds = time.perf_counter() - started
    return {
        "files": files,
        "entries": len(ids),
        **await store.vector_counts(ids),
        "seconds": round(seconds, 2),
        "entries_per_s": round(len(ids) / seconds, 1) if seconds else None,
    }
