"""Entry commands: insert, get, recent, search, delete, count, context."""

from __future__ import annotations

import json
from typing import Any

import click

from .._errors import SemanticStoreError
from .._lexical import MODES
from .._store import SemanticStore
from ._common import _config, _Ctx, _execute, _json_arg, _run, _table, cli


@cli.command()
@click.argument("text")
@click.option("--id", "id_", help="Entry id (default: a new UUID); an existing id is replaced.")
@click.option("--metadata", "-m", help="Metadata as a JSON object.")
@click.option("--timestamp", help="Epoch ms or ISO-8601 (default: now).")
@click.pass_context
def insert(ctx: click.Context, text: str, id_: str | None, metadata: str | None, timestamp: str | None) -> None:
    """Insert one entry and print its id."""
    o: _Ctx = ctx.obj
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
def get(ctx: click.Context, id_: str) -> None:
    """Print one entry; exit 1 if there is none."""

    async def call(store: SemanticStore) -> dict[str, Any]:
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
def recent(
    ctx: click.Context,
    limit: int,
    filter_: str | None,
    asc: bool,
    since: str | None,
    until: str | None,
    include_empty: bool,
) -> None:
    """Print the newest entries."""
    where = _json_arg(filter_, "--filter")
    since_v = int(since) if since and since.isdigit() else since
    until_v = int(until) if until and until.isdigit() else until
    _run(
        ctx,
        lambda s: s.get_most_recent(
            limit, where, order="asc" if asc else "desc", since=since_v, until=until_v, include_empty=include_empty
        ),
        _table,
    )


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--limit", "-k", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--where", help="Metadata filter as JSON.")
@click.option("--min-score", type=float)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="Ranking: nearest embeddings, words (full-text index), or both fused. Default: the store's search_mode.",
)
@click.pass_context
def search(
    ctx: click.Context,
    queries: tuple[str, ...],
    limit: int,
    where: str | None,
    min_score: float | None,
    mode: str | None,
) -> None:
    """Print the entries most relevant to QUERIES."""
    where_v = _json_arg(where, "--where")
    _run(
        ctx,
        lambda s: s.get_most_relevant(list(queries), limit, where_v, min_score=min_score, mode=mode),
        lambda r: _table(r, score=True),
    )


@cli.command()
@click.argument("id_", metavar="ID")
@click.pass_context
def delete(ctx: click.Context, id_: str) -> None:
    """Delete one entry and its vector."""
    _run(ctx, lambda s: s.delete(id_), lambda existed: click.echo("deleted" if existed else "not found"))


@cli.command()
@click.pass_context
def count(ctx: click.Context) -> None:
    """Print the number of entries."""
    _run(ctx, lambda s: s.count(), click.echo)


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--collections", "-c", required=True, help="Comma-separated collection (store) names.")
@click.option("--recent-limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--query-limit", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--assistant-name", default="Duck", show_default=True)
@click.option("--format-assistant-messages", is_flag=True)
@click.pass_context
def context(
    ctx: click.Context,
    texts: tuple[str, ...],
    collections: str,
    recent_limit: int,
    query_limit: int,
    limit: int,
    assistant_name: str,
    format_assistant_messages: bool,
) -> None:
    """Print the LLM context compiled from several collections for TEXTS."""
    from .._context import ContextStore

    o: _Ctx = ctx.obj
    names = [n.strip() for n in collections.split(",") if n.strip()]

    async def go() -> list[dict[str, Any]]:
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
