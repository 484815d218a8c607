"""Search quality benchmark: the store's three search modes (``vector``, ``lexical``, ``hybrid``)
on corpora with relevance judgments (two ship in ``bench/data``, one is built from this
machine's package lists; see ``bench/data/README.md``), against the same rankings computed by
hand (the raw baseline) in the same run.

Corpora:

* ``stdlib``: 5,242 docstring summaries of CPython 3.11's standard library, with 165
  hand-written questions (129 paraphrased in plain words, 36 naming an identifier) and graded
  judgments (2: answers it, 1: a useful alternative).
* ``numpy_seealso``: 545 docstring summaries of NumPy, queried by the one-line descriptions
  that *other* NumPy docstrings give of them in their "See Also" sections (descriptions that
  copy the target's own summary left out): a known-item set whose judgments come from NumPy's
  authors, not from us.
* ``debian``: the "apt search" task, built at run time (nothing of it ships): the long
  descriptions of the packages apt knows (``apt-cache dumpavail`` and the lists'
  ``Translation-en`` files, plus dpkg's status for the installed ones), one document per
  distinct text, queried by the packages' synopses (3 words or more; relevant: every document
  holding the long description of a package with that synopsis; synopses shared by more than 5
  documents left out). A fixed-seed sample of 500 queries and 10,000 documents holding every
  judged one. Queries share words with their answers by construction, so it favours lexical
  search as stdlib's paraphrases disfavour it. Where apt fetched no ``Translation-en``
  (``Acquire::Languages "none"``, as in Debian's Docker images) only the installed packages are
  there; where nothing is, the default run leaves it out and says why under ``unavailable``.
* ``--beir DIR`` (repeatable): any collection in the BEIR layout, named by its directory.

Each corpus goes into a store on the embedded default (SQLite + local HNSW vectors + the
local all-MiniLM-L6-v2 on ONNX; ``--embedder hashing`` for a fast, non-semantic run) with
``insert_many`` and ``flush``; every query then runs in every mode with limit 100. Prints one
JSON object; per corpus and mode:

* ``ndcg_at_10`` (graded: gain 2^grade - 1), ``recall_at_100``, ``mrr_at_10``, and
  ``query_p50_ms``;
* ``raw``: the same metrics for exact cosine search over the stored vectors (numpy), a
  hand-written SQLite FTS5 BM25 query over the same texts and words, and their
  reciprocal-rank fusion; ``ratio_to_raw`` = the store's nDCG@10 / raw's, per mode;
* ``hybrid_ge_best_single`` (hybrid nDCG@10 >= the better single mode's),
  ``hybrid_gain_over_vector`` and ``hybrid_gain_over_best_single`` (nDCG@10 ratios), and the
  same differences in nDCG points (``hybrid_delta_*``); ``by_kind`` splits the stdlib
  questions into paraphrases and identifier queries; ``source`` (debian, BEIR) says what the
  corpus was built from (for debian: its packages, documents and queries before the sample).

``summary`` holds the mean of each over the corpora.

    python bench/search_quality.py [--embedder local|hashing] [--corpora stdlib,numpy_seealso,debian]
        [--beir DIR]... [--apt-lists DIR] [--max-docs N] [--max-queries N]
    python bench/search_quality.py --rebuild-data  # re-extract the corpora from this Python and NumPy
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
LIMIT = 100
MODES = ("vector", "lexical", "hybrid")
SHIPPED = ("stdlib", "numpy_seealso")  # read from bench/data
CORPORA = (*SHIPPED, "debian")  # debian: built at run time from this machine's package lists
DEBIAN_DOCS, DEBIAN_QUERIES, DEBIAN_SEED = 10_000, 500, 20
DEBIAN_MAX_JUDGED = 5  # a synopsis shared by more packages says nothing of any one ("transitional dummy package")
APT_HELPER = "/usr/lib/apt/apt-helper"
TOKENIZER = "porter unicode61 remove_diacritics 2"  # what the SQLite primary's index uses


# -- data -------------------------------------------------------------------------------------


class Unavailable(Exception):
    """A corpus this machine cannot build (the message says why)."""


def load_corpus(name: str, apt_lists: str | None = None) -> tuple[list[dict], list[dict], dict]:
    """``(docs, queries, source)``: docs ``{"id", "text"}``, queries ``{"query", "kind",
    "relevant": {id: grade}}``, and what a corpus built at run time was built from."""
    if name == "debian":
        return debian_corpus(apt_lists)
    if name == "stdlib":
        with gzip.open(DATA / "stdlib_docs.jsonl.gz", "rt", encoding="utf-8") as f:
            docs = [json.loads(line) for line in f]
        questions = json.loads((DATA / "stdlib_questions.json").read_text(encoding="utf-8"))["questions"]
        return docs, questions, {}
    if name == "numpy_seealso":
        with gzip.open(DATA / "numpy_seealso.json.gz", "rt", encoding="utf-8") as f:
            data = json.load(f)
        return data["docs"], data["queries"], {}
    raise SystemExit(f"unknown corpus {name!r}: one of {', '.join(CORPORA)} (or a directory with --beir)")


def cut(docs: list[dict], queries: list[dict], max_docs: int | None, max_queries: int | None):
    """At most ``max_queries`` queries (spread evenly over the set, so every kind stays) and at
    most ``max_docs`` documents: every document judged for a kept query first (even past the
    cap), then the others, spread evenly. Queries left with no judged document are dropped."""
    if max_queries is not None and max_queries < len(queries):
        step = len(queries) / max_queries
        queries = [queries[int(i * step)] for i in range(max_queries)]
    if max_docs is not None and max_docs < len(docs):
        judged = {d for q in queries for d in q["relevant"]}
        keep = [d for d in docs if d["id"] in judged]
        others = [d for d in docs if d["id"] not in judged]
        room = max(0, max_docs - len(keep))
        if room and others:
            step = len(others) / min(room, len(others))
            keep += [others[int(i * step)] for i in range(min(room, len(others)))]
        docs = keep
    ids = {d["id"] for d in docs}
    queries = [
        {**q, "relevant": {d: g for d, g in q["relevant"].items() if d in ids}}
        for q in queries
        if any(d in ids for d in q["relevant"])
    ]
    return docs, queries


# -- debian: the package descriptions apt knows, queried by their synopses ----------------------


def deb822(text: str) -> list[dict[str, str]]:
    """The stanzas of a Debian control file (``Packages``, ``Translation-en``, dpkg's ``status``);
    a field's continuation lines stay in its value after a newline."""
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def split_description(field: str) -> tuple[str, str]:
    """``(synopsis, long description)`` of a Description field: the body's " ." lines become
    paragraph breaks and whitespace is collapsed within paragraphs."""
    synopsis, *body = field.split("\n")
    paragraphs: list[list[str]] = [[]]
    for line in body:
        if line.strip() == ".":
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    text = "\n\n".join(" ".join(" ".join(p).split()) for p in paragraphs)
    return " ".join(synopsis.split()), text.strip()


def _command(*args: str) -> str:
    if not shutil.which(args[0]):
        raise FileNotFoundError(args[0])
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _apt_dir(option: str, default: str) -> str:
    """An apt directory or file setting as apt resolves it (``Dir::State::Lists/d``), or ``default``."""
    try:
        out = _command("apt-config", "shell", "X", option)
    except (OSError, subprocess.CalledProcessError):
        return default
    return out.partition("=")[2].strip().strip("'") or default


def apt_descriptions(lists: str) -> tuple[list[tuple[str, str, str]], str | None]:
    """``(package, synopsis, long description)`` of every package in apt's lists at ``lists``
    whose long description is there: ``apt-cache dumpavail`` names the packages and their
    descriptions' md5, and the lists' ``Translation-en`` files (fetched only when apt's
    ``Acquire::Languages`` includes ``en``) hold the long texts. Second: why none, if so."""
    files = sorted(p for p in Path(lists).glob("*_i18n_Translation-en*") if p.is_file())
    if not files:
        return [], f"apt's lists in {lists} hold no Translation-en files (the long descriptions)"
    try:
        longs = {}
        for path in files:
            for stanza in deb822(_command(APT_HELPER, "cat-file", str(path))):
                if "Description-md5" in stanza and "Description-en" in stanza:
                    longs[stanza["Description-md5"]] = split_description(stanza["Description-en"])
        available = deb822(_command("apt-cache", "-o", f"Dir::State::Lists={lists}", "dumpavail"))
    except (OSError, subprocess.CalledProcessError) as e:
        return [], f"apt's tools cannot be run ({e})"
    found = [(s["Package"], *longs[s["Description-md5"]]) for s in available if s.get("Description-md5") in longs]
    return found, None if found else f"no package in apt's lists at {lists} has its long description there"


def dpkg_descriptions(status: str) -> tuple[list[tuple[str, str, str]], str | None]:
    """``(package, synopsis, long description)`` of the installed packages: dpkg's status file
    keeps their descriptions whole. Second: why none, if so."""
    try:
        text = Path(status).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], f"there is no dpkg status file at {status}"
    return [
        (s["Package"], *split_description(s["Description"]))
        for s in deb822(text)
        if "Description" in s and "installed" in s.get("Status", "").split()
    ], None


