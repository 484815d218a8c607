"""Hostile input (issue 19) outside the store API: bad configuration values, the CLI (one
``Error:`` line, exit 2, nothing stored, the store still usable), and imports and migrations
of data that breaks the entry rules (listed by line and id, the rest copied, nothing lost)."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promethean_persistence import (
    ConfigurationError,
    MigrationError,
    StoreConfig,
    ValidationError,
    import_,
    migrate,
)
from promethean_persistence._entries import content_hash
from promethean_persistence._types import Record
from promethean_persistence.cli import cli
from promethean_persistence.testing.store import open_store

from conftest import MONGO, PG, base_config

DRIVERS = ["memory", "sqlite", pytest.param("postgresql", marks=PG), pytest.param("mongodb", marks=MONGO)]

BAD_CONFIGS: list[dict[str, Any]] = [
    *({"primary_driver": "nope"}, {"vector_driver": "nope"}, {"embedding_driver": "nope"}, {"primary_driver": 5}),
    *({"vector_batch_size": 0}, {"vector_batch_size": "x"}, {"vector_batch_size": 2**63}, {"max_text_bytes": 0}),
    *({"vector_batch_size": float("nan")}, {"max_text_bytes": -1}, {"vector_timeout_ms": -5}, {"bogus_key": 1}),
    *({"vector_timeout_ms": float("inf")}, {"consistency": "sometimes"}, {"sqlite": {"synchronous": "BOGUS"}}),
    *({"sqlite": {"busy_timeout_ms": -1}}, {"sqlite": 5}, {"vector_max_retries": -1}, {"postgresql": {"dsn": 5}}),
    *({"vector_retry_delay_ms": float("nan")}, {"agent_name": "\ud800"}, {"agent_name": "a\x00"}),
    *({"dual_write_enabled": "maybe"}, {"local": {"exact_threshold": -1}}, {"pgvector": {"ef_search": 0}}),
    *({"primaryDriver": None}, {"vectorBatchSize": -3}, {"consistency": None}, {"vector_max_retries": 1.5}),
]


@pytest.mark.parametrize("values", [pytest.param(v, id=f"config{i}") for i, v in enumerate(BAD_CONFIGS)])
def test_bad_config_values_raise_configuration_error(values):
    with pytest.raises(ConfigurationError):
        StoreConfig(**values)


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One CLI home (SQLite, local vectors, hashing embedder) for the module's commands."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_STORE_HOME", str(root / "home"))
        mp.setenv("EMBEDDING_DRIVER", "hashing")
        yield root


def sh(*args: str, code: int) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output
    return result


def count() -> int:
    return int(sh("count", code=0).stdout)


def still_usable() -> None:
    probe = f"probe-{uuid.uuid4().hex}"
    assert sh("insert", "still usable", "--id", probe, code=0).stdout.strip() == probe
    assert json.loads(sh("get", probe, code=0).stdout)["text"] == "still usable"
    assert sh("delete", probe, code=0).stdout.strip() == "deleted"


DEEP = '{"$or": [' * 40 + '{"a": 1}' + "]}" * 40  # beyond the filter depth limit
FILES = {
    "binary.jsonl": bytes(range(256)) * 4,
    "utf16.jsonl": '{"text": "hi"}\n'.encode("utf-16"),
    "utf16le.jsonl": '{"text": "hi"}\n'.encode("utf-16-le"),
    "nul.jsonl": b'{"text": "a\\u0000b"}\n',
    "nul-key.jsonl": b'{"text": "a", "metadata": {"k\\u0000": 1}}\n',
    "surrogate.jsonl": b'{"text": "\\ud800"}\n',
    "bad-byte.jsonl": b'{"text": "a\xffb"}\n',
    "deep.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "long-int.jsonl": b'{"text": "a", "metadata": {"n": ' + b"9" * 5000 + b"}}\n",
    "int70.jsonl": b'{"text": "a", "metadata": {"n": 1180591620717411303424}}\n',
    "not-object.jsonl": b"[1, 2]\n",
    "nan.jsonl": b'{"text": "a", "metadata": {"x": NaN}}\n',
    "bad-time.jsonl": b'{"text": "a", "createdAt": "nope"}\n',
    "second-bad.jsonl": b'{"text": "fine"}\n{"text": "a\\u0000"}\n',
    "nul.txt": b"hello\x00world\n",
    "binary.txt": bytes(range(128, 256)) * 8,
}
BAD_COMMANDS: list[tuple[str, ...]] = [
    *(("ingest", "{dir}/" + name) for name in FILES),
    *(("insert", t) for t in ("a\x00b", "\udcff", "x" * (2**20 + 1))),
    *(("insert", "ok", "-m", m) for m in ('{"k": "\\u0000"}', "[1]", "not json", '{"n": 1e999}', '{"\\ud800": 1}')),
    *(("insert", "ok", "--timestamp", t) for t in ("99999999999999999999999", "nope", "-")),
    *(("insert", "ok", "--id", i) for i in ("", "a\x00", "x" * 513)),
    *(("get", i) for i in ("", "a\x00", "\udcff", "x" * 513)),
    *(("delete", i) for i in ("", "a\x00", "x" * 513)),
    ("retry", ""),
    *(("recent", "--filter", f) for f in ('{"a": {"$regex": 1}}', DEEP, '{"a": "\\u0000"}', '{"$or": []}', "[1]")),
    *(("recent", opt, v) for opt in ("--since", "--until") for v in ("nope", "99999999999999999999")),
    *(("recent", n) for n in ("0", "-5", "many")),
    *(("search", "q", "--min-score", s) for s in ("nan", "high")),
    *(("search", "q", "--where", w) for w in ('{"$or": []}', '{"a": "\\ud800"}', DEEP)),
    ("search", "\udcff"),
    ("search", "q", "-n", "0"),
    ("report", "--limit", "0"),
    ("import", "{dir}/utf16.jsonl"),
]


@pytest.mark.parametrize("args", [pytest.param(a, id=f"cli{i}-{a[0]}") for i, a in enumerate(BAD_COMMANDS)])
def test_bad_command_is_one_error_line_exit_2_and_stores_nothing(home, args):
    for name, data in FILES.items():
        if not (home / name).exists():
            (home / name).write_bytes(data)
    before = count()
    result = sh(*(a.replace("{dir}", str(home)) for a in args), code=2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    if "Usage:" not in result.stderr:  # click's usage errors come with a hint; ours are one line
        assert result.stderr.strip() == errors[0]
    errors[0].encode("utf-8")  # printable as it is
    assert count() == before
    still_usable()


def test_cli_names_utf16_and_accepts_a_byte_order_mark(home):
    assert "UTF-16" in sh("ingest", str(_write(home / "u16.jsonl", '{"text": "x"}'.encode("utf-16"))), code=2).stderr
    before = count()
    bom = _write(home / "bom.jsonl", b'\xef\xbb\xbf{"id": "bom", "text": "after a BOM"}\n')
    sh("ingest", str(bom), code=0)
    assert count() == before + 1
    assert json.loads(sh("get", "bom", code=0).stdout)["text"] == "after a BOM"


def test_cli_huge_limits_mean_everything(home):
    total = count()
    assert len(json.loads(sh("--json", "recent", "99999999999999999999999", "--include-empty", code=0).stdout)) == total
    sh("search", "q", "-n", str(10**30), code=0)
    assert count() == total


def test_cli_import_of_a_damaged_gzip_file_is_one_error_line(home):
    damaged = _write(home / "damaged.jsonl.gz", gzip.compress(b'{"text": "x"}\n' * 100)[:40])
    result = sh("import", str(damaged), code=1)
    assert result.stderr.startswith("Error:") and result.stderr.count("\n") == 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- import and migrate: data that breaks the rules is listed, the rest is copied ------------


LINES = [
    b'{"id": "good-1", "text": "fine one"}',
    b'{"id": "nul-text", "text": "a\\u0000b"}',
    b'{"id": "nul-key", "text": "t", "metadata": {"k\\u0000": 1}}',
    b'{"id": "nul-value", "text": "t", "metadata": {"k": "v\\u0000"}}',
    b'{"id": "lone", "text": "\\ud800"}',
    b'{"id": "bad-utf8", "text": "a\xffb"}',
    b'{"id": "int70", "text": "t", "metadata": {"n": 1180591620717411303424}}',
    b'{"id": "broken", "text": ',
    b"[" * 50_000,
    b'{"id": "good-2", "text": "fine two"}',
]


@pytest.fixture(params=DRIVERS)
async def target(request, tmp_path):
    store = await open_store("hostile-io", base_config(tmp_path, request.param, "memory"))
    yield store
    await store.drop()
    await store.cleanup()


async def test_import_lists_refused_lines_by_number_and_id_and_imports_the_rest(target, tmp_path):
    path = _write(tmp_path / "mixed.jsonl", b"\xef\xbb\xbf" + b"\n".join(LINES) + b"\n")
    report = await import_(target, path)
    assert report["status"] == "failed" and report["imported"] == 2
    assert sorted(e["id"] for e in await target.get_many(["good-1", "good-2"])) == ["good-1", "good-2"]
    assert await target.count() == 2
    errors = {e["line"]: e for e in report["errors"]}
    assert sorted(errors) == list(range(2, 10))
    assert [errors[n].get("id") for n in range(2, 8)] == [
        "nul-text",
        "nul-key",
        "nul-value",
        "lone",
        "bad-utf8",
        "int70",
    ]
    assert all("NUL character ('\\x00')" in errors[n]["error"] for n in (2, 3, 4))
    assert "64 bits" in errors[7]["error"] and "surrogate" in errors[6]["error"]
    with pytest.raises(ValidationError, match="UTF-16"):
        await import_(target, _write(tmp_path / "u16.jsonl", LINES[0].decode().encode("utf-16")))
    with pytest.raises(MigrationError):
        await import_(target, _write(tmp_path / "cut.jsonl.gz", gzip.compress(b"\n".join(LINES[:1] * 50))[:30]))
    assert await target.count() == 2


async def test_migrate_lists_entries_that_break_the_rules_and_copies_the_rest(target, tmp_path):
    source = await open_store("hostile-src", base_config(tmp_path / "src", "sqlite", "memory"))
    try:
        await source.insert_many([{"id": f"good-{i}", "text": f"fine {i}"} for i in range(3)])
        # written before the rules (or by another program): SQLite holds them as they are
        old = {
            "nul-text": ("a\x00b", {}),
            "nul-key": ("t", {"k\x00": 1}),
            "nul-value": ("t", {"k": "v\x00"}),
            "int70": ("t", {"n": 2**70}),
        }
        await source.primary.put(
            [Record(id=i, text=t, timestamp=1, metadata=m, content_hash=content_hash(t)) for i, (t, m) in old.items()]
        )
        report = await migrate(source, target, progress=False)
        assert report["status"] == "failed" and sorted(report["failed_ids"]) == sorted(old)
        messages = {e["id"]: e["error"] for e in report["errors"]}
        assert all("NUL character" in messages[i] for i in ("nul-text", "nul-key", "nul-value"))
        assert "64 bits" in messages["int70"]
        assert await target.count() == 3 and await source.count() == 7  # nothing lost
        assert (await source.get("nul-text"))["text"] == "a\x00b"
    finally:
        await source.cleanup()


@pytest.mark.parametrize("vector", ["local", pytest.param("pgvector", marks=PG)])
async def test_a_search_limit_beyond_the_engine_s_own_bound_returns_everything(tmp_path, vector):
    # pgvector refused hnsw.ef_search above 1000; a huge limit is cut to the collection's size
    store = await open_store("hostile-vec", base_config(tmp_path, "sqlite", vector, sqlite={"synchronous": "OFF"}))
    try:
        await store.insert_many([{"text": f"entry number {i}"} for i in range(1100)])
        await store.flush()
        for limit in (2000, 2**63):
            assert len(await store.get_most_relevant("entry", limit)) == 1100
            assert len(await store.get_most_relevant("entry", limit, where={"x": {"$exists": False}})) == 1100
    finally:
        await store.drop()
        await store.cleanup()
