"""PostgreSQL primary store (psycopg 3, async pool): one table per collection with JSONB
metadata, a GIN index for metadata filters, outbox claims with ``FOR UPDATE SKIP LOCKED``, and
a full-text index kept by a trigger (``.._pg_lexical``).

Modules of the package (``PostgresPrimary`` composes the mixins; lower modules never import
``driver``):

- ``driver``: ``PostgresPrimary`` itself: configuration, open, writes (alone or inside a
  caller's transaction, for pgvector), reads, the lexical index, the manifest, the catalog's
  collections;
- ``_schema``: the catalog's schema version check and the collection's tables and indexes;
- ``_outbox``: claims, vector states, outbox figures and worker heartbeats (``_outbox_sql``);
- ``_rows``: the columns written, records to rows and back.

What it shares with the SQLite primary lives in ``.._sql_layout``.
"""

from .._sql_layout import CATALOG
from .driver import PostgresPrimary

__all__ = ["CATALOG", "PostgresPrimary"]
