"""The SQLite primary's lexical index: an FTS5 table over the collection table's ``text``
(external content, Porter stemming over Unicode words, BM25 ranking), kept by triggers so
every writer of the table (this driver, a user's SQL) updates it in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ._sqlite import quote

SUFFIXES = ("__lexical", "__lexical_data", "__lexical_idx", "__lexical_docsize", "__lexical_config")
TOKENIZER = "porter unicode61 remove_diacritics 2"


class FtsIndex:
    """The FTS5 index of the table ``{base}`` (named ``{base}__lexical``, with its shadow
    tables and triggers ``{base}__lexical_ai``/``_ad``/``_au``)."""

    def __init__(self, base: str) -> None:
        """``base`` is the collection table's name (unquoted). Raises nothing."""
        self.table = quote(base)
        self.fts = quote(f"{base}__lexical")
        self.docsize = quote(f"{base}__lexical_docsize")
        self._trigger = f"{base}__lexical"
        self._content = base.replace("'", "''")

    def create(self, conn: sqlite3.Connection) -> None:
        """Create the index and its triggers on ``conn`` (inside the caller's transaction);
        rows already in the table stay unindexed until ``backfill``. Returns None; raises
        ``sqlite3.Error``."""
        conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {self.fts} USING fts5(text, content='{self._content}', "
            f"content_rowid='rowid', tokenize='{TOKENIZER}')"
        )
        # only a row the index holds may be deleted from it (external content: deleting an
        # unindexed row would corrupt its counts), so a backfill may run beside writers
        indexed = f"EXISTS (SELECT 1 FROM {self.docsize} WHERE id = old.rowid)"
        remove = (
            f"INSERT INTO {self.fts} ({self.fts}, rowid, text) SELECT 'delete', old.rowid, old.text WHERE {indexed};"
        )
        add = f"INSERT INTO {self.fts} (rowid, text) VALUES (new.rowid, new.text);"
        for suffix, event, body in (
            ("_ai", "AFTER INSERT", add),
            ("_ad", "AFTER DELETE", remove),
            ("_au", "AFTER UPDATE OF text", remove + " " + add),
        ):
            name = quote(self._trigger + suffix)
            conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {event} ON {self.table} BEGIN {body} END")

    def query_sql(self, where_sql: str | None) -> str:
        """The search statement (parameters: the MATCH expression, then ``where_sql``'s, then
        the limit): ids and BM25 scores (positive, higher is better), best first, ties by id,
        of the rows matching the filter ``where_sql`` (None: all). Empty texts hold no word,
        so they never match. Raises nothing."""
        where = f" AND ({where_sql})" if where_sql else ""
        return (
            f"SELECT t.id, -bm25({self.fts}) AS score FROM {self.fts} "
            f"JOIN {self.table} AS t ON t.rowid = {self.fts}.rowid "
            f"WHERE {self.fts} MATCH ?{where} ORDER BY score DESC, t.id LIMIT ?"
        )

    def top_sql(self) -> str:
        """The unfiltered search, faster: the best ``limit + 1`` rows scored by the index alone
        (parameters: the MATCH expression and ``limit + 1``), then their ids; the caller falls
        back to ``query_sql`` when the last two tie (ties go by id). Raises nothing."""
        return (
            f"SELECT t.id, s.score FROM (SELECT rowid, -bm25({self.fts}) AS score FROM {self.fts} "
            f"WHERE {self.fts} MATCH ? ORDER BY score DESC LIMIT ?) AS s JOIN {self.table} AS t ON t.rowid = s.rowid "
            "ORDER BY s.score DESC, t.id"
        )

    def missing(self, conn: sqlite3.Connection) -> int:
        """How many rows of the table the index does not hold yet, read on ``conn``. Raises
        ``sqlite3.Error``."""
        sql = (
            f"SELECT COUNT(*) FROM {self.table} AS t WHERE NOT EXISTS (SELECT 1 FROM {self.docsize} WHERE id = t.rowid)"
        )
        count: int = conn.execute(sql).fetchone()[0]
        return count

    def backfill_step(self, batch_size: int, after: int) -> Callable[[sqlite3.Connection], tuple[int, int]]:
        """A transaction body indexing up to ``batch_size`` unindexed rows with a rowid above
        ``after``; it returns how many it indexed and the last rowid it saw. Raises nothing."""
        select = (
            f"SELECT rowid, text FROM {self.table} AS t WHERE rowid > ? AND NOT EXISTS "
            f"(SELECT 1 FROM {self.docsize} WHERE id = t.rowid) ORDER BY rowid LIMIT ?"
        )
        insert = f"INSERT INTO {self.fts} (rowid, text) VALUES (?, ?)"

        def step(conn: sqlite3.Connection) -> tuple[int, int]:
            rows: list[Any] = conn.execute(select, (after, batch_size)).fetchall()
            conn.executemany(insert, rows)
            return len(rows), rows[-1][0] if rows else after

        return step
