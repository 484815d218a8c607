"""The ``mcp`` command: serve the store to AI agents over the Model Context Protocol."""

from __future__ import annotations

import os
from typing import Any, cast

import click

from .._errors import ConfigurationError
from .._mirror import open_store
from .._store import SemanticStore
from ._common import _Ctx, _execute, cli


@cli.command("mcp")
@click.option(
    "--http",
    "http",
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (HOST defaults to 127.0.0.1; "
    "any other than loopback needs $SEMANTIC_STORE_MCP_TOKEN, which every request must then send as a bearer token).",
)
@click.option(
    "--scope",
    "scopes",
    metavar="K=V",
    multiple=True,
    help="Confine the server to the entries whose metadata field K is V (a string); repeatable. Every write "
    "carries the fields, every read and delete (context's other collections too) sees only them.",
)
@click.pass_context
def mcp_command(ctx: click.Context, http: str | None, scopes: tuple[str, ...]) -> None:
    """Serve the store to AI agents over MCP (stdio by default); tools: remember, recall, recent,
    get, forget, report, context."""
    from ..mcp_server import TOKEN_ENV, is_loopback, parse_bind, require_mcp, serve

    o: _Ctx = ctx.obj
    if o.profile and not o.config_file:
        raise click.UsageError("--profile needs --config FILE")
    bind = None
    if http is not None:
        try:
            bind = parse_bind(http)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--http") from None
    scope: dict[str, Any] = {}
    for item in scopes:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected K=V, got {item!r}", param_hint="--scope")
        scope[key] = value
    token = os.environ.get(TOKEN_ENV) or None
    if bind is not None and not is_loopback(bind[0]) and token is None:
        raise click.UsageError(
            f"--http {http}: serving beyond loopback needs a bearer token; set {TOKEN_ENV} (clients then send "
            f"'Authorization: Bearer <token>'), or bind 127.0.0.1"
        )

    async def opener(name: str) -> Any:
        return await open_store(
            name, o.text_key, o.time_key, config_file=o.config_file, profile=o.profile, background=False
        )

    async def go() -> None:
        require_mcp()
        # a long-lived server keeps the background outbox worker, which retries failed vector writes
        store = await open_store(o.store, o.text_key, o.time_key, config_file=o.config_file, profile=o.profile)
        try:
            served: Any = cast(SemanticStore, store)
            if scope:
                if not hasattr(store, "scope"):
                    raise ConfigurationError("--scope needs a plain store: this profile is a mirror")
                served = served.scope(**scope)
            await serve(
                served,
                opener,
                name=o.store,
                text_key=o.text_key,
                time_key=o.time_key,
                scope=scope,
                http=bind,
                token=token,
                close=store.cleanup,
            )
        finally:
            await store.cleanup()

    _execute(o, go)
