"""An in-process lexical index of ids and texts on tantivy (BM25, English stemming), kept in RAM:
the lexical index of the memory primary and of the MongoDB primary on servers without text
indexes. tantivy is imported at first use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from .._types import VectorHit

#: tantivy's smallest writer budget: a writer lives only for one flush, so it stays small
_HEAP = 15_000_000
#: buffered writes applied at once without waiting for a search (bounds the texts held in memory)
FLUSH_AT = 10_000
#: how much deeper each round of a filtered search looks when too few candidates pass the filter
WIDEN = 4


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("text", tokenizer_name="en_stem")  # lower case, Snowball English stems
    return builder.build()


def _utf8(text: str) -> str:
    """``text`` with lone surrogates replaced (tantivy takes only valid Unicode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class TextIndex:
    """Texts by id in a tantivy RAM index, ranked by BM25 (tantivy's default). Writes are
    buffered and applied in one commit by the next ``search`` (or once ``FLUSH_AT`` are
    waiting), so a bulk insert never commits per record; a writer (and its threads) exists only
    during that commit. Empty or blank texts are not indexed. Not thread-safe: use it from one
    thread (the event loop)."""

    def __init__(self) -> None:
        """An empty index; tantivy is imported and the index created at the first flush."""
        self._index: Any = None
        self._pending: dict[str, str | None] = {}  # id -> its new text (None: removed); the latest wins

    def add(self, id_: str, text: str) -> None:
        """Index ``text`` under ``id_``, replacing what ``id_`` had (a blank ``text`` only
        removes it). Applied by the next ``search``. Returns None; raises nothing."""
        self._pending[id_] = text if text.strip() else None
        self._spill()

    def remove(self, ids: Iterable[str]) -> None:
        """Remove ``ids`` from the index (missing ones are ignored). Returns None; raises nothing."""
        for id_ in ids:
            self._pending[id_] = None
        self._spill()

    def clear(self) -> None:
        """Remove everything. Returns None; raises nothing."""
        self._index = None
        self._pending.clear()

    def _spill(self) -> None:
        if len(self._pending) >= FLUSH_AT:
            try:
                self._flush()
            except Exception:  # noqa: BLE001 - kept pending: the next search retries it and raises
                pass

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if self._index is None and all(text is None for text in pending.values()):
            return
        import tantivy

        if self._index is None:
            self._index = tantivy.Index(_schema())
        try:
            with self._index.writer(_HEAP, 1) as writer:
                for id_, text in pending.items():
                    try:
                        id_.encode("utf-8")
                    except UnicodeEncodeError:
                        continue  # never a stored id (validate_id refuses it): nothing to index
                    writer.delete_documents_by_term("id", id_)
                    if text is not None:
                        writer.add_document(tantivy.Document(id=id_, text=_utf8(text)))
                writer.commit()
        except BaseException:
            self._pending = {**pending, **self._pending}  # retried by the next search
            raise
        self._index.reload()

    def search(self, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        """The at most ``limit`` ids whose text holds any of ``terms`` (words of letters and
        digits, as ``_lexical.query_terms`` returns them), best BM25 score first, equal scores
        by id. Applies the pending writes first. Returns (id, score) pairs, scores positive;
        raises nothing for any ``terms``."""
        if not terms or limit <= 0:
            return []
        self._flush()
        if self._index is None:
            return []
        searcher = self._index.searcher()
        # letters and digits only (lower-cased: no AND/OR/NOT), so the parser sees plain words, ORed
        query = self._index.parse_query(" ".join(terms), ["text"])
        depth = limit + 1
        while True:  # deep enough that every hit tied with the last kept one is seen
            hits = searcher.search(query, depth, count=False).hits
            if len(hits) < depth or hits[-1][0] < hits[limit - 1][0]:
                break
            depth *= 2
        found = sorted(((searcher.doc(address)["id"][0], float(score)) for score, address in hits), key=_rank)
        return found[:limit]


def _rank(hit: tuple[str, float]) -> tuple[float, str]:
    return -hit[1], hit[0]


async def filtered_search(
    index: TextIndex,
    terms: Sequence[str],
    limit: int,
    keep: Callable[[list[str]], Awaitable[set[str]]] | None,
) -> list[VectorHit]:
    """The ``limit`` best hits of ``index`` for ``terms`` among the ids ``keep`` accepts
    (``keep(ids)`` returns those of ``ids`` that exist and match the caller's filter; None:
    all): asks the index ``WIDEN`` times deeper until ``limit`` pass or it has no more. Returns
    the hits, best first; raises what ``keep`` raises."""
    if not terms or limit <= 0:
        return []
    verdicts: dict[str, bool] = {}
    depth = limit
    while True:
        hits = index.search(terms, depth)
        exhausted = len(hits) < depth
        if keep is not None:
            unseen = [i for i, _ in hits if i not in verdicts]
            if unseen:
                kept = await keep(unseen)
                verdicts.update((i, i in kept) for i in unseen)
            hits = [(i, s) for i, s in hits if verdicts[i]]
        if len(hits) >= limit or exhausted:
            return [VectorHit(i, s) for i, s in hits[:limit]]
        depth *= WIDEN
