"""What every vector write shares (the queue, the strict path, the copier, re-embedding):
embedding records, the metadata a vector is stored with (its fingerprint), the upsert call."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from .._entries import fingerprint
from .._telemetry import traced_embed, traced_upsert
from .._types import FINGERPRINT_KEY, Record
from ..drivers.base import DocumentVector, Embedder, ImageEmbedder, VectorDriver


@traced_embed("document")
async def embed_records(embedder: Embedder, records: list[Record], *, images: bool) -> Any:
    """One vector per record of ``records``, from ``embedder``: the texts through
    ``embed``, and with ``images`` the ``metadata.type == "image"`` ones (their text is a
    path or URL) through ``embed_images``. Returns the vectors in order; raises the
    embedder's errors (``EmbeddingError``, ``BackendUnavailable``...)."""
    if not images:
        return await embedder.embed([r.text for r in records])
    is_image = [r.metadata.get("type") == "image" for r in records]
    texts = [r.text for r, img in zip(records, is_image) if not img]
    paths = [r.text for r, img in zip(records, is_image) if img]
    text_vectors = iter(await embedder.embed(texts) if texts else [])
    image_vectors = iter(await cast(ImageEmbedder, embedder).embed_images(paths) if paths else [])
    return [next(image_vectors) if img else next(text_vectors) for img in is_image]


def vector_metadata(record: Record, model: str | None) -> dict[str, Any]:
    """The metadata a vector is stored with: ``record``'s, plus the fingerprint of what was
    embedded by ``model`` (from the text itself, which may have changed under a stale
    ``content_hash``). Returns a new dict; raises nothing."""
    return {**record.metadata, FINGERPRINT_KEY: fingerprint(record.text, model)}


@traced_upsert
async def upsert_records(vector: VectorDriver, records: list[Record], vectors: Any, model: str | None) -> None:
    """Upsert the vectors of ``records`` into ``vector``: ``vectors`` aligned with them
    (None: metadata only), metadata fingerprinted with ``model``, and the text and time for
    a driver that keeps them. Returns None; raises what ``VectorDriver.upsert`` raises."""
    ids, metadata = [r.id for r in records], [vector_metadata(r, model) for r in records]
    if vector.capabilities.stores_documents:  # e.g. Chroma keeps the text too
        await cast(DocumentVector, vector).upsert(
            ids, vectors, metadata, documents=[r.text for r in records], timestamps=[r.timestamp for r in records]
        )
    else:
        await vector.upsert(ids, vectors, metadata)


def consume(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of ``future``, a background job's, so asyncio does not report
    it as lost (a done-callback). Returns None; raises nothing."""
    if not future.cancelled():
        future.exception()


def describe_error(error: BaseException) -> str:
    """The message the outbox records for ``error``: its text (or its class name), at most
    2,000 characters. Raises nothing."""
    text = str(error) or type(error).__name__
    return text[:2000]
