"""StoreConfig: explicit settings beat environment variables, which beat defaults (SPEC §5).

Keys are accepted in snake_case, lowerCamelCase and the seed's own names. Secrets are
``SecretStr`` and never printed.

Drivers added by ``register()`` or an entry point get a settings section of their own: the
top-level key named like the driver (``StoreConfig(vector_driver="myvec", myvec={...})``,
``[myvec]`` in TOML) is kept in ``driver_sections`` and read back by the driver with
``config.driver_settings("myvec")``.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import to_jsonable_python

from . import _filters, _registry
from ._env import ENV_VARS, from_env
from ._errors import ConfigurationError, SemanticStoreError
from ._settings import (
    ChromaConfig,
    CrossEncoderConfig,
    HashingConfig,
    LocalVectorConfig,
    MilvusConfig,
    MongoConfig,
    OllamaConfig,
    OpenAIConfig,
    PgvectorConfig,
    PineconeConfig,
    PostgresConfig,
    QdrantConfig,
    SentenceTransformersConfig,
    SQLiteConfig,
    masked,
    secret_key,
    secrets,
)

__all__ = ["ENV_VARS", "StoreConfig"]

# The seed's names that are not plain camelCase spellings of ours.
_ALIASES = {
    "vector_flush_interval": "vector_flush_interval_ms",
    "vector_retry_delay": "vector_retry_delay_ms",
    "vector_timeout": "vector_timeout_ms",
    "consistency_mode": "consistency",
    "dual_write_consistency": "consistency",
    "idle_timeout_millis": "idle_timeout",
    "user": "username",
}


class StoreConfig(BaseModel):
    """Settings of a SemanticStore.

    >>> StoreConfig(primaryDriver="memory", vector_driver="memory").primary_driver
    'memory'
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    primary_driver: str = "sqlite"
    vector_driver: str = "local"
    embedding_driver: str = "local"
    embedding_function: str | None = None  #: model name; each driver has a default
    consistency: Literal["strict", "eventual"] = "eventual"
    dual_write_enabled: bool = True
    supports_images: bool | None = None  #: None = what the embedder declares
    agent_name: str = "duck"
    home: str = "./.semantic-store"
    vector_batch_size: int = Field(64, ge=1, le=10_000)
    vector_flush_interval_ms: int = Field(0, ge=0)
    vector_max_retries: int = Field(3, ge=0)
    vector_retry_delay_ms: int = Field(2000, ge=0)
    vector_timeout_ms: int = Field(10_000, gt=0)
    max_text_bytes: int = Field(1_048_576, ge=1)
    #: entries written without ``expires_at`` expire this long after the write; None: never
    ttl_ms: int | None = Field(None, ge=1)
    #: the ranking ``get_most_relevant`` uses when its ``mode`` is not given
    search_mode: Literal["vector", "lexical", "hybrid"] = "vector"
    rrf_k: int = Field(60, ge=1)  #: reciprocal-rank fusion's damping constant (hybrid)
    fetch_k: int | None = Field(None, ge=1)  #: results each ranking fetches; None: max(4 * limit, 50)
    lexical_index: bool = True  #: keep the full-text index in the primary store (lexical/hybrid modes)
    reranker: str | None = None  #: a reranker driver (e.g. ``cross-encoder``) applied to the top ``fetch_k``
    #: ``inline``: a write embeds in this process; ``worker``: it stays pending in the outbox
    #: for ``semantic-store worker`` processes (this process never embeds for writing)
    vector_writes: Literal["inline", "worker"] = "inline"
    #: metadata keys (dotted for nested ones) the SQLite primary and the local vector driver
    #: index, so selective filters on them use an index instead of a scan
    metadata_indexes: tuple[str, ...] = ()
    #: how the local vector driver stores vectors: ``float16`` halves their bytes (searched as
    #: float32 in memory); other vector drivers ignore it
    vector_dtype: Literal["float32", "float16"] = "float32"

    sqlite: SQLiteConfig = SQLiteConfig()
    postgresql: PostgresConfig = PostgresConfig()
    pgvector: PgvectorConfig = PgvectorConfig()
    mongodb: MongoConfig = MongoConfig()
    chromadb: ChromaConfig = ChromaConfig()
    qdrant: QdrantConfig = QdrantConfig()
    milvus: MilvusConfig = MilvusConfig()
    pinecone: PineconeConfig = PineconeConfig()
    local: LocalVectorConfig = LocalVectorConfig()
    ollama: OllamaConfig = OllamaConfig()
    openai: OpenAIConfig = OpenAIConfig()
    hashing: HashingConfig = HashingConfig()
    cross_encoder: CrossEncoderConfig = CrossEncoderConfig()
    sentence_transformers: SentenceTransformersConfig = SentenceTransformersConfig()
    #: settings sections of third-party drivers (``register()`` / entry points), by driver
    #: name; given as top-level keys (``myvec={...}``), read with ``driver_settings(name)``
    driver_sections: dict[str, Any] = {}

    @field_validator("primary_driver")
    @classmethod
    def _primary(cls, v: str) -> str:
        return _registry.check("primary", v)

    @field_validator("vector_driver")
    @classmethod
    def _vector(cls, v: str) -> str:
        return _registry.check("vector", v)

    @field_validator("embedding_driver")
    @classmethod
    def _embedding(cls, v: str) -> str:
        return _registry.check("embedding", v)

    @field_validator("reranker")
    @classmethod
    def _reranker(cls, v: str | None) -> str | None:
        return None if v is None else _registry.check("reranker", v)

    @field_validator("search_mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("driver_sections", mode="before")
    @classmethod
    def _sections(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError("must map third-party driver names to their settings")
        out = {}
        for name, section in v.items():
            if not (isinstance(name, str) and _registry.third_party(name)):
                names = _registry.third_party_names()
                close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
                hint = close[0] if close else None
                raise ConfigurationError(
                    f"Invalid configuration: unknown key {name!r}: no driver is registered under"
                    f" that name" + (f" (did you mean {hint!r}?)" if hint else ""),
                    operation="config",
                )
            out[name] = _driver_section(name, section)
        return out

    @field_serializer("driver_sections", mode="wrap")
    def _dump_sections(
        self, value: dict[str, Any], handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        out = handler(value)
        # JSON (and so repr, redacted(), model_dump_json): secret-named values masked even
        # where a driver's config_model declared them as plain strings
        return masked(out) if info.mode_is_json() else out

    @field_validator("metadata_indexes", mode="before")
    @classmethod
    def _indexes(cls, v: Any) -> Any:
        keys = [k.strip() for k in v.split(",") if k.strip()] if isinstance(v, str) else v
        if isinstance(keys, (list, tuple)):
            for key in keys:
                try:
                    _filters.parse({key: 1})
                except SemanticStoreError as exc:
                    raise ConfigurationError(
                        f"Invalid configuration: metadata_indexes: {key!r} is not a metadata key ({exc})",
                        operation="config",
                    ) from None
            return tuple(dict.fromkeys(keys))
        return keys

    @field_validator("consistency", "vector_writes", "vector_dtype", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _writes(self) -> StoreConfig:
        if self.vector_writes == "worker" and self.consistency == "strict" and self.dual_write_enabled:
            raise ConfigurationError(  # not a ValueError: pydantic lets it through as it is
                "Invalid configuration: consistency 'strict' and vector_writes 'worker' conflict: "
                "a strict write returns only once its vector is written (or undoes the write), but with "
                "vector_writes 'worker' outbox workers write vectors later, in another process; use "
                "consistency 'eventual' with workers",
                operation="config",
            )
        return self

    @field_validator("agent_name")
    @classmethod
    def _agent(cls, v: str) -> str:
        if not v or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise ValueError("must be a non-empty name without control characters or unpaired surrogates")
        return v

    # -- construction -----------------------------------------------------------------

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**_normalise(data, type(self)))
        except PydanticValidationError as exc:
            raise _config_error(exc, type(self)) from None

    @classmethod
    def resolve(
        cls, config: StoreConfig | Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> StoreConfig:
        """Merge ``config`` over the environment over the defaults.

        ``config`` is a StoreConfig, a mapping of settings (camelCase or snake_case keys) or
        None; ``env`` is the environment to read (default: ``os.environ``). Returns the merged
        settings; raises ConfigurationError for an unknown key or a value that is not allowed.
        """
        merged = _deep_merge(from_env(os.environ if env is None else env), _explicit(config))
        return cls(**merged)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        """Settings from environment variables (SPEC §5) over the defaults.

        ``env`` is the environment to read (default: ``os.environ``). Raises ConfigurationError
        for a value that is not allowed.
        """
        return cls.resolve(None, env)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], profile: str | None = None) -> StoreConfig:
        """Read the TOML file at ``path``; ``[profiles.NAME]`` tables override its top-level keys,
        the one named ``profile`` when given.

        Only the keys the file sets count as explicit, so environment variables still fill
        the rest when the result is passed to ``SemanticStore.create``. Returns the settings;
        raises ConfigurationError when the file cannot be read or parsed, ``profile`` is not in
        it, or a setting is unknown or not allowed.
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"Cannot read config file {str(path)!r}: {exc}") from exc
        profiles = data.pop("profiles", {})
        if profile is not None:
            if profile not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                raise ConfigurationError(f"Profile {profile!r} not found in {str(path)!r}; profiles: {known}")
            data = _deep_merge(_normalise(data, cls), _normalise(profiles[profile], cls))
        return cls(**data)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # third-party sections as their masked JSON; hidden when none
        for name, value in super().__repr_args__():
            if name == "driver_sections":
                if not value:
                    continue
                value = self.model_dump(mode="json", include={"driver_sections"})["driver_sections"]
            yield name, value

    # -- derived values --------------------------------------------------------------

    def driver_settings(self, name: str) -> Any:
        """The settings of driver ``name``, for its ``from_config(config, collection)``.

        A driver added by ``register()`` or an entry point gets the config's section named
        after it (``StoreConfig(myvec={...})``, ``[myvec]`` in TOML): an instance of the
        driver class's ``config_model`` (``ClassVar[type[BaseModel]]``) when it declares
        one, built from ``{}`` when the config has no such section; otherwise a copy of the
        section as a plain dict (``{}`` when absent), in which every string under a key
        named like a secret (password, api_key, token, secret, dsn, credentials, ...) is a
        ``SecretStr``: read it with ``.get_secret_value()``. For a built-in driver name it
        is that driver's own section (``"pinecone"`` -> ``config.pinecone``).
        """
        field = name.replace("-", "_")
        if field in type(self).model_fields and isinstance(getattr(self, field), BaseModel):
            return getattr(self, field)
        if name in self.driver_sections:  # a copy: the config stays as it was built
            return copy.deepcopy(self.driver_sections[name])
        if not _registry.third_party(name):
            raise ConfigurationError(
                f"No settings for driver {name!r}: it is neither built in with a section nor"
                f" registered (register() or an entry point)",
                operation="config",
                driver=name,
            )
        return _driver_section(name, {})

    @property
    def sqlite_path(self) -> str:
        """The SQLite database file: ``sqlite.path`` when set, else ``store.db`` under ``home``."""
        return self.sqlite.path or str(Path(self.home) / "store.db")

    def collection_name(self, name: str) -> str:
        """The physical collection name of collection ``name``: ``{agent_name}_{name}``, as the original."""
        return f"{self.agent_name}_{name}"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret shown as ``'**********'``."""
        return self.model_dump(mode="json")


def _snake(key: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()
    return _ALIASES.get(snake, snake)


def _normalise(data: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """snake_case every key known to ``model`` (recursively), keeping unknown keys for errors;
    on StoreConfig, a top-level key naming a third-party driver moves to ``driver_sections``."""
    out: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    takes_sections = "driver_sections" in model.model_fields
    for key, value in data.items():
        name = _snake(key) if isinstance(key, str) else key
        field = model.model_fields.get(name)
        if field is None:
            if takes_sections and isinstance(key, str) and _registry.third_party(key):
                sections[key] = value
            else:
                out[key] = value
            continue
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, Mapping):
            value = _normalise(value, sub)
        out[name] = value
    if sections:
        given = out.get("driver_sections")
        if isinstance(given, Mapping):
            sections = _deep_merge(given, sections)
        out["driver_sections"] = sections
    return out


# -- third-party driver sections ---------------------------------------------------------


def _driver_section(name: str, value: Any) -> Any:
    """Driver ``name``'s section, validated by its ``config_model`` or kept as a dict."""
    model = _registry.config_model(name)
    if model is not None and isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"Invalid configuration: {name}: the settings of driver {name!r} must be a table"
            f" (a mapping), got {type(value).__name__}",
            operation="config",
            driver=name,
        )
    if model is None:
        return secrets(dict(value))
    try:
        return model.model_validate(_normalise(value, model))
    except PydanticValidationError as exc:
        raise _config_error(exc, model, prefix=name) from None


def _explicit(config: StoreConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, StoreConfig):
        return config.model_dump(exclude_unset=True)
    if isinstance(config, Mapping):
        return _normalise(config, StoreConfig)
    raise ConfigurationError(f"config must be a StoreConfig, a mapping or None, got {type(config).__name__}")


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _config_error(
    exc: PydanticValidationError, model: type[BaseModel], prefix: str | None = None
) -> SemanticStoreError:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SemanticStoreError):
            return cause  # UnknownDriverError from a driver-name validator
        if err["type"] == "extra_forbidden":
            hint = _closest(err["loc"], model)
            problems.append(f"unknown key {loc!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        elif err["type"] == "missing":  # its input is the whole section: not shown
            problems.append(f"{loc}: {err['msg']}")
        else:
            given = masked(_jsonable(err.get("input")))
            shown = "***" if _is_secret(err["loc"]) else repr(given)[:80]
            problems.append(f"{loc}: {err['msg']} (got {shown})")
    return ConfigurationError("Invalid configuration: " + "; ".join(problems), operation="config")


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value, fallback=repr)
    except Exception:  # noqa: BLE001 - only for an error message
        return repr(value)


def _is_secret(loc: tuple[Any, ...]) -> bool:
    return any(str(p) in ("uri", "driver_sections") or secret_key(p) for p in loc)


def _closest(loc: tuple[Any, ...], model: type[BaseModel]) -> str | None:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        sub = field.annotation if field else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    names = list(model.model_fields)
    if "driver_sections" in names:  # top level: our keys and third-party drivers' sections
        names = [n for n in names if n != "driver_sections"] + _registry.third_party_names()
    match = difflib.get_close_matches(_snake(str(loc[-1])), names, n=1, cutoff=0.6)
    return match[0] if match else None
