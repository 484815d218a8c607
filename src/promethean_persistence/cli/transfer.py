"""Commands that move a whole store: export, import, migrate, validate, reembed."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .._config import StoreConfig
from .._store import SemanticStore
from ._common import _config, _Ctx, _execute, _print, _progress_bar, _run, _show_mapping, cli


@cli.command()
@click.option("--model", help="The new embedding model (default: the configured one, EMBEDDING_FUNCTION).")
@click.option("--embedding-driver", help="The new embedding driver (default: the configured one).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--keep-old", is_flag=True, help="Keep the old vector collection after the switch.")
@click.pass_context
def reembed(
    ctx: click.Context, model: str | None, embedding_driver: str | None, batch_size: int, keep_old: bool
) -> None:
    """Re-embed the store with another model, side by side; switch over at the end.

    Searches keep working during the run; an interrupted run resumes where it stopped."""
    from .._named import reembed as run_reembed

    opts: _Ctx = ctx.obj
    bar = _progress_bar(opts, "reembed", kept="entries re-embedded")
    result = _execute(
        opts,
        lambda: run_reembed(
            opts.store,
            model,
            embedding_driver=embedding_driver,
            text_key=opts.text_key,
            time_key=opts.time_key,
            config=_config(opts),
            batch_size=batch_size,
            keep_old=keep_old,
            progress=bar,
        ),
    )
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


def _two_stores(
    ctx: click.Context,
    source: str,
    target: str,
    target_store: str | None,
    call: Callable[[SemanticStore, SemanticStore], Awaitable[dict[str, Any]]],
) -> None:
    """Open the --from and --to stores, make one library call, print its report; exit 1
    unless the report says ok."""
    opts: _Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        # without background workers, as _run: each side does the call's work only
        a = await SemanticStore.create(
            opts.store, opts.text_key, opts.time_key, _side(opts, source, "--from"), background=False
        )
        try:
            b = await SemanticStore.create(
                target_store or opts.store, opts.text_key, opts.time_key, _side(opts, target, "--to"), background=False
            )
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


F = TypeVar("F", bound=Callable[..., Any])


def _from_to(f: F) -> F:
    for option in reversed(_FROM_TO):
        f = option(f)
    return f


@cli.command()
@_from_to
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--reembed",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="auto: copy vectors when both sides use the same model, else embed anew.",
)
@click.option("--no-resume", is_flag=True, help="Start over instead of resuming an interrupted run.")
@click.option("--no-verify", is_flag=True, help="Skip the comparison at the end.")
@click.option(
    "--sample-size",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Entries whose vectors are compared value by value.",
)
@click.pass_context
def migrate(
    ctx: click.Context,
    source: str,
    target: str,
    target_store: str | None,
    batch_size: int,
    reembed: str,
    no_resume: bool,
    no_verify: bool,
    sample_size: int,
) -> None:
    """Copy every entry from one store to another, resumable, verified; exit 1 if any is missing."""
    from .._migrate import migrate as run_migrate

    bar = _progress_bar(ctx.obj, "migrate", kept="entries copied")
    index_bar = _progress_bar(ctx.obj, "indexing")
    _two_stores(
        ctx,
        source,
        target,
        target_store,
        lambda a, b: run_migrate(
            a,
            b,
            batch_size=batch_size,
            reembed=reembed,
            resume=not no_resume,
            verify=not no_verify,
            progress=bar,
            sample_size=sample_size,
            index_progress=index_bar,
        ),
    )


@cli.command()
@_from_to
@click.option("--sample-size", type=click.IntRange(min=0), default=100, show_default=True)
@click.pass_context
def validate(ctx: click.Context, source: str, target: str, target_store: str | None, sample_size: int) -> None:
    """Compare two stores entry by entry; exit 1 if anything is missing or different."""
    from .._migrate import validate as run_validate

    _two_stores(ctx, source, target, target_store, lambda a, b: run_validate(a, b, sample_size))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--with-vectors", is_flag=True, help="Include each entry's vector.")
@click.pass_context
def export(ctx: click.Context, path: str, with_vectors: bool) -> None:
    """Write every entry to PATH as JSON Lines (gzip if it ends in .gz)."""
    from .._backup import export as run_export

    bar = _progress_bar(ctx.obj, "export")
    ctx.obj.interrupt_note = "Interrupted: nothing exported (the partial file is removed); run the command again"
    _run(ctx, lambda s: run_export(s, path, with_vectors, progress=bar), _show_mapping)


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--reembed", is_flag=True, help="Ignore the file's vectors and embed the texts anew.")
@click.pass_context
def import_(ctx: click.Context, path: str, batch_size: int, reembed: bool) -> None:
    """Load a file written by export (or JSONL entries); exit 1 if any line failed."""
    from .._backup import import_ as run_import

    bar = _progress_bar(ctx.obj, "import", kept="entries imported")
    index_bar = _progress_bar(ctx.obj, "indexing")
    result = _run(
        ctx,
        lambda s: run_import(s, path, batch_size=batch_size, reembed=reembed, progress=bar, index_progress=index_bar),
        _show_mapping,
    )
    if result["status"] != "ok":
        sys.exit(1)
