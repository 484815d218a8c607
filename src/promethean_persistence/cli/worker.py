"""The ``worker`` command: drain the outboxes of stores written with ``vector_writes="worker"``."""

from __future__ import annotations

import logging
from typing import Any

import click

from ._common import _config, _Ctx, _execute, _print, _show_mapping, cli


@cli.command()
@click.option("--batch-size", type=click.IntRange(min=1), help="Items claimed at a time [default: vector_batch_size].")
@click.option("--poll-ms", type=click.IntRange(min=1), default=1000, show_default=True, help="Pause when idle.")
@click.option("--heartbeat-ms", type=click.IntRange(min=100), default=5000, show_default=True)
@click.option("--once", is_flag=True, help="Exit once nothing is due instead of waiting for more work.")
@click.pass_context
def worker(ctx: click.Context, batch_size: int | None, poll_ms: int, heartbeat_ms: int, once: bool) -> None:
    """Embed and write the vectors left in the outbox of the stores named by --store (a,b),
    else of every store of the configured primary, beside any number of other workers;
    SIGTERM/SIGINT finish the batch in hand and exit 0."""
    from .._workers import run_worker

    o: _Ctx = ctx.obj
    assert ctx.parent is not None  # a command of the cli group
    named = ctx.parent.get_parameter_source("store") is not click.core.ParameterSource.DEFAULT
    stores = [s.strip() for s in o.store.split(",") if s.strip()] if named else None
    if named and not stores:
        raise click.BadParameter("no store named", param_hint="--store")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def go() -> Any:
        result: Any = await run_worker(
            stores,
            _config(o),
            text_key=o.text_key,
            time_key=o.time_key,
            batch_size=batch_size,
            poll_ms=poll_ms,
            once=once,
            heartbeat_ms=heartbeat_ms,
            handle_signals=True,
        )
        return result

    _print(o, _execute(o, go), _show_mapping)
