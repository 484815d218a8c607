"""Physical names of collections on backends that cannot hold every store name.

A store's collection is ``{agent_name}_{name}``; names are any non-empty text. Where a
backend (a file name, a Qdrant or Chroma collection, a Pinecone namespace) cannot hold a
name, or would let two names meet (``Notes``/``notes`` on a case-insensitive file system,
``../x`` outside the configured root), the name is encoded:

    ``{readable lowercase head}~{16 hex digits of blake2b(name)}``

Names that are already safe keep their name (existing data keeps opening). ``~`` never
occurs in a kept name, so an encoded name never meets a kept one, and the hash of the exact
name keeps names that differ only in case apart.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .._errors import ValidationError

#: a file or directory name kept as it is: lowercase ASCII (case-insensitive file systems),
#: no dots (no ``.``/``..``, no glob or extension games), short enough for every file system
_SAFE_FILE = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,119}$")
#: Windows device names: not a file there, whatever the extension
_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})
#: characters a Qdrant collection name cannot hold (the server and the client's local mode)
QDRANT_FORBIDDEN = frozenset('<>:"/\\|?*\x00\x1f')
QDRANT_MAX = 255
MONGO_MAX = 255  #: bytes of ``database.collection`` (MongoDB 4.4+)


def digest(name: str) -> str:
    """16 hex digits identifying ``name`` exactly (case and all). Returns them; raises nothing."""
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def encoded(name: str, head_chars: int = 80) -> str:
    """``name`` as ``{head}~{digest}``: lowercase ASCII letters, digits, ``_`` and ``-`` then
    ``~`` and the digest of the exact name. ``head_chars`` bounds the readable head. Returns
    the name; raises nothing."""
    head = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_-")[:head_chars] or "c"
    return f"{head}~{digest(name)}"


def file_safe(name: str) -> bool:
    """Whether ``name`` is kept as it is for a file or directory name. Raises nothing."""
    return bool(_SAFE_FILE.match(name)) and name not in _DEVICES


def file_name(name: str) -> str:
    """The file or directory name of collection ``name``: itself when ``file_safe``, else
    ``encoded``. Never a path separator, ``.``, ``..``, a device name or over 120
    characters. Returns it; raises nothing."""
    return name if file_safe(name) else encoded(name)


def legacy_entry(root: Path, name: str) -> bool:
    """Whether ``name`` is a single path component that exists in directory ``root`` under
    exactly that spelling (what earlier versions created from the raw collection name; a
    case-insensitive file system's other spelling does not count). Raises nothing."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or os.sep in name:
        return False
    try:
        return name in os.listdir(root)
    except (OSError, UnicodeError):
        return False


def inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it names a direct child of ``root`` (a guard: names are
    encoded before they get here; symbolic links are the owner's business). Returns
    ``path``; raises ``ValidationError`` otherwise."""
    if path.parent != root or path.name in ("", ".", ".."):
        raise ValidationError(f"Collection path {str(path)!r} is not directly under {str(root)!r}", field="name")
    return path


def qdrant_ok(name: str) -> bool:
    """Whether Qdrant can hold the collection ``name``: 1-255 characters, not ``.`` or ``..``,
    none of ``< > : " / \\ | ? *`` or control characters NUL and 0x1f. Raises nothing."""
    return (
        0 < len(name) <= QDRANT_MAX
        and name not in (".", "..")
        and not QDRANT_FORBIDDEN.intersection(name)
        and _utf8(name)
    )


def qdrant_rule(name: str) -> str:
    """A sentence saying why Qdrant cannot hold ``name`` (for a pinned one). Raises nothing."""
    return (
        f"Qdrant collection name {name!r} is not allowed: Qdrant takes 1-{QDRANT_MAX} characters, "
        "not '.' or '..', without any of < > : \" / \\ | ? * or control characters"
    )


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeError:
        return False
    return True


def mongo_problem(database: str, collection: str, reserved: frozenset[str]) -> str | None:
    """Why MongoDB cannot hold ``collection`` in ``database`` (or it is one of our own
    ``reserved`` collections), or None when it can. Returns a sentence; raises nothing."""
    if "$" in collection or "\x00" in collection or not _utf8(collection):
        return "MongoDB collection names cannot contain '$', NUL or unpaired surrogates"
    if collection.startswith("system."):
        return "MongoDB reserves collection names starting with 'system.'"
    if collection in reserved:
        return f"{collection!r} is where this package keeps its own bookkeeping"
    if len(f"{database}.{collection}".encode()) > MONGO_MAX:
        return f"MongoDB namespaces ('database.collection') are at most {MONGO_MAX} bytes"
    return None
