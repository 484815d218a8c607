"""A CLI that fits the hand (issue 18): global options before or after the command, Ctrl-C
exits 130 saying what was kept, commands that do not embed never load a model, progress
bars on long work, and a README that lists exactly the commands there are."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from promethean_persistence import SemanticStore, StoreConfig, _registry
from promethean_persistence.cli import cli
from promethean_persistence.drivers.base import Capabilities
from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

README = Path(__file__).parents[1] / "README.md"
MODEL_MODULES = ("torch", "sentence_transformers", "onnxruntime")


@pytest.fixture(autouse=True)
def hashing(monkeypatch):
    monkeypatch.setenv("EMBEDDING_DRIVER", "hashing")


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SEMANTIC_STORE_HOME": str(home), "EMBEDDING_DRIVER": "hashing", **extra}


def _sigint_default() -> None:
    # a child started where SIGINT is ignored (a background job) would ignore it too
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- global options ------------------------------------------------------------------------


def test_global_options_before_or_after_the_command(sh, tmp_path):
    sh("insert", "the cat sleeps", "--store", "notes", "--id", "cat")
    sh("--store", "notes", "insert", "a dog barks", "--id", "dog")
    assert sh("count").stdout.strip() == "0"  # the default store
    assert sh("count", "--store", "notes").stdout.strip() == "2"
    after = json.loads(sh("recent", "--json", "--store", "notes").stdout)
    before = json.loads(sh("--json", "--store", "notes", "recent").stdout)
    assert [e["id"] for e in after] == [e["id"] for e in before] and len(after) == 2
    hits = json.loads(sh("search", "cat", "--store", "notes", "--json", "-k", "1").stdout)
    assert hits[0]["id"] == "cat"
    # after the command wins over before it
    assert sh("--store", "other", "count", "--store", "notes").stdout.strip() == "2"
    # keys and config files too
    sh("insert", "keyed", "--text-key", "content", "--time-key", "at", "--store", "keyed", "--id", "k")
    entry = json.loads(sh("get", "k", "--store", "keyed", "--text-key", "content", "--time-key", "at").stdout)
    assert entry["text"] == "keyed"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profiles.mem]\nprimaryDriver = "memory"\nvectorDriver = "memory"\n')
    assert sh("count", "--config", str(cfg), "--profile", "mem").stdout.strip() == "0"
    sh("count", "--profile", "mem", code=2)  # --profile needs --config, wherever it is given
    # --debug after the command: the traceback instead of one line
    with pytest.raises(Exception, match="nope"):
        CliRunner().invoke(cli, ["get", "nope", "--debug"], catch_exceptions=False)


def test_every_command_has_help_listing_the_global_options():
    runner = CliRunner()
    assert cli.commands, "no commands registered"
    for name in sorted(cli.commands):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Global options" in result.output, name
        for option in ("--store", "--text-key", "--time-key", "--config", "--profile", "--json", "--debug"):
            assert option in result.output, (name, option)


def _readme_commands() -> list[str]:
    """The commands of the README's CLI section: the indented lines of its first code block."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## CLI\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has no '## CLI' section"
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "README's CLI section has no code block"
    names = []
    for line in block.group(1).splitlines():
        if line.startswith((" ", "\t")) and (m := re.match(r"\s+([a-z][a-z0-9-]*)\b", line)):
            names.append(m.group(1))
    return names


def test_readme_lists_exactly_the_registered_commands():
    listed = _readme_commands()
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(n for n in listed if listed.count(n) > 1)}"
    assert sorted(listed) == sorted(cli.commands), (
        f"missing from the README: {sorted(set(cli.commands) - set(listed))}; "
        f"not commands: {sorted(set(listed) - set(cli.commands))}"
    )


# -- Ctrl-C --------------------------------------------------------------------------------


def _read(fd: int, timeout: float) -> bytes:
    if not select.select([fd], [], [], timeout)[0]:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the child closed the terminal
        return b""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and terminals")
