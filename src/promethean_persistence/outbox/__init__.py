"""The write path: the primary store is the source of truth and the durable outbox of
vector work (SPEC §4).

- ``planner``: for a record and the version it replaces, the vector job and the vector state
  (the one place both are decided);
- ``writer``: group commit of records and vector states to the primary;
- ``queue``: group commit of embed + upsert/delete batches to the vector store;
- ``worker``: resumes due work from the outbox (crashes, timeouts, retries) under leases;
- ``strict``: strict writes as one transaction when both stores share a database, and the
  undo of a failed strict write otherwise.
"""
