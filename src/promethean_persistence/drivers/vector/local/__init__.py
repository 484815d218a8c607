"""Embedded vector store: vectors kept durably in SQLite (by default the primary's own file),
searched through an HNSW index (hnswlib) kept in a file beside it as an accelerator.

Durability and crash safety
    Every write is one SQLite transaction that also bumps the collection's change counter
    (``seq``); each row remembers the ``seq`` that wrote it and every dropped HNSW label is
    logged with its ``seq``. The index file is a checkpoint: a sidecar names the file, the
    ids of its live labels and the ``seq`` it covers. On open the checkpoint is loaded (a
    missing, unreadable or mismatched file is ignored) and every change after its ``seq``
    is replayed; when another store or process writes, the same replay runs before the
    next read. So the rows after the checkpoint are its log: a new checkpoint is written
    (by a forked child, in the background or on close) only once the graph changed by
    ``_checkpoint.CHECKPOINT_MIN`` / ``CHECKPOINT_SHARE``, which bounds what a crash leaves
    to index again.

Never missing an acknowledged vector
    Vectors not yet in the HNSW graph (just written, replayed, or all of them while the
    collection is small) sit in an in-memory *delta* that is searched exactly and merged
    with the graph's results. A background step moves the delta into the graph. Small
    collections (``exact_threshold``) stay exact, which is faster at that size.

Filters are evaluated by SQLite on the stored metadata (the same translation as the
SQLite primary). Selective filters are answered by exact search over the matching
vectors; broad ones search the graph restricted to the matching labels.

Without hnswlib (``pip install 'promethean-persistence[local]'``) everything stays exact.
"""

from __future__ import annotations

# The package is split by responsibility (no module imports this one, so no cycles):
#   driver.py       LocalVector: construction, open / close; composes the mixins below
#   _storage.py     the SQLite tables, seq / generation bookkeeping, replay, writes, stored reads
#   _checkpoint.py  when to save the HNSW checkpoint, saving and loading it and its sidecar
#   _codec.py       vector blobs: float32 or float16 (``vector_dtype``)
#   _indexing.py    the background step moving the delta into the graph (owns INDEX_CHUNK)
#   _search.py      exact delta search, graph search and merging
from .driver import LocalVector

__all__ = ["LocalVector"]
