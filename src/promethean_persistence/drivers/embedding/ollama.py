"""Embeddings from an Ollama server (``OLLAMA_URL``, model ``EMBEDDING_FUNCTION``).

Batches go to ``POST /api/embed`` (Ollama 0.3.4+); a server without that route gets the
older ``POST /api/embeddings``, one text per request (the original package's only mode).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._errors import EmbeddingError
from ._http import HTTPEmbedder, ServerAnswer

if TYPE_CHECKING:
    from ..._config import StoreConfig

DEFAULT_MODEL = "nomic-embed-text"


class OllamaEmbedder(HTTPEmbedder):
    """Embedder on an Ollama server's ``/api/embed``."""

    name: ClassVar[str] = "ollama"
    server: ClassVar[str] = "Ollama"
    # published sizes; anything else is learnt from the first answer
    KNOWN_DIMENSIONS: ClassVar[dict[str, int]] = {
        "nomic-embed-text": 768,
        "mxbai-embed-large": 1024,
        "all-minilm": 384,
        "snowflake-arctic-embed": 1024,
        "bge-m3": 1024,
        "bge-large": 1024,
    }

    def __init__(self, model: str = DEFAULT_MODEL, *, keep_alive: str | None = None, **kwargs: Any) -> None:
        """``model`` is the Ollama model name; ``keep_alive`` how long Ollama keeps it loaded (its
        duration syntax, e.g. ``"5m"``; None: the server's default); the other keywords are
        ``HTTPEmbedder``'s.
        """
        super().__init__(model, **kwargs)
        self.keep_alive = keep_alive
        self.legacy: bool | None = None  #: None until the server showed which route it has

    @classmethod
    def from_config(cls, config: StoreConfig) -> OllamaEmbedder:
        """See ``Embedder.from_config``."""
        o = config.ollama
        return cls(
            config.embedding_function or DEFAULT_MODEL,
            url=o.url,
            timeout=o.timeout,
            batch_size=o.batch_size,
            max_concurrency=o.max_concurrency,
            max_retries=o.max_retries,
            dimensions=o.dimensions,
            keep_alive=o.keep_alive,
        )

    def _batches(self, texts: list[str]) -> list[list[str]]:
        if self.legacy:
            return [[t] for t in texts]
        return super()._batches(texts)

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        if not self.legacy:
            payload: dict[str, Any] = {"model": self.model, "input": batch, "truncate": True}
            if self.keep_alive is not None:
                payload["keep_alive"] = self.keep_alive
            try:
                data = await self._post("/api/embed", payload)
            except ServerAnswer as answer:
                if not self._route_missing(answer):
                    raise self._rejected(answer) from None
                self.legacy = True  # an Ollama older than /api/embed
            else:
                self.legacy = False
                rows = data.get("embeddings") if isinstance(data, dict) else None
                return self._matrix(rows, len(batch), "'embeddings'")
        rows = []
        for text in batch:  # what older servers can do: one text per request
            rows.append(await self._legacy_one(text))
            await asyncio.sleep(0)
        return self._matrix(rows, len(batch), "'embedding'")

    async def _legacy_one(self, text: str) -> Any:
        payload: dict[str, Any] = {"model": self.model, "prompt": text}
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        try:
            data = await self._post("/api/embeddings", payload)
        except ServerAnswer as answer:
            raise self._rejected(answer) from None
        return data.get("embedding") if isinstance(data, dict) else None

    @staticmethod
    def _route_missing(answer: ServerAnswer) -> bool:
        """A 404 that is not about the model: the server has no /api/embed."""
        response = answer.response
        return response.status_code in (404, 405) and "model" not in response.text.lower()

    def _rejected(self, answer: ServerAnswer) -> EmbeddingError:
        response = answer.response
        body = self._body(response)
        if response.status_code == 404 or "not found" in body.lower():
            return EmbeddingError(
                f"Ollama at {self.shown} has no model {self.model!r} ({body}); pull it with: ollama pull {self.model}",
                driver=self.name,
                operation="embed",
            )
        return EmbeddingError(
            f"Ollama at {self.shown} refused to embed with {self.model!r}: {response.status_code} {body}",
            driver=self.name,
            operation="embed",
        )
