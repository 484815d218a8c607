"""``semantic-store``: each command is one library call on one store.

Exit codes: 0 success, 1 failure, 2 usage error (bad arguments, configuration or input).
Errors are one line unless ``--debug``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import click

from ._config import StoreConfig
from ._errors import ConfigurationError, SemanticStoreError, ValidationError
from ._mirror import open_store
from ._progress import Progress
from ._store import SemanticStore


class _Ctx:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _config(ctx: _Ctx) -> StoreConfig | None:
    if ctx.config_file:
        return StoreConfig.from_file(ctx.config_file, ctx.profile)
    if ctx.profile:
        raise click.UsageError("--profile needs --config FILE")
    return None


def _run(ctx: click.Context, call: Callable[[SemanticStore], Awaitable[Any]], show: Callable[[Any], None]) -> Any:
    """Open the store, make one library call, print and return its result, close the store."""
    opts: _Ctx = ctx.obj
    if opts.profile and not opts.config_file:
        raise click.UsageError("--profile needs --config FILE")

    async def go() -> Any:
        store = await open_store(opts.store, opts.text_key, opts.time_key, config_file=opts.config_file,
                                 profile=opts.profile)
        try:
            return await call(store)
        finally:
            await store.cleanup()

    result = _execute(opts, go)
    _print(opts, result, show)
    return result


def _print(opts: _Ctx, result: Any, show: Callable[[Any], None]) -> None:
    """JSON under --json, else ``show``."""
    if opts.json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        show(result)


def _execute(opts: _Ctx, go: Callable[[], Awaitable[Any]]) -> Any:
    """Run the command's coroutine; our errors become one line and exit code 2 or 1."""
    try:
        return asyncio.run(go())
    except (ValidationError, ConfigurationError) as exc:
        _fail(opts, exc, 2)
    except SemanticStoreError as exc:
        _fail(opts, exc, 1)


def _fail(opts: _Ctx, exc: BaseException, code: int) -> None:
    if opts.debug:
        raise exc
    click.echo(f"Error: {exc}", err=True)
    sys.exit(code)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


_SHOWN_META = ("path", "module", "kind", "type", "userName", "offset")


def _table(entries: list[dict[str, Any]], score: bool = False) -> None:
    if not entries:
        click.echo("(no entries)")
        return
    for e in entries:
        text = " ".join(e["text"].split())
        text = text if len(text) <= 72 else text[:69] + "..."
        meta = e.get("metadata", {})
        shown = " ".join(f"{k}={meta[k]}" for k in _SHOWN_META if k in meta)
        lead = f"{e['score']:.3f}  " if score else f"{_when(e['timestamp'])}  "
        click.echo(f"{lead}{e['id']}  {text}" + (f"  [{shown}]" if shown else ""))


def _progress_bar(opts: _Ctx, label: str) -> Progress:
    """Silent under --json."""
    return Progress(label, enabled=not opts.json)


def _json_arg(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store", default=lambda: os.environ.get("SEMANTIC_STORE_NAME", "default"),
              show_default="$SEMANTIC_STORE_NAME or 'default'", help="Store (collection) name.")
@click.option("--text-key", default="text", show_default=True)
@click.option("--time-key", default="createdAt", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--profile", help="Profile in the config file ([profiles.NAME]).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="promethean-persistence")
@click.pass_context
def cli(ctx: click.Context, store, text_key, time_key, config_file, profile, as_json, debug) -> None:
    """Semantic store: documents in a primary database, embeddings in a vector database."""
    ctx.obj = _Ctx(store=store, text_key=text_key, time_key=time_key, config_file=config_file,
                   profile=profile, json=as_json, debug=debug)


@cli.command()
@click.argument("text")
@click.option("--id", "id_", help="Entry id (default: a new UUID); an existing id is replaced.")
@click.option("--metadata", "-m", help="Metadata as a JSON object.")
@click.option("--timestamp", help="Epoch ms or ISO-8601 (default: now).")
@click.pass_context
def insert(ctx, text, id_, metadata, timestamp) -> None:
    """Insert one entry and print its id."""
    o = ctx.obj
    entry: dict[str, Any] = {o.text_key: text}
    if id_ is not None:
        entry["id"] = id_
    if metadata is not None:
        entry["metadata"] = _json_arg(metadata, "--metadata")
    if timestamp is not None:
        entry[o.time_key] = int(timestamp) if timestamp.lstrip("-").isdigit() else timestamp
    _run(ctx, lambda s: s.insert(entry), click.echo)


@cli.command()
@click.argument("id_", metavar="ID")
@click.pass_context
def get(ctx, id_) -> None:
    """Print one entry; exit 1 if there is none."""

    async def call(store: SemanticStore):
        entry = await store.get(id_)
        if entry is None:
            raise SemanticStoreError(f"No entry with id {id_!r}", operation="get")
        return entry

    _run(ctx, call, lambda e: click.echo(json.dumps(e, ensure_ascii=False, indent=2)))


