"""The ``cross-encoder`` reranker: a sentence-transformers CrossEncoder, run in a worker thread.

It reads the query and each candidate together, so it ranks better than the vectors' cosine,
at the cost of one model pass per candidate: the store applies it to the top ``fetch_k`` only.
It needs ``pip install 'promethean-persistence[local]'``; ``[cross_encoder]`` sets the model
(env ``RERANKER_MODEL``), the device and the batch size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import check_installed
from ..._errors import EmbeddingError
from .._threaded import ThreadedModel
from ..embedding.sentence_transformers import MAX_CHARS, sentence_transformers_on

if TYPE_CHECKING:
    from ..._config import StoreConfig


class CrossEncoderReranker(ThreadedModel):
    """Any sentence-transformers CrossEncoder by name or path; ``device`` is cpu, cuda or auto."""

    name: ClassVar[str] = "cross-encoder"
    extra: ClassVar[str] = "local"
    _THREAD = "reranker"
    _RETRY = (EmbeddingError,)  # a later call may load again (a download that failed once)

    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 32) -> None:
        """``model`` is the CrossEncoder's name or the path of a saved one; ``device`` is ``cpu``,
        ``cuda``, ``cuda:1``... or ``auto`` (cuda when available); ``batch_size`` the pairs scored
        at once. The model is loaded on first use, not here."""
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._loading: asyncio.Future[Any] | None = None

    @classmethod
    def from_config(cls, config: StoreConfig) -> CrossEncoderReranker:
        """See ``Reranker.from_config``: ``config``'s ``[cross_encoder]`` section. Raises
        ``MissingDependencyError`` naming the ``local`` extra when sentence-transformers is absent."""
        check_installed("sentence_transformers", "torch", extra=cls.extra, driver=cls.name)
        ce = config.cross_encoder
        return cls(ce.model, device=ce.device, batch_size=ce.batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, device={self.device!r})"

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        st, device = sentence_transformers_on(self.device, extra=self.extra, driver=self.name)
        try:
            model = st.CrossEncoder(self.model, device=device)
        except Exception as exc:
            raise EmbeddingError(
                f"Cannot load reranker model {self.model!r}: {exc}", driver=self.name, operation="rerank"
            ) from exc
        self._model, self.device = model, device
        return model

    async def warm(self) -> None:
        """Load the model now (seconds, once) rather than on the first ``rerank``. Returns None;
        raises ``EmbeddingError`` when it cannot be loaded."""
        await self._ready()

    async def _ready(self) -> Any:
        if self._model is not None:
            return self._model
        return await self._load_in_thread(self._load)

    def _predict(self, query: str, texts: list[str]) -> list[float]:
        query = query[:MAX_CHARS]
        scores = self._model.predict(
            [(query, t[:MAX_CHARS]) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        scores = np.asarray(scores, dtype=np.float64)
        if scores.size != len(texts):  # a classifier of several labels has no single relevance
            raise ValueError(f"expected one score per text (a model with 1 label), got {scores.size // len(texts)}")
        if not np.isfinite(scores).all():
            raise ValueError("the model returned a non-finite score")
        return [float(s) for s in scores.reshape(-1)]

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """See ``Reranker.rerank``: one score of each of ``texts`` for ``query``, aligned with
        ``texts`` (higher is more relevant). Raises ``EmbeddingError`` when the model fails."""
        texts = list(texts)
        if not texts:
            return []
        await self._ready()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, query, texts)
        except Exception as exc:
            raise EmbeddingError(
                f"{self.model!r} failed to rerank {len(texts)} texts: {exc}", driver=self.name, operation="rerank"
            ) from exc

    async def aclose(self) -> None:
        """See ``Reranker.aclose``: drops the model and stops the worker thread."""
        self._stop_thread()
        self._model = None
