"""Driver registry: names map to "module:Class" strings, imported only when used.

Third-party packages add drivers through the entry-point groups
``promethean_persistence.primary``, ``promethean_persistence.vector`` and
``promethean_persistence.embedding``; ``register()`` does the same at run time.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

from ._errors import ConfigurationError, UnknownDriverError

if TYPE_CHECKING:
    from ._config import StoreConfig

Kind = Literal["primary", "vector", "embedding", "reranker"]
KINDS: tuple[Kind, ...] = ("primary", "vector", "embedding", "reranker")

_P = "promethean_persistence.drivers"
_BUILTIN: dict[Kind, dict[str, str]] = {
    "primary": {
        "memory": f"{_P}.primary.memory:MemoryPrimary",
        "sqlite": f"{_P}.primary.sqlite:SQLitePrimary",
        "postgresql": f"{_P}.primary.postgres:PostgresPrimary",
        "mongodb": f"{_P}.primary.mongodb:MongoPrimary",
    },
    "vector": {
        "memory": f"{_P}.vector.memory:MemoryVector",
        "local": f"{_P}.vector.local:LocalVector",
        "pgvector": f"{_P}.vector.pgvector:PgvectorVector",
        "chromadb": f"{_P}.vector.chroma:ChromaVector",
        "qdrant": f"{_P}.vector.qdrant:QdrantVector",
        "qdrant-edge": f"{_P}.vector.qdrant_edge:QdrantEdgeVector",
        "milvus": f"{_P}.vector.milvus:MilvusVector",
        "pinecone": f"{_P}.vector.pinecone:PineconeVector",
    },
    "embedding": {
        "hashing": f"{_P}.embedding.hashing:HashingEmbedder",
        "local": f"{_P}.embedding.local:LocalEmbedder",
        "sentence-transformers": f"{_P}.embedding.sentence_transformers:SentenceTransformersEmbedder",
        "ollama": f"{_P}.embedding.ollama:OllamaEmbedder",
        "openai": f"{_P}.embedding.openai:OpenAIEmbedder",
        # wrap an outside Embeddings object; built by the integration, not from config
        "langchain": "promethean_persistence.integrations.langchain:LangChainEmbedder",
    },
    "reranker": {
        "cross-encoder": f"{_P}.rerank.cross_encoder:CrossEncoderReranker",
    },
}
_REGISTERED: dict[Kind, dict[str, str | type]] = {kind: {} for kind in KINDS}


def register(kind: Kind, name: str, target: str | type) -> None:
    """Register a driver class (or a ``"module:Class"`` string) ``target`` under ``name`` for
    ``kind`` (``"primary"``, ``"vector"`` or ``"embedding"``); a later registration of the
    same name replaces it. Returns nothing and raises nothing: the target is imported only
    when the driver is used.
    """
    _REGISTERED[kind][name] = target


def _entry_points(kind: Kind) -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=f"promethean_persistence.{kind}")}


def known(kind: Kind) -> list[str]:
    """Every driver name accepted for ``kind``, sorted."""
    return sorted({*_BUILTIN[kind], *_REGISTERED[kind], *_entry_points(kind)})


def check(kind: Kind, name: str) -> str:
    """Return ``name`` if a ``kind`` driver is registered under it (or it is a
    ``"module:Class"`` string), else raise UnknownDriverError with a hint.
    """
    if name in _BUILTIN[kind] or name in _REGISTERED[kind] or ":" in name:
        return name
    names = known(kind)
    if name in names:
        return name
    hint = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise UnknownDriverError(
        f"Unknown {kind} driver {name!r}{suggestion} Known {kind} drivers: {', '.join(names)}",
        driver=name,
    )


def third_party(name: str) -> list[Kind]:
    """The kinds under which ``name`` is a driver added by ``register()`` or an entry point."""
    return [kind for kind in KINDS if name in _REGISTERED[kind] or name in _entry_points(kind)]


def third_party_names() -> list[str]:
    """Every name a driver was added under by ``register()`` or an entry point, sorted."""
    return sorted({name for kind in KINDS for name in (*_REGISTERED[kind], *_entry_points(kind))})


def config_model(name: str) -> type[Any] | None:
    """The pydantic model a third-party driver declares for its settings section
    (``config_model: ClassVar[type[BaseModel]]``), or None: its section stays a plain dict.

    Loads (imports) the driver classes registered as ``name``; the first kind, in the order
    primary, vector, embedding, whose class declares a model wins.
    """
    from pydantic import BaseModel

    for kind in third_party(name):
        try:
            cls = load(kind, name)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"Cannot load {kind} driver {name!r} to read its settings: {exc}", driver=name
            ) from exc
        model = getattr(cls, "config_model", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    return None


def build(kind: Kind, config: StoreConfig, collection: str | None = None) -> Any:
    """The configured ``kind`` driver, constructed (not opened) from ``config`` for
    ``collection`` (ignored for embedders). Raises UnknownDriverError for an unknown driver
    name, and whatever the driver's ``from_config`` raises (ConfigurationError,
    MissingDependencyError).
    """
    names = {
        "primary": config.primary_driver,
        "vector": config.vector_driver,
        "embedding": config.embedding_driver,
        "reranker": config.reranker,
    }
    name = names[kind]
    if name is None:
        raise ConfigurationError(f"No {kind} driver is configured", operation="config")
    cls = load(kind, name)
    return cls.from_config(config) if kind in ("embedding", "reranker") else cls.from_config(config, collection)


def load(kind: Kind, name: str) -> type[Any]:
    """Return the ``kind`` driver class registered as ``name``; its module is imported only now.

    Raises UnknownDriverError for an unknown name, and ImportError or AttributeError when the
    registered target cannot be imported.
    """
    check(kind, name)
    target = (
        _REGISTERED[kind].get(name)
        or _BUILTIN[kind].get(name)
        or _entry_points(kind).get(name)
        or name  # "package.module:Class" escape hatch
    )
    if isinstance(target, type):
        return target
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls
