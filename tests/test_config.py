"""StoreConfig (SPEC §5): key spellings, env precedence, TOML profiles, secrets, errors."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, SecretStr

from promethean_persistence import (
    ConfigurationError,
    MissingDependencyError,
    SemanticStore,
    StoreConfig,
    UnknownDriverError,
    _registry,
    register,
)
from promethean_persistence._deps import require
from promethean_persistence.drivers.vector.memory import MemoryVector
from promethean_persistence.testing.engines import _free_port


def test_defaults_follow_the_spec():
    c = StoreConfig.resolve(None, env={})
    assert (c.primary_driver, c.vector_driver, c.embedding_driver) == ("sqlite", "local", "local")
    assert (c.consistency, c.dual_write_enabled, c.agent_name) == ("eventual", True, "duck")
    assert (c.vector_batch_size, c.vector_flush_interval_ms, c.vector_max_retries) == (64, 0, 3)
    assert (c.vector_retry_delay_ms, c.vector_timeout_ms) == (2000, 10000)
    assert c.sqlite_path.endswith(".semantic-store/store.db")
    assert c.mongodb.uri.get_secret_value() == "mongodb://localhost:27017" and c.mongodb.database == "database"
    assert (c.postgresql.host, c.postgresql.port) == ("localhost", 5432)
    assert c.ollama.url == "http://localhost:11434"
    assert c.collection_name("thoughts") == "duck_thoughts"


def test_camel_snake_and_seed_spellings_are_equal():
    camel = StoreConfig(
        primaryDriver="memory",
        vectorDriver="memory",
        dualWriteEnabled=False,
        vectorBatchSize=10,
        vectorFlushInterval=1000,
        vectorMaxRetries=5,
        supportsImages=True,
        postgresql={"host": "db", "port": 5433, "username": "u", "password": "pw", "pool": {"idleTimeoutMillis": 30}},
        pinecone={"apiKey": "k", "indexName": "idx", "environment": "us-west1-gcp"},
    )
    snake = StoreConfig(
        primary_driver="memory",
        vector_driver="memory",
        dual_write_enabled=False,
        vector_batch_size=10,
        vector_flush_interval_ms=1000,
        vector_max_retries=5,
        supports_images=True,
        postgresql={"host": "db", "port": 5433, "username": "u", "password": "pw", "pool": {"idle_timeout": 30}},
        pinecone={"api_key": "k", "index_name": "idx", "environment": "us-west1-gcp"},
    )
    assert camel == snake
    assert camel.vector_flush_interval_ms == 1000 and camel.postgresql.pool.idle_timeout == 30


def test_environment_variables(monkeypatch):
    env = {
        "PRIMARY_DRIVER": "memory",
        "VECTOR_DRIVER": "memory",
        "EMBEDDING_DRIVER": "hashing",
        "EMBEDDING_FUNCTION": "nomic-embed-text",
        "DUAL_WRITE_CONSISTENCY": "strict",
        "DUAL_WRITE_ENABLED": "FALSE",
        "AGENT_NAME": "bot",
        "VECTOR_BATCH_SIZE": "8",
        "POSTGRES_HOST": "pg",
        "POSTGRES_PORT": "6543",
        "POSTGRES_PASSWORD": "s3cret",
        "MONGODB_URI": "mongodb://m:27017",
        "CHROMA_URL": "http://c:8000",
        "SQLITE_PATH": "/tmp/x.db",
        "PINECONE_API_KEY": "pk",
        "OLLAMA_URL": "http://o:11434",
        "SEMANTIC_STORE_HOME": "/tmp/h",
    }
    c = StoreConfig.resolve(None, env=env)
    assert (c.primary_driver, c.vector_driver, c.embedding_driver) == ("memory", "memory", "hashing")
    assert (c.consistency, c.dual_write_enabled, c.agent_name, c.vector_batch_size) == ("strict", False, "bot", 8)
    assert (c.postgresql.host, c.postgresql.port) == ("pg", 6543)
    assert c.postgresql.password.get_secret_value() == "s3cret"
    assert c.chromadb.url == "http://c:8000" and c.sqlite_path == "/tmp/x.db" and c.home == "/tmp/h"
    assert (
        StoreConfig.resolve(None, env={"CONSISTENCY_MODE": "strict", "DUAL_WRITE_CONSISTENCY": "eventual"}).consistency
        == "strict"
    )
    assert StoreConfig.resolve(None, env={"DUAL_WRITE_ENABLED": "no"}).dual_write_enabled is True  # only "false"


def test_explicit_config_beats_env():
    env = {
        "PRIMARY_DRIVER": "memory",
        "CONSISTENCY_MODE": "strict",
        "POSTGRES_HOST": "envhost",
        "POSTGRES_PORT": "1111",
    }
    c = StoreConfig.resolve({"consistency": "eventual", "postgresql": {"port": 2222}}, env=env)
    assert c.consistency == "eventual" and c.primary_driver == "memory"
    assert (c.postgresql.host, c.postgresql.port) == ("envhost", 2222)  # sections merge key by key
    c2 = StoreConfig.resolve(StoreConfig(dual_write_enabled=True), env={"DUAL_WRITE_ENABLED": "false"})
    assert c2.dual_write_enabled is True


def test_from_file_with_profiles(tmp_path, monkeypatch):
    path = tmp_path / "stores.toml"
    path.write_text(
        """
primaryDriver = "memory"
vectorDriver = "memory"
embedding_driver = "hashing"

[profiles.staging]
consistency = "strict"
[profiles.staging.postgresql]
host = "staging-db"

[profiles.production]
primary_driver = "sqlite"
vector_batch_size = 128
"""
    )
    base = StoreConfig.from_file(path)
    assert base.primary_driver == "memory" and base.consistency == "eventual"
    staging = StoreConfig.from_file(path, "staging")
    assert (
        staging.consistency == "strict"
        and staging.postgresql.host == "staging-db"
        and staging.vector_driver == "memory"
    )
    prod = StoreConfig.from_file(path, "production")
    assert prod.primary_driver == "sqlite" and prod.vector_batch_size == 128
    with pytest.raises(ConfigurationError, match="staging, production|production, staging"):
        StoreConfig.from_file(path, "nope")
    with pytest.raises(ConfigurationError):
        StoreConfig.from_file(tmp_path / "missing.toml")
    # keys the file does not set still come from the environment
    resolved = StoreConfig.resolve(staging, env={"AGENT_NAME": "fromenv", "CONSISTENCY_MODE": "eventual"})
    assert resolved.agent_name == "fromenv" and resolved.consistency == "strict"


def test_secrets_are_never_printed():
    c = StoreConfig(
        postgresql={"password": "hunter2", "dsn": "postgresql://u:hunter2@h/db"},
        pinecone={"api_key": "pc-key-123"},
        qdrant={"apiKey": "qd-key"},
        openai={"api_key": "sk-abc"},
    )
    for text in (repr(c), str(c), str(c.redacted()), c.model_dump_json()):
        for secret in ("hunter2", "pc-key-123", "qd-key", "sk-abc"):
            assert secret not in text
    with pytest.raises(ConfigurationError) as info:
        StoreConfig(postgresql={"password": ["hunter2-in-a-list"]})
    assert "hunter2" not in str(info.value) and "postgresql.password" in str(info.value)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"consistency": "sometimes"}, "consistency"),
        ({"vector_batch_size": 0}, "vector_batch_size"),
        ({"vectorTimeoutMs": -1}, "vector_timeout_ms"),
        ({"vector_batch_size": "many"}, "vector_batch_size"),
        ({"postgresql": {"port": 70000}}, "postgresql.port"),
        ({"primary_drivr": "memory"}, "primary_driver"),
        ({"postgresql": {"hots": "x"}}, "host"),
        ({"agent_name": ""}, "agent_name"),
    ],
)
def test_invalid_values_name_the_key(bad, needle):
    with pytest.raises(ConfigurationError) as info:
        StoreConfig(**bad)
    assert needle in str(info.value)


def test_invalid_consistency_lists_accepted_values():
    with pytest.raises(ConfigurationError) as info:
        StoreConfig(consistency="sometimes")
    assert "strict" in str(info.value) and "eventual" in str(info.value)


def test_invalid_env_value_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="vector_batch_size"):
        StoreConfig.resolve(None, env={"VECTOR_BATCH_SIZE": "lots"})


@pytest.mark.parametrize(
    "kind, name, hint",
    [
        ("primary_driver", "sqlit", "sqlite"),
        ("vector_driver", "memroy", "memory"),
        ("embedding_driver", "hashin", "hashing"),
    ],
)
def test_unknown_driver_suggests_the_closest(kind, name, hint):
    with pytest.raises(UnknownDriverError) as info:
        StoreConfig(**{kind: name})
    assert f"did you mean {hint!r}" in str(info.value)
    assert isinstance(info.value, ConfigurationError)


async def test_bad_config_stores_nothing(tmp_path):
    with pytest.raises(UnknownDriverError):
        await SemanticStore.create(
            "t", config={"primaryDriver": "sqlite", "vectorDriver": "pineapple", "home": str(tmp_path)}
        )
    with pytest.raises(ConfigurationError):
        await SemanticStore.create(
            "t", config={"primaryDriver": "sqlite", "vectorBatchSize": -5, "home": str(tmp_path)}
        )
    assert not (tmp_path / "store.db").exists()


def test_missing_dependency_names_the_extra():
    with pytest.raises(MissingDependencyError) as info:
        require("definitely_not_installed_pkg", extra="qdrant", driver="qdrant")
    assert "pip install 'promethean-persistence[qdrant]'" in str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ConfigurationError)


def test_config_type_is_checked():
    with pytest.raises(ConfigurationError):
        StoreConfig.resolve(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ollama", "openai"])
async def test_unreachable_embedding_server_defers_the_manifest_not_the_open(tmp_path, name):
    """An embedding server that is down does not stop a store from opening: writes stay in
    the outbox (eventual mode) and the error names the server's URL."""
    port = _free_port()
    config = {
        "primaryDriver": "sqlite",
        "vectorDriver": "memory",
        "embeddingDriver": name,
        "embeddingFunction": "mystery-model",
        "home": str(tmp_path),
        "vectorMaxRetries": 0,
        "ollama": {"url": f"http://127.0.0.1:{port}", "maxRetries": 0},
        "openai": {"baseUrl": f"http://127.0.0.1:{port}/v1", "maxRetries": 0},
    }
    async with await SemanticStore.create("t", config=config) as store:
        assert store.embedder.dimensions is None
        id_ = await store.insert({"text": "kept while the server is down"})
        entry = await store.get(id_)
        assert entry["metadata"]["vectorStatus"] == "failed"
        assert f"127.0.0.1:{port}" in entry["metadata"]["vectorWriteError"]
        assert await store.primary.get_manifest() is None  # nothing known to record yet