def test_sigint_mid_ingest_exits_130_says_what_was_kept_and_a_rerun_completes(tmp_path):
    import pty

    docs = tmp_path / "docs"
    docs.mkdir()
    for f in range(60):
        paragraphs = (f"paragraph {f} {i} " + "word " * 150 for i in range(100))
        (docs / f"f{f:02}.txt").write_text("\n\n".join(paragraphs))
    total = 60 * 100
    home = tmp_path / "home"
    command = [sys.executable, "-m", "promethean_persistence.cli", "ingest", str(docs), "--batch-size", "20"]
    # stderr on a terminal, so the ingest draws its bar: the signal comes once it moved
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=follower, env=_env(home), preexec_fn=_sigint_default
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            seen += _read(leader, 0.2)
            bars = re.findall(rb"ingest \[[#.]+\] (\d+)/(\d+)", seen)
            if bars and 0 < int(bars[-1][0]) < int(bars[-1][1]):
                break
        assert proc.poll() is None, f"ingest ended before it could be interrupted: {seen[-500:]!r}"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        while chunk := _read(leader, 0.2):
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    err = seen.decode(errors="replace")
    assert proc.returncode == 130, err[-1000:]
    assert "Aborted!" not in err
    kept = re.search(r"Interrupted: (\d+) of (\d+) entries stored\b.* so far; run the command again to resume", err)
    assert kept, err[-1000:]
    assert 0 < int(kept.group(1)) <= total and int(kept.group(2)) == total

    rerun = subprocess.run(command + ["--json"], capture_output=True, text=True, env=_env(home), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["entries"] == total and report["indexed"] == total
    count = subprocess.run(
        [sys.executable, "-m", "promethean_persistence.cli", "count"],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=60,
    )
    assert count.stdout.strip() == str(total)


def test_interrupted_command_without_progress_exits_130(sh, monkeypatch):
    async def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("promethean_persistence.cli._common.open_store", interrupted)
    result = sh("count", code=130)
    assert result.stderr.strip() == "Interrupted"


# -- no model for commands that do not embed -------------------------------------------------


class _Stuck:
    """The configured model's embedding space, but it never answers: writes stay pending."""

    name = "stuck"
    capabilities = Capabilities()
    supports_images = False

    def __init__(self, model: str, dimensions: int, normalize: bool) -> None:
        self.model, self.dimensions, self.normalize = model, dimensions, normalize

    async def embed(self, texts):
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        pass


_PROBE = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    from click.testing import CliRunner
    from promethean_persistence.cli import cli
    runs = []
    for args in json.loads(sys.argv[1]):
        began = time.perf_counter()
        result = CliRunner().invoke(cli, args)
        runs.append({"args": args, "code": result.exit_code, "out": result.stdout, "err": result.stderr,
                     "seconds": time.perf_counter() - began})
    models = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
    print(json.dumps({"runs": runs, "models": models, "seconds": time.perf_counter() - started}))
    """
)


async def test_commands_that_do_not_embed_never_load_the_model(tmp_path):
    """A store with pending vector work and the real ``local`` model configured: reads,
    reports, stats, delete and export answer at once, without importing a model runtime."""
    home = tmp_path / "home"
    config = StoreConfig.resolve({"embedding_driver": "local", "home": str(home), "vector_timeout_ms": 200})
    real = _registry.build("embedding", config)  # no model loaded: its preset tells the dimension
    stuck = _Stuck(real.model, real.dimensions, real.normalize)
    await real.aclose()
    store = await SemanticStore.create("notes", config=config, embedder=stuck)
    await store.insert_many([{"id": f"e{i}", "text": f"entry number {i}"} for i in range(20)])
    await store.cleanup()  # the writes stay pending in the outbox
    await asyncio.sleep(config.vector_timeout_ms * 2 / 1000 + 1.2)  # and their leases run out: due now

    commands = [
        ["count"],
        ["get", "e0"],
        ["recent", "3"],
        ["--json", "report"],
        ["report", "--all", "--json"],
        ["stats"],
        ["export", str(tmp_path / "notes.jsonl"), "--with-vectors"],
        ["delete", "e1"],
        ["count"],
    ]
    commands = [[*args, "--store", "notes"] for args in commands]
    env = {**os.environ, "SEMANTIC_STORE_HOME": str(home), "EMBEDDING_DRIVER": "local"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(commands), json.dumps(MODEL_MODULES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    for run in probe["runs"]:
        assert run["code"] == 0, run
        assert "left pending" not in run["err"], run
    assert probe["models"] == [], f"a model runtime was imported: {probe['models']}"
    assert probe["seconds"] < 10, probe  # generous: the point is that no model is loaded
    runs = probe["runs"]
    assert runs[0]["out"].strip() == "20" and runs[-1]["out"].strip() == "19"
    report = json.loads(runs[4]["out"])
    assert report["total_documents"] == 20 and report["pending"] == 20  # still waiting for a flush
    assert json.loads(runs[1]["out"])["id"] == "e0"
    assert '"entries": 20' in runs[6]["out"] or "entries: 20" in runs[6]["out"]


class _Held(HashingEmbedder):
    """The hashing model, never answering: writes stay pending."""

    async def embed(self, texts):
        await asyncio.sleep(3600)


async def test_background_false_leaves_pending_work_to_flush_and_the_default_resumes_it(tmp_path):
    config = {"embedding_driver": "hashing", "home": str(tmp_path), "vector_timeout_ms": 200}
    for name in ("quiet", "busy"):
        store = await SemanticStore.create(name, config=config, embedder=_Held())
        await store.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(10)])
        await store.cleanup()
    await asyncio.sleep(0.2 * 2 + 1.2)  # their leases run out: the work is due

    quiet = await SemanticStore.create("quiet", config=config, background=False)
    try:
        await asyncio.sleep(0.3)
        assert quiet._worker.claimed == 0
        assert (await quiet.vector_counts())["pending"] == 10
        await quiet.flush()  # flush still finishes it
        assert (await quiet.vector_counts())["indexed"] == 10
    finally:
        await quiet.cleanup()

    busy = await SemanticStore.create("busy", config=config)
    try:
        for _ in range(100):
            if (await busy.vector_counts())["indexed"] == 10:
                break
            await asyncio.sleep(0.05)
        assert (await busy.vector_counts())["indexed"] == 10 and busy._worker.claimed == 10
    finally:
        await busy.cleanup()


# -- progress --------------------------------------------------------------------------------


async def test_repair_reports_progress(tmp_path):
    config = {"embedding_driver": "hashing", "home": str(tmp_path)}
    store = await SemanticStore.create("notes", config=config)
    try:
        await store.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(1200)])
        calls: list[tuple[int, int]] = []
        report = await store.repair(progress=lambda done, total: calls.append((done, total)))
        assert report["requeued"] == 0
        assert calls and calls[-1] == (1200, 1200) and all(total == 1200 for _, total in calls)
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    finally:
        await store.cleanup()


async def test_migrate_and_import_report_indexing_apart(tmp_path):
    from promethean_persistence._backup import export, import_
    from promethean_persistence._migrate import migrate

    source = await SemanticStore.create("a", config={"embedding_driver": "hashing", "home": str(tmp_path / "a")})
    target = await SemanticStore.create("b", config={"embedding_driver": "hashing", "home": str(tmp_path / "b")})
    try:
        await source.insert_many([{"id": f"e{i}", "text": f"entry {i}"} for i in range(50)])
        copied: list[tuple[int, int]] = []
        indexed: list[tuple[int, int]] = []
        report = await migrate(
            source,
            target,
            batch_size=20,
            reembed=True,
            progress=lambda d, t: copied.append((d, t)),
            index_progress=lambda d, t: indexed.append((d, t)),
        )
        assert report["status"] == "ok" and report["entries_per_second"]
        # one phase: the indexing at the end goes to its own callback
        assert copied == [(20, 50), (40, 50), (50, 50)]
        path = tmp_path / "a.jsonl"
        exported: list[tuple[int, int]] = []
        await export(source, path, progress=lambda d, t: exported.append((d, t)))
        assert exported[-1] == (50, 50)
        imported: list[tuple[int, int]] = []
        await target.drop()
        result = await import_(
            target,
            path,
            batch_size=20,
            progress=lambda d, t: imported.append((d, t)),
            index_progress=lambda d, t: indexed.append((d, t)),
        )
        assert result["status"] == "ok" and result["imported"] == 50
        assert imported == [(20, 50), (40, 50), (50, 50)]  # the last, partial batch too
    finally:
        await source.cleanup()
        await target.cleanup()


def test_progress_bars_stay_quiet_under_json_and_count_either_way(sh):
    from promethean_persistence._progress import Progress

    bar = Progress("x", enabled=False)
    bar(3, 10)
    bar(10, 10)
    assert (bar.done, bar.total) == (10, 10) and not bar.mid_line
    sh("insert", "hello")
    flushed = sh("flush", "--json")
    assert json.loads(flushed.stdout)["indexed"] == 1 and flushed.stderr == ""
