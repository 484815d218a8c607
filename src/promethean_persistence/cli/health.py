"""Health commands: report, retry, repair, flush, purge, stats, doctor."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .._errors import SemanticStoreError
from .._store import SemanticStore
from ._common import _config, _Ctx, _execute, _progress_bar, _run, _show_counts, _show_mapping, _when, cli


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--all", "whole", is_flag=True, help="Check the whole store (finds orphan vectors).")
@click.pass_context
def report(ctx: click.Context, limit: int, whole: bool) -> None:
    """Print the consistency report between the primary and vector stores."""
    _run(ctx, lambda s: s.get_consistency_report(None if whole else limit), _show_mapping)


@cli.command()
@click.argument("id_", metavar="ID")
@click.option("--max-retries", type=click.IntRange(min=1), default=3, show_default=True)
@click.pass_context
def retry(ctx: click.Context, id_: str, max_retries: int) -> None:
    """Write one entry's vector now; exit 1 if it still fails."""

    async def call(store: SemanticStore) -> bool:
        if not await store.retry_vector_write(id_, max_retries=max_retries):
            raise SemanticStoreError(f"Vector write for {id_!r} still fails", operation="retry", document_id=id_)
        return True

    _run(ctx, call, lambda _: click.echo("synced"))


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be re-queued and deleted.")
@click.option("--dedupe", is_flag=True, help="Also delete older duplicates of an id (MongoDB data of the original).")
@click.pass_context
def repair(ctx: click.Context, dry_run: bool, dedupe: bool) -> None:
    """Re-queue missing, failed and stale vectors, delete orphans, and wait for the writes."""

    scan_bar = _progress_bar(ctx.obj, "checking", kept="entries checked")
    bar = _progress_bar(ctx.obj, "repair", kept="vector writes done")

    async def call(store: SemanticStore) -> dict[str, Any]:
        report = await store.repair(dry_run=dry_run, dedupe=dedupe, progress=scan_bar)
        if not dry_run:
            await store.flush(progress=bar)
        return report

    _run(ctx, call, _show_mapping)


@cli.command()
@click.pass_context
def flush(ctx: click.Context) -> None:
    """Write every outstanding vector (left by this or any earlier process) and print what
    the store holds: indexed, pending, failed; exit 1 if any write is failed or still pending."""
    bar = _progress_bar(ctx.obj, "flush")

    async def call(store: SemanticStore) -> dict[str, int]:
        await store.flush(progress=bar)
        return await store.vector_counts()

    counts = _run(ctx, call, _show_counts)
    if counts["pending"] or counts["failed"]:
        sys.exit(1)


@cli.command()
@click.pass_context
def purge(ctx: click.Context) -> None:
    """Delete the expired entries and their vectors; print how many were purged."""

    async def call(store: SemanticStore) -> dict[str, int]:
        return {"purged": await store.purge_expired()}

    _run(ctx, call, lambda result: click.echo(result["purged"]))


@cli.command()
@click.pass_context
def stats(ctx: click.Context) -> None:
    """Print this process's vector write queue statistics and, under ``outbox``, what the
    stored outbox holds for every process (pending, failed, oldest pending age, workers)."""

    async def call(store: SemanticStore) -> dict[str, Any]:
        return {**store.get_queue_stats(), "outbox": await store.get_outbox_stats()}

    def show(result: dict[str, Any]) -> None:
        outbox = result.pop("outbox")
        _show_mapping(result)
        click.echo("outbox (stored, every process):")
        for key, value in outbox.items():
            if key == "worker_list":
                for w in value:
                    click.echo(
                        f"  worker {w['id']} on {w['host']} pid {w['pid']}, last beat {_when(w['last_beat_at'])}"
                    )
            elif key != "checked_at":
                click.echo(f"  {key}: {value}")

    _run(ctx, call, show)


@cli.command()
@click.option(
    "--backlog-warn-s",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Warn when the oldest pending vector write is older than this.",
)
@click.pass_context
def doctor(ctx: click.Context, backlog_warn_s: int) -> None:
    """Check configuration, connectivity and versions of every configured backend, and warn
    about an outbox backlog that nothing drains."""
    from ..doctor import doctor as run_doctor

    o: _Ctx = ctx.obj
    checks = _execute(o, lambda: run_doctor(o.store, _config(o), backlog_warn_ms=backlog_warn_s * 1000))
    if o.json:
        click.echo(json.dumps(checks, indent=2))
    else:
        for c in checks:
            mark = "WARN" if c.get("warning") else "ok  " if c["ok"] else "FAIL"
            click.echo(f"{mark} {c['component']}: {c['detail']}")
    if not all(c["ok"] for c in checks):
        sys.exit(1)
