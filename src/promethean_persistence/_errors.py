"""The exception tree. Every error the package raises is a SemanticStoreError::

    SemanticStoreError              .operation .driver .document_id (cause chained)
    ├── ConfigurationError
    │   ├── UnknownDriverError
    │   └── MissingDependencyError  (also ImportError)
    ├── ValidationError             (also ValueError)
    ├── DriverError
    │   ├── BackendUnavailable      connection / timeout: the write queue retries these
    │   └── BackendRejected         bad data, schema, auth: not retried
    ├── VectorWriteError
    ├── EmbeddingError
    ├── EmbeddingMismatchError
    ├── DocumentNotFound            (also KeyError)
    └── MigrationError

Messages never contain secrets: drivers pass URLs through ``redact`` before raising.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._types import Manifest

__all__ = [
    "BackendRejected",
    "BackendUnavailable",
    "ConfigurationError",
    "DocumentNotFound",
    "DriverError",
    "EmbeddingError",
    "EmbeddingMismatchError",
    "MigrationError",
    "MissingDependencyError",
    "SemanticStoreError",
    "UnknownDriverError",
    "ValidationError",
    "VectorWriteError",
]


class SemanticStoreError(Exception):
    """Root of every error raised by promethean-persistence."""

    #: the operation ran out of time: its effect (e.g. a vector write) may still have landed
    timed_out: bool = False

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        driver: str | None = None,
        document_id: str | None = None,
    ) -> None:
        """``message`` is the text of the error; ``operation``, ``driver`` and ``document_id`` say
        where it happened (each optional, shown after the message as ``[operation=... driver=...
        id=...]``).
        """
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.driver = driver
        self.document_id = document_id

    def __str__(self) -> str:
        context = [
            f"{k}={v}"
            for k, v in (
                ("operation", self.operation),
                ("driver", self.driver),
                ("id", self.document_id),
            )
            if v is not None
        ]
        return f"{self.message} [{', '.join(context)}]" if context else self.message

    def __reduce__(self) -> tuple[Callable[..., SemanticStoreError], tuple[Any, ...]]:
        # keep keyword context across pickling (multiprocessing)
        return (_rebuild, (type(self), self.message, self.operation, self.driver, self.document_id))


_E = TypeVar("_E", bound=SemanticStoreError)


def _rebuild(cls: type[_E], message: str, operation: str | None, driver: str | None, document_id: str | None) -> _E:
    return cls(message, operation=operation, driver=driver, document_id=document_id)


class ConfigurationError(SemanticStoreError):
    """A configuration value is missing, malformed or not allowed."""


class UnknownDriverError(ConfigurationError):
    """No driver is registered under the requested name."""


class MissingDependencyError(ConfigurationError, ImportError):
    """A driver's optional package is not installed; the message names the extra."""


class ValidationError(SemanticStoreError, ValueError):
    """An entry, filter or argument was rejected; nothing was written."""

    def __init__(self, message: str, *, field: str | None = None, **context: str | None) -> None:
        """``message`` is the text of the error; ``field`` names the rejected field or argument, if
        any; the other keywords (``operation``, ``driver``, ``document_id``) are as for
        ``SemanticStoreError``.
        """
        super().__init__(message, **context)
        self.field = field


class DriverError(SemanticStoreError):
    """A backend failed to do what was asked."""


class BackendUnavailable(DriverError):
    """The backend could not be reached or timed out; the operation may be retried."""


class BackendRejected(DriverError):
    """The backend refused the request; retrying the same request will not help."""


class VectorWriteError(SemanticStoreError):
    """A vector write failed in strict mode; the primary write was undone."""


class EmbeddingError(SemanticStoreError):
    """The embedding model failed to embed the input."""


class EmbeddingMismatchError(SemanticStoreError):
    """The collection was built with another embedding model or dimension."""

    stored: object = None  #: the collection's Manifest, when the mismatch is with it

    @classmethod
    def between(cls, collection: str, stored: Manifest, model: str, dims: int | None) -> EmbeddingMismatchError:
        """The error for opening collection ``collection``, whose ``stored`` manifest records another
        embedding model or dimension, with model ``model`` of ``dims`` dimensions (None: not
        known yet). Returns the error (with ``stored`` attached) for the caller to raise.
        """
        size = f"{dims} dimensions" if dims is not None else "dimension not known yet"
        error = cls(
            f"Collection {collection!r} was built with embedding model {stored.embedding_model!r} "
            f"({stored.dimensions} dimensions); this store uses {model!r} ({size}). Use the same model, "
            f"or re-embed the collection: semantic-store reembed --model {model}",
            operation="open",
        )
        error.stored = stored
        return error


class DocumentNotFound(SemanticStoreError, KeyError):
    """No entry has the requested id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return SemanticStoreError.__str__(self)


class MigrationError(SemanticStoreError):
    """A migration, validation, export or import could not complete."""


# greedy up to the authority's last "@": a password may hold an unencoded "@"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s?#]*):[^/\s?#]*@")
_QUERY_SECRET = re.compile(r"(?i)((?:password|api[_-]?key|token|secret)=)[^&\s]+")


def redact(text: str, *secrets: str | None) -> str:
    """Hide passwords in URLs, secret query parameters and any of ``secrets`` in ``text``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
