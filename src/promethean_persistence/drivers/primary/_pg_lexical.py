"""The PostgreSQL primary's full-text index: a ``tsvector`` column (``lexemes``) on the
collection table, kept by a trigger so every writer (this driver, older versions of the
package, a user's own SQL) updates it in the record's own transaction; a GIN index over it;
and a partial index of the rows still to index (``lexemes IS NULL``: rows written before the
column existed, or after a change of text search configuration), which the backfill walks.

The text search configuration is the trigger's argument: ``open`` reads it back from
``pg_trigger`` and, when the configured one differs, rebuilds the column (and its indexes)
empty under the new trigger, so the backfill re-indexes every row."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ..._deps import require
from .._postgres import EXTRA, table_name

COLUMN = "lexemes"
#: the GIN index, the trigger and its function: ``{collection}__lexemes``
SUFFIX = "__lexemes"
#: the partial index of the rows still to index: ``{collection}__lexemes_todo``
TODO_SUFFIX = "__lexemes_todo"

# Texts up to this many bytes always fit a tsvector (1 MB): the worst measured, distinct
# hyphenated tokens, makes one 5 times the text's size. Longer ones take the guarded path,
# which indexes the longest head (halving) that fits; its exception block costs a
# subtransaction, so only those rows pay for it.
_SAFE_BYTES = 65536

_FUNCTION = """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.text = OLD.text AND OLD.lexemes IS NOT NULL THEN
        NEW.lexemes := OLD.lexemes;  -- unchanged text (a metadata update): nothing to parse
    ELSIF octet_length(NEW.text) <= {safe} THEN
        NEW.lexemes := to_tsvector(TG_ARGV[0]::regconfig, NEW.text);
    ELSE
        n := length(NEW.text);
        LOOP
            BEGIN
                NEW.lexemes := to_tsvector(TG_ARGV[0]::regconfig, left(NEW.text, n));
                EXIT;
            EXCEPTION WHEN program_limit_exceeded THEN
                n := n / 2;
            END;
        END LOOP;
    END IF;
    RETURN NEW;
END
$$"""


async def ensure(conn: Any, table: str, collection: str, ident: Callable[[str], str], config: str) -> str:
    """Create (or repair) the index of ``collection``'s ``table`` (quoted) on the connection
    ``conn``, inside the caller's transaction (``open``'s, under its advisory lock), for the
    text search configuration ``config``; ``ident`` quotes the collection's name with a
    suffix (``PoolUser._ident``). Returns the configuration's canonical name (what queries
    use); raises psycopg errors (an unknown configuration among them)."""
    trigger = table_name(collection, SUFFIX)
    row = await (
        await conn.execute(
            "SELECT %s::regconfig::text, "
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped), "
            "(SELECT tgargs FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s), "
            "to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (
                config,
                table,
                COLUMN,
                table,
                trigger,
                ident(SUFFIX),
                ident(TODO_SUFFIX),
            ),
        )
    ).fetchone()
    canonical, has_column, args, has_indexes = row
    current = bytes(args).split(b"\0")[0].decode() if args is not None else None
    if current != canonical:
        # another configuration (or a trigger dropped by hand): the stored lexemes are stale;
        # dropping the column is instant (a mass UPDATE to NULL would rewrite every row twice)
        # and takes its indexes with it; the backfill then fills it under the new trigger
        if has_column:
            await conn.execute(f"ALTER TABLE {table} DROP COLUMN {COLUMN}")
            has_column = has_indexes = False
        function = ident(SUFFIX)
        await conn.execute(_FUNCTION.format(function=function, safe=_SAFE_BYTES))
        await conn.execute(f"DROP TRIGGER IF EXISTS {function} ON {table}")
        literal = require("psycopg", extra=EXTRA, driver="postgresql").sql.Literal(canonical).as_string(conn)
        await conn.execute(
            f"CREATE TRIGGER {function} BEFORE INSERT OR UPDATE OF text ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}({literal})"
        )
    if not has_column:
        await conn.execute(f"ALTER TABLE {table} ADD COLUMN {COLUMN} tsvector")
    if not has_indexes:  # checked first: CREATE INDEX IF NOT EXISTS would lock out writers on every open
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {ident(SUFFIX)} ON {table} USING gin ({COLUMN})")
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {ident(TODO_SUFFIX)} ON {table} (id) WHERE {COLUMN} IS NULL")
    return str(canonical)


def query_sql(table: str, clauses: list[str]) -> str:
    """The lexical query over ``table`` with the extra filter ``clauses`` (ANDed); its
    parameters: the configuration and the tsquery text of the words a row must hold one of,
    the configuration and the tsquery text it is ranked by, the clauses' own, then the limit."""
    # ts_rank, not ts_rank_cd: for a disjunction (any word matches) it rewards holding more of
    # the query's words, each word's repeats adding less and less (BM25's saturation, roughly),
    # where cover density would rank a text repeating one word above one holding several.
    # Normalization 1 divides by 1 + log(length): short, focused texts beat long ones that
    # mention the words in passing, without the harshness of dividing by the length itself.
    where = "".join(f" AND {c}" for c in clauses)
    return (
        f"SELECT id, ts_rank({COLUMN}, r, 1) AS score FROM {table}, "
        "to_tsquery(%s::regconfig, %s) AS m, to_tsquery(%s::regconfig, %s) AS r "
        f"WHERE {COLUMN} @@ m AND NOT is_empty{where} ORDER BY score DESC, id LIMIT %s"
    )