# -- settings sections of third-party drivers ---------------------------------------------


class TinyVector(MemoryVector):
    """A third-party vector driver that keeps the settings it was built with."""

    name: ClassVar[str] = "tinyvec"

    @classmethod
    def from_config(cls, config, collection):
        driver = cls(collection)
        driver.settings = config.driver_settings("tinyvec")
        return driver


class TypedSettings(BaseModel):
    url: str
    api_key: SecretStr | None = None
    token: str | None = None  # a plain str on purpose: StoreConfig must still mask it
    batch_size: int = 16


class TypedVector(TinyVector):
    name: ClassVar[str] = "typedvec"
    config_model: ClassVar[type[BaseModel]] = TypedSettings

    @classmethod
    def from_config(cls, config, collection):
        driver = cls(collection)
        driver.settings = config.driver_settings("typedvec")
        return driver


@pytest.fixture
def third_party():
    """tinyvec (settings kept as a dict) and typedvec (a config_model), added by register()."""
    register("vector", "tinyvec", TinyVector)
    register("vector", "typedvec", TypedVector)
    yield
    for name in ("tinyvec", "typedvec"):
        _registry._REGISTERED["vector"].pop(name, None)


def test_registered_driver_gets_its_own_section(third_party):
    c = StoreConfig(vector_driver="tinyvec", tinyvec={"url": "http://v:1", "shards": 3, "nested": {"k": [1, 2]}})
    driver = _registry.build("vector", c, "coll")
    assert isinstance(driver, TinyVector) and driver.collection == "coll"
    assert driver.settings == {"url": "http://v:1", "shards": 3, "nested": {"k": [1, 2]}}
    driver.settings["url"] = "changed"  # a copy: the frozen config is untouched
    assert c.driver_settings("tinyvec")["url"] == "http://v:1"
    # absent sections: {} for a dict driver; built-in names give their own section
    assert StoreConfig().driver_settings("tinyvec") == {}
    assert StoreConfig(pinecone={"namespace": "ns"}).driver_settings("pinecone").namespace == "ns"
    with pytest.raises(ConfigurationError, match="nodriver"):
        StoreConfig().driver_settings("nodriver")
    # the section survives resolve() (explicit over env) and round-trips through model_dump
    assert StoreConfig.resolve(c, env={"AGENT_NAME": "x"}).driver_settings("tinyvec")["shards"] == 3
    assert StoreConfig(**c.model_dump()) == c


def test_registered_driver_config_model_validates_its_section(third_party):
    c = StoreConfig(vector_driver="typedvec", typedvec={"url": "http://t", "apiKey": "k1", "batchSize": 4})
    settings = _registry.build("vector", c, "coll").settings
    assert isinstance(settings, TypedSettings)
    assert (settings.url, settings.batch_size, settings.api_key.get_secret_value()) == ("http://t", 4, "k1")
    with pytest.raises(ConfigurationError, match=r"typedvec\.batch_size") as info:
        StoreConfig(typedvec={"url": "u", "batch_size": "many"})
    assert "many" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"typedvec\.url"):
        StoreConfig().driver_settings("typedvec")  # no section, and the model needs a url
    with pytest.raises(ConfigurationError, match="typedvec"):
        StoreConfig(typedvec="http://t")  # a section is a table


