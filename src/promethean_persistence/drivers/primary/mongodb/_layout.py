"""Names of the documents' layout, shared by the package's modules."""

from __future__ import annotations

import re

EXTRA = "mongodb"
STATE = "_semantic_store"  #: our outbox fields; absent on documents the original wrote
SUPERSEDED = "_semantic_store_superseded"  #: older duplicates of an id (the original never upserted)
ALIASES = "collection_aliases"
MANIFESTS = "semantic_store_manifests"
TOMBSTONES = "semantic_store_tombstones"
_MANAGED = ("vectorWriteSuccess", "vectorWriteError", "vectorWriteTimestamp", "vectorStatus")
_BLANK = re.compile(r"^\s*$")
