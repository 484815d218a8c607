"""The SQLite primary's lexical index: an FTS5 table over the collection table's ``text``
(external content, Porter stemming over Unicode words, BM25 ranking), kept by triggers so
every writer of the table (this driver, a user's SQL) updates it in the same transaction
(this driver's own inserts index their rows in one statement instead: ``adding``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ._sqlite import quote

SUFFIXES = ("__lexical", "__lexical_data", "__lexical_idx", "__lexical_docsize", "__lexical_config", "__lexical_bulk")
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: a word in more of the rows than this share (and than ``COMMON_MIN``) only adds to the scores
#: of rows holding a rarer query word: BM25 would score every row holding it, which is what
#: makes a search on a large store slow (FTS5 has no dynamic pruning)
COMMON_SHARE = 0.01
COMMON_MIN = 1000
PRUNE_FROM_ROWS = 20_000  #: smaller indexes rank every match (a few milliseconds)
COUNT_TTL_S = 60.0
_PRUNED_LIMIT = 1000  #: deeper searches rank every match


def _any(terms: list[str]) -> str:
    """The FTS5 expression matching any of ``terms`` (letters and digits only: never syntax)."""
    return " OR ".join(f'"{t}"' for t in terms)


def _expired(now: int | None, expiries: Iterable[int | None]) -> bool:
    """Whether any of ``expiries`` (epoch ms, None: never) is at or before ``now`` (None: no
    expiry applies)."""
    return now is not None and any(e is not None and e <= now for e in expiries)


class FtsIndex:
    """The FTS5 index of the table ``{base}`` (named ``{base}__lexical``, with its shadow
    tables and triggers ``{base}__lexical_ai``/``_ad``/``_au``)."""

    def __init__(self, base: str) -> None:
        """``base`` is the collection table's name (unquoted). Raises nothing."""
        self.table = quote(base)
        self.fts = quote(f"{base}__lexical")
        self.docsize = quote(f"{base}__lexical_docsize")
        self.bulk = quote(f"{base}__lexical_bulk")
        self._trigger = f"{base}__lexical"
        self._content = base.replace("'", "''")
        self._counts: dict[str, tuple[float, int]] = {}  #: rows holding each word ("": all rows), and when

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
        # the insert trigger stands aside while ``adding`` marks the bulk table (inside a
        # write transaction, so no other connection ever sees the mark)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self.bulk} (mark INTEGER)")
        bulk = f"WHEN NOT EXISTS (SELECT 1 FROM {self.bulk})"
        found = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (self._trigger + "_ai",)).fetchone()
        if found and bulk not in found[0]:  # an earlier version's insert trigger, indexing row by row
            conn.execute(f"DROP TRIGGER {quote(self._trigger + '_ai')}")
        for suffix, event, body in (
            ("_ai", f"AFTER INSERT ON {self.table} {bulk}", add),
            ("_ad", f"AFTER DELETE ON {self.table}", remove),
            ("_au", f"AFTER UPDATE OF text ON {self.table}", remove + " " + add),
        ):
            conn.execute(f"CREATE TRIGGER IF NOT EXISTS {quote(self._trigger + suffix)} {event} BEGIN {body} END")

    @contextmanager
    def adding(self, conn: sqlite3.Connection, ids: list[str]) -> Iterator[None]:
        """Rows inserted inside (on ``conn``, in the caller's transaction) are indexed together
        at the end: those of ``ids`` that the index lacks. One statement instead of the
        insert trigger's one per row: FTS5 writes its pending terms out at every trigger's
        statement, which cost 5x (measured 15 against 3 ms per 500 rows). Raises
        ``sqlite3.Error``."""
        conn.execute(f"INSERT INTO {self.bulk} VALUES (1)")
        try:
            yield
        finally:
            conn.execute(f"DELETE FROM {self.bulk}")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            conn.execute(
                f"INSERT INTO {self.fts} (rowid, text) SELECT t.rowid, t.text FROM {self.table} AS t "
                f"WHERE t.id IN ({','.join('?' * len(chunk))}) "
                f"AND NOT EXISTS (SELECT 1 FROM {self.docsize} WHERE id = t.rowid)",
                chunk,
            )

    def search(
        self,
        conn: sqlite3.Connection,
        terms: list[str],
        limit: int,
        where_sql: str | None,
        params: list[Any],
        *,
        now: int | None = None,
    ) -> list[tuple[str, float]]:
        """The ids and BM25 scores (positive, higher is better) of the ``limit`` rows best
        matching any of ``terms`` (``_lexical.query_terms``), best first, ties by id, among
        those matching the filter ``where_sql`` with its ``params`` (None: all) and, with
        ``now`` (epoch ms), not expired then (the table's ``expires_at`` column is NULL or
        after it). Empty texts hold no word, so they never match. Runs on ``conn``; raises
        ``sqlite3.Error``."""
        match = _any(terms)
        if where_sql is None:
            # the unfiltered fast paths rank the index alone, then look the rows up: they
            # stand when none of those rows has expired, else the filtered statement ranks
            common = self._common(conn, terms)
            rare = [t for t in terms if t not in common]
            if common and rare and limit <= _PRUNED_LIMIT:
                hits = self._pruned(conn, _any(rare), _any(sorted(common)), limit, now)
                if hits is not None:
                    return hits
            top = (
                f"SELECT t.id, s.score, t.expires_at FROM (SELECT rowid, -bm25({self.fts}) AS score FROM {self.fts} "
                f"WHERE {self.fts} MATCH ? ORDER BY score DESC LIMIT ?) AS s "
                f"JOIN {self.table} AS t ON t.rowid = s.rowid"
            )
            hits = self._best(conn, top, (match,), limit, now)
            if hits is not None:
                return hits
        clauses = [f"({where_sql})"] if where_sql else []
        values = [match, *params]
        if now is not None:
            clauses.append("(t.expires_at IS NULL OR t.expires_at > ?)")
            values.append(now)
        where = "".join(f" AND {c}" for c in clauses)
        sql = (
            f"SELECT t.id, -bm25({self.fts}) AS score FROM {self.fts} "
            f"JOIN {self.table} AS t ON t.rowid = {self.fts}.rowid "
            f"WHERE {self.fts} MATCH ?{where} ORDER BY score DESC, t.id LIMIT ?"
        )
        return conn.execute(sql, (*values, limit)).fetchall()

    def _pruned(
        self, conn: sqlite3.Connection, rare: str, common: str, limit: int, now: int | None
    ) -> list[tuple[str, float]] | None:
        """The search scoring only rows holding a rare word (the query's common words still
        count in their scores), or None when fewer than ``limit`` rows hold one or, with
        ``now`` (epoch ms), when one of the best has expired by then."""
        # bm25() sums over the expression's words, each once: rows holding a common word score
        # exactly in the first ranking, the others in the second (rare words alone), and a
        # common word only adds to a score, so each row's exact score is its larger one
        sql = (
            f"SELECT t.id, s.score, t.expires_at FROM (SELECT rowid, max(score) AS score FROM ("
            f"SELECT rowid, -bm25({self.fts}) AS score FROM {self.fts} WHERE {self.fts} MATCH ? UNION ALL "
            f"SELECT rowid, -bm25({self.fts}) FROM {self.fts} WHERE {self.fts} MATCH ?) "
            f"GROUP BY rowid ORDER BY score DESC LIMIT ?) AS s JOIN {self.table} AS t ON t.rowid = s.rowid"
        )
        hits = self._best(conn, sql, (f"({rare}) AND ({common})", rare), limit, now)
        return hits if hits is not None and len(hits) == limit else None

    @staticmethod
    def _best(
        conn: sqlite3.Connection, sql: str, params: tuple[str, ...], limit: int, now: int | None
    ) -> list[tuple[str, float]] | None:
        """The ``limit`` best ``(id, score)`` of ``sql`` (``params``, then how many rows it
        reads, best first; ``(id, score, expires_at)`` rows), ties by id, or None where one of
        them has expired by ``now`` (epoch ms, None: none expire)."""
        # scores rounded to 9 digits: equal sums may differ in their last bits. Rows past the
        # cut tell whether more tie with the last kept: then a deeper read. Each costs a
        # lookup (50 more: 0.5 ms); 10 spare most searches a second read
        depth = limit + 10
        while True:
            found = conn.execute(sql, (*params, depth)).fetchall()
            if _expired(now, (e for _, _, e in found)):
                return None
            ranked = sorted(((i, round(s, 9)) for i, s, _ in found), key=lambda hit: (-hit[1], hit[0]))
            if len(found) < depth or ranked[-1][1] < ranked[limit - 1][1]:
                return ranked[:limit]
            depth *= 4

    def _common(self, conn: sqlite3.Connection, terms: list[str]) -> set[str]:
        """Those of ``terms`` in more than ``COMMON_SHARE`` of the rows (and ``COMMON_MIN``)
        of an index of ``PRUNE_FROM_ROWS`` rows or more, counted on ``conn``. Counts are cached
        for ``COUNT_TTL_S``: a stale count only moves the line between rare and common words,
        never a score."""
        now = time.monotonic()
        rows = self._counts.get("")
        if rows is None or now - rows[0] > COUNT_TTL_S:
            rows = self._counts[""] = (now, conn.execute(f"SELECT COUNT(*) FROM {self.docsize}").fetchone()[0])
        line = max(COMMON_SHARE * rows[1], COMMON_MIN)
        if rows[1] < PRUNE_FROM_ROWS:
            return set()
        common = set()
        for term in terms:
            count = self._counts.get(term)
            if count is None or now - count[0] > COUNT_TTL_S:
                sql = f"SELECT COUNT(*) FROM {self.fts} WHERE {self.fts} MATCH ?"
                count = self._counts[term] = (now, conn.execute(sql, (f'"{term}"',)).fetchone()[0])
            if count[1] > line:
                common.add(term)
        if len(self._counts) > 100_000:
            self._counts.clear()
        return common

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
