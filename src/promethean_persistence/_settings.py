"""The settings sections of the built-in backends, and how secrets inside a third-party
driver's own section are recognised and kept (``SecretStr``, masked when printed)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from ._errors import redact


class _Section(BaseModel):
    """A settings section: a password inside a URL-valued setting (``http://user:secret@host``)
    is hidden from ``repr``/``str`` and JSON dumps (``model_dump(mode="json")``,
    ``model_dump_json``); a Python-mode dump keeps it, so settings can be merged and copied."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, hidden(value)

    @model_serializer(mode="wrap")
    def _hide_passwords(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        out = handler(self)
        return hidden(out) if info.mode_is_json() else out


class SQLiteConfig(_Section):
    """Settings of the ``sqlite`` primary driver (``[sqlite]``)."""

    path: str | None = None  #: defaults to ``<home>/store.db``
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    busy_timeout_ms: int = Field(30_000, ge=0)


class PoolConfig(_Section):
    """Connection-pool settings of the PostgreSQL drivers."""

    min: int = Field(1, ge=0)
    max: int = Field(10, ge=1)
    idle_timeout: float = Field(300.0, ge=0)  #: seconds


class PostgresConfig(_Section):
    """Settings of the ``postgresql`` primary driver (``[postgresql]``)."""

    host: str = "localhost"
    port: int = Field(5432, ge=1, le=65535)
    database: str = "promethean"
    username: str | None = None
    password: SecretStr | None = None
    dsn: SecretStr | None = None
    pool: PoolConfig = PoolConfig()
    #: the text search configuration of the full-text index (``english``, ``simple``, ``german``, ...):
    #: a name, not SQL; changing it re-indexes the collection on the next open
    text_search_config: str = Field("english", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class HNSWConfig(_Section):
    """HNSW index parameters of the ``local`` vector driver."""

    m: int = Field(16, ge=2)
    ef_construction: int = Field(64, ge=4)
    #: None: chosen per query from the limit and the collection's size (recall@10 >= 0.98; ``drivers/vector/_ef.py``)
    ef_search: int | None = Field(None, ge=1)


class PgvectorConfig(_Section):
    """Settings of the ``pgvector`` vector driver (``[pgvector]``); unset values come from ``[postgresql]``."""

    dsn: SecretStr | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    hnsw: HNSWConfig = HNSWConfig()


class MongoConfig(_Section):
    """Settings of the ``mongodb`` primary driver (``[mongodb]``)."""

    uri: SecretStr = SecretStr("mongodb://localhost:27017")
    database: str = "database"
    options: dict[str, Any] = {}
    #: multi-document transactions: None uses them where the server announces a replica set
    transactions: bool | None = None


class ChromaConfig(_Section):
    """Settings of the ``chromadb`` vector driver (``[chromadb]``)."""

    url: str | None = None
    path: str | None = None
    collection: str | None = None
    timeout: float = Field(30.0, gt=0)  #: seconds per call (Chroma's own client has none)
    exact_threshold: int = Field(1000, ge=0)  #: filters matching at most this many: exact search
    embedding_function: Any = None  #: accepted for seed compatibility; we always embed ourselves


class QdrantConfig(_Section):
    """Settings of the ``qdrant`` and ``qdrant-edge`` vector drivers (``[qdrant]``)."""

    url: str | None = None
    path: str | None = None
    api_key: SecretStr | None = None
    collection: str | None = None


class MilvusConfig(_Section):
    """Settings of the ``milvus`` vector driver (``[milvus]``)."""

    #: a server (``http://host:19530``) or a milvus-lite file (a path ending in ``.db``);
    #: None: ``<home>/milvus.db``
    uri: str | None = None
    token: SecretStr | None = None  #: ``user:password`` or an API key
    db_name: str | None = None  #: the Milvus database; None: the server's default
    collection: str | None = None
    index_type: str = "AUTOINDEX"  #: the vector index of a new collection (COSINE metric)
    index_params: dict[str, Any] = {}  #: its build parameters (``{"M": 16, "efConstruction": 200}``)
    search_params: dict[str, Any] = {}  #: its search parameters (``{"ef": 64}``)
    timeout: float = Field(30.0, gt=0)  #: seconds per call


class PineconeConfig(_Section):
    """Settings of the ``pinecone`` vector driver (``[pinecone]``)."""

    api_key: SecretStr | None = None
    environment: str | None = None
    index_name: str | None = None
    host: str | None = None
    namespace: str | None = None
    batch_size: int = Field(100, ge=1, le=1000)


class LocalVectorConfig(_Section):
    """Settings of the ``local`` vector driver (``[local]``)."""

    path: str | None = None  #: defaults to the SQLite file at ``<home>/store.db``
    hnsw: HNSWConfig = HNSWConfig(ef_construction=100)
    exact_threshold: int = Field(5_000, ge=0)  #: collections up to this size are searched exactly


class _HTTPEmbedding(_Section):
    timeout: float = Field(60.0, gt=0)  #: seconds per request
    batch_size: int = Field(64, ge=1)  #: texts per request
    max_concurrency: int = Field(4, ge=1)  #: requests in flight at once
    max_retries: int = Field(3, ge=0)  #: on connection errors, timeouts, 429 and 5xx


class OllamaConfig(_HTTPEmbedding):
    """Settings of the ``ollama`` embedder (``[ollama]``)."""

    url: str = "http://localhost:11434"
    dimensions: int | None = Field(None, ge=1)  #: expected size, for models we do not know
    keep_alive: str | None = None  #: how long Ollama keeps the model loaded ("5m", "-1")


class OpenAIConfig(_HTTPEmbedding):
    """Settings of the ``openai`` embedder (``[openai]``)."""

    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    dimensions: int | None = Field(None, ge=1)  #: requested size (text-embedding-3 models)
    batch_size: int = Field(256, ge=1, le=2048)


class SentenceTransformersConfig(_Section):
    """Settings of the ``local``/``sentence-transformers`` embedders (``[sentence_transformers]``)."""

    device: str = "auto"  #: cpu, cuda, cuda:1, ... or auto (cuda when available)
    #: the ``local`` model's runtime: onnx (CPU), torch, or auto (onnx unless CUDA is asked for or present)
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    batch_size: int = Field(64, ge=1)
    normalize: bool = True


class CrossEncoderConfig(_Section):
    """Settings of the ``cross-encoder`` reranker (``[cross_encoder]``)."""

    #: a sentence-transformers CrossEncoder: a model name or the path of a saved one
    model: str = "cross-encoder/ms-marco-MiniLM-L6-v2"
    device: str = "auto"  #: cpu, cuda, cuda:1, ... or auto (cuda when available)
    batch_size: int = Field(32, ge=1)


class HashingConfig(_Section):
    """Settings of the ``hashing`` test embedder (``[hashing]``)."""

    dimensions: int = Field(256, ge=8, le=65536)


# -- secrets in third-party driver sections ---------------------------------------------

_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "secrets", "token", "apikey", "dsn", "credential", "credentials"}
)
_KEY_KINDS = frozenset({"api", "access", "private", "secret", "signing", "encryption", "master", "client"})


def secret_key(key: Any) -> bool:
    """Whether the settings ``key`` names a secret: password, api_key/apiKey, auth_token, dsn, ..."""
    if not isinstance(key, str):
        return False
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()
    words = [w for w in re.split(r"[_\-\s.]+", snake) if w]
    return any(w in _SECRET_WORDS for w in words) or any(
        a in _KEY_KINDS and b == "key" for a, b in zip(words, words[1:], strict=False)
    )


def secrets(value: Any, secret: bool = False) -> Any:
    """``value`` with every string under a secret-named key, at any depth, as a SecretStr;
    ``secret`` says ``value`` itself sits under such a key.
    """
    if isinstance(value, Mapping):
        return {k: secrets(v, secret or secret_key(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [secrets(v, secret) for v in value]
    return SecretStr(value) if secret and isinstance(value, str) else value


def masked(value: Any, secret: bool = False) -> Any:
    """A JSON-ready ``value`` with every non-null value under a secret-named key masked and
    every password inside a URL hidden; ``secret`` says ``value`` itself sits under such a key.
    """
    if isinstance(value, Mapping):
        return {k: masked(v, secret or secret_key(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, secret) for v in value]
    return "**********" if secret and value is not None else hidden(value)


def hidden(value: Any) -> Any:
    """``value`` with the password of every URL in its strings (in mappings and lists too)
    shown as ``***``, and secret query parameters likewise (``_errors.redact``). Returns the
    new value; other values come back as they are. Raises nothing."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hidden(v) for v in value]
    return value
