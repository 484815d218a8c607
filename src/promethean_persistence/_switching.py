"""Moving a store to another embedding model (SPEC §7 re-embedding): the run itself lives in
``_reembed``; here the store's side of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _registry
from ._config import StoreConfig
from ._entries import check_limit
from ._errors import ValidationError
from ._policy import supports_images
from .outbox.strict import shares_transactions

if TYPE_CHECKING:
    from ._store import SemanticStore
    from .drivers.base import Embedder, PrimaryDriver, VectorDriver
    from .outbox.planner import Planner
    from .outbox.queue import VectorWriteQueue
    from .outbox.worker import OutboxWorker
    from .outbox.writer import OutboxWriter


class EmbeddingSpace:
    """Re-embedding and model switching of ``SemanticStore`` (a mixin of it)."""

    if TYPE_CHECKING:
        config: StoreConfig
        primary: PrimaryDriver
        vector: VectorDriver
        embedder: Embedder
        vector_collection: str | None
        _atomic: bool
        _planner: Planner
        _queue: VectorWriteQueue
        _worker: OutboxWorker
        _writer: OutboxWriter

        def _check_open(self) -> None: ...

    async def reembed(
        self,
        model: str | None = None,
        *,
        embedding_driver: str | None = None,
        embedder: Embedder | None = None,
        batch_size: int = 256,
        keep_old: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Re-embed every entry with another model into a new vector collection, side by
        side (searches keep using the old one meanwhile), then switch over in one manifest
        write. An interrupted run resumes when called again with the same model. Give a
        ``model`` (and ``embedding_driver``, default the current one) or an ``embedder``
        instance.

        ``batch_size``: entries embedded per batch (an int ≥ 1). ``keep_old``: keep the old
        vector collection instead of dropping it after the switch. ``progress``: called with
        ``(embedded, total)`` after each batch.

        Returns a report dict: ``status`` is ``"unchanged"`` (already in that space) or
        ``"switched"`` (with ``from``, ``to``, ``vector_collection``, ``embedded``,
        ``caught_up``, ``requeued``, ``seconds``...). Raises ``ValidationError`` without a
        model, driver or embedder or for a bad ``batch_size``, ``ConfigurationError`` for an
        unknown embedding driver, ``EmbeddingError`` when the model fails (or the current
        dimension is not known yet), ``EmbeddingMismatchError`` when the vector store cannot
        hold the new dimension, and ``BackendUnavailable`` or ``BackendRejected`` when a
        backend fails. Other processes with this store open keep the old model until they
        reopen it."""
        from ._reembed import run

        self._check_open()
        batch_size = check_limit(batch_size, "batch_size")
        driver = embedding_driver or self.config.embedding_driver
        if embedder is None:
            if model is None and embedding_driver is None:
                raise ValidationError("reembed needs a model, an embedding_driver or an embedder", field="model")
            config = StoreConfig(
                **{
                    **self.config.model_dump(exclude_unset=True),
                    "embedding_driver": driver,
                    "embedding_function": model,
                }
            )
            embedder = _registry.build("embedding", config)
        try:
            store = cast("SemanticStore", self)  # this mixin is only ever part of a SemanticStore
            return await run(store, embedder, driver, batch_size=batch_size, keep_old=keep_old, progress=progress)
        except BaseException:
            if embedder is not self.embedder:
                await embedder.aclose()
            raise

    async def switch_embedding(self, embedder: Embedder, vector: VectorDriver, driver: str, collection: str) -> None:
        """Use ``embedder`` (of the embedding driver named ``driver``) and the vector
        ``collection`` opened as ``vector`` from now on; re-embedding calls this once the new
        collection is complete (queued writes land first). Returns None; raises the primary
        store's ``BackendUnavailable``/``BackendRejected`` while settling."""
        await self._writer.settle()
        await self._queue.flush()
        self.embedder = self._queue.embedder = embedder
        self.vector = self._queue.vector = vector
        self.vector_collection = collection
        self.config = self.config.model_copy(update={"embedding_driver": driver, "embedding_function": embedder.model})
        self._planner.images = supports_images(embedder, self.config)
        self._planner.model = embedder.model
        self._atomic = self._atomic and shares_transactions(self.primary, vector)

    def wake_outbox(self) -> None:
        """Have this store's outbox worker look for due work now, not at its next tick.
        Returns None; raises nothing."""
        self._worker.wake()
