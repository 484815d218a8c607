"""Commands that load text into a store: ingest, demo."""

from __future__ import annotations

from typing import Any

import click

from .._lexical import MODES
from .._store import SemanticStore
from ._common import _progress_bar, _run, _show_counts, _show_mapping, cli


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False),
    help="Passage ids are paths relative to DIR (default: absolute paths).",
)
@click.option(
    "--cleanup",
    type=click.Choice(["none", "full"]),
    default="none",
    show_default=True,
    help="full: also delete the passages of files no longer under PATHS.",
)
@click.option(
    "--ids",
    type=click.Choice(["content", "random"]),
    default="content",
    show_default=True,
    help="Ids of JSONL entries without one: a hash of the entry, or new each time.",
)
@click.pass_context
def ingest(
    ctx: click.Context, paths: tuple[str, ...], batch_size: int, root: str | None, cleanup: str, ids: str
) -> None:
    """Ingest text/Markdown files (split into passages) and JSONL entries; unchanged ones are skipped."""
    from ..ingest import ingest as run_ingest

    bar, index_bar = _progress_bar(ctx.obj, "ingest"), _progress_bar(ctx.obj, "indexing")

    def show(result: dict[str, Any]) -> None:
        _show_mapping(result)
        _show_counts(result)

    def call(store: SemanticStore) -> Any:
        return run_ingest(
            store,
            paths,
            root=root,
            cleanup=cleanup,
            ids=ids,
            batch_size=batch_size,
            progress=bar,
            index_progress=index_bar,
        )

    _run(ctx, call, show)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="Ingest only the first N docstrings.")
@click.option("-k", "top", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--mode", type=click.Choice(MODES), help="Ranking of the answers (default: hybrid).")
@click.pass_context
def demo(ctx: click.Context, limit: int | None, top: int, mode: str | None) -> None:
    """Ingest the standard library's docstrings and answer example questions."""
    from ..demo import answer_questions, stdlib_entries
    from ..ingest import ingest_entries

    assert ctx.parent is not None  # a command of the cli group
    if ctx.parent.get_parameter_source("store") is click.core.ParameterSource.DEFAULT:
        ctx.obj.store = "stdlib"  # keep the demo out of the user's default store
    bar, index_bar = _progress_bar(ctx.obj, "stdlib docstrings"), _progress_bar(ctx.obj, "indexing")

    async def call(store: SemanticStore) -> dict[str, Any]:
        ingested = await ingest_entries(store, list(stdlib_entries(limit)), progress=bar, index_progress=index_bar)
        return {"ingested": ingested, "answers": await answer_questions(store, k=top, mode=mode)}

    def show(result: dict[str, Any]) -> None:
        i = result["ingested"]
        click.echo(f"ingested {i['entries']} docstrings in {i['seconds']} s ({i['entries_per_s']}/s)")
        _show_counts(i)
        if i["pending"] or i["failed"]:
            click.echo("the index is incomplete: answers below may miss entries (semantic-store flush finishes it)")
        else:
            click.echo("answering from the complete index")
        found = 0
        if result["answers"]:
            click.echo(f"searching in {result['answers'][0]['mode']} mode")
        for a in result["answers"]:
            found += a["found"]
            click.echo(f"\n{'✓' if a['found'] else '✗'} {a['question']}")
            for id_, score in zip(a["top"], a["scores"]):
                click.echo(f"    {score:.3f}  {id_}" + ("   <- expected" if id_ in a["expected"] else ""))
        click.echo(f"\n{found}/{len(result['answers'])} questions have an expected answer in the top {top}")

    _run(ctx, call, show)
