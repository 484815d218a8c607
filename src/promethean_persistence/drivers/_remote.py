"""Errors of remote vector-store clients (Chroma, Qdrant, Pinecone) as ours: connection
trouble, timeouts, 429 and 5xx are ``BackendUnavailable`` (the write queue retries them),
anything else ``BackendRejected``; messages name the server, never a secret."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._errors import BackendRejected, BackendUnavailable, ValidationError, redact

_TRANSIENT = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "RemoteProtocolError",
    "ReadError",
    "WriteError",
    "NetworkError",
    "TimeoutException",
    "ServerDisconnectedError",
    "ClientConnectorError",
    "ClientOSError",
    "ResponseHandlingException",
    "_InactiveRpcError",
    "PineconeConnectionError",
    "PineconeTimeoutError",
    "RateLimitError",
    "ServiceError",
}
_STATUS = re.compile(r"\b(429|50[234])\b")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: it, or one it was raised from, is about reaching the server."""
    seen: BaseException | None = exc
    while seen is not None:
        if (
            isinstance(seen, (ConnectionError, TimeoutError, OSError))
            or type(seen).__name__ in _TRANSIENT
            or getattr(seen, "status_code", None) in (408, 429, 500, 502, 503, 504)
        ):
            return True
        text = str(seen)
        if "Could not connect" in text or "Connection refused" in text or _STATUS.search(text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@asynccontextmanager
async def mapped(
    where: str, *, driver: str, operation: str, secret: str | None = None, timeout: float | None = None
) -> AsyncIterator[None]:
    """Run the body (bounded by ``timeout`` seconds) with client errors translated.

    ``where`` names the server in messages, ``driver`` and ``operation`` go on the errors
    raised (BackendUnavailable for reaching the server or a timeout, BackendRejected
    otherwise). With a ``secret``, the client's exception is not chained: it may carry the key.
    """
    try:
        async with asyncio.timeout(timeout):
            yield
    except (ValidationError, BackendRejected, BackendUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - every client error becomes ours
        cls = BackendUnavailable if transient(exc) else BackendRejected
        error = cls(
            f"{where}: {operation} failed: {redact(str(exc), secret) or type(exc).__name__}",
            driver=driver,
            operation=operation,
        )
        raise error from (None if secret else exc)
