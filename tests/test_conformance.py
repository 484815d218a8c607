"""The shipped conformance suites, run against every driver (see conftest.py)."""

from promethean_persistence.testing import (
    EmbedderSuite,
    PrimaryDriverSuite,
    StoreSuite,
    VectorDriverSuite,
)
from promethean_persistence.testing.write_path import WritePathSuite


class TestPrimaryDrivers(PrimaryDriverSuite):
    pass


class TestVectorDrivers(VectorDriverSuite):
    pass


class TestEmbedders(EmbedderSuite):
    pass


class TestStore(StoreSuite):
    pass


class TestWritePath(WritePathSuite):
    pass
