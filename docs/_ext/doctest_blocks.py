"""Griffe extension for the API reference: the package's docstrings are plain prose in
reStructuredText habits, rendered here as Markdown without touching the sources.

* interactive examples (``>>>`` lines, their ``...`` continuations and the output up to the
  next blank line) become fenced ``pycon`` code blocks instead of nested block quotes;
* a paragraph ending in ``::`` (an RST literal block follows) ends in ``:`` instead;
* a prose heading line ending in ``:`` followed by indented ``name: description`` items
  (``Capabilities``) becomes a bold heading and a list, instead of a Google-style
  admonition that swallows the first group and runs the rest together.

Loaded by mkdocstrings-python from mkdocs.yml (``extensions: [docs/_ext/doctest_blocks.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_GROUP_TITLE = re.compile(r"^(\w[\w ,/-]*):$")
_ITEM = re.compile(r"^    (\w+): (.*)$")
# Real Google-style sections keep their meaning.
_SECTIONS = {
    "args",
    "arguments",
    "params",
    "parameters",
    "keyword args",
    "keyword arguments",
    "other args",
    "other arguments",
    "other params",
    "other parameters",
    "raises",
    "exceptions",
    "returns",
    "yields",
    "receives",
    "examples",
    "attributes",
    "functions",
    "methods",
    "classes",
    "modules",
    "warns",
    "warnings",
    "note",
    "notes",
    "example",
    "warning",
    "see also",
    "type aliases",
}


def _item_lists(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            in_fence = not in_fence
        title = None if in_fence else _GROUP_TITLE.match(lines[i])
        if title and title.group(1).lower() not in _SECTIONS and i + 1 < len(lines) and _ITEM.match(lines[i + 1]):
            if out and out[-1].strip():
                out.append("")
            out.extend([f"**{title.group(1)}:**", ""])
            i += 1
            while i < len(lines) and lines[i].startswith("    "):
                item = _ITEM.match(lines[i])
                if item:
                    out.append(f"- `{item.group(1)}`: {item.group(2)}")
                else:  # a continuation line of the item above
                    out.append("  " + lines[i].strip())
                i += 1
            out.append("")
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.append(f"{indent}```pycon")
            out.extend(f"{indent}{b}" for b in block)
            out.append(f"{indent}```")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Rewrite each docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or not docstring.value:
            return
        value = docstring.value
        if ">>>" in value:
            value = _fence_doctests(value)
        value = _LITERAL.sub(r"\1:", value)
        value = _item_lists(value)
        if value != docstring.value:
            docstring.value = value
