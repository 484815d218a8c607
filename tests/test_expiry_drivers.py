"""The expiry conformance suite on every primary driver (see conftest.py's ``primary``), and
the SQLite table of an earlier version gaining the ``expires_at`` column."""

import sqlite3

from promethean_persistence.drivers.base import PrimaryDriver
from promethean_persistence.drivers.primary.sqlite import SQLitePrimary
from promethean_persistence.testing.expiry import ExpirySuite
from promethean_persistence.testing.primary import rec


class TestExpiry(ExpirySuite):
    async def test_every_builtin_primary_keeps_expiry(self, primary: PrimaryDriver) -> None:
        assert primary.capabilities.expiry


async def test_sqlite_table_without_the_column_gains_it_on_open(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    driver = SQLitePrimary(path, "notes")
    await driver.open()
    await driver.put([rec("a", 1000, "walrus one"), rec("b", 1001, "walrus two")])
    await driver.aclose()
    conn = sqlite3.connect(path)
    conn.execute('DROP INDEX "notes__expires"')
    conn.execute('ALTER TABLE "notes" DROP COLUMN expires_at')  # the table as an earlier version made it
    conn.commit()
    assert "expires_at" not in [c[1] for c in conn.execute('PRAGMA table_info("notes")')]
    conn.close()

    driver = SQLitePrimary(path, "notes")
    await driver.open()
    try:
        assert [r.id for r in await driver.most_recent(10)] == ["b", "a"]
        assert [r.expires_at for r in await driver.get(["a", "b"]) if r] == [None, None]
        assert await driver.count() == 2
        assert sorted(h.id for h in await driver.lexical_query("walrus", 10)) == ["a", "b"]
        await driver.put([rec("c", 1002, expires_at=1)])
        assert await driver.get(["c"]) == [None]
        assert await driver.purge_expired(5, 10) == ["c"]
    finally:
        await driver.aclose()
    conn = sqlite3.connect(path)
    assert "expires_at" in [c[1] for c in conn.execute('PRAGMA table_info("notes")')]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'notes__expires'").fetchone()
    conn.close()
