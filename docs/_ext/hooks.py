"""mkdocs hook: the README and the changelog, which live at the repository root, become
pages of the site (``readme.md``, ``changelog.md``), so the guide can link to their
sections and ``mkdocs build --strict`` checks those links."""

from __future__ import annotations

import os

from mkdocs.structure.files import File, Files

_PAGES = {"README.md": "readme.md", "CHANGELOG.md": "changelog.md"}


def _rewrite(text: str) -> str:
    # Links written for the repository (README -> docs/..., CHANGELOG.md) point at pages.
    text = text.replace("](docs/", "](")
    for source, page in _PAGES.items():
        text = text.replace(f"]({source}", f"]({page}")
    return text


def on_files(files: Files, config, **kwargs) -> Files:
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    for source, page in _PAGES.items():
        with open(os.path.join(root, source), encoding="utf-8") as f:
            files.append(File.generated(config, page, content=_rewrite(f.read())))
    return files
