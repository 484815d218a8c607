"""Embeddings from any OpenAI-compatible ``POST /v1/embeddings`` server: OpenAI, vLLM,
LM Studio, llama.cpp's server, Hugging Face TEI. ``openai.base_url`` ends with ``/v1``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._errors import EmbeddingError
from ._http import HTTPEmbedder, ServerAnswer

if TYPE_CHECKING:
    from ..._config import StoreConfig

DEFAULT_MODEL = "text-embedding-3-small"
MAX_INPUTS = 2048  #: OpenAI's limit of inputs per request
MAX_BATCH_CHARS = 600_000  #: keeps a request under OpenAI's 300k tokens at ~2+ chars a token
MAX_CHARS = 24_000  #: longer texts are cut: beyond an 8k-token window, which servers refuse


class OpenAIEmbedder(HTTPEmbedder):
    """Embedder on OpenAI's ``/v1/embeddings``, or any server speaking that API."""

    name: ClassVar[str] = "openai"
    server: ClassVar[str] = "OpenAI-compatible server"
    KNOWN_DIMENSIONS: ClassVar[dict[str, int]] = {
        "text-embedding-3-small": 1536,
        "text-embedding-3-large": 3072,
        "text-embedding-ada-002": 1536,
    }

    def __init__(self, model: str = DEFAULT_MODEL, *, request_dimensions: int | None = None, **kwargs: Any) -> None:
        """``model`` is the model name; ``request_dimensions`` asks the server for vectors of that
        size (text-embedding-3 models) and is also the expected size; the other keywords are
        ``HTTPEmbedder``'s.
        """
        super().__init__(model, dimensions=request_dimensions, **kwargs)
        self.request_dimensions = request_dimensions  #: sent as ``dimensions`` (text-embedding-3 models)

    @classmethod
    def from_config(cls, config: StoreConfig) -> OpenAIEmbedder:
        """See ``Embedder.from_config``."""
        o = config.openai
        return cls(
            config.embedding_function or DEFAULT_MODEL,
            url=o.base_url,
            timeout=o.timeout,
            batch_size=min(o.batch_size, MAX_INPUTS),
            max_concurrency=o.max_concurrency,
            max_retries=o.max_retries,
            request_dimensions=o.dimensions,
            api_key=o.api_key.get_secret_value() if o.api_key else None,
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _batches(self, texts: list[str]) -> list[list[str]]:
        batches: list[list[str]] = [[]]
        chars = 0
        for text in texts:
            text = text[:MAX_CHARS]
            if batches[-1] and (len(batches[-1]) >= self.batch_size or chars + len(text) > MAX_BATCH_CHARS):
                batches.append([])
                chars = 0
            batches[-1].append(text)
            chars += len(text)
        return batches

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self.request_dimensions:
            payload["dimensions"] = self.request_dimensions
        try:
            data = await self._post("/embeddings", payload)
        except ServerAnswer as answer:
            raise self._rejected(answer) from None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self._malformed("no 'data' list")
        items = sorted(items, key=lambda i: i.get("index", 0))  # the order is the index, not the list
        return self._matrix([i.get("embedding") for i in items], len(batch), "'data[].embedding'")

    def _rejected(self, answer: ServerAnswer) -> EmbeddingError:
        response = answer.response
        body = self._body(response)
        status = response.status_code
        if status in (401, 403):
            hint = "set openai.api_key (OPENAI_API_KEY)" if not self._api_key else "check openai.api_key"
            message = f"{self.server} at {self.shown} refused the credentials ({status}): {body}; {hint}"
        elif status == 404:
            message = f"{self.server} at {self.shown} has no model {self.model!r} or no /embeddings route ({body})"
        else:
            message = f"{self.server} at {self.shown} refused to embed with {self.model!r}: {status} {body}"
        return EmbeddingError(message, driver=self.name, operation="embed")
