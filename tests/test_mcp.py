"""``semantic-store mcp``: the SDK's own client against a spawned server, over stdio and
streamable HTTP (real protocol): every tool, bad input, concurrent calls, the bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import httpx2  # noqa: E402  (the SDK's HTTP client, installed with it)
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TOOLS = {"remember", "recall", "recent", "get", "forget", "report", "context"}
TOKEN = "s3cret-token-for-tests-0123456789"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SEMANTIC_STORE_MCP_TOKEN"}
    env.update({"SEMANTIC_STORE_HOME": str(home), "EMBEDDING_DRIVER": "hashing", **extra})
    return env


def _server_args(*args: str) -> list[str]:
    return ["-m", "promethean_persistence.cli", "mcp", "--store", "mem", *args]


def _data(result: Any) -> Any:
    """A tool result's value: structured content (unwrapping ``{"result": ...}``), else the text as JSON."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        data = result.structured_content
        return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data
    return json.loads(result.content[0].text)


def _error(result: Any, one_line: bool = True) -> str:
    """An error result's text: ours is one line; the SDK's schema check lists the fields on several."""
    assert result.is_error, result
    text = str(result.content[0].text)
    assert "Traceback" not in text and ("\n" not in text or not one_line)
    return text


async def _exercise(session: ClientSession) -> None:
    """Every tool, bad input, then concurrent calls."""
    listed = (await session.list_tools()).tools
    assert {t.name for t in listed} == TOOLS
    schemas = {t.name: t.input_schema for t in listed}
    assert schemas["remember"]["required"] == ["text"]
    assert set(schemas["recall"]["properties"]) == {"query", "limit", "where", "mode"}
    assert schemas["recall"]["properties"]["limit"]["default"] == 5
    assert "lexical" in json.dumps(schemas["recall"]["properties"]["mode"])
    assert schemas["recent"]["properties"]["limit"]["default"] == 10
    assert all(t.description for t in listed)

    ada = _data(
        await session.call_tool(
            "remember", {"text": "Ada wrote the first program", "metadata": {"who": "ada"}, "id": "ada-1"}
        )
    )
    assert ada == "ada-1"
    other = _data(await session.call_tool("remember", {"text": "bread needs flour and yeast", "timestamp": 1_000}))
    assert isinstance(other, str) and other

    hits = _data(await session.call_tool("recall", {"query": "Ada wrote the first program"}))
    assert hits[0]["id"] == "ada-1" and hits[0]["text"] == "Ada wrote the first program"
    assert {"id", "text", "timestamp", "metadata", "score"} <= set(hits[0])
    only = _data(await session.call_tool("recall", {"query": "program", "where": {"who": "ada"}, "limit": 3}))
    assert [h["id"] for h in only] == ["ada-1"]

    newest = _data(await session.call_tool("recent", {"limit": 10}))
    assert [e["id"] for e in newest] == ["ada-1", other]
    assert [e["id"] for e in _data(await session.call_tool("recent", {"since": 2_000}))] == ["ada-1"]

    entry = _data(await session.call_tool("get", {"id": "ada-1"}))
    assert entry["metadata"]["who"] == "ada"

    report = _data(await session.call_tool("report", {}))
    assert report["total_documents"] == 2

    messages = _data(await session.call_tool("context", {"queries": ["first program"]}))
    assert any("Ada wrote the first program" in m["content"] for m in messages)
    assert all(m["role"] in ("user", "assistant", "system") for m in messages)

    assert _data(await session.call_tool("forget", {"id": other})) is True
    assert _data(await session.call_tool("forget", {"id": other})) is False
    assert _data(await session.call_tool("get", {"id": other})) is None

    # bad input: our one-line message (a filter the schema cannot judge), or the schema's; the server goes on
    assert "operator" in _error(await session.call_tool("recall", {"query": "x", "where": {"$bogus": 1}})).lower()
    assert "timestamp" in _error(await session.call_tool("remember", {"text": "t", "timestamp": "not a time"}))
    assert "mode" in _error(await session.call_tool("recall", {"query": "x", "mode": "bm25"}), one_line=False)
    assert "text" in _error(await session.call_tool("remember", {"text": 123}), one_line=False)
    assert _data(await session.call_tool("get", {"id": "ada-1"}))["id"] == "ada-1"

    # concurrent calls on the one store
    written = await asyncio.gather(
        *(session.call_tool("remember", {"text": f"note number {i}", "id": f"n{i}"}) for i in range(8))
    )
    assert sorted(_data(r) for r in written) == sorted(f"n{i}" for i in range(8))
    reads = await asyncio.gather(
        *(session.call_tool("recall", {"query": f"note number {i}", "limit": 1}) for i in range(8)),
        *(session.call_tool("get", {"id": f"n{i}"}) for i in range(8)),
    )
    assert [_data(r)[0]["id"] for r in reads[:8]] == [f"n{i}" for i in range(8)]
    assert [_data(r)["id"] for r in reads[8:]] == [f"n{i}" for i in range(8)]


