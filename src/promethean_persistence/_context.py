"""ContextStore: compile LLM prompt context from several stores (port of the original's
second public class, ``reference/original-behaviour.md`` §7)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._config import StoreConfig
from ._errors import DocumentNotFound, ValidationError
from ._store import SemanticStore

__all__ = ["ContextStore", "format_message", "iso_time"]

StoreFactory = Callable[[str, str, str], Awaitable[Any]]


def iso_time(ms: int | float) -> str:
    """Epoch milliseconds ``ms`` as ISO-8601 UTC with milliseconds, like JavaScript's toISOString()."""
    when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_message(entry: Mapping[str, Any], format_time: Callable[[int], str] | None = None) -> str:
    """``"<userName> said (<time>): <text>"`` for the entry ``entry``; ``thought`` instead of
    ``said`` for thoughts, ``Unknown user`` when it names no user.

    ``format_time`` turns the entry's epoch-ms timestamp into the time shown; it is optional
    (default: ``iso_time``; the original's one-argument callers broke on the newer
    two-argument form). Returns the line; raises KeyError when ``entry`` has no ``timestamp``
    or ``text``.
    """
    meta = entry.get("metadata") or {}
    who = meta.get("userName") or "Unknown user"
    verb = "thought" if meta.get("isThought") else "said"
    return f"{who} {verb} ({(format_time or iso_time)(entry['timestamp'])}): {entry['text']}"


