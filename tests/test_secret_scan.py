"""Secrets never leave: with a password in every URL-valued setting and every secret setting
filled, nothing the package prints, logs (every logger, DEBUG, httpx/httpcore included),
raises or shows as a repr carries one. Requests are really made: to a recorder standing in
for Ollama/OpenAI, to closed ports, and to the test engines where they run."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import traceback
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from promethean_persistence import SemanticStore, StoreConfig, _registry
from promethean_persistence._errors import SemanticStoreError
from promethean_persistence.cli import cli

from conftest import CHROMA, MONGO, PG, PINECONE, fake_pinecone, require_extra, require_postgres, require_server

USER = "scanuser"
S = {  # one distinct secret per setting, so a leak names its source
    "chromadb.url": "chroma-pw-Q7x1a",
    "ollama.url": "ollama-pw-Z9k2b",
    "openai.base_url": "openai-url-pw-M3v8c",
    "openai.api_key": "sk-openai-key-W4t6d",
    "qdrant.url": "qdrant-pw-L5n0e",
    "qdrant.api_key": "qdrant-key-H2c9f",
    "pinecone.host": "pinecone-host-pw-R8d3g",
    "pinecone.api_key": "pinecone-key-B6y4h",
    "postgresql.password": "pg-pw-T1u5i",
    "postgresql.dsn": "pg-dsn-pw-J0e7j",
    "pgvector.dsn": "pgv-dsn-pw-K2w3k",
    "pgvector.password": "pgv-pw-N8q1l",
    "mongodb.uri": "mongo-pw-F9s1m",
}


def _forms(secret: str) -> list[str]:
    """The secret as it could show: plain, percent-encoded, in a basic-auth header."""
    return [secret, quote(secret), base64.b64encode(f"{USER}:{secret}".encode()).decode()]


def leaks(text: str) -> list[str]:
    """The settings whose secret shows in ``text``."""
    return [key for key, secret in S.items() if any(form in text for form in _forms(secret))]


def _url(secret_key: str, host: str) -> str:
    return f"http://{USER}:{S[secret_key]}@{host}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _error_text(exc: BaseException) -> str:
    """Message, repr and the whole formatted chain (causes and contexts) of ``exc``."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{self.format(record)} | args={record.args!r} | extra={vars(record)!r}")


@pytest.fixture
def logged() -> Iterator[_Capture]:
    """Every record of every logger, at DEBUG (loggers that set a level or stop propagating too)."""
    capture = _Capture()
    root = logging.getLogger()
    saved: list[tuple[logging.Logger, int, bool]] = [(root, root.level, root.propagate)]
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    names = [*logging.root.manager.loggerDict, "httpx", "httpcore", "pymongo", "psycopg", "chromadb", "urllib3"]
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.DEBUG)
        logger.propagate = True
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