async def test_stdio_every_tool(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=_server_args(), env=_env(tmp_path))
    with open(tmp_path / "stderr.txt", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await _exercise(session)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _http_server(home: Path, bind: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, *_server_args("--http", bind)],
        env=_env(home, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(bind.rpartition(":")[2])
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen within 30 s"
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def _http_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers=headers, timeout=30) as client:
        async with streamable_http_client(url, http_client=client) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


async def test_http_every_tool_then_clean_shutdown(tmp_path: Path) -> None:
    port = _free_port()
    with _http_server(tmp_path, f":{port}") as proc:
        async with _http_session(f"http://127.0.0.1:{port}/mcp") as session:
            await _exercise(session)
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert f"serving http://127.0.0.1:{port}/mcp (no token)" in err


async def test_http_token(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with _http_server(tmp_path, f"127.0.0.1:{port}", SEMANTIC_STORE_MCP_TOKEN=TOKEN) as proc:
        async with httpx2.AsyncClient() as raw:
            ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            assert (await raw.post(url, json=ping)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await raw.post(url, json=ping, headers=wrong)).status_code == 401
        async with _http_session(url, {"Authorization": f"Bearer {TOKEN}"}) as session:
            assert _data(await session.call_tool("remember", {"text": "guarded", "id": "g"})) == "g"
            assert _data(await session.call_tool("get", {"id": "g"}))["text"] == "guarded"
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert "bearer token required" in err
    assert TOKEN not in err and TOKEN not in out


def test_non_loopback_needs_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, *_server_args("--http", f"0.0.0.0:{_free_port()}")],
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "SEMANTIC_STORE_MCP_TOKEN" in done.stderr and "loopback" in done.stderr


def test_bad_bind_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, *_server_args("--http", "localhost:http")],
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--http" in done.stderr


def test_parse_bind_and_loopback() -> None:
    from promethean_persistence.mcp_server import is_loopback, parse_bind

    assert parse_bind("8000") == ("127.0.0.1", 8000)
    assert parse_bind(":8000") == ("127.0.0.1", 8000)
    assert parse_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("host:", "host:0", "host:70000", "x"):
        with pytest.raises(ValueError):
            parse_bind(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com") and not is_loopback("10.0.0.1")


def test_cli_import_does_not_import_mcp() -> None:
    code = "import sys, promethean_persistence.cli; print('mcp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


async def test_stdio_scope(tmp_path: Path) -> None:
    env = _env(tmp_path)
    insert = [sys.executable, "-m", "promethean_persistence.cli", "insert", "--store", "mem", "--id", "eve-1"]
    insert += ["eve's secret plan", "--metadata", '{"user": "eve"}']
    subprocess.run(insert, env=env, check=True, capture_output=True, timeout=60)
    params = StdioServerParameters(command=sys.executable, args=_server_args("--scope", "user=ada"), env=env)
    with open(tmp_path / "stderr.txt", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert _data(await session.call_tool("remember", {"text": "ada's plan", "id": "ada-1"})) == "ada-1"
            assert _data(await session.call_tool("get", {"id": "ada-1"}))["metadata"]["user"] == "ada"
            assert [e["id"] for e in _data(await session.call_tool("recent", {}))] == ["ada-1"]
            hostile = {"$or": [{"user": "eve"}, {"user": {"$exists": True}}]}
            hits = _data(await session.call_tool("recall", {"query": "secret plan", "where": hostile}))
            assert [h["id"] for h in hits] == ["ada-1"]
            assert _data(await session.call_tool("get", {"id": "eve-1"})) is None
            assert _data(await session.call_tool("forget", {"id": "eve-1"})) is False
            assert _data(await session.call_tool("report", {}))["total_documents"] == 1
            messages = _data(await session.call_tool("context", {"queries": ["secret plan"]}))
            assert messages and not any("eve" in m["content"] for m in messages)
            assert "user" in _error(
                await session.call_tool("remember", {"text": "sneaky", "metadata": {"user": "eve"}})
            )


def test_stdio_sigterm_closes_cleanly(tmp_path: Path) -> None:
    args = [sys.executable, *_server_args()]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(args, env=_env(tmp_path), text=True, **pipes) as proc:  # type: ignore[call-overload]
        try:
            hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}) + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["id"] == 1  # serving: the signal handlers are in place
            proc.terminate()
            assert proc.wait(15) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from promethean_persistence import mcp_server
    from promethean_persistence._errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'promethean-persistence\[mcp\]'"):
        mcp_server.require_mcp()
