"""promethean-persistence: one semantic store over a primary database and a vector database.

>>> from promethean_persistence import SemanticStore
>>> store = await SemanticStore.create("thoughts", "text", "createdAt")
"""

from __future__ import annotations

from ._backup import export, import_
from ._config import StoreConfig
from ._context import ContextStore, format_message
from ._errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigurationError,
    DocumentNotFound,
    DriverError,
    EmbeddingError,
    EmbeddingMismatchError,
    MigrationError,
    MissingDependencyError,
    SemanticStoreError,
    UnknownDriverError,
    ValidationError,
    VectorWriteError,
)
from ._migrate import migrate, validate
from ._mirror import MirrorStore
from ._named import reembed
from ._registry import register
from ._store import DualStoreManager, SemanticStore, SemanticStoreFactory
from ._workers import run_worker

__version__ = "0.1.0"

__all__ = [
    "BackendRejected",
    "BackendUnavailable",
    "ConfigurationError",
    "ContextStore",
    "DocumentNotFound",
    "DriverError",
    "DualStoreManager",
    "EmbeddingError",
    "EmbeddingMismatchError",
    "MigrationError",
    "MirrorStore",
    "MissingDependencyError",
    "SemanticStore",
    "SemanticStoreError",
    "SemanticStoreFactory",
    "StoreConfig",
    "UnknownDriverError",
    "ValidationError",
    "VectorWriteError",
    "export",
    "format_message",
    "import_",
    "migrate",
    "reembed",
    "register",
    "run_worker",
    "validate",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and _name != "DualStoreManager":
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