@cli.command()
@click.argument("limit", type=click.IntRange(min=1), default=10)
@click.option("--filter", "filter_", help="Metadata filter as JSON.")
@click.option("--asc", is_flag=True, help="Oldest first.")
@click.option("--since", help="Epoch ms or ISO-8601, inclusive.")
@click.option("--until", help="Epoch ms or ISO-8601, inclusive.")
@click.option("--include-empty", is_flag=True)
@click.pass_context
def recent(ctx, limit, filter_, asc, since, until, include_empty) -> None:
    """Print the newest entries."""
    where = _json_arg(filter_, "--filter")
    since_v = int(since) if since and since.isdigit() else since
    until_v = int(until) if until and until.isdigit() else until
    _run(
        ctx,
        lambda s: s.get_most_recent(limit, where, order="asc" if asc else "desc", since=since_v,
                                    until=until_v, include_empty=include_empty),
        _table,
    )


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--limit", "-k", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--where", help="Metadata filter as JSON.")
@click.option("--min-score", type=float)
@click.pass_context
def search(ctx, queries, limit, where, min_score) -> None:
    """Print the entries most similar to QUERIES."""
    where_v = _json_arg(where, "--where")
    _run(ctx, lambda s: s.get_most_relevant(list(queries), limit, where_v, min_score=min_score),
         lambda r: _table(r, score=True))


@cli.command()
@click.argument("id_", metavar="ID")
@click.pass_context
def delete(ctx, id_) -> None:
    """Delete one entry and its vector."""
    _run(ctx, lambda s: s.delete(id_), lambda existed: click.echo("deleted" if existed else "not found"))


@cli.command()
@click.pass_context
def count(ctx) -> None:
    """Print the number of entries."""
    _run(ctx, lambda s: s.count(), click.echo)


def _show_mapping(data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, list):
            click.echo(f"{key}: {len(value)}")
            for item in value[:20]:
                click.echo(f"  {item}")
        else:
            click.echo(f"{key}: {value}")


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--all", "whole", is_flag=True, help="Check the whole store (finds orphan vectors).")
@click.pass_context
def report(ctx, limit, whole) -> None:
    """Print the consistency report between the primary and vector stores."""
    _run(ctx, lambda s: s.get_consistency_report(None if whole else limit), _show_mapping)


@cli.command()
@click.argument("id_", metavar="ID")
@click.option("--max-retries", type=click.IntRange(min=1), default=3, show_default=True)
@click.pass_context
def retry(ctx, id_, max_retries) -> None:
    """Write one entry's vector now; exit 1 if it still fails."""

    async def call(store: SemanticStore):
        if not await store.retry_vector_write(id_, max_retries=max_retries):
            raise SemanticStoreError(f"Vector write for {id_!r} still fails", operation="retry", document_id=id_)
        return True

    _run(ctx, call, lambda _: click.echo("synced"))


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be re-queued and deleted.")
@click.option("--dedupe", is_flag=True, help="Also delete older duplicates of an id (MongoDB data of the original).")
@click.pass_context
def repair(ctx, dry_run, dedupe) -> None:
    """Re-queue missing, failed and stale vectors, delete orphans, and wait for the writes."""

    bar = _progress_bar(ctx.obj, "repair")

    async def call(store: SemanticStore):
        report = await store.repair(dry_run=dry_run, dedupe=dedupe)
        if not dry_run:
            await store.flush(progress=bar)
        return report

    _run(ctx, call, _show_mapping)


@cli.command()
@click.pass_context
def flush(ctx) -> None:
    """Write every outstanding vector (left by this or any earlier process) and print what
    the store holds: indexed, pending, failed; exit 1 if any write is failed or still pending."""
    bar = _progress_bar(ctx.obj, "flush")

    async def call(store: SemanticStore):
        await store.flush(progress=bar)
        return await store.vector_counts()

    counts = _run(ctx, call, _show_counts)
    if counts["pending"] or counts["failed"]:
        sys.exit(1)


def _show_counts(counts: dict[str, Any]) -> None:
    total = sum(counts[k] for k in ("indexed", "pending", "failed"))
    click.echo(f"indexed {counts['indexed']} of {total}"
               + (f" ({counts['pending']} pending, {counts['failed']} failed)" if total - counts["indexed"] else ""))


