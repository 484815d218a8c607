"""The scoped-view suite on every store configuration (see conftest.py's ``make_store``)."""

from promethean_persistence.testing.scope import ScopeSuite


class TestScope(ScopeSuite):
    pass
