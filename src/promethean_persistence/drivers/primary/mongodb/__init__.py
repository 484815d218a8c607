"""MongoDB primary store, in the original package's layout (SPEC §6, reference §2).

Documents live in database ``database``, collection ``{agent_name}_{name}``, shaped
``{id, <text_key>, <time_key>: epoch ms, ...extra, metadata: {..., vectorWriteSuccess,
vectorWriteError, vectorWriteTimestamp}}`` so the original package keeps reading them. Our
outbox fields ride in one sub-document, ``_semantic_store``; documents without it were
written by the original and are read as *legacy* records. Tombstones and manifests live in
the side collections ``semantic_store_tombstones`` and ``semantic_store_manifests``.

Multi-document writes use a transaction where the server has them (replica sets, mongos,
wire-compatible servers that announce a replica set) unless ``mongodb.transactions`` is
false; a standalone ``mongod`` gets each batch as ordered single-document writes, every one
of them idempotent by id.

Modules of the package (``MongoPrimary`` composes the mixins; lower modules never import
``driver``):

- ``driver``: ``MongoPrimary`` itself: configuration, documents to records and back, writes,
  reads;
- ``_client``: the client shared per server and event loop, error mapping, open (schema check,
  indexes), sessions and transactions;
- ``_legacy``: the original's documents: BSON values and times, time normalisation, hidden
  duplicates and ``dedupe``, adoption of legacy documents;
- ``_outbox``: claims, vector states, tombstones, manifest and alias;
- ``_lexical``: the lexical index: the server's text index, or an in-process one where the
  server has none;
- ``_filters``: the filter language as a MongoDB query;
- ``_layout``: the names of fields and collections.

pymongo is imported only when used.
"""

from ._filters import mongo_filter
from ._layout import ALIASES, EXTRA, MANIFESTS, STATE, SUPERSEDED, TOMBSTONES
from .driver import MongoPrimary

__all__ = ["ALIASES", "EXTRA", "MANIFESTS", "STATE", "SUPERSEDED", "TOMBSTONES", "MongoPrimary", "mongo_filter"]