@cli.command()
@click.option("--model", help="The new embedding model (default: the configured one, EMBEDDING_FUNCTION).")
@click.option("--embedding-driver", help="The new embedding driver (default: the configured one).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--keep-old", is_flag=True, help="Keep the old vector collection after the switch.")
@click.pass_context
def reembed(ctx, model, embedding_driver, batch_size, keep_old) -> None:
    """Re-embed the store with another model, side by side; switch over at the end.

    Searches keep working during the run; an interrupted run resumes where it stopped."""
    from ._reembed import reembed as run_reembed

    opts: _Ctx = ctx.obj
    bar = _progress_bar(opts, "reembed")
    result = _execute(opts, lambda: run_reembed(
        opts.store, model, embedding_driver=embedding_driver, text_key=opts.text_key, time_key=opts.time_key,
        config=_config(opts), batch_size=batch_size, keep_old=keep_old, progress=bar))
    _print(opts, result, _show_mapping)


def _side(opts: _Ctx, value: str, option: str) -> StoreConfig:
    """``--from``/``--to``: a profile of the --config file, or env-style ``KEY=VALUE,...``."""
    if "=" in value:
        pairs = [p for p in value.replace(",", " ").split() if p]
        env = dict(p.split("=", 1) for p in pairs if "=" in p)
        if len(env) != len(pairs):
            raise click.BadParameter("use PROFILE or KEY=VALUE,KEY=VALUE", param_hint=option)
        return StoreConfig.from_env({**os.environ, **env})  # over the environment
    if not opts.config_file:
        raise click.UsageError(f"{option} {value}: a profile needs --config FILE (or give KEY=VALUE settings)")
    return StoreConfig.from_file(opts.config_file, value)


def _two_stores(ctx: click.Context, source: str, target: str, target_store: str | None,
                call: Callable[[SemanticStore, SemanticStore], Awaitable[dict[str, Any]]]) -> None:
    """Open the --from and --to stores, make one library call, print its report; exit 1
    unless the report says ok."""
    opts: _Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        a = await SemanticStore.create(opts.store, opts.text_key, opts.time_key, _side(opts, source, "--from"))
        try:
            b = await SemanticStore.create(target_store or opts.store, opts.text_key, opts.time_key,
                                           _side(opts, target, "--to"))
            try:
                return await call(a, b)
            finally:
                await b.cleanup()
        finally:
            await a.cleanup()

    _report(opts, _execute(opts, go))


def _report(opts: _Ctx, result: dict[str, Any]) -> None:
    _print(opts, result, _show_mapping)
    if result.get("status", "ok" if result.get("ok", True) else "failed") != "ok":
        sys.exit(1)


_FROM_TO = [
    click.option("--from", "source", required=True, help="Source: a --config profile, or KEY=VALUE,... settings."),
    click.option("--to", "target", required=True, help="Target: a --config profile, or KEY=VALUE,... settings."),
    click.option("--to-store", "target_store", help="Target store name (default: --store)."),
]


def _from_to(f: Callable) -> Callable:
    for option in reversed(_FROM_TO):
        f = option(f)
    return f


@cli.command()
@_from_to
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--reembed", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="auto: copy vectors when both sides use the same model, else embed anew.")
@click.option("--no-resume", is_flag=True, help="Start over instead of resuming an interrupted run.")
@click.option("--no-verify", is_flag=True, help="Skip the comparison at the end.")
@click.option("--sample-size", type=click.IntRange(min=0), default=100, show_default=True,
              help="Entries whose vectors are compared value by value.")
@click.pass_context
def migrate(ctx, source, target, target_store, batch_size, reembed, no_resume, no_verify, sample_size) -> None:
    """Copy every entry from one store to another, resumable, verified; exit 1 if any is missing."""
    from ._migrate import migrate as run_migrate

    bar = _progress_bar(ctx.obj, "migrate")
    _two_stores(ctx, source, target, target_store, lambda a, b: run_migrate(
        a, b, batch_size=batch_size, reembed=reembed, resume=not no_resume, verify=not no_verify,
        progress=bar, sample_size=sample_size))


@cli.command()
@_from_to
@click.option("--sample-size", type=click.IntRange(min=0), default=100, show_default=True)
@click.pass_context
def validate(ctx, source, target, target_store, sample_size) -> None:
    """Compare two stores entry by entry; exit 1 if anything is missing or different."""
    from ._migrate import validate as run_validate

    _two_stores(ctx, source, target, target_store, lambda a, b: run_validate(a, b, sample_size))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--with-vectors", is_flag=True, help="Include each entry's vector.")
@click.pass_context
def export(ctx, path, with_vectors) -> None:
    """Write every entry to PATH as JSON Lines (gzip if it ends in .gz)."""
    from ._backup import export as run_export

    bar = _progress_bar(ctx.obj, "export")
    _run(ctx, lambda s: run_export(s, path, with_vectors, progress=bar), _show_mapping)


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--reembed", is_flag=True, help="Ignore the file's vectors and embed the texts anew.")
@click.pass_context
def import_(ctx, path, batch_size, reembed) -> None:
    """Load a file written by export (or JSONL entries); exit 1 if any line failed."""
    from ._backup import import_ as run_import

    bar = _progress_bar(ctx.obj, "import")
    result = _run(ctx, lambda s: run_import(s, path, batch_size=batch_size, reembed=reembed, progress=bar),
                  _show_mapping)
    if result["status"] != "ok":
        sys.exit(1)


