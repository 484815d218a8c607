"""The lexical index: the server's own text index where it has text indexes (``$text``,
English stemming, ranked by textScore; the server keeps it with every write), else an
in-process tantivy index (``_tantivy.TextIndex``) that this driver builds from the collection
(``lexical_backfill``) and keeps with its own writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from ...._deps import require
from ...._filters import Node
from ...._lexical import query_terms
from ...._types import Record, VectorHit
from ..._tantivy import TextIndex, filtered_search
from ...base import Capabilities
from ._layout import EXTRA, LANGUAGE, SCORE, TEXT_INDEX
from ._legacy import _later

BACKFILL_BATCH = 1000  #: records per read when a search has to finish the backfill itself


class Lexical:
    """The lexical index of ``MongoPrimary`` (a mixin: the driver holds the state)."""

    if TYPE_CHECKING:  # the driver's state and the other mixins' methods used here
        name: ClassVar[str]
        capabilities: Capabilities
        text_key: str
        _col: Any

        def _mapped(self, operation: str) -> AbstractAsyncContextManager[None]: ...
        def _window(self, since: int | None, until: int | None, include_empty: bool) -> list[dict[str, Any]]: ...
        def _query(self, clauses: list[dict[str, Any]], where: Node | None) -> dict[str, Any]: ...
        def _record(self, doc: Mapping[str, Any]) -> Record: ...
        async def count(self, where: Node | None = None) -> int: ...

    _server_text = False  #: the server's text index answers searches
    _lex: TextIndex | None = None  #: the in-process fallback (None: none kept)
    _lex_done = False  #: the fallback holds every record written before this driver opened
    _lex_after: Any = None  #: where an interrupted backfill goes on (the last ``_id`` read)
    _lex_read = 0  #: records the backfill has read so far
    _lex_seq = 0  #: counts this driver's writes, so a backfill never indexes what a write replaced
    _lex_gen = 0  #: counts drops: a backfill running across one stops
    _lex_touched: dict[str, int]  #: id -> ``_lex_seq`` of its last write, while the index is incomplete

    async def _open_lexical(self) -> None:
        """On open: use the server's text index (creating ours) if it has text indexes, else
        start the in-process fallback, built by ``lexical_backfill``."""
        self._server_text, self._lex = False, None
        if not self.capabilities.lexical:
            return
        if await self._text_index():
            self._server_text = True
            return
        self._lex, self._lex_done, self._lex_after, self._lex_read = TextIndex(), False, None, 0
        self._lex_touched = {}

    async def _text_index(self) -> bool:
        """Whether ``$text`` searches our text index on the text field (created here if the
        collection has none)."""
        errors = require("pymongo.errors", extra=EXTRA, driver=self.name)
        for name, spec in (await self._col.index_information()).items():
            if any(kind == "text" for _, kind in spec.get("key", ())):
                # at most one text index per collection, and $text searches it: only ours will do
                return bool(name == TEXT_INDEX and dict(spec.get("weights") or {}) == {self.text_key: 1})
        try:
            await self._col.create_index(
                [(self.text_key, "text")], name=TEXT_INDEX, default_language="english", language_override=LANGUAGE
            )
            await self._col.find({"$text": {"$search": "probe"}}, {"_id": 1}).limit(1).to_list()
        except errors.OperationFailure:
            return False  # no text indexes (SecantusDB and other wire-compatible servers)
        return True

    # -- the fallback follows this driver's writes --------------------------------------------

    def _lexical_wrote(self, records: Sequence[Record]) -> None:
        if self._lex is None:
            return
        self._lex_seq += 1
        for r in records:
            self._lex.add(r.id, r.text)
            if not self._lex_done:
                self._lex_touched[r.id] = self._lex_seq

    def _lexical_deleted(self, ids: Sequence[str]) -> None:
        if self._lex is None:
            return
        self._lex_seq += 1
        self._lex.remove(ids)
        if not self._lex_done:
            self._lex_touched.update(dict.fromkeys(ids, self._lex_seq))

    def _lexical_dropped(self) -> None:
        if self._lex is None:
            return
        self._lex.clear()
        self._lex_gen += 1
        self._lex_done, self._lex_after, self._lex_read = True, None, 0  # empty, so complete
        self._lex_touched.clear()

    # -- LexicalPrimary -------------------------------------------------------------------

    async def lexical_query(self, text: str, limit: int, where: Node | None = None) -> list[VectorHit]:
        """See ``LexicalPrimary.lexical_query``."""
        terms = query_terms(text)
        if not terms or limit <= 0:
            return []
        if self._server_text:
            return await self._text_search(terms, limit, where)
        lex = self._lex
        if lex is None:
            return []
        if not self._lex_done:  # the store backfills on open; a bare driver's first search does it
            async for _ in self.lexical_backfill(BACKFILL_BATCH):
                pass
        window = self._window(None, None, False)

        async def keep(ids: list[str]) -> set[str]:
            # exact filter semantics, and only records that still exist with a non-empty text
            query = self._query([{"id": {"$in": ids}}, *window], where)
            async with self._mapped("lexical_query"):
                return {str(d.get("id")) async for d in self._col.find(query, {"id": 1, "_id": 0})}

        return await filtered_search(lex, terms, limit, keep)

    async def _text_search(self, terms: list[str], limit: int, where: Node | None) -> list[VectorHit]:
        # letters and digits only: no -negation or "phrase" syntax; the server ORs and stems them
        search = {"$search": " ".join(terms), "$language": "english"}
        query = {"$text": search, **self._query(self._window(None, None, False), where)}
        projection = {"id": 1, "_id": 0, SCORE: {"$meta": "textScore"}}
        sort = [(SCORE, {"$meta": "textScore"}), ("id", 1)]
        async with self._mapped("lexical_query"):
            docs = await self._col.find(query, projection).sort(sort).limit(limit).to_list()
        hits: dict[str, VectorHit] = {}
        for d in docs:  # a duplicate the original inserted after we opened: keep the best
            hits.setdefault(str(d.get("id")), VectorHit(str(d.get("id")), float(d[SCORE])))
        return list(hits.values())

    async def lexical_backfill(self, batch_size: int) -> AsyncIterator[tuple[int, int]]:
        """Read every record into the in-process index (the fallback), ``batch_size`` at a time.

        See ``LexicalPrimary.lexical_backfill``; yields nothing where the server keeps the index."""
        lex, gen = self._lex, self._lex_gen
        if lex is None or self._lex_done:
            return
        total = await self.count()
        while True:
            after, seq = self._lex_after, self._lex_seq
            # by _id (unique, indexed, always there), as the original's ids may repeat or be missing
            query = self._query([{"_id": {"$gt": after}}] if after is not None else [], None)
            async with self._mapped("lexical_backfill"):
                cursor = self._col.find(query, {"id": 1, self.text_key: 1}).sort("_id", 1).limit(batch_size)
                docs = await cursor.to_list()
            if self._lex_gen != gen or self._lex_done:
                return  # dropped meanwhile, or another backfill finished the index
            if not docs:
                self._lex_done = True
                self._lex_touched.clear()
                return
            for d in docs:
                r = self._record(d)
                if self._lex_touched.get(r.id, -1) <= seq:  # else a write since the read replaced it
                    lex.add(r.id, r.text)
            last = docs[-1]["_id"]
            self._lex_after = last if self._lex_after is None or _later(last, self._lex_after) else self._lex_after
            self._lex_read += len(docs)
            yield self._lex_read, max(total, self._lex_read)  # the collection may have grown meanwhile