Fetch = Callable[[str, Sequence[Any], str], Awaitable[list[tuple[Any, ...]]]]

COMMON_SHARE = 0.01  #: a word in more of the rows than this only ranks rows holding a rarer one
STATS_TTL_S = 60.0
_STATS = (
    "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
    f"WHERE schemaname = current_schema() AND tablename = %s AND attname = '{COLUMN}'"
)
_STEMS = "SELECT t, tsvector_to_array(to_tsvector(%s::regconfig, t)) FROM unnest(%s::text[]) AS t"


class CommonWords:
    """Which query words are common in one table, read from PostgreSQL's own statistics of
    the lexemes column (``pg_stats``, kept by ANALYZE and autovacuum; none yet: no word is
    common). Ranking every row that holds a word found in most rows is what makes a search
    slow, so rows are selected by the rarer words and ranked by all of them."""

    def __init__(self, table_name: str) -> None:
        """``table_name``: the table's unquoted name. Raises nothing."""
        self.table_name = table_name
        self._stems: dict[tuple[str, str], tuple[str, ...]] = {}
        self._common: tuple[float, frozenset[str]] = (float("-inf"), frozenset())

    async def split(self, fetch: Fetch, config: str, terms: list[str]) -> tuple[list[str], list[str]]:
        """``terms`` (``_lexical.query_terms``) as the rare and the common ones in the
        configuration ``config``, through ``fetch``; raises what ``fetch`` raises."""
        now = time.monotonic()
        if now - self._common[0] > STATS_TTL_S:
            rows = await fetch(_STATS, (self.table_name,), "lexical_query")
            elems, freqs = rows[0] if rows and rows[0][0] else ([], [])
            self._common = (now, frozenset(e for e, f in zip(elems, freqs) if f > COMMON_SHARE))
        common = self._common[1]
        if not common:
            return terms, []
        missing = [t for t in terms if (config, t) not in self._stems]
        if missing:
            if len(self._stems) > 100_000:
                self._stems.clear()
            for term, stems in await fetch(_STEMS, (config, missing), "lexical_query"):
                self._stems[config, term] = tuple(stems)
        held = [t for t in terms if all(s in common for s in self._stems[config, t])]
        return [t for t in terms if t not in held], held


async def backfill(fetch: Fetch, table: str, batch_size: int, enabled: bool) -> AsyncIterator[tuple[int, int]]:
    """``LexicalPrimary.lexical_backfill`` of ``table`` (quoted) in batches of ``batch_size``
    rows, through the driver's ``fetch(sql, params, operation)`` (a pooled autocommit
    connection: each statement is its own transaction); nothing when not ``enabled``. Yields
    ``(done, total)`` after each batch; raises what ``fetch`` raises."""
    if not enabled:
        return
    # the partial index makes both lookups cheap, even when nothing is left to do
    total: int = (await fetch(f"SELECT count(*) FROM {table} WHERE {COLUMN} IS NULL", (), "lexical_backfill"))[0][0]
    # rows a concurrent writer holds are skipped (SKIP LOCKED), not waited for; setting text to
    # itself fires the trigger, so the lexemes have one definition
    sql = (
        f"WITH batch AS (SELECT id FROM {table} WHERE {COLUMN} IS NULL AND id > %s ORDER BY id LIMIT %s "
        f"FOR UPDATE SKIP LOCKED) UPDATE {table} AS t SET text = t.text FROM batch WHERE t.id = batch.id "
        "RETURNING t.id"
    )
    done, last, fresh_pass = 0, "", True
    while total:
        rows = await fetch(sql, (last, batch_size), "lexical_backfill")
        if not rows:
            if fresh_pass:  # nothing left, or only rows held by others: the next open goes on
                return
            last, fresh_pass = "", True  # one more pass from the start for the skipped rows
            continue
        done += len(rows)
        last, fresh_pass = max(row[0] for row in rows), False  # ids are COLLATE "C": code point order
        yield done, max(total, done)
