"""What the HTTP embedding drivers (Ollama, OpenAI-compatible servers) share.

Texts go out in batches, at most ``max_concurrency`` requests at a time. Connection errors,
timeouts, 5xx and 429 are retried with exponential backoff (a 429 waits what ``Retry-After``
asks, capped); after the last try they raise ``BackendUnavailable`` naming the server, which
the write queue retries later. Every answer is checked (shape, finite numbers, dimension)
and L2-normalised here, whatever the server does. Errors never carry the API key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
import numpy as np

from ..._errors import BackendUnavailable, EmbeddingError, EmbeddingMismatchError, redact
from ..._retry import backoff_ms
from ..._urls import basic_auth_header, without_userinfo
from ..base import Capabilities

MAX_RETRY_WAIT_S = 60.0  #: the longest Retry-After we honour


class ServerAnswer(Exception):
    """A non-retryable HTTP answer, handed to the driver to explain (``_rejected``)."""

    def __init__(self, response: httpx.Response) -> None:
        """``response`` is the server's answer, kept as ``.response``."""
        super().__init__(response.status_code)
        self.response = response


class HTTPEmbedder:
    """Base class: subclasses set ``name``/``server`` and implement ``_embed_batch``."""

    name: ClassVar[str]
    server: ClassVar[str]  #: how errors name the other side ("Ollama", ...)
    KNOWN_DIMENSIONS: ClassVar[dict[str, int]] = {}
    supports_images = False
    normalize = True  #: we always L2-normalise (cosine search needs unit vectors)
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        model: str,
        *,
        url: str,
        timeout: float = 60.0,
        batch_size: int = 64,
        max_concurrency: int = 4,
        max_retries: int = 3,
        dimensions: int | None = None,
        api_key: str | None = None,
    ) -> None:
        """``model`` is the server's model name; ``url`` the server's base URL; ``timeout`` the
        seconds one request may take; ``batch_size`` the texts per request; ``max_concurrency``
        the requests in flight at once; ``max_retries`` how often a request that failed on the
        way (connection, timeout, 429/5xx) is retried; ``dimensions`` the vector size when known
        in advance (else the model's published size, or learnt from the first answer);
        ``api_key`` is sent as a bearer token and never shown in messages. A user and password
        in ``url`` go as HTTP basic auth (unless ``api_key`` is set), never in a logged URL.
        """
        self.model = model
        self.url = without_userinfo(url.rstrip("/"))  #: what httpx sees (and logs)
        self._basic = basic_auth_header(url)
        self.shown = redact(url.rstrip("/"))
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self._api_key = api_key
        known = self.KNOWN_DIMENSIONS.get(model.removesuffix(":latest"))
        self._dimensions: int | None = dimensions or known
        #: where the expected dimension comes from, for error messages
        self._dims_from = "configured" if dimensions else "known for this model" if known else None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0  #: HTTP requests sent (benchmarks and tests read it)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, url={self.shown!r})"

    # -- dimensions --------------------------------------------------------------------

    @property
    def dimensions(self) -> int | None:
        """Known from the config, the model's published size or the first answer; else None."""
        return self._dimensions

    def expect_dimensions(self, dims: int, source: str = "the collection manifest") -> None:
        """Check every answer against ``dims`` (the store calls this with its manifest).

        See ``ProbingEmbedder.expect_dimensions``.
        """
        self._dimensions, self._dims_from = dims, source

    async def probe(self) -> int:
        """Ask the server once, to learn the dimension of this model."""
        await self.embed(["dimension probe"])
        assert self._dimensions is not None
        return self._dimensions

    # -- embedding ----------------------------------------------------------------------

    def _batches(self, texts: list[str]) -> list[list[str]]:
        size = self.batch_size
        return [texts[i : i + size] for i in range(0, len(texts), size)]

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See ``Embedder.embed``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        self._connect()
        parts = await asyncio.gather(*(self._limited(b) for b in self._batches(texts)))
        return self._checked(np.vstack(parts), len(texts))

    async def _limited(self, batch: list[str]) -> np.ndarray:
        assert self._semaphore is not None
        async with self._semaphore:
            return await self._embed_batch(batch)

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _matrix(self, rows: Any, expected: int, what: str) -> np.ndarray:
        """Rows of numbers from a parsed answer, or EmbeddingError saying what was wrong."""
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise self._malformed(f"{what} is not a list of equal-length number lists") from exc
        if matrix.ndim != 2 or matrix.shape[0] != expected or matrix.shape[1] == 0:
            raise self._malformed(f"{what} has shape {matrix.shape}, expected {expected} vectors")
        return matrix

    def _checked(self, matrix: np.ndarray, n: int) -> np.ndarray:
        dims = matrix.shape[1]
        if self._dimensions is None:
            self._dimensions, self._dims_from = dims, "the server's first answer"
        elif dims != self._dimensions:
            raise EmbeddingMismatchError(
                f"{self.server} at {self.shown} returned {dims}-dimensional vectors for {self.model!r}; "
                f"expected {self._dimensions} ({self._dims_from}). Another model answers under this name: "
                "use the model the collection was built with, or re-embed it (semantic-store reembed).",
                driver=self.name,
                operation="embed",
            )
        if not np.isfinite(matrix).all():
            raise self._malformed("vectors contain NaN or infinite values")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (norms == 0).any():
            raise self._malformed("a vector is all zeros")
        normalised: np.ndarray = matrix / norms
        return normalised

    def _malformed(self, detail: str) -> EmbeddingError:
        return EmbeddingError(
            f"{self.server} at {self.shown} sent a malformed answer for {self.model!r}: {detail}",
            driver=self.name,
            operation="embed",
        )

    # -- HTTP ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {}

    def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # clients and semaphores belong to one event loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                headers={**self._basic, **self._headers()},  # an explicit api_key beats the URL's user
                limits=httpx.Limits(
                    max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                ),
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST JSON and return the parsed answer, retrying what is worth retrying."""
        assert self._client is not None
        url = self.url + path
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                self.requests += 1
                response = await self._client.post(url, json=payload)
            except httpx.TimeoutException:
                error = BackendUnavailable(
                    f"{self.server} at {self.shown} did not answer within {self.timeout:g} s",
                    driver=self.name,
                    operation="embed",
                )
            except httpx.HTTPError as exc:
                error = BackendUnavailable(
                    f"Cannot reach {self.server} at {self.shown} "
                    f"({redact(str(exc), self._api_key) or type(exc).__name__}); is it running?",
                    driver=self.name,
                    operation="embed",
                )
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise self._malformed(f"not JSON: {self._body(response, 120)!r}") from None
                if status != 429 and status < 500:
                    raise ServerAnswer(response)
                error = BackendUnavailable(
                    f"{self.server} at {self.shown} answered {status}"
                    + (" (rate limited)" if status == 429 else "")
                    + f": {self._body(response)}",
                    driver=self.name,
                    operation="embed",
                )
                wait = retry_after(response) if status in (429, 503) else None
            if attempt == self.max_retries:
                raise error
            await asyncio.sleep(wait if wait is not None else backoff_ms(attempt + 1, 250, cap_ms=8_000) / 1000)
        raise AssertionError("unreachable")

    def _body(self, response: httpx.Response, limit: int = 300) -> str:
        text = response.text
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:  # {"error": "..."} (Ollama) or {"error": {"message": "..."}} (OpenAI)
            err = data.get("error") if isinstance(data, dict) else None
            if isinstance(err, dict):
                err = err.get("message")
            if isinstance(err, str):
                text = err
        return redact(text.strip(), self._api_key)[:limit]

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        if self._client is not None:
            try:
                await self._client.aclose()
            except RuntimeError:  # its event loop is gone: nothing left to close
                pass
        self._client = self._loop = self._semaphore = None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429/503 ``response`` asks us to wait (``retry-after-ms``, ``Retry-After``
    seconds or date), or None when it says nothing usable.
    """
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return min(float(headers["retry-after-ms"]) / 1000, MAX_RETRY_WAIT_S)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            date = email.utils.parsedate_to_datetime(value)
            seconds = date.timestamp() - time.time()
        return min(max(seconds, 0.0), MAX_RETRY_WAIT_S)
    except (TypeError, ValueError):
        return None
