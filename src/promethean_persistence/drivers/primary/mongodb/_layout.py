"""Names of the documents' layout, shared by the package's modules."""

from __future__ import annotations

import re

EXTRA = "mongodb"
STATE = "_semantic_store"  #: our outbox fields; absent on documents the original wrote
SUPERSEDED = "_semantic_store_superseded"  #: older duplicates of an id (the original never upserted)
TEXT_INDEX = "semantic_store_text"  #: our text index (beside semantic_store_id, _time, _outbox)
#: the text index's language_override: a field no document holds, so a document's own "language"
#: (the original's extra fields are kept) never switches its analysis nor makes it unindexable
LANGUAGE = "_semantic_store_language"
SCORE = "_semantic_store_score"  #: the projected textScore (no document field has this name)
ALIASES = "collection_aliases"
MANIFESTS = "semantic_store_manifests"
TOMBSTONES = "semantic_store_tombstones"
_MANAGED = ("vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp", "vectorStatus")
_BLANK = re.compile(r"^\s*$")