def debian_packages(apt_lists: str | None = None) -> tuple[list[tuple[str, str, str]], dict]:
    """Every distinct ``(package, synopsis, long description)`` this machine's package lists and
    dpkg's status hold, and where they came from; :class:`Unavailable` when there are none."""
    lists = apt_lists or _apt_dir("Dir::State::Lists/d", "/var/lib/apt/lists/")
    status = _apt_dir("Dir::State::status/f", "/var/lib/dpkg/status")
    from_apt, apt_why = apt_descriptions(lists)
    from_dpkg, dpkg_why = dpkg_descriptions(status)
    triples = sorted({t for t in from_apt + from_dpkg if t[2]})
    if not triples:
        why = "; ".join(w for w in (apt_why, dpkg_why) if w) or "every description found is a synopsis alone"
        raise Unavailable(
            f"debian: no long package descriptions on this machine: {why}. On Debian, "
            "`apt-get update -o Acquire::Languages=en` fetches them (into another directory with "
            "`-o Dir::State::Lists=DIR`, then `--apt-lists DIR`)"
        )
    source = {"apt_lists": lists if from_apt else None, "from_apt_lists": len(from_apt)}
    source["from_dpkg_status"] = len(from_dpkg)
    return triples, source


def debian_corpus(apt_lists: str | None = None) -> tuple[list[dict], list[dict], dict]:
    """Documents: the distinct long descriptions (id: the first of their packages' names, in
    sorted order). Queries: the synopses of 3 words or more, each relevant (grade 1) to every
    document holding the long description of a package with that synopsis, at most
    ``DEBIAN_MAX_JUDGED`` of them. A fixed-seed sample of ``DEBIAN_QUERIES`` queries and
    ``DEBIAN_DOCS`` documents, every judged one among them."""
    triples, source = debian_packages(apt_lists)
    packages: dict[str, list[str]] = {}  # long description -> its packages
    for package, _, text in triples:
        packages.setdefault(text, []).append(package)
    doc_id = {text: min(names) for text, names in packages.items()}
    judged: dict[str, set[str]] = {}
    for _, synopsis, text in triples:
        if len(_WORD.findall(synopsis)) >= 3:
            judged.setdefault(synopsis, set()).add(doc_id[text])
    queries = [
        {"query": synopsis, "kind": "synopsis", "relevant": dict.fromkeys(sorted(ids), 1)}
        for synopsis, ids in sorted(judged.items())
        if len(ids) <= DEBIAN_MAX_JUDGED
    ]
    source |= {"packages": len({t[0] for t in triples}), "documents": len(packages), "queries": len(queries)}
    rng = random.Random(DEBIAN_SEED)
    queries = rng.sample(queries, min(DEBIAN_QUERIES, len(queries)))
    keep = {d for q in queries for d in q["relevant"]}
    others = sorted(set(doc_id.values()) - keep)
    keep |= set(rng.sample(others, max(0, min(len(others), DEBIAN_DOCS - len(keep)))))
    docs = [
        {"id": doc_id[text], "text": text, "packages": sorted(names)}
        for text, names in packages.items()
        if doc_id[text] in keep
    ]
    return sorted(docs, key=lambda d: d["id"]), queries, source


