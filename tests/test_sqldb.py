"""The journal's two databases behind one face (pz_excel/agent/sqldb.py), on real engines."""

from __future__ import annotations

import pytest

from pz_excel.agent import sqldb
from pz_excel.i18n import UserError


def _roundtrip(db: sqldb.Db) -> list[tuple]:
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    with db.transaction():
        db.executemany("INSERT INTO t(k, n) VALUES (?, ?)", [("a", 1), ("b", 2)])
    with pytest.raises(ZeroDivisionError), db.transaction():
        db.execute("INSERT INTO t(k, n) VALUES (?, ?)", ("c", 3))
        raise ZeroDivisionError  # rolled back: c never lands
    assert db.one("SELECT n FROM t WHERE k = ?", ("b",)) == 2
    assert db.one("SELECT n FROM t WHERE k = ?", ("zz",)) is None
    return [tuple(r) for r in db.execute("SELECT k, n FROM t ORDER BY k").fetchall()]


def test_sqlite_file(tmp_path):
    db = sqldb.connect(tmp_path / "sub" / "j.sqlite")
    assert db.dialect == sqldb.SQLITE
    assert _roundtrip(db) == [("a", 1), ("b", 2)]
    db.close()


def test_postgresql(pg_dsn):
    db = sqldb.connect(pg_dsn)
    assert db.dialect == sqldb.POSTGRESQL
    assert _roundtrip(db) == [("a", 1), ("b", 2)]
    db.close()


def test_unreachable_database_is_one_line_without_the_password():
    with pytest.raises(UserError) as err:
        sqldb.connect("postgresql://u:s3cret@127.0.0.1:1/x", timeout=2)
    assert "s3cret" not in str(err.value.text) and "***" in str(err.value.text)
    assert "базе данных" in err.value.text.ru


def test_dsn_or_path():
    assert sqldb.is_dsn("postgresql://x/y") and sqldb.is_dsn("postgres://x")
    assert not sqldb.is_dsn("C:/crm/journal.sqlite") and not sqldb.is_dsn(None)


def _steps(log: list[int]):
    def one(db):
        log.append(1)
        db.execute("CREATE TABLE m (a INTEGER)")

    def two(db):
        log.append(2)
        db.execute("ALTER TABLE m ADD COLUMN b INTEGER")

    return [one, two]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_migrations_run_once_in_order_and_refuse_a_newer_database(engine, tmp_path, request):
    target = tmp_path / "m.sqlite" if engine == "sqlite" else request.getfixturevalue("pg_dsn")
    db = sqldb.connect(target)
    log: list[int] = []
    assert sqldb.migrate(db, "demo", _steps(log)[:1]) == 0
    assert sqldb.migrate(db, "demo", _steps(log)) == 1
    assert sqldb.migrate(db, "demo", _steps(log)) == 2
    assert log == [1, 2]
    db.execute("INSERT INTO m(a, b) VALUES (?, ?)", (1, 2))
    with pytest.raises(UserError) as err:
        sqldb.migrate(db, "demo", _steps(log)[:1])
    assert "newer" in err.value.text.en and "новее" in err.value.text.ru
    db.close()


def test_a_failing_step_leaves_the_version_where_it_was(tmp_path):
    db = sqldb.connect(tmp_path / "f.sqlite")

    def bad(db):
        db.execute("CREATE TABLE x (a INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        sqldb.migrate(db, "demo", [bad])
    assert sqldb.schema_version(db, "demo") == 0
    assert db.one("SELECT count(*) FROM sqlite_master WHERE name = 'x'") == 0


def test_a_postgresql_connection_the_server_dropped_is_opened_anew(pg_dsn):
    """A restart or a network cut: the statement that meets it fails with an error the
    inbox treats as a failed store (the event is kept); the next one reconnects."""
    import psycopg

    db = sqldb.connect(pg_dsn)
    db.execute("CREATE TABLE t (n INTEGER)")
    pid = db.one("SELECT pg_backend_pid()")
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(sqldb.storage_errors()):
        db.execute("INSERT INTO t(n) VALUES (?)", (1,))
    with db.transaction():
        db.execute("INSERT INTO t(n) VALUES (?)", (2,))
    assert db.one("SELECT pg_backend_pid()") != pid
    assert db.one("SELECT sum(n) FROM t") == 2
    db.close()
