"""Lexical search, shared by every primary driver and the store: the words a query looks up,
and reciprocal-rank fusion of rankings (Cormack, Clarke and Büttcher, 2009)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MODES = ("vector", "lexical", "hybrid")
MAX_TERMS = 64  #: words of a query looked up at most (a pasted page stays one bounded query)

_WORD = re.compile(r"[^\W_]+")  # letters and digits: what FTS5's unicode61 and tsvector keep as one token

#: English stop words (Snowball's list, as PostgreSQL's ``english`` configuration drops them, and contractions' pieces):
#: a question's "how", "does" and "the" would otherwise match nearly every entry
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now
    d ll m re ve aren couldn didn doesn hadn hasn haven isn mightn mustn needn shan shouldn wasn weren wouldn""".split()
)  # the second line: what is left of "I'm", "you're", "doesn't" once the apostrophe splits them


def query_terms(text: str) -> list[str]:
    """The words of the query ``text`` a lexical index looks up: runs of letters and digits,
    lower-cased, without English stop words or repeats, the first ``MAX_TERMS`` of them (an
    empty list when none is left). Returns a list; raises nothing."""
    terms: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = match.group().lower()  # not casefold: each engine folds (FTS5 keeps ß, as it does in the texts)
        if word not in STOP_WORDS:
            terms[word] = None
            if len(terms) == MAX_TERMS:
                break
    return list(terms)


def fetch_depth(limit: int, fetch_k: int | None) -> int:
    """How many results each ranking of a hybrid search fetches for ``limit`` results:
    ``fetch_k`` when set (raised to ``limit``), else ``max(4 * limit, 50)``. Raises nothing."""
    return max(fetch_k, limit) if fetch_k is not None else max(4 * limit, 50)


def rrf(rankings: Iterable[Sequence[str]], k: int) -> dict[str, float]:
    """Reciprocal-rank fusion of ``rankings`` (lists of ids, best first): each id scores the
    sum over the rankings holding it of ``1 / (k + rank)``, ranks counted from 1; ``k`` (60
    by default in the store) damps the weight of the first places. Returns the scores by id;
    raises nothing."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, id_ in enumerate(ranking, start=1):
            fused[id_] = fused.get(id_, 0.0) + 1.0 / (k + rank)
    return fused
