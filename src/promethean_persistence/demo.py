"""A demo corpus that every Python install carries: the standard library's docstrings.

Sources are parsed with ``ast`` (nothing is imported, so no module runs). Each public
module, class, function and method with a docstring becomes one entry whose id is its
dotted name, so re-running the demo replaces entries instead of duplicating them.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import SemanticStore

#: Example questions and the stdlib names that answer them.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "parse a date from a string": (
        "datetime.datetime.strptime",
        "datetime.datetime.fromisoformat",
        "datetime.date.fromisoformat",
        "time.strptime",
        "email.utils.parsedate",
        "email.utils.parsedate_to_datetime",
    ),
    "compress a file with gzip": ("gzip.compress", "gzip.open", "gzip.GzipFile", "gzip"),
    "run a shell command and capture its output": (
        "subprocess.check_output",
        "subprocess.run",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "subprocess.Popen.communicate",
        "os.popen",
    ),
    "read and write CSV files": ("csv", "csv.reader", "csv.writer", "csv.DictReader", "csv.DictWriter"),
    "generate a secure random token for a password reset link": (
        "secrets.token_urlsafe",
        "secrets.token_hex",
        "secrets.token_bytes",
        "secrets",
    ),
    "send an HTTP GET request to a URL": (
        "urllib.request.urlopen",
        "urllib.request",
        "http.client.HTTPConnection",
        "http.client.HTTPConnection.request",
        "urllib.request.Request",
    ),
}

#: the ranking the demo answers with: the best on its questions (README, "Search modes")
DEMO_MODE = "hybrid"

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__"}
MAX_CHARS = 500  # the summary paragraphs; the model reads ~256 tokens anyway


def stdlib_root() -> Path:
    """The directory of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _doc(node: Any) -> str | None:
    doc = ast.get_docstring(node, clean=True)
    if not doc or len(doc.strip()) < 12:
        return None
    return doc.strip()[:MAX_CHARS]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stdlib_entries(limit: int | None = None, root: Path | None = None) -> Iterator[dict[str, Any]]:
    """Entries ``{"id", "text", "metadata": {"module", "kind", "name", "path", "line"}}``: the
    docstrings of the standard library under ``root`` (default: ``stdlib_root()``), at most
    ``limit`` of them (None: all).
    """
    root = root or stdlib_root()
    count = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(p in SKIP_DIRS or (p.startswith("_") and p != "__init__.py") for p in rel.parts):
            continue
        module = _module_name(path, root)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for name, kind, node in _walk(tree, module):
            doc = _doc(node)
            if doc is None:
                continue
            yield {
                "id": name,
                "text": f"{name}: {doc}",
                "createdAt": int(path.stat().st_mtime * 1000),
                "metadata": {
                    "module": module,
                    "kind": kind,
                    "name": name.rsplit(".", 1)[-1],
                    "path": str(rel),
                    "line": getattr(node, "lineno", 1),
                },
            }
            count += 1
            if limit is not None and count >= limit:
                return


def _walk(tree: ast.Module, module: str) -> Iterator[tuple[str, str, Any]]:
    yield module, "module", tree
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield f"{module}.{node.name}", "function", node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield f"{module}.{node.name}", "class", node
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                    yield f"{module}.{node.name}.{item.name}", "method", item


async def answer_questions(
    store: SemanticStore, questions: dict[str, tuple[str, ...]] | None = None, k: int = 5, mode: str | None = None
) -> list[dict[str, Any]]:
    """Search ``store`` for each of ``questions`` (question -> names that count as a hit;
    default: the built-in set) in ``mode`` (None: ``DEMO_MODE``, or ``"vector"`` where the
    store keeps no lexical index); report its top ``k`` ids and whether an expected name is
    among them.
    """
    if mode is None:
        mode = DEMO_MODE if store.primary.capabilities.lexical else "vector"
    out = []
    for question, expected in (questions or QUESTIONS).items():
        hits = await store.get_most_relevant(question, k, mode=mode)
        ids = [h["id"] for h in hits]
        out.append(
            {
                "question": question,
                "mode": mode,
                "top": ids,
                "scores": [round(h["score"], 3) for h in hits],
                "expected": list(expected),
                "found": any(i in expected for i in ids),
            }
        )
    return out
