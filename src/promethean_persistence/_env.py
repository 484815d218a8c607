"""The environment variables a StoreConfig reads (SPEC §5): each names one config key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ENV_SCALARS = {
    "PRIMARY_DRIVER": "primary_driver",
    "VECTOR_DRIVER": "vector_driver",
    "EMBEDDING_DRIVER": "embedding_driver",
    "EMBEDDING_FUNCTION": "embedding_function",
    "AGENT_NAME": "agent_name",
    "SEMANTIC_STORE_HOME": "home",
    "VECTOR_BATCH_SIZE": "vector_batch_size",
    "VECTOR_FLUSH_INTERVAL_MS": "vector_flush_interval_ms",
    "VECTOR_MAX_RETRIES": "vector_max_retries",
    "VECTOR_RETRY_DELAY_MS": "vector_retry_delay_ms",
    "VECTOR_TIMEOUT_MS": "vector_timeout_ms",
    "SEARCH_MODE": "search_mode",
    "RRF_K": "rrf_k",
    "FETCH_K": "fetch_k",
    "LEXICAL_INDEX": "lexical_index",
    "RERANKER": "reranker",
    "TTL_MS": "ttl_ms",
    "VECTOR_WRITES": "vector_writes",
    "METADATA_INDEXES": "metadata_indexes",
    "VECTOR_DTYPE": "vector_dtype",
}
_ENV_SECTIONS = {
    "SQLITE_PATH": ("sqlite", "path"),
    "POSTGRES_HOST": ("postgresql", "host"),
    "POSTGRES_PORT": ("postgresql", "port"),
    "POSTGRES_DATABASE": ("postgresql", "database"),
    "POSTGRES_USERNAME": ("postgresql", "username"),
    "POSTGRES_PASSWORD": ("postgresql", "password"),
    "POSTGRES_DSN": ("postgresql", "dsn"),
    "POSTGRES_TEXT_SEARCH_CONFIG": ("postgresql", "text_search_config"),
    "PGVECTOR_DSN": ("pgvector", "dsn"),
    "MONGODB_URI": ("mongodb", "uri"),
    "MONGODB_DATABASE": ("mongodb", "database"),
    "CHROMA_URL": ("chromadb", "url"),
    "CHROMA_PATH": ("chromadb", "path"),
    "QDRANT_URL": ("qdrant", "url"),
    "QDRANT_API_KEY": ("qdrant", "api_key"),
    "QDRANT_PATH": ("qdrant", "path"),
    "MILVUS_URI": ("milvus", "uri"),
    "MILVUS_TOKEN": ("milvus", "token"),
    "MILVUS_DB_NAME": ("milvus", "db_name"),
    "PINECONE_API_KEY": ("pinecone", "api_key"),
    "PINECONE_ENVIRONMENT": ("pinecone", "environment"),
    "PINECONE_INDEX_NAME": ("pinecone", "index_name"),
    "PINECONE_HOST": ("pinecone", "host"),
    "OLLAMA_URL": ("ollama", "url"),
    "OPENAI_BASE_URL": ("openai", "base_url"),
    "OPENAI_API_KEY": ("openai", "api_key"),
    "EMBEDDING_RUNTIME": ("sentence_transformers", "runtime"),
    "RERANKER_MODEL": ("cross_encoder", "model"),
}
ENV_VARS = (
    *_ENV_SCALARS,
    *_ENV_SECTIONS,
    "CONSISTENCY_MODE",
    "DUAL_WRITE_CONSISTENCY",
    "DUAL_WRITE_ENABLED",
)


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The config keys set by the environment variables in ``env`` (empty values count as unset)."""
    out: dict[str, Any] = {}
    for var, key in _ENV_SCALARS.items():
        if env.get(var):
            out[key] = env[var]
    for var, (section, key) in _ENV_SECTIONS.items():
        if env.get(var):
            out.setdefault(section, {})[key] = env[var]
    consistency = env.get("CONSISTENCY_MODE") or env.get("DUAL_WRITE_CONSISTENCY")
    if consistency:
        out["consistency"] = consistency
    if env.get("DUAL_WRITE_ENABLED"):
        out["dual_write_enabled"] = env["DUAL_WRITE_ENABLED"].strip().lower() != "false"
    return out