# -- BEIR-layout collections -------------------------------------------------------------------


def _open_text(directory: Path, name: str):
    """``name`` or ``name.gz`` in ``directory``, opened for reading text."""
    if (directory / name).exists():
        return open(directory / name, encoding="utf-8")
    if (directory / f"{name}.gz").exists():
        return gzip.open(directory / f"{name}.gz", "rt", encoding="utf-8")
    raise SystemExit(f"{directory}: neither {name} nor {name}.gz (expected the BEIR layout)")


def load_beir(directory: str) -> tuple[list[dict], list[dict], dict]:
    """A collection in the BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``; the
    document's text is ``title + ". " + text`` when the title is non-empty), ``queries.jsonl``
    (``_id``, ``text``) and ``qrels/test.tsv`` (header, then ``query-id corpus-id score``); each
    file may be gzipped. Queries without a positive judgment are left out."""
    root = Path(directory)
    relevant: dict[str, dict[str, int]] = {}
    with _open_text(root / "qrels", "test.tsv") as f:
        for line in list(f)[1:]:
            fields = line.split("\t")
            if len(fields) >= 3 and int(fields[2]) > 0:
                relevant.setdefault(fields[0].strip(), {})[fields[1].strip()] = int(fields[2])
    with _open_text(root, "corpus.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    docs = [{"id": str(r["_id"]), "text": ". ".join(p for p in (r.get("title"), r.get("text")) if p)} for r in rows]
    with _open_text(root, "queries.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    queries = [
        {"query": r["text"], "kind": "beir", "relevant": relevant[str(r["_id"])]}
        for r in rows
        if str(r["_id"]) in relevant
    ]
    return docs, queries, {"beir": str(root.resolve())}


def rebuild_data() -> dict:
    """Re-extract both corpora from the running Python's standard library and the installed
    NumPy into ``bench/data`` (the questions stay: they are hand-written), and report what
    changed for the judged ids."""
    from promethean_persistence.demo import stdlib_entries

    docs: dict[str, dict] = {}
    for entry in stdlib_entries():
        _, _, doc = entry["text"].partition(": ")
        summary = " ".join(doc.split("\n\n")[0].split())  # the first paragraph
        if len(summary) >= 12:
            docs.setdefault(entry["id"], {"id": entry["id"], "text": f"{entry['id']}: {summary}"})
    with gzip.GzipFile(DATA / "stdlib_docs.jsonl.gz", "wb", mtime=0) as raw:
        raw.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs.values()).encode())
    questions = json.loads((DATA / "stdlib_questions.json").read_text(encoding="utf-8"))["questions"]
    missing = sorted({d for q in questions for d in q["relevant"] if d not in docs})
    numpy_docs, numpy_queries = numpy_seealso()
    payload = json.dumps({"docs": numpy_docs, "queries": numpy_queries}, ensure_ascii=False, indent=0)
    with gzip.GzipFile(DATA / "numpy_seealso.json.gz", "wb", mtime=0) as raw:
        raw.write(payload.encode())
    return {
        "stdlib_docs": len(docs),
        "stdlib_judged_ids_missing": missing,
        "numpy_docs": len(numpy_docs),
        "numpy_queries": len(numpy_queries),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


_WORD = re.compile(r"[^\W_]+")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")
_SEE_ALSO = re.compile(r"^See Also\n-+\n(.*?)(?=\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", re.S | re.M)
# descriptions that only make sense next to the function they sit under, or say nothing of the target
_CONTEXTUAL = re.compile(
    r"equivalent|alias|new code|\bmethod\b|same as|see |for full documentation|deprecated|"
    r"^(same|the same|the inverse operation|an introduction|for definition|describes|overall view|"
    r"the function that|preferable|a generalization of this|apply ``)",
    re.I,
)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def numpy_seealso() -> tuple[list[dict], list[dict]]:
    """NumPy's public callables (top level, ``linalg``, ``fft``, ``lib.stride_tricks``,
    ``polynomial.polynomial``, ``random.Generator``) as ``{"id", "text"}`` (the docstring's
    first paragraph after any signature line), and as queries the "See Also" descriptions
    that other docstrings give of them: at least 4 words, not contextual, sharing under 60 % of
    their words with the target's own summary; at most 2 per target (the first in id order)."""
    import importlib
    import inspect

    objects: dict[str, str] = {}
    seen: set[int] = set()

    def add(key: str, obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc and id(obj) not in seen:
            seen.add(id(obj))
            objects[key] = doc

    for module_name in ("numpy", "numpy.linalg", "numpy.fft", "numpy.lib.stride_tricks", "numpy.polynomial.polynomial"):
        module = importlib.import_module(module_name)
        for name in sorted(getattr(module, "__all__", None) or dir(module)):
            obj = getattr(module, name, None)
            if not name.startswith("_") and callable(obj) and not inspect.ismodule(obj):
                add(f"{module_name}.{name}", obj)
    generator = np.random.Generator
    for name in sorted(dir(generator)):
        if not name.startswith("_"):
            add(f"numpy.random.Generator.{name}", getattr(generator, name))

    summaries: dict[str, str] = {}
    for key, doc in objects.items():
        paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
        while len(paragraphs) > 1 and _SIGNATURE.match(paragraphs[0]):
            paragraphs.pop(0)
        if paragraphs and len(paragraphs[0]) >= 12:
            summaries[key] = paragraphs[0]

    def resolve(name: str, owner: str) -> str | None:
        name = name.strip().strip("`").replace("numpy.", "").removeprefix("np.")
        module = owner.rsplit(".", 1)[0]
        for candidate in (f"numpy.{name}", f"{module}.{name}", f"numpy.random.{name}", f"numpy.linalg.{name}"):
            if candidate in summaries:
                return candidate
        return None

    targets: dict[str, set[str]] = {}
    for key, doc in objects.items():
        found = _SEE_ALSO.search(doc)
        if key not in summaries or not found:
            continue
        for item in re.split(r"\n(?=\S)", found.group(1)):
            head, colon, description = item.partition(":")
            description = " ".join(description.split())
            words = _words(description)
            if not colon or len(_WORD.findall(description)) < 4 or _CONTEXTUAL.search(description):
                continue
            for name in head.split(","):
                target = resolve(name, key)
                if target and target != key and len(words & _words(summaries[target])) / len(words) < 0.6:
                    targets.setdefault(description, set()).add(target)
    per_target: dict[str, int] = {}
    queries = []
    for description in sorted(targets):
        relevant = sorted(targets[description])
        if all(per_target.get(t, 0) >= 2 for t in relevant):
            continue
        for t in relevant:
            per_target[t] = per_target.get(t, 0) + 1
        queries.append({"query": description, "kind": "known_item", "relevant": dict.fromkeys(relevant, 1)})
    docs = [{"id": key, "text": f"{key}: {summary}"} for key, summary in summaries.items()]
    return docs, queries


# -- metrics ----------------------------------------------------------------------------------


def ndcg(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], relevant: dict[str, int], k: int = LIMIT) -> float:
    judged = {d for d, g in relevant.items() if g > 0}
    return len(judged & set(ranked[:k])) / len(judged) if judged else 0.0


def mrr(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    return next((1 / (i + 1) for i, d in enumerate(ranked[:k]) if relevant.get(d, 0) > 0), 0.0)


def scores(runs: list[list[str]], queries: list[dict]) -> dict:
    return {
        "ndcg_at_10": round(statistics.fmean(ndcg(r, q["relevant"]) for r, q in zip(runs, queries)), 4),
        "recall_at_100": round(statistics.fmean(recall(r, q["relevant"]) for r, q in zip(runs, queries)), 4),
        "mrr_at_10": round(statistics.fmean(mrr(r, q["relevant"]) for r, q in zip(runs, queries)), 4),
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


# -- raw baseline -----------------------------------------------------------------------------


def rrf_order(rankings: list[list[str]], k: int) -> list[str]:
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(fused, key=lambda d: (-fused[d], d))


class RawFts:
    """A hand-written SQLite FTS5 index over the same texts: what one would write without the store."""

    def __init__(self, docs: list[dict]) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, text TEXT)")
        self.conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5(text, content='docs', tokenize='{TOKENIZER}')")
        self.conn.executemany("INSERT INTO docs VALUES (?, ?)", [(d["id"], d["text"]) for d in docs])
        self.conn.execute("INSERT INTO fts (fts) VALUES ('rebuild')")

    def search(self, terms: list[str], k: int) -> list[str]:
        if not terms:
            return []
        sql = (
            "SELECT d.id FROM fts JOIN docs AS d ON d.rowid = fts.rowid WHERE fts MATCH ? "
            "ORDER BY bm25(fts), d.id LIMIT ?"
        )
        return [r[0] for r in self.conn.execute(sql, (" OR ".join(f'"{t}"' for t in terms), k))]


# -- the run ----------------------------------------------------------------------------------


async def evaluate(name: str, docs: list[dict], queries: list[dict], embedder: str, home: str) -> dict:
    from promethean_persistence import SemanticStore
    from promethean_persistence._lexical import fetch_depth, query_terms

    config: dict = {"home": home, "vector_batch_size": 256}
    if embedder == "hashing":
        config |= {"embedding_driver": "hashing", "hashing": {"dimensions": 384}}
    store = await SemanticStore.create(name, config=config)
    try:
        warm = getattr(store.embedder, "warm", None)
        if warm is not None:
            await warm()  # load the model outside the clock
        started = time.perf_counter()
        for start in range(0, len(docs), 1000):
            await store.insert_many([{"id": d["id"], "text": d["text"]} for d in docs[start : start + 1000]])
        await store.flush()
        wait = getattr(store.vector, "wait_indexed", None)
        if wait is not None:
            await wait()
        build_s = time.perf_counter() - started
        counts = await store.vector_counts()
        assert counts["indexed"] == len(docs), counts

        runs: dict[str, list[list[str]]] = {m: [] for m in MODES}
        latency: dict[str, list[float]] = {m: [] for m in MODES}
        for n, q in enumerate(queries):
            for mode in MODES[n % 3 :] + MODES[: n % 3]:  # rotate the order: no mode always runs first
                t = time.perf_counter()
                hits = await store.get_most_relevant(q["query"], LIMIT, mode=mode)
                latency[mode].append((time.perf_counter() - t) * 1000)
                runs[mode].append([h["id"] for h in hits])

        # the raw baseline: exact cosine search over the stored vectors, a hand-written FTS5
        # query over the same texts and words, and their fusion at the store's depth and k
        ids = [d["id"] for d in docs]
        stored = await store.vector.fetch(ids)
        matrix = np.stack([np.asarray(stored[i], dtype=np.float32) for i in ids])
        texts = [q["query"] for q in queries]
        if store.embedder.capabilities.query_embedding:  # as the store embeds queries
            query_vectors = np.asarray(await store.embedder.embed_queries(texts), dtype=np.float32)
        else:
            query_vectors = np.asarray(await store.embedder.embed(texts), dtype=np.float32)
        depth = fetch_depth(LIMIT, store.config.fetch_k)
        nearest = np.argsort(-(query_vectors @ matrix.T), axis=1, kind="stable")[:, :depth]
        fts = RawFts(docs)
        raw_runs: dict[str, list[list[str]]] = {m: [] for m in MODES}
        for q, row in zip(queries, nearest):
            by_vector = [ids[j] for j in row]
            by_words = fts.search(query_terms(q["query"]), depth)
            raw_runs["vector"].append(by_vector[:LIMIT])
            raw_runs["lexical"].append(by_words[:LIMIT])
            raw_runs["hybrid"].append(rrf_order([by_vector, by_words], store.config.rrf_k)[:LIMIT])
    finally:
        await store.cleanup()

    out: dict = {
        "docs": len(docs),
        "queries": len(queries),
        "judged_per_query": round(statistics.fmean(len(q["relevant"]) for q in queries), 2),
        "build_s": round(build_s, 1),
    }
    for mode in MODES:
        out[mode] = scores(runs[mode], queries) | {"query_p50_ms": round(statistics.median(latency[mode]), 2)}
    out["raw"] = {mode: scores(raw_runs[mode], queries) for mode in MODES}
    out["ratio_to_raw"] = {m: ratio(out[m]["ndcg_at_10"], out["raw"][m]["ndcg_at_10"]) for m in MODES}
    kinds = sorted({q.get("kind", "") for q in queries})
    if len(kinds) > 1:
        out["by_kind"] = {
            kind: {"queries": len(sub)}
            | {m: round(statistics.fmean(ndcg(runs[m][i], queries[i]["relevant"]) for i in sub), 4) for m in MODES}
            for kind in kinds
            if (sub := [i for i, q in enumerate(queries) if q.get("kind", "") == kind])
        }
    vector, lexical, hybrid = (out[m]["ndcg_at_10"] for m in MODES)
    best = max(vector, lexical)
    out |= {
        "best_single": "vector" if vector >= lexical else "lexical",
        "hybrid_ge_best_single": hybrid >= best,
        "hybrid_gain_over_vector": ratio(hybrid, vector),
        "hybrid_gain_over_best_single": ratio(hybrid, best),
        "hybrid_delta_over_vector": round(hybrid - vector, 4),
        "hybrid_delta_over_best_single": round(hybrid - best, 4),
    }
    return out


def summary(corpora: dict[str, dict]) -> dict:
    def mean(key: str) -> float | None:
        values = [c[key] for c in corpora.values() if c[key] is not None]
        return round(statistics.fmean(values), 4) if values else None

    return {
        "hybrid_ge_best_single": all(c["hybrid_ge_best_single"] for c in corpora.values()),
        "hybrid_gain_over_vector": mean("hybrid_gain_over_vector"),
        "hybrid_gain_over_best_single": mean("hybrid_gain_over_best_single"),
        "hybrid_delta_over_vector": mean("hybrid_delta_over_vector"),
        "hybrid_delta_over_best_single": mean("hybrid_delta_over_best_single"),
        **{f"{m}_ndcg_at_10": round(statistics.fmean(c[m]["ndcg_at_10"] for c in corpora.values()), 4) for m in MODES},
    }


def corpora(args: argparse.Namespace, result: dict) -> dict[str, tuple[list[dict], list[dict], dict]]:
    """The corpora asked for, by name, then the ``--beir`` ones by their directory's name. A
    corpus this machine cannot build stops the run when named, and is noted in
    ``result["unavailable"]`` when only implied by the default."""
    names = args.corpora.split(",") if args.corpora else list(CORPORA)
    loaded: dict[str, tuple[list[dict], list[dict], dict]] = {}
    for name in names:
        try:
            loaded[name] = load_corpus(name, args.apt_lists)
        except Unavailable as e:
            if args.corpora:
                raise SystemExit(str(e)) from None
            result.setdefault("unavailable", {})[name] = str(e)
    for directory in args.beir:
        name = Path(directory).resolve().name
        if name in loaded:
            raise SystemExit(f"--beir {directory}: a corpus named {name!r} is already in this run")
        loaded[name] = load_beir(directory)
    return loaded


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedder", choices=("local", "hashing"), default="local")
    parser.add_argument(
        "--corpora",
        default=None,
        help=f"comma-separated, of {', '.join(CORPORA)} (default: all; debian only where this machine can build it)",
    )
    parser.add_argument(
        "--beir", action="append", default=[], metavar="DIR", help="also a collection in the BEIR layout (repeatable)"
    )
    parser.add_argument("--apt-lists", metavar="DIR", help="debian: read apt's lists there (default: apt's own)")
    parser.add_argument("--max-docs", type=int, default=None, help="cut each corpus (judged documents kept)")
    parser.add_argument("--max-queries", type=int, default=None, help="cut each query set (evenly spread)")
    parser.add_argument("--rebuild-data", action="store_true", help="re-extract bench/data's corpora, then stop")
    args = parser.parse_args(argv)
    if args.rebuild_data:
        result = {"benchmark": "search_quality", "rebuilt": rebuild_data()}
        print(json.dumps(result))
        return result
    from promethean_persistence._config import StoreConfig

    defaults = StoreConfig()
    result: dict = {
        "benchmark": "search_quality",
        "embedder": "all-MiniLM-L6-v2 (local, ONNX)" if args.embedder == "local" else "hashing (not semantic)",
        "limit": LIMIT,
        "rrf_k": defaults.rrf_k,
        "fetch_k": defaults.fetch_k,
        "corpora": {},
    }
    for name, (docs, queries, source) in corpora(args, result).items():
        docs, queries = cut(docs, queries, args.max_docs, args.max_queries)
        with tempfile.TemporaryDirectory() as home:
            store_name = re.sub(r"\W+", "_", name)
            result["corpora"][name] = asyncio.run(evaluate(store_name, docs, queries, args.embedder, home))
        if source:
            result["corpora"][name]["source"] = source
    result["summary"] = summary(result["corpora"])
    result["targets"] = {
        "hybrid_ge_best_single": "true on every corpus",
        "hybrid_gain_over_vector": "> 1 (nDCG@10 ratio)",
        "ratio_to_raw": ">= 0.98 per mode",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
