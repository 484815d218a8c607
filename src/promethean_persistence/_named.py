"""Library calls on a store given by name, opening and closing it around the call (what the
CLI's commands make)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import _registry
from ._config import StoreConfig
from ._errors import EmbeddingMismatchError
from ._store import SemanticStore
from ._types import Manifest

Progress = Callable[[int, int], None]


async def reembed(
    name: str,
    model: str | None = None,
    *,
    embedding_driver: str | None = None,
    text_key: str = "text",
    time_key: str = "createdAt",
    config: StoreConfig | Mapping[str, Any] | None = None,
    batch_size: int = 256,
    keep_old: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Re-embed store ``name`` into ``model`` (default: the configured embedding model),
    opening and closing the store around the call.

    If the configuration already names the new model, the store is opened with the model its
    manifest records, so changing ``EMBEDDING_FUNCTION`` and running this moves the data.
    ``embedding_driver``: the new model's embedding driver (default: the configured one).
    ``text_key``, ``time_key`` and ``config``: as for ``SemanticStore.create``.
    ``batch_size``, ``keep_old`` and ``progress``: as for ``SemanticStore.reembed``.

    Returns ``SemanticStore.reembed``'s report. Raises what ``SemanticStore.create`` and
    ``SemanticStore.reembed`` raise (``ConfigurationError``, ``ValidationError``,
    ``EmbeddingError``, ``EmbeddingMismatchError``, ``BackendUnavailable`` or
    ``BackendRejected``)."""
    resolved = StoreConfig.resolve(config)
    try:
        store = await SemanticStore.create(name, text_key, time_key, resolved)
    except EmbeddingMismatchError as exc:
        if not isinstance(exc.stored, Manifest):
            raise
        built = {"embedding_driver": exc.stored.embedding_driver, "embedding_function": exc.stored.embedding_model}
        store = await SemanticStore.create(name, text_key, time_key, resolved.model_copy(update=built))
    try:
        if model is None and embedding_driver is None:
            model, embedding_driver = resolved.embedding_function, resolved.embedding_driver
            if model is None:  # the configured driver's default model
                probe = _registry.build("embedding", resolved)
                model = probe.model
                await probe.aclose()
        return await store.reembed(
            model, embedding_driver=embedding_driver, batch_size=batch_size, keep_old=keep_old, progress=progress
        )
    finally:
        await store.cleanup()