@cli.command()
@click.pass_context
def stats(ctx) -> None:
    """Print the vector write queue statistics."""

    async def call(store: SemanticStore):
        return store.get_queue_stats()

    _run(ctx, call, _show_mapping)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.pass_context
def ingest(ctx, paths, batch_size) -> None:
    """Ingest text/Markdown files (split into passages) and JSONL entries."""
    from .ingest import ingest as run_ingest

    bar, index_bar = _progress_bar(ctx.obj, "ingest"), _progress_bar(ctx.obj, "indexing")

    def show(result: dict[str, Any]) -> None:
        _show_mapping(result)
        _show_counts(result)

    _run(ctx, lambda s: run_ingest(s, paths, batch_size=batch_size, progress=bar, index_progress=index_bar), show)


@cli.command()
@click.pass_context
def doctor(ctx) -> None:
    """Check configuration, connectivity and versions of every configured backend."""
    from .doctor import doctor as run_doctor

    o = ctx.obj
    checks = _execute(o, lambda: run_doctor(o.store, _config(o)))
    if o.json:
        click.echo(json.dumps(checks, indent=2))
    else:
        for c in checks:
            click.echo(f"{'ok  ' if c['ok'] else 'FAIL'} {c['component']}: {c['detail']}")
    if not all(c["ok"] for c in checks):
        sys.exit(1)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="Ingest only the first N docstrings.")
@click.option("-k", "top", type=click.IntRange(min=1), default=5, show_default=True)
@click.pass_context
def demo(ctx, limit, top) -> None:
    """Ingest the standard library's docstrings and answer example questions."""
    from .demo import answer_questions, stdlib_entries
    from .ingest import ingest_entries

    if ctx.parent.get_parameter_source("store") is click.core.ParameterSource.DEFAULT:
        ctx.obj.store = "stdlib"  # keep the demo out of the user's default store
    bar, index_bar = _progress_bar(ctx.obj, "stdlib docstrings"), _progress_bar(ctx.obj, "indexing")

    async def call(store: SemanticStore):
        ingested = await ingest_entries(store, list(stdlib_entries(limit)), progress=bar, index_progress=index_bar)
        return {"ingested": ingested, "answers": await answer_questions(store, k=top)}

    def show(result: dict[str, Any]) -> None:
        i = result["ingested"]
        click.echo(f"ingested {i['entries']} docstrings in {i['seconds']} s ({i['entries_per_s']}/s)")
        _show_counts(i)
        if i["pending"] or i["failed"]:
            click.echo("the index is incomplete: answers below may miss entries (semantic-store flush finishes it)")
        else:
            click.echo("answering from the complete index")
        found = 0
        for a in result["answers"]:
            found += a["found"]
            click.echo(f"\n{'✓' if a['found'] else '✗'} {a['question']}")
            for id_, score in zip(a["top"], a["scores"]):
                click.echo(f"    {score:.3f}  {id_}" + ("   <- expected" if id_ in a["expected"] else ""))
        click.echo(f"\n{found}/{len(result['answers'])} questions have an expected answer in the top {top}")

    _run(ctx, call, show)


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--collections", "-c", required=True, help="Comma-separated collection (store) names.")
@click.option("--recent-limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--query-limit", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--assistant-name", default="Duck", show_default=True)
@click.option("--format-assistant-messages", is_flag=True)
@click.pass_context
def context(ctx, texts, collections, recent_limit, query_limit, limit, assistant_name, format_assistant_messages) -> None:
    """Print the LLM context compiled from several collections for TEXTS."""
    from ._context import ContextStore

    o = ctx.obj
    names = [n.strip() for n in collections.split(",") if n.strip()]

    async def go():
        store = ContextStore(assistant_name=assistant_name, config=_config(o))
        try:
            for name in names:
                await store.get_or_create_collection(name, o.text_key, o.time_key)
            return await store.compile_context(list(texts), recent_limit, query_limit, limit, format_assistant_messages)
        finally:
            await store.cleanup()

    messages = _execute(o, go)
    if o.json:
        click.echo(json.dumps(messages, ensure_ascii=False, indent=2))
        return
    for m in messages:
        images = f" [images: {', '.join(m['images'])}]" if m.get("images") else ""
        click.echo(f"{m['role']:>9}: {m['content']}{images}")


def main() -> None:
    cli(prog_name="semantic-store")


if __name__ == "__main__":
    main()
