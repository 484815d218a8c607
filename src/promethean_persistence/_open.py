"""Opening a store: its drivers, the collection a re-embedding or an alias points at, and the
collection manifest that keeps one embedding space per collection (SPEC §6)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from ._config import StoreConfig
from ._entries import text_problem
from ._errors import BackendUnavailable, EmbeddingError, EmbeddingMismatchError, ValidationError
from ._progress import Progress
from ._types import Manifest
from .drivers.base import (
    CollectionSwitch,
    Embedder,
    FieldNames,
    LexicalPrimary,
    PrimaryDriver,
    ProbingEmbedder,
    VectorAliases,
    VectorDriver,
)

if TYPE_CHECKING:
    from ._store import SemanticStore

log = logging.getLogger("promethean_persistence")


def check_names(name: Any, text_key: Any, time_key: Any) -> None:
    """Refuse an empty or non-str store ``name``, ``text_key`` or ``time_key``, one with a
    NUL or an unpaired surrogate (no backend holds them), and equal keys. Any other name is
    a store of its own on every driver (drivers encode what their backend cannot hold).
    Returns None; raises ``ValidationError`` naming the bad field."""
    for field, value in (("name", name), ("text_key", text_key), ("time_key", time_key)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{field} must be a non-empty str, got {value!r}", field=field)
        if text_problem(value) is not None:  # the entry rule: NUL or a lone surrogate
            raise ValidationError(f"{field} {value[:80]!a} holds a NUL or an unpaired surrogate", field=field)
    if text_key == time_key:
        raise ValidationError("text_key and time_key must differ", field="time_key")


def vector_for(vector: VectorDriver, config: StoreConfig, collection: str) -> VectorDriver:
    """A driver like ``vector`` (same class, ``config``'s settings) for the vector
    ``collection``, not opened. Returns it; raises ``ConfigurationError`` for bad settings."""
    return type(vector).for_collection(config, collection)


async def open_drivers(
    primary: PrimaryDriver, vector: VectorDriver, config: StoreConfig, text_key: str, time_key: str, opened: list[Any]
) -> tuple[VectorDriver, Manifest | None]:
    """Open the ``primary``, then the ``vector`` driver (or one like it, built from
    ``config``) for the collection the primary names (a re-embedded one, or the original's
    alias). Drivers that keep the original's field names are told ``text_key`` and
    ``time_key`` first. What was opened is appended to ``opened`` (closed by the caller on
    failure).

    Returns the opened vector driver and the stored manifest (None before the first).
    Raises ``MissingDependencyError``, ``BackendUnavailable`` or ``BackendRejected`` from the
    drivers' ``open``."""
    for driver in (primary, vector):  # drivers that keep the original's field names
        if driver.capabilities.field_names:
            cast(FieldNames, driver).use_keys(text_key, time_key)
    await primary.open()
    opened.append(primary)
    if primary.capabilities.lexical:
        await backfill_lexical(cast(LexicalPrimary, primary))
    manifest = await primary.get_manifest()
    moved_to = manifest.vector_collection if manifest is not None else None
    if moved_to is not None and moved_to != vector.collection:
        vector = vector_for(vector, config, moved_to)  # re-embedded
    elif primary.capabilities.vector_aliases and vector.capabilities.collection_switch:
        # the original's collection_aliases: the vector collection may have another name
        target = await cast(VectorAliases, primary).vector_collection()
        if target:
            cast(CollectionSwitch, vector).use_collection(target)
    await vector.open()
    opened.append(vector)
    return vector, manifest


async def backfill_lexical(primary: LexicalPrimary, batch_size: int = 2000) -> None:
    """Index the records of ``primary`` that its lexical index does not hold yet (a store
    written before the index existed), ``batch_size`` per transaction, logging progress and
    drawing it on a terminal.
    Returns None; raises ``BackendUnavailable`` or ``BackendRejected``."""
    progress = Progress("Building the lexical index", kept="entries indexed")
    async for done, total in primary.lexical_backfill(batch_size):
        if progress.done == 0:
            log.info("%r: building the lexical index of %d entries", primary, total)
        progress(done, total)
    if progress.done:
        log.info("%r: lexical index built (%d entries)", primary, progress.done)


def manifest_of(store: SemanticStore) -> Manifest:
    """The manifest of ``store``'s current embedding space (its embedder's dimension must
    be known). Returns a ``Manifest``; raises nothing."""
    embedder = store.embedder
    assert embedder.dimensions is not None
    return Manifest(
        store.config.embedding_driver,
        embedder.model,
        embedder.dimensions,
        normalized=embedder.normalize,
        vector_collection=store.vector_collection,
    )


async def check_manifest(store: SemanticStore, stored: Manifest | None) -> None:
    """Refuse another embedding space than the collection's; record it on first use.

    ``store``: the store being opened. ``stored``: the manifest read from its primary store
    (None before the first). An embedder of unknown dimension is probed (if it cannot answer
    yet, the manifest is deferred: ``settle_manifest``). Returns None; raises
    ``EmbeddingMismatchError`` when the model or dimension differs from the manifest or from
    vectors already stored, and the primary store's ``BackendUnavailable``/
    ``BackendRejected``."""
    embedder: Embedder = store.embedder
    dims = embedder.dimensions
    if stored is not None:
        if stored.embedding_model != embedder.model or dims not in (None, stored.dimensions):
            raise EmbeddingMismatchError.between(store.name, stored, embedder.model, dims)
        if dims is None:  # an HTTP model of unknown size: its answers must match the manifest
            cast(ProbingEmbedder, embedder).expect_dimensions(stored.dimensions)
        return
    if dims is None:
        try:
            dims = await cast(ProbingEmbedder, embedder).probe()
        except (BackendUnavailable, EmbeddingError) as exc:
            log.warning(
                "%s: cannot ask %r for its dimension yet (%s); the collection manifest is written once it answers",
                store.name,
                embedder,
                exc,
            )
            store._manifest_pending = True
            return
    vector_dims = store.vector.dims  # vectors written before any manifest
    if isinstance(vector_dims, int) and vector_dims != dims:
        raise EmbeddingMismatchError(
            f"The vector collection of {store.name!r} holds {vector_dims}-dimensional vectors; this store's "
            f"embedding model {embedder.model!r} makes {dims}. Use the model that "
            "wrote them, or re-embed the collection (semantic-store reembed).",
            operation="open",
        )
    await store.primary.set_manifest(manifest_of(store))


async def settle_manifest(store: SemanticStore) -> None:
    """Write ``store``'s manifest deferred at open, once the embedder has told its
    dimension (else nothing happens). Returns None; raises what ``check_manifest`` raises."""
    if store._manifest_pending and store.embedder.dimensions is not None:
        store._manifest_pending = False
        await check_manifest(store, await store.primary.get_manifest())
