"""The ``LocalVector`` driver: construction, open and close. Storage, checkpoints, background
indexing and search live in the mixins it composes (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...._errors import ValidationError
from ..._names import file_name
from ..._sqlite import SQLiteConnection, quote
from ..._sqlite_filter import metadata_paths
from ...base import Capabilities
from ._checkpoint import _Checkpoint
from ._codec import DTYPES
from ._indexing import _Indexing
from ._search import _Search
from ._storage import _Storage

if TYPE_CHECKING:
    from ...._config import StoreConfig

log = logging.getLogger("promethean_persistence.local")


class LocalVector(_Storage, _Checkpoint, _Indexing, _Search):
    """Vector driver on a local SQLite file with an HNSW accelerator (see the package
    docstring). SQLite errors become ``BackendUnavailable`` (a locked or unreachable file)
    or ``BackendRejected``."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True)

    def __init__(
        self,
        path: str,
        collection: str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        m: int = 16,
        ef_construction: int = 100,
        ef_search: int | None = None,
        exact_threshold: int = 5_000,
        index_dir: str | None = None,
        metadata_indexes: Sequence[str] = (),
        vector_dtype: str = "float32",
    ) -> None:
        """``path``: the SQLite file. ``collection``: the table prefix. ``synchronous`` and
        ``busy_timeout_ms``: SQLite's durability level and lock wait. ``m``,
        ``ef_construction`` and ``ef_search``: the HNSW settings (``ef_search`` None: from the
        limit and the collection's size, ``_ef.auto_ef``). ``exact_threshold``:
        collections this small stay exact. ``index_dir``: where the HNSW checkpoint goes
        (default: beside the file). ``metadata_indexes``: metadata keys (dotted: nested) to
        index for filters. ``vector_dtype``: how new vectors are stored, ``float32`` or
        ``float16`` (half the bytes; searched as float32 in memory; rows of either kind read
        back whatever the setting). Raises ``ValidationError`` for a collection name SQLite
        cannot quote or another ``vector_dtype``."""
        if vector_dtype not in DTYPES:
            raise ValidationError(
                f"vector_dtype must be one of {', '.join(DTYPES)}, not {vector_dtype!r}",
                field="vector_dtype",
                driver=self.name,
            )
        self.vector_dtype = vector_dtype
        self.path = path
        self._indexed = tuple(metadata_paths(metadata_indexes))
        self.collection = collection
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.exact_threshold = exact_threshold
        self._table = quote(f"{collection}__vectors")
        self._dropped = quote(f"{collection}__vector_drops")
        self._db = SQLiteConnection(path, driver=self.name, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        base = Path(index_dir) if index_dir else Path(path).expanduser().resolve().parent
        # a file name that cannot leave ``base``, meet another collection's or match its glob
        self._index_base = base / f"{Path(path).name}.{file_name(collection)}"
        self._hnswlib: Any = None
        self._reset()

    def _reset(self) -> None:
        self.dims: int | None = None
        self._seq = 0  # every change up to this seq is reflected in memory
        self._labels: dict[str, int] = {}  # id -> current label
        self._ids: dict[int, str] = {}  # label -> id, for labels in the graph or the delta
        self._graph: Any = None  # hnswlib.Index
        self._delta: dict[int, np.ndarray] = {}  # label -> vector, not yet in the graph
        self._delta_cache: tuple[list[int], np.ndarray] | None = None
        self._indexing: asyncio.Task[None] | None = None
        self._checkpoint_seq = -1
        self._unsaved = 0  # labels indexed or deleted in the graph since the last checkpoint written or loaded
        self._saving: asyncio.Task[None] | None = None  # the checkpoint being written

    @classmethod
    def from_config(cls, config: StoreConfig, collection: str) -> LocalVector:
        """See ``VectorDriver.from_config`` (and ``for_collection``, the same here):
        ``config.local``, in ``local.path`` or by default the SQLite primary's file."""
        s, local = config.sqlite, config.local
        return cls(
            local.path or config.sqlite_path,
            collection,
            synchronous=s.synchronous,
            busy_timeout_ms=s.busy_timeout_ms,
            m=local.hnsw.m,
            ef_construction=local.hnsw.ef_construction,
            ef_search=local.hnsw.ef_search,
            exact_threshold=local.exact_threshold,
            metadata_indexes=config.metadata_indexes,
            vector_dtype=config.vector_dtype,
        )

    for_collection = from_config

    def __repr__(self) -> str:
        return f"LocalVector(path={self.path!r}, collection={self.collection!r})"

    # -- open / close ---------------------------------------------------------------------

    async def open(self) -> None:
        """See ``VectorDriver.open``: creates the tables, loads the HNSW checkpoint (a bad
        one is ignored and rebuilt) and replays what changed since, which the background
        step then indexes (searched exactly meanwhile). Without hnswlib search stays exact
        (no error)."""
        try:
            import hnswlib  # noqa: F401 - optional accelerator
        except ImportError:
            log.info(
                "hnswlib is not installed: local vector search stays exact "
                "(pip install 'promethean-persistence[local]')"
            )
        else:
            self._hnswlib = hnswlib
        await self._db.open()
        await self._db.run(self._db.transaction, self._create, operation="open")
        await self._db.run(self._load_checkpoint, operation="open")
        await self._refresh()
        self._schedule_indexing()  # the replayed tail, even if this process never writes

    async def aclose(self) -> None:
        """See ``VectorDriver.aclose``: stops background indexing and saves the HNSW
        checkpoint if one is due (``_checkpoint.CHECKPOINT_MIN``): after fewer changes the
        next open replays them from SQLite. A failure is only logged."""
        await self._stop_background()
        if self._db._executor is not None:
            await self._checkpoint(closing=True)
        await self._db.close()
