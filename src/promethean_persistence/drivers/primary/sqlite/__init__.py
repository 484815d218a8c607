"""SQLite primary store: one file, one table per collection, WAL, metadata as JSON text
queried with SQLite's JSON functions.

Modules of the package (``SQLitePrimary`` composes the mixins; lower modules never import
``driver``):

- ``driver``: ``SQLitePrimary`` itself: configuration, open and close, writes, reads, the
  lexical index (``_sqlite_lexical``), the manifest, the catalog's collections;
- ``_schema``: the catalog's schema version check and the collection's tables and indexes;
- ``_outbox``: claims, vector states, outbox figures and worker heartbeats (``_outbox_sql``);
- ``_rows``: the table's names and clauses, records to rows and back.

What it shares with the PostgreSQL primary lives in ``.._sql_layout``.
"""

from .._sql_layout import CATALOG
from .driver import SQLitePrimary

__all__ = ["CATALOG", "SQLitePrimary"]
