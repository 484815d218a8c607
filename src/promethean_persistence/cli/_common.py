"""The ``semantic-store`` group, its global options, and the helpers every command shares."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import Any, NoReturn, cast

import click

from .._config import StoreConfig
from .._errors import ConfigurationError, SemanticStoreError, ValidationError
from .._mirror import open_store
from .._progress import Progress
from .._store import SemanticStore


class _Ctx:
    """The global options, as ``cli`` stores them in ``ctx.obj``."""

    store: str
    text_key: str
    time_key: str
    config_file: str | None
    profile: str | None
    json: bool
    debug: bool

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
        store = await open_store(
            opts.store, opts.text_key, opts.time_key, config_file=opts.config_file, profile=opts.profile
        )
        try:
            # a MirrorStore stands in for a SemanticStore: what it does not define acts on its read side
            return await call(cast(SemanticStore, store))
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


def _execute(opts: _Ctx, go: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run the command's coroutine; our errors become one line and exit code 2 or 1."""
    try:
        return asyncio.run(go())
    except (ValidationError, ConfigurationError) as exc:
        _fail(opts, exc, 2)
    except SemanticStoreError as exc:
        _fail(opts, exc, 1)


def _fail(opts: _Ctx, exc: BaseException, code: int) -> NoReturn:
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
@click.option(
    "--store",
    "store",
    default=lambda: os.environ.get("SEMANTIC_STORE_NAME", "default"),
    show_default="$SEMANTIC_STORE_NAME or 'default'",
    help="Store (collection) name.",
)
@click.option("--text-key", default="text", show_default=True)
@click.option("--time-key", default="createdAt", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--profile", help="Profile in the config file ([profiles.NAME]).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="promethean-persistence")
@click.pass_context
def cli(
    ctx: click.Context,
    store: str,
    text_key: str,
    time_key: str,
    config_file: str | None,
    profile: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Semantic store: documents in a primary database, embeddings in a vector database."""
    ctx.obj = _Ctx(
        store=store,
        text_key=text_key,
        time_key=time_key,
        config_file=config_file,
        profile=profile,
        json=as_json,
        debug=debug,
    )


def _show_mapping(data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, list):
            click.echo(f"{key}: {len(value)}")
            for item in value[:20]:
                click.echo(f"  {item}")
        else:
            click.echo(f"{key}: {value}")


def _show_counts(counts: dict[str, Any]) -> None:
    total = sum(counts[k] for k in ("indexed", "pending", "failed"))
    click.echo(
        f"indexed {counts['indexed']} of {total}"
        + (f" ({counts['pending']} pending, {counts['failed']} failed)" if total - counts["indexed"] else "")
    )