class _Recorder(BaseHTTPRequestHandler):
    """Answers Ollama's and OpenAI's embedding routes with fixed vectors; records headers."""

    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        texts = body.get("input") or [body.get("prompt")]
        vectors = [[1.0, float(i + 1), 0.5] for i in range(len(texts))]
        if self.path.endswith("/api/embed"):
            answer: Any = {"embeddings": vectors}
        else:
            answer = {"data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    """``host:port`` of a server standing in for Ollama and OpenAI."""
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _everything(recorder: str, closed: int) -> dict[str, Any]:
    """Settings with every secret filled and a password in every URL-valued setting."""
    return {
        "chromadb": {"url": _url("chromadb.url", f"127.0.0.1:{closed}")},
        "ollama": {"url": _url("ollama.url", recorder), "max_retries": 0},
        "openai": {
            "base_url": _url("openai.base_url", recorder) + "/v1",
            "api_key": S["openai.api_key"],
            "max_retries": 0,
        },
        "qdrant": {"url": _url("qdrant.url", f"127.0.0.1:{closed}"), "api_key": S["qdrant.api_key"]},
        "pinecone": {"host": _url("pinecone.host", f"127.0.0.1:{closed}"), "api_key": S["pinecone.api_key"]},
        "postgresql": {
            "host": "127.0.0.1",
            "port": closed,
            "username": USER,
            "password": S["postgresql.password"],
            "dsn": f"postgresql://{USER}:{S['postgresql.dsn']}@127.0.0.1:{closed}/db",
        },
        "pgvector": {
            "dsn": f"postgresql://{USER}:{S['pgvector.dsn']}@127.0.0.1:{closed}/db",
            "password": S["pgvector.password"],
        },
        "mongodb": {
            "uri": f"mongodb://{USER}:{S['mongodb.uri']}@127.0.0.1:{closed}/",
            "options": {"serverSelectionTimeoutMS": 300, "connectTimeoutMS": 300},
        },
    }


def test_config_reprs_dumps_and_errors_hide_every_secret(recorder):
    cfg = StoreConfig(**_everything(recorder, _closed_port()))
    texts = {
        "repr": repr(cfg),
        "str": str(cfg),
        "model_dump_json": cfg.model_dump_json(),
        "json dump": json.dumps(cfg.model_dump(mode="json")),
        "redacted": json.dumps(cfg.redacted()),
    }
    for section in ("chromadb", "ollama", "openai", "qdrant", "pinecone", "postgresql", "pgvector", "mongodb"):
        value = getattr(cfg, section)
        texts[section] = f"{value!r} {value} {value.model_dump_json()}"
    for text in texts.values():
        assert not leaks(text), (leaks(text), text)
    assert f"http://{USER}:***@" in texts["model_dump_json"]  # hidden, not dropped
    assert S["ollama.url"] in cfg.ollama.url and S["ollama.url"] in str(cfg.model_dump()["ollama"])  # the drivers' copy
    assert StoreConfig.resolve(cfg).ollama.url == cfg.ollama.url  # merging keeps it

    url = _url("ollama.url", "h")
    bad = [
        {"ollama": {"url": url, "timeout": "soon"}},
        {"chromadb": {"url": [url]}},
        {"qdrant": {"url": url, "apiKey": 7, "bogus": 1}},
        {"openai": {"base_url": {"u": url}}},
        {"myvec": {"url": url}},
    ]
    for settings in bad:
        with pytest.raises(SemanticStoreError) as info:
            StoreConfig(**settings)
        assert not leaks(_error_text(info.value)), (settings, str(info.value))


async def test_drivers_reprs_and_errors_hide_every_secret(recorder, logged):
    cfg = StoreConfig(**_everything(recorder, _closed_port()), embedding_function="m")
    built = []
    for kind, names in (
        ("primary", ("postgresql", "mongodb")),
        ("vector", ("chromadb", "qdrant", "pinecone", "pgvector")),
        ("embedding", ("ollama", "openai")),
    ):
        for name in names:
            require_extra({"postgresql": "psycopg", "pgvector": "psycopg", "mongodb": "pymongo"}.get(name, "httpx"))
            if name in ("chromadb", "qdrant", "pinecone"):
                require_extra({"chromadb": "chromadb", "qdrant": "qdrant_client", "pinecone": "pinecone"}[name])
            driver_cls = _registry.load(kind, name)
            driver = driver_cls.from_config(cfg) if kind == "embedding" else driver_cls.from_config(cfg, "duck_x")
            built.append(driver)
            assert not leaks(f"{driver!r} {driver}"), (name, repr(driver))
            if kind == "embedding":
                await driver.embed(["hello"])  # a real request, logged by httpx
                await driver.aclose()
                continue
            if name == "pgvector":
                continue  # the same pool code as postgresql, another 10 s of waiting for a closed port
            with pytest.raises(SemanticStoreError) as info:
                await driver.open()  # a closed port
            assert not leaks(_error_text(info.value)), (name, _error_text(info.value))
    assert not leaks("\n".join(logged.lines)), [line for line in logged.lines if leaks(line)][:3]
    assert any("HTTP Request: POST http://127.0.0.1" in line for line in logged.lines)
    # the URL's user and password still reach the server, as basic auth; an api_key beats them
    auth = dict(_Recorder.seen)
    basic = base64.b64encode(f"{USER}:{S['ollama.url']}".encode()).decode()
    assert auth["/api/embed"] == f"Basic {basic}" and auth["/v1/embeddings"] == f"Bearer {S['openai.api_key']}"


# -- the CLI and the store API, scenario by scenario --------------------------------------------


def _scenarios(recorder: str, closed: int) -> dict[str, dict[str, str]]:
    every = _everything(recorder, closed)
    return {
        "qdrant+ollama": {
            "VECTOR_DRIVER": "qdrant",
            "QDRANT_URL": every["qdrant"]["url"],
            "QDRANT_API_KEY": S["qdrant.api_key"],
            "EMBEDDING_DRIVER": "ollama",
            "EMBEDDING_FUNCTION": "m",
            "OLLAMA_URL": every["ollama"]["url"],
        },
        "chromadb+openai": {
            "VECTOR_DRIVER": "chromadb",
            "CHROMA_URL": every["chromadb"]["url"],
            "EMBEDDING_DRIVER": "openai",
            "EMBEDDING_FUNCTION": "m",
            "OPENAI_BASE_URL": every["openai"]["base_url"],
            "OPENAI_API_KEY": S["openai.api_key"],
        },
        "memory+openai-url-only": {
            "VECTOR_DRIVER": "memory",
            "EMBEDDING_DRIVER": "openai",
            "EMBEDDING_FUNCTION": "m",
            "OPENAI_BASE_URL": every["openai"]["base_url"],
        },
        "pinecone": {
            "VECTOR_DRIVER": "pinecone",
            "PINECONE_HOST": every["pinecone"]["host"],
            "PINECONE_API_KEY": S["pinecone.api_key"],
        },
        "mongodb": {"PRIMARY_DRIVER": "mongodb", "MONGODB_URI": every["mongodb"]["uri"], "VECTOR_DRIVER": "memory"},
    }


# a closed port answers at once; MongoDB's client would wait 10 s to pick a server without these
FAST_MONGO = "[mongodb]\noptions = { serverSelectionTimeoutMS = 300, connectTimeoutMS = 300 }\n"


def _run_everything(env: dict[str, str], home: str, logged: _Capture) -> list[tuple[str, str]]:
    """Run the CLI's doctor (text and JSON), a write, a search and a count, with ``env``;
    returns (what, output) pairs: stdout, stderr and any exception's traceback."""
    env = {"EMBEDDING_DRIVER": "hashing", "SEMANTIC_STORE_HOME": home, **env}
    config = Path(home) / "fast.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(FAST_MONGO)
    runner = CliRunner()
    out = []
    for args in (
        ["doctor"],
        ["doctor", "--json"],
        ["insert", "hello world", "--json"],
        ["search", "hello", "--json"],
        ["count", "--json"],
        ["--debug", "insert", "hello again"],
    ):
        result = runner.invoke(cli, ["--config", str(config), *args], env=env)
        text = f"{result.stdout}\n{result.stderr}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            text += "".join(traceback.format_exception(result.exception))
        out.append((" ".join(args), text))
    return out


async def _api(env: dict[str, str], home: str) -> list[tuple[str, str]]:
    """The same through the API: create, insert, search; errors in full."""
    fast = {"mongodb": {"options": {"serverSelectionTimeoutMS": 300, "connectTimeoutMS": 300}}}
    config = StoreConfig.resolve({"home": home, **fast}, env={"EMBEDDING_DRIVER": "hashing", **env})
    out = [("config", f"{config!r} {config.model_dump_json()}")]
    try:
        async with await SemanticStore.create("scan", config=config) as store:
            out.append(("store", repr(store)))
            await store.insert({"text": "hello"})
            await store.flush()
            out.append(("search", repr(await store.get_most_relevant("hello", 3))))
            out.append(("report", repr(await store.get_consistency_report())))
    except SemanticStoreError as exc:
        out.append(("error", _error_text(exc)))
    return out


@pytest.mark.parametrize(
    "scenario", ["qdrant+ollama", "chromadb+openai", "memory+openai-url-only", "pinecone", "mongodb"]
)
def test_cli_and_api_with_secrets_everywhere_leak_nothing(tmp_path, recorder, logged, scenario):
    require_extra(
        {"qdrant+ollama": "qdrant_client", "chromadb+openai": "chromadb", "pinecone": "pinecone"}.get(
            scenario, "pymongo" if scenario == "mongodb" else "httpx"
        )
    )
    env = _scenarios(recorder, _closed_port())[scenario]
    outputs = _run_everything(env, str(tmp_path / "cli"), logged)
    outputs += asyncio.run(_api(env, str(tmp_path / "api")))  # the CLI runs its own event loops
    for what, text in outputs:
        assert not leaks(text), (scenario, what, leaks(text), text[-2000:])
    assert not leaks("\n".join(logged.lines)), [line for line in logged.lines if leaks(line)][:3]
    if "ollama" in scenario or "openai" in scenario:
        assert any("HTTP Request: POST http://127.0.0.1" in line for line in logged.lines)  # requests were made


# -- against the test engines: the success paths log too ----------------------------------------


def _with_password(url: str, key: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{USER}:{S[key]}@{rest}" if "@" not in rest else url.replace("@", f":{S[key]}@", 1)


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("postgresql", marks=PG),
        pytest.param("chromadb", marks=CHROMA),
        pytest.param("mongodb", marks=MONGO),
        pytest.param("pinecone", marks=PINECONE),
    ],
)
def test_engines_reached_with_secrets_leak_nothing(tmp_path, logged, engine):
    if engine == "postgresql":  # trust authentication: the password is sent, never needed
        dsn = _with_password(require_postgres(), "postgresql.dsn")
        env = {
            "PRIMARY_DRIVER": "postgresql",
            "POSTGRES_DSN": dsn,
            "VECTOR_DRIVER": "pgvector",
            "PGVECTOR_DSN": dsn.replace(S["postgresql.dsn"], S["pgvector.dsn"]),
        }
    elif engine == "chromadb":
        url = require_server("TEST_CHROMA_URL", "a Chroma server")
        env = {"VECTOR_DRIVER": "chromadb", "CHROMA_URL": _with_password(url, "chromadb.url")}
    elif engine == "mongodb":
        uri = require_server("TEST_MONGODB_URI", "SecantusDB")
        sep = "&" if "?" in uri else "/?"
        env = {
            "PRIMARY_DRIVER": "mongodb",
            "MONGODB_URI": _with_password(uri, "mongodb.uri") + f"{sep}serverSelectionTimeoutMS=2000",
            "VECTOR_DRIVER": "memory",
        }
    else:
        require_extra("pinecone")
        fake = fake_pinecone(tmp_path)
        fake.api_key = S["pinecone.api_key"]
        env = {"VECTOR_DRIVER": "pinecone", "PINECONE_HOST": fake.url, "PINECONE_API_KEY": S["pinecone.api_key"]}
    env["AGENT_NAME"] = f"scan{uuid.uuid4().hex[:8]}"
    outputs = _run_everything(env, str(tmp_path / "cli"), logged)
    outputs += asyncio.run(_api(env, str(tmp_path / "api")))  # the CLI runs its own event loops
    if engine != "mongodb":  # SecantusDB refuses the made-up user: the error path is scanned there
        assert dict(outputs)["count --json"].strip() == "1", outputs  # the engine was really used
    for what, text in outputs:
        assert not leaks(text), (engine, what, leaks(text), text[-2000:])
    assert not leaks("\n".join(logged.lines)), [line for line in logged.lines if leaks(line)][:3]
