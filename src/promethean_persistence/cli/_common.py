"""The ``semantic-store`` group, its global options, and the helpers every command shares."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn, cast

import click

from .._config import StoreConfig
from .._errors import ConfigurationError, SemanticStoreError, ValidationError
from .._mirror import open_store
from .._progress import Progress
from .._store import SemanticStore


@dataclass
class _Ctx:
    """The global options, as ``cli`` and each command store them in ``ctx.obj``, and the
    progress bars of the running command (what an interrupted run reports as kept)."""

    store: str = "default"
    text_key: str = "text"
    time_key: str = "createdAt"
    config_file: str | None = None
    profile: str | None = None
    json: bool = False
    debug: bool = False
    bars: list[Progress] = field(default_factory=list)
    #: said instead of the bars' counts when the command is interrupted
    interrupt_note: str | None = None


# The global options: their parameter names and the _Ctx fields they set.
_GLOBAL = {
    "store": "store",
    "text_key": "text_key",
    "time_key": "time_key",
    "config_file": "config_file",
    "profile": "profile",
    "as_json": "json",
    "debug": "debug",
}


def _global_options(on_group: bool) -> list[click.Parameter]:
    """The global options. The group's have the defaults; a command's have none, so that
    only a value given after the command name replaces the group's."""

    def default(value: Any) -> Any:
        return value if on_group else None

    return [
        click.Option(
            ["--store", "store"],
            metavar="NAME",
            default=default(lambda: os.environ.get("SEMANTIC_STORE_NAME", "default")),
            help="Store (collection) name [default: $SEMANTIC_STORE_NAME or 'default'].",
        ),
        click.Option(
            ["--text-key"], metavar="K", default=default("text"), help="Entry key of the text [default: text]."
        ),
        click.Option(
            ["--time-key"],
            metavar="K",
            default=default("createdAt"),
            help="Entry key of the time [default: createdAt].",
        ),
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False), help="TOML config file."),
        click.Option(["--profile"], metavar="NAME", help="Profile in the config file ([profiles.NAME])."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print JSON for scripts."),
        click.Option(["--debug"], is_flag=True, help="Show tracebacks."),
    ]


class _Command(click.Command):
    """A command that also takes the global options after its name (``semantic-store recent
    --json``); a value given there wins over one given before the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(on_group=False))

    def invoke(self, ctx: click.Context) -> Any:
        if not isinstance(ctx.obj, _Ctx):  # invoked on its own, not through the group
            ctx.obj = _Ctx(store=os.environ.get("SEMANTIC_STORE_NAME", "default"))
        given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
        for name, field_name in _GLOBAL.items():
            value = ctx.params.pop(name, None)
            source = ctx.get_parameter_source(name)
            if source in given:
                setattr(ctx.obj, field_name, value)
                if ctx.parent is not None:  # so "was --store given?" has one answer
                    ctx.parent.set_parameter_source(name, source)
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        shared: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and not isinstance(param, click.Argument):
                (shared if param.name in _GLOBAL else own).append(record)
        for title, records in (("Options", own), ("Global options (before or after the command)", shared)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class _Group(click.Group):
    """The ``semantic-store`` group: its commands take the global options too, and an
    interrupted command (Ctrl-C) says what was kept and exits 130."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            opts = ctx.obj if isinstance(ctx.obj, _Ctx) else _Ctx()
            if opts.debug:
                traceback.print_exc()
            if any(bar.mid_line for bar in opts.bars):
                click.echo(err=True)  # end the bar's line
            click.echo(_interrupted(opts), err=True)
            ctx.exit(130)


def _interrupted(opts: _Ctx) -> str:
    """What an interrupted command kept: its bars' last counts, else a generic line."""
    if opts.interrupt_note:
        return opts.interrupt_note
    if not opts.bars:
        return "Interrupted"
    counted = [bar for bar in opts.bars if bar.total]
    if not counted:
        return "Interrupted: what was done is kept; run the command again to resume"
    kept = ", ".join(f"{bar.done} of {bar.total} {bar.kept}" for bar in counted)
    return f"Interrupted: {kept} so far; run the command again to resume"


def _config(ctx: _Ctx) -> StoreConfig | None:
    if ctx.config_file:
        return StoreConfig.from_file(ctx.config_file, ctx.profile)
    if ctx.profile:
        raise click.UsageError("--profile needs --config FILE")
    return None


def _run(ctx: click.Context, call: Callable[[SemanticStore], Awaitable[Any]], show: Callable[[Any], None]) -> Any:
    """Open the store, make one library call, print and return its result, close the store.

    The store is opened without its background outbox worker: a command does its own work
    only, so one that does not embed never loads the model for vector work other processes
    left (``flush`` and bulk commands finish that work explicitly)."""
    opts: _Ctx = ctx.obj
    if opts.profile and not opts.config_file:
        raise click.UsageError("--profile needs --config FILE")

    async def go() -> Any:
        store = await open_store(
            opts.store,
            opts.text_key,
            opts.time_key,
            config_file=opts.config_file,
            profile=opts.profile,
            background=False,
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


# What the ``done`` of a bar counts, by label (the default: entries stored).
_KEPT = {"indexing": "vectors written", "flush": "vector writes done", "export": "entries written"}


def _progress_bar(opts: _Ctx, label: str, kept: str | None = None) -> Progress:
    """A bar labelled ``label`` on stderr (silent under --json) whose counts an interrupted
    command reports; ``kept`` names what ``done`` counts (default by label)."""
    bar = Progress(label, enabled=not opts.json, kept=kept or _KEPT.get(label, "entries stored"))
    opts.bars.append(bar)
    return bar


def _json_arg(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, params=_global_options(on_group=True)
)
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
    """Semantic store: documents in a primary database, embeddings in a vector database.

    The global options below go before or after the command (a value after it wins)."""
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
