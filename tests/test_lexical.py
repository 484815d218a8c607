"""The lexical conformance suite on every primary driver (see conftest.py's ``primary``)."""

from promethean_persistence.drivers.base import PrimaryDriver
from promethean_persistence.testing.lexical import LexicalSuite


class TestLexical(LexicalSuite):
    async def test_every_builtin_primary_keeps_a_lexical_index(self, primary: PrimaryDriver) -> None:
        assert primary.capabilities.lexical
