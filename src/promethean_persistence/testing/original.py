"""Write data exactly as the original TypeScript ``DualStoreManager`` did (reference §2.3, §5),
into a real MongoDB-protocol server and a real Chroma, so tests can open it with our drivers.

Covers what deployments of the original really hold: its current layout (epoch-ms times,
``vectorWrite*`` keys, Chroma metadata flattened with nested values as JSON text, Chroma's
default ``l2`` space), older documents without the ``vectorWrite*`` keys, ISO-string times
and ``metadata.timeStamp``, duplicate ids (its insert never upserted), failed vector writes
(``vectorWriteSuccess: false``, no Chroma record) and vectors that went missing later.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pymongo
    from chromadb.api.types import PyEmbeddings


def to_chroma_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The original's ``toChromaMetadata`` of ``metadata`` (JSON.stringify has no spaces)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            out[key] = None
        elif isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return {k: v for k, v in out.items() if v is not None}  # Chroma drops nulls itself


class OriginalWriter:
    """The original package's writes, against ``mongo_uri`` and the Chroma at ``chroma_url``.

    ``embed(texts) -> list[list[float]]`` stands in for its Ollama embedding function.
    """

    def __init__(
        self,
        mongo_uri: str,
        chroma_url: str,
        *,
        family: str,
        embed: Callable[[list[str]], PyEmbeddings],
        text_key: str = "text",
        time_key: str = "createdAt",
        chroma_collection: str | None = None,
    ) -> None:
        """``mongo_uri`` and ``chroma_url`` locate the servers; ``family`` is the original's
        collection family (the MongoDB collection); ``embed`` embeds texts for Chroma; ``text_key`` and ``time_key`` are
        the document fields of the text and the timestamp; ``chroma_collection`` the Chroma
        collection (default: ``family``).
        """
        import chromadb
        import pymongo

        self.family, self.text_key, self.time_key = family, text_key, time_key
        self.embed = embed
        self._mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri)
        self.db = self._mongo["database"]  # the original's database name is fixed
        self.docs = self.db[family]
        url = urlsplit(chroma_url)
        assert url.hostname is not None and url.port is not None, chroma_url  # HttpClient needs both
        self._chroma = chromadb.HttpClient(host=url.hostname, port=url.port)
        # getOrCreateCollection({name, embeddingFunction}): no space given, so Chroma's l2
        self.vectors = self._chroma.get_or_create_collection(chroma_collection or family, embedding_function=None)

    def close(self) -> None:
        """Close the MongoDB client."""
        self._mongo.close()

    def alias(self, target: str | None = None, embed: Mapping[str, Any] | None = None) -> None:
        """A ``collection_aliases`` document for this family, pointing at ``target`` with the
        embedding settings ``embed`` (each None: left out).
        """
        doc: dict[str, Any] = {"_id": self.family}
        if target:
            doc["target"] = target
        if embed:
            doc["embed"] = dict(embed)
        self.db["collection_aliases"].replace_one({"_id": self.family}, doc, upsert=True)

    def insert(
        self,
        entry: Mapping[str, Any],
        *,
        vector_ok: bool = True,
        error: str = "ollama: connection refused",
        legacy: bool = False,
        vector: bool = True,
        now_ms: int | None = None,
    ) -> str:
        """``insert({entry})`` of the current version (eventual mode) for ``entry``; returns its id.

        ``vector_ok`` False: the queue rejected the write (no Chroma record, success false; its
        ``error`` is recorded).
        ``legacy``: an older version's document, without the ``vectorWrite*`` keys.
        ``vector`` False: the write succeeded but the Chroma record is gone since.
        ``now_ms``: the write's time (default: now).
        """
        T, K = self.text_key, self.time_key
        E = dict(entry)
        id_: str = E["id"] if E.get("id") is not None else str(uuid.uuid4())
        meta = dict(E.get("metadata") or {})
        raw = E.get(K, meta.get(K, meta.get("timeStamp")))
        now = now_ms if now_ms is not None else int(datetime.now(timezone.utc).timestamp() * 1000)
        epoch = _epoch(raw) if raw is not None else now
        if vector_ok and vector:
            self.vectors.add(
                ids=[id_],
                documents=[E[T]],
                embeddings=self.embed([E[T]]),
                metadatas=[to_chroma_metadata({**meta, K: epoch})],
            )
        doc = {**E, "id": id_, T: E[T], K: epoch if not isinstance(raw, str) or not legacy else raw}
        if legacy:
            doc["metadata"] = meta
        else:
            doc["metadata"] = {
                **meta,
                "vectorWriteSuccess": vector_ok,
                "vectorWriteError": None if vector_ok else error,
                "vectorWriteTimestamp": now if vector_ok else None,
            }
        self.docs.insert_one(doc)  # insertOne: never an upsert, so ids can repeat
        return id_

    def insert_many(self, entries: Sequence[Mapping[str, Any]], **kwargs: Any) -> list[str]:
        """``insert`` each of ``entries`` with the same keyword arguments; returns the ids."""
        return [self.insert(e, **kwargs) for e in entries]

    def raw(self, id_: str) -> list[dict[str, Any]]:
        """Every Mongo document with id ``id_``, oldest first (what the original's get sees first)."""
        return list(self.docs.find({"id": id_}).sort("_id", 1))

    def chroma_record(self, id_: str) -> dict[str, Any] | None:
        """The Chroma record of ``id_`` (id, document, metadata), or None."""
        got = self.vectors.get(ids=[id_], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        documents, metadatas = got["documents"], got["metadatas"]
        assert documents is not None and metadatas is not None  # both are included
        return {"id": got["ids"][0], "document": documents[0], "metadata": metadatas[0]}


def _epoch(value: Any) -> int | float:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return float("nan")  # new Date("garbage").getTime()
    number: int | float = value
    return number