def test_registered_driver_section_from_toml_profiles(tmp_path, third_party):
    path = tmp_path / "stores.toml"
    path.write_text(
        """
vectorDriver = "tinyvec"
[tinyvec]
url = "http://base"
shards = 1

[profiles.prod.tinyvec]
shards = 8
[profiles.prod.typedvec]
url = "http://typed"
"""
    )
    assert StoreConfig.from_file(path).driver_settings("tinyvec") == {"url": "http://base", "shards": 1}
    prod = StoreConfig.from_file(path, "prod")
    assert prod.vector_driver == "tinyvec"
    assert prod.driver_settings("tinyvec") == {"url": "http://base", "shards": 8}  # merged key by key
    assert prod.driver_settings("typedvec").url == "http://typed"


def test_unknown_key_that_is_no_driver_is_still_refused(third_party):
    with pytest.raises(ConfigurationError, match=r"unknown key 'tinyvek' \(did you mean 'tinyvec'\?\)"):
        StoreConfig(tinyvek={"url": "x"})
    with pytest.raises(ConfigurationError, match=r"unknown key 'postgres' \(did you mean 'postgresql'\?\)"):
        StoreConfig(postgres={"host": "x"})
    with pytest.raises(ConfigurationError, match="unknown key 'nodriver'"):
        StoreConfig(driver_sections={"nodriver": {}})
    # our own sections stay strict, even next to a third-party one
    with pytest.raises(ConfigurationError, match="host"):
        StoreConfig(tinyvec={"url": "x"}, postgresql={"hots": "x"})
    # and the name is accepted only while a driver is registered under it
    _registry._REGISTERED["vector"].pop("tinyvec")
    with pytest.raises(ConfigurationError, match="unknown key 'tinyvec'"):
        StoreConfig(tinyvec={"url": "x"})


def test_secrets_in_third_party_sections_are_never_printed(third_party):
    c = StoreConfig(
        tinyvec={
            "url": "http://v",
            "password": "pw-111",
            "apiKey": "ak-222",
            "auth_token": "tk-333",
            "nested": {"client_secret": "cs-444"},
            "replicas": [{"token": "tk-555"}],
            "max_tokens": 512,
        },
        typedvec={"url": "http://t", "api_key": "ak-666", "token": "tk-777"},
    )
    for text in (repr(c), str(c), str(c.redacted()), c.model_dump_json()):
        for secret in ("pw-111", "ak-222", "tk-333", "cs-444", "tk-555", "ak-666", "tk-777"):
            assert secret not in text
        assert "http://v" in text and "512" in text  # only secrets are masked
    settings = c.driver_settings("tinyvec")
    assert isinstance(settings["password"], SecretStr) and settings["password"].get_secret_value() == "pw-111"
    assert settings["nested"]["client_secret"].get_secret_value() == "cs-444"
    assert settings["replicas"][0]["token"].get_secret_value() == "tk-555"
    assert settings["url"] == "http://v" and settings["max_tokens"] == 512
    assert c.driver_settings("typedvec").token == "tk-777"  # the driver still reads its value
    with pytest.raises(ConfigurationError) as info:
        StoreConfig(typedvec={"url": "u", "api_key": ["ak-888-in-a-list"]})
    assert "ak-888" not in str(info.value) and "typedvec.api_key" in str(info.value)


async def test_store_opens_on_a_registered_driver_with_its_section(tmp_path, third_party):
    config = {
        "primaryDriver": "memory",
        "vectorDriver": "tinyvec",
        "embeddingDriver": "hashing",
        "home": str(tmp_path),
        "tinyvec": {"url": "http://v", "api_key": "s3cret"},
    }
    async with await SemanticStore.create("t", config=config) as store:
        assert isinstance(store.vector, TinyVector)
        assert store.vector.settings["api_key"].get_secret_value() == "s3cret"
        await store.insert({"text": "third-party drivers get their settings"})


def test_vector_dtype_from_config_and_environment():
    assert StoreConfig().vector_dtype == "float32"
    assert StoreConfig(vectorDtype="float16").vector_dtype == "float16"
    assert StoreConfig.resolve(None, env={"VECTOR_DTYPE": " FLOAT16 "}).vector_dtype == "float16"
    assert StoreConfig.resolve({"vector_dtype": "float32"}, env={"VECTOR_DTYPE": "float16"}).vector_dtype == "float32"
    for bad in ({"vector_dtype": "int8"}, {"vector_dtype": 16}):
        with pytest.raises(ConfigurationError) as info:
            StoreConfig(**bad)
        assert all(word in str(info.value) for word in ("vector_dtype", "float32", "float16"))
    with pytest.raises(ConfigurationError, match="vector_dtype"):
        StoreConfig.resolve(None, env={"VECTOR_DTYPE": "double"})
