"""Conformance suites shipped with the package, so third-party drivers can prove they keep
the same contract. Subclass a suite in your tests and provide its fixture:

* ``PrimaryDriverSuite``, ``LexicalSuite`` and ``ExpirySuite`` need ``primary`` (an opened, empty PrimaryDriver);
* ``VectorDriverSuite`` needs ``vector`` (an opened, empty VectorDriver);
* ``EmbedderSuite`` needs ``embedder``;
* ``StoreSuite`` and ``WritePathSuite`` need ``make_store``: ``await make_store(**config_overrides)`` returns an
  open SemanticStore on the drivers under test (closed by the fixture).

The suites use pytest and pytest-asyncio (``asyncio_mode = "auto"``). ``filter_strategies`` holds
hypothesis strategies of metadata and filters (imported on its own: it needs hypothesis).
"""

from .embedding import EmbedderSuite
from .expiry import ExpirySuite
from .faults import FaultyEmbedder, FaultyVector
from .lexical import LexicalSuite
from .primary import PrimaryDriverSuite
from .store import StoreSuite
from .vector import VectorDriverSuite
from .write_path import WritePathSuite

__all__ = [
    "EmbedderSuite",
    "ExpirySuite",
    "FaultyEmbedder",
    "FaultyVector",
    "LexicalSuite",
    "PrimaryDriverSuite",
    "StoreSuite",
    "VectorDriverSuite",
    "WritePathSuite",
]
