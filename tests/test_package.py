"""Public surface, import cost, error hierarchy and secret hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

import promethean_persistence as pp
from promethean_persistence._errors import redact

# The exact public surface: adding or removing an export must be a deliberate change here.
PUBLIC_NAMES = [
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


def test_public_names():
    assert pp.__all__ == PUBLIC_NAMES  # sorted, and exactly these
    for name in PUBLIC_NAMES:
        assert getattr(pp, name) is not None


def test_import_loads_no_backend_client():
    code = (
        "import sys, promethean_persistence, promethean_persistence.drivers, promethean_persistence.cli;"
        "bad = [m for m in ('chromadb','qdrant_client','pinecone','pymongo','psycopg','asyncpg','torch',"
        "'sentence_transformers','sqlite3') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_error_hierarchy():
    assert issubclass(pp.ConfigurationError, pp.SemanticStoreError)
    assert issubclass(pp.UnknownDriverError, pp.ConfigurationError)
    assert issubclass(pp.MissingDependencyError, pp.ConfigurationError) and issubclass(
        pp.MissingDependencyError, ImportError
    )
    assert issubclass(pp.ValidationError, pp.SemanticStoreError) and issubclass(pp.ValidationError, ValueError)
    assert issubclass(pp.BackendUnavailable, pp.DriverError) and issubclass(pp.BackendRejected, pp.DriverError)
    assert issubclass(pp.DriverError, pp.SemanticStoreError)
    for cls in (pp.VectorWriteError, pp.EmbeddingError, pp.EmbeddingMismatchError, pp.MigrationError):
        assert issubclass(cls, pp.SemanticStoreError)
    assert issubclass(pp.DocumentNotFound, KeyError) and issubclass(pp.DocumentNotFound, pp.SemanticStoreError)
    err = pp.DocumentNotFound("No entry 'x'", operation="get", driver="sqlite", document_id="x")
    assert (err.operation, err.driver, err.document_id) == ("get", "sqlite", "x")
    assert str(err) == "No entry 'x' [operation=get, driver=sqlite, id=x]"


@pytest.mark.parametrize(
    "text, secret",
    [
        ("could not connect to postgresql://user:hunter2@db:5432/x", "hunter2"),
        ("mongodb://admin:p%40ss@m:27017/?authSource=admin", "p%40ss"),
        ("GET http://h/?api_key=abc123&x=1", "abc123"),
    ],
)
def test_redact_hides_passwords(text, secret):
    out = redact(text)
    assert secret not in out and "***" in out


def test_redact_hides_given_secrets():
    assert "sk-live" not in redact("key sk-live was refused", "sk-live")
