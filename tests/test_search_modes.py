"""The search-mode suite on every store configuration (see conftest.py's ``make_store``)."""

from promethean_persistence.testing.search import SearchSuite


class TestSearchModes(SearchSuite):
    pass
