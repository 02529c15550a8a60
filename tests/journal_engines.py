"""The journal's two engines for tests that hold on both: an SQLite file and a fresh
PostgreSQL database (``pg_dsn``, a real throwaway cluster; skipped, saying why, without one).

A test module makes its fixture from ``target`` in two lines (a fixture imported from
another module would shadow its parameter name, which linters rightly flag)::

    @pytest.fixture(params=ENGINES)
    def target(request, tmp_path):
        return engine_target(request, tmp_path)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pz_excel.agent import sqldb

ENGINES = ["sqlite", "postgresql"]


def engine_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a journal for ``request.param`` lives: a path under ``tmp_path`` (its folder
    not made yet), or a fresh database's DSN."""
    if request.param == "sqlite":
        return tmp_path / "state" / "j.sqlite"
    return request.getfixturevalue("pg_dsn")


def set_schema_version(db: sqldb.Db, version: int) -> None:
    """Pretend a newer program wrote the journal (both engines' version record; SQLite's
    ``user_version`` too, what older programs read)."""
    db.execute("UPDATE schema_versions SET version = ? WHERE component = 'journal'", (version,))
    if db.dialect == sqldb.SQLITE:
        db.execute(f"PRAGMA user_version={int(version)}")


class Undo(Exception):
    """Raised inside ``db.transaction()`` to roll back what the block did."""


def rolled_back(db: sqldb.Db, fn) -> object:
    """``fn(db)``'s result, computed inside a transaction that is then rolled back (the
    same on both engines: a recount that must not stay)."""
    result: list[object] = []
    try:
        with db.transaction():
            result.append(fn(db))
            raise Undo
    except Undo:
        pass
    return result[0]