class ContextStore:
    """Named collections (each a SemanticStore) and the context compiled from them.

    >>> context = ContextStore()
    >>> messages = await context.get_or_create_collection("agent_messages")
    >>> await messages.insert({"text": "hi", "metadata": {"userName": "Alice"}})
    >>> await context.compile_context(["hello"])
    [{'role': 'user', 'content': 'Alice said (2026-...Z): hi'}]
    """

    def __init__(
        self,
        format_time: Callable[[int], str] | None = None,
        assistant_name: str = "Duck",
        store_factory: StoreFactory | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> None:
        """``format_time`` renders entry timestamps in messages (default: ``iso_time``);
        ``assistant_name`` is the ``userName`` whose entries are the assistant's own;
        ``store_factory`` opens a collection as ``await store_factory(name, text_key, time_key)``
        (default: ``SemanticStore.create`` with ``config``); ``config`` is the store settings used
        by the default factory, ignored when ``store_factory`` is given.
        """
        self.format_time = format_time or iso_time
        self.assistant_name = assistant_name
        self._factory = store_factory or (
            lambda name, text_key, time_key: SemanticStore.create(name, text_key, time_key, config)
        )
        #: name -> store; always the live mapping (the original's field went stale)
        self.collections: dict[str, Any] = {}

    async def create_collection(self, name: str, text_key: str = "text", time_key: str = "timestamp") -> Any:
        """Open a new collection ``name`` through the store factory and return its store;
        ``text_key`` and ``time_key`` are the entry keys holding the text and the timestamp.

        Raises ValidationError when a collection named ``name`` already exists; the factory's own
        errors (configuration, backend) propagate.
        """
        if name in self.collections:
            raise ValidationError(f"Collection {name!r} already exists", field="name", operation="create_collection")
        store = await self._factory(name, text_key, time_key)
        self.collections[name] = store
        return store

    async def get_or_create_collection(self, name: str, text_key: str = "text", time_key: str = "timestamp") -> Any:
        """The store of collection ``name``, opened with ``create_collection(name, text_key,
        time_key)`` first when there is none yet (``text_key`` and ``time_key`` only count then).
        """
        if name in self.collections:
            return self.collections[name]
        return await self.create_collection(name, text_key, time_key)

    def get_collection(self, name: str) -> Any:
        """The store of collection ``name``; raises DocumentNotFound when there is no such collection."""
        try:
            return self.collections[name]
        except KeyError:
            raise DocumentNotFound(f"Collection {name!r} does not exist", operation="get_collection") from None

    def collection_count(self) -> int:
        """The number of open collections."""
        return len(self.collections)

    def list_collection_names(self) -> list[str]:
        """The names of the open collections, in creation order."""
        return list(self.collections)

    async def get_all_related_documents(
        self, queries: Sequence[str], limit: int = 100, where: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every collection's ``get_most_relevant(queries, limit, where)``, in collection order.

        ``queries`` is one text or several (none: returns ``[]``); ``limit`` caps the entries per
        collection; ``where`` is an optional metadata filter. Returns the entries as one list;
        the stores' errors propagate.
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        if not queries:
            return []
        results = await asyncio.gather(
            *(store.get_most_relevant(list(queries), limit, where) for store in self.collections.values())
        )
        return [entry for per_store in results for entry in per_store]

    async def get_latest_documents(self, limit: int = 100) -> list[dict[str, Any]]:
        """Every collection's newest ``limit`` entries (each block newest first)."""
        results = await asyncio.gather(*(store.get_most_recent(limit) for store in self.collections.values()))
        return [entry for per_store in results for entry in per_store]

    async def compile_context(
        self,
        texts: str | Sequence[str] | None = None,
        recent_limit: int = 10,
        query_limit: int = 5,
        limit: int = 20,
        format_assistant_messages: bool = False,
    ) -> list[dict[str, Any]]:
        """Chat messages, oldest first: recent entries, related entries and related images.

        ``texts`` are the caller's queries (one string, several or none); ``recent_limit`` is how
        many newest entries each collection contributes; ``query_limit`` caps the queries run
        (the caller's texts first, then the newest recent texts); ``limit`` caps the related
        entries per collection and query set, and the result at ``limit * collections * 2``
        messages; ``format_assistant_messages`` formats the assistant's own entries like the
        others' (``format_message``) instead of passing their text through.

        The original's algorithm (reference §7.4) with its bugs fixed:

        * the caller's ``texts`` are always queried; the remaining ``query_limit`` slots go
          to the newest recent entries (the original kept the last ``query_limit`` strings
          of ``texts + recent``, which dropped the caller's own texts);
        * of entries with the same text the newest is kept (the original kept the first
          seen, related before recent before images, whatever its age).

        Roles: the assistant's own entries (``userName == assistant_name``) are
        ``assistant``, or ``system`` when ``isThought``; everyone else is ``user``. Images
        (``metadata.type == "image"``, text = URL) become ``{"role", "content": caption,
        "images": [url]}``. Returns the list of message dicts; the stores' errors propagate.
        """
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        latest = await self.get_latest_documents(recent_limit)
        newest_first = sorted(latest, key=lambda e: e["timestamp"], reverse=True)
        fill = [e["text"] for e in newest_first][: max(query_limit - len(texts), 0)]
        queries = list(dict.fromkeys(t for t in [*texts, *fill] if isinstance(t, str) and t.strip()))
        if queries:
            related, images = await asyncio.gather(
                self.get_all_related_documents(queries, limit),
                self.get_all_related_documents(queries, limit, {"type": "image"}),
            )
        else:
            related, images = [], []
        combined = [e for e in related if (e.get("metadata") or {}).get("type") != "image"] + latest + images
        newest: dict[str, dict[str, Any]] = {}
        for entry in combined:
            if not entry.get("metadata") or not isinstance(entry.get("text"), str):
                continue
            kept = newest.get(entry["text"])
            if kept is None or entry["timestamp"] > kept["timestamp"]:
                newest[entry["text"]] = entry
        ordered = sorted(newest.values(), key=lambda e: e["timestamp"])  # stable
        cap = limit * max(len(self.collections), 1) * 2
        return [self._message(e, format_assistant_messages) for e in ordered[-cap:]]

    def _message(self, entry: Mapping[str, Any], format_assistant_messages: bool) -> dict[str, Any]:
        meta = entry["metadata"]
        is_assistant = meta.get("userName") == self.assistant_name
        role = ("system" if meta.get("isThought") else "assistant") if is_assistant else "user"
        if meta.get("type") == "image":
            caption = meta.get("caption")
            return {"role": role, "content": caption if isinstance(caption, str) else "", "images": [entry["text"]]}
        if is_assistant and not format_assistant_messages:
            return {"role": role, "content": entry["text"]}
        return {"role": role, "content": format_message(entry, self.format_time)}

    def format_message(self, entry: Mapping[str, Any], format_time: Callable[[int], str] | None = None) -> str:
        """The module-level ``format_message(entry, format_time)``, with this store's
        ``format_time`` when ``format_time`` is not given. Returns the line for ``entry``.
        """
        return format_message(entry, format_time or self.format_time)

    async def cleanup(self) -> None:
        """Close every collection's store."""
        stores, self.collections = list(self.collections.values()), {}
        for store in stores:
            await store.cleanup()
