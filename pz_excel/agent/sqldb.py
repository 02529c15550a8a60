"""One small face for the two databases a journal lives in: an SQLite file (one machine,
the embedded default) or PostgreSQL (the team server, ``postgresql://`` DSN).

Code above speaks one SQL with ``?`` placeholders; this module turns them into psycopg's
``%s`` (so SQL text never holds a literal ``?`` or ``%`` outside a placeholder — none of
ours does). Where the two engines really differ (triggers, upsert details, ``rowid``) the
caller asks ``db.dialect``; everything else is written once.

psycopg is imported only when a DSN is opened: the desktop agent and the CLI never pay for it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pz_excel.i18n import Text, UserError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

#: What a DSN starts with (psycopg takes both spellings).
_DSN_PREFIXES = ("postgresql://", "postgres://")


def is_dsn(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(target, str) and target.lower().startswith(_DSN_PREFIXES)


def where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE …`` (or "") and its arguments from ``(clause, value)`` pairs; a pair whose
    value is None is left out — the optional filters of a query, in one place."""
    kept = [(clause, value) for clause, value in conditions if value is not None]
    if not kept:
        return "", []
    return " WHERE " + " AND ".join(c for c, _v in kept), [v for _c, v in kept]


def redact(target: object) -> str:
    """A DSN fit for a log line or a message: the password, if any, replaced by ``***``."""
    text = str(target)
    if not is_dsn(text) or "@" not in text:
        return text
    scheme, rest = text.split("://", 1)
    auth, host = rest.rsplit("@", 1)
    if ":" in auth:
        auth = auth.split(":", 1)[0] + ":***"
    return f"{scheme}://{auth}@{host}"


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: SQLite's errors, the OS's, and psycopg's once a DSN was
    opened (psycopg is never imported just to name its errors)."""
    import sys

    pg = sys.modules.get("psycopg")
    return (sqlite3.Error, OSError) + ((pg.Error,) if pg is not None else ())


def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class Db:
    """A connection, thread-safe by one lock, with explicit transactions (``transaction``)
    and autocommit outside them — the same on both engines."""

    def __init__(self, con: Any, dialect: str, target: str,
                 reconnect: Callable[[], Any] | None = None) -> None:
        self._con = con
        self.dialect = dialect
        self.target = target
        self.lock = threading.RLock()
        self._reconnect = reconnect

    def _live(self) -> Any:
        """The connection; a PostgreSQL one the server dropped (a restart, a network cut) is
        opened anew here, outside any transaction — the failed statement's caller keeps
        its event and stores it again (agent/inbox.py), so nothing is lost meanwhile."""
        con = self._con
        if self._reconnect is not None and (con.closed or con.broken):
            with self.lock:
                if self._con.closed or self._con.broken:
                    self._con = self._reconnect()
                con = self._con
        return con

    @property
    def raw(self) -> Any:
        """The driver's connection (sqlite3 or psycopg), for what only it can do."""
        return self._con

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if self.dialect == POSTGRESQL:
            return self._live().execute(_pg_sql(sql), tuple(args))
        return self._con.execute(sql, tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        if self.dialect == POSTGRESQL:
            cur = self._live().cursor()
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])
            return cur
        return self._con.executemany(sql, [tuple(r) for r in rows])

    def one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(sql, args).fetchone()
        return row[0] if row else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Db]:
        """One transaction, committed when the block ends, rolled back if it raises.
        SQLite: ``BEGIN IMMEDIATE`` (the write lock at once, not at the first write)."""
        with self.lock:
            if self.dialect == POSTGRESQL:
                with self._live().transaction():
                    yield self
                return
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self._con.execute("COMMIT")  # may fail too (disk full): rolled back below
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            self._con.close()


def connect(target: str | Path, *, app: str = "pz-excel", timeout: float = 10.0) -> Db:
    """Open ``target``: a ``postgresql://`` DSN or an SQLite file path (its folder is
    created). A database that cannot be reached is a user error naming it (no password)."""
    if is_dsn(target):
        try:
            import psycopg
        except ImportError as exc:  # the package's dependency; a broken install says so
            raise UserError(Text(
                "PostgreSQL support is missing (pip install 'psycopg[binary]')",
                "нет поддержки PostgreSQL (pip install 'psycopg[binary]')")) from exc
        def open_() -> Any:
            return psycopg.connect(str(target), autocommit=True, application_name=app,
                                   connect_timeout=max(1, int(timeout)))

        try:
            con = open_()
        except psycopg.Error as exc:
            where = redact(target)
            raise UserError(Text(
                f"cannot connect to the database {where}: {str(exc).strip()}",
                f"не удаётся подключиться к базе данных {where}: {str(exc).strip()}")) from exc
        return Db(con, POSTGRESQL, str(target), reconnect=open_)
    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                          check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return Db(con, SQLITE, str(path))


#: A migration step: brings the schema from version i to i + 1 (its index in the list + 1).
Step = Callable[["Db"], None]


def schema_version(db: Db, component: str) -> int:
    """The version of ``component``'s tables in this database (0: none yet)."""
    create = ("CREATE TABLE IF NOT EXISTS schema_versions ("
              "component TEXT PRIMARY KEY, version INTEGER NOT NULL, at REAL NOT NULL)")
    if db.dialect == POSTGRESQL and not db.one("SELECT to_regclass('schema_versions')"):
        # Two processes starting on a new database (a leader and a standby) would both
        # create it: PostgreSQL's IF NOT EXISTS is no guard against that race (a unique
        # violation in its catalog), so the first creates it while the other waits.
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('pz-migrate:'))")
            db.execute(create)
    else:
        db.execute(create)
    return int(db.one("SELECT version FROM schema_versions WHERE component = ?",
                      (component,)) or 0)


def migrate(db: Db, component: str, steps: Sequence[Step], *, start: int | None = None) -> int:
    """Bring ``component``'s tables up to ``len(steps)``, each step in the one transaction
    that also records its version: all of a step or none of it, and two processes
    migrating at once (a leader and a standby starting together) do each step once.
    A database newer than this program is refused (a user error, nothing touched).
    ``start``: a version known from elsewhere (an older SQLite file's own ``user_version``,
    which older programs still read and write): the higher of it and the recorded one
    counts. Returns the version found."""
    import time

    found = max(schema_version(db, component), start or 0)
    if found > len(steps):
        raise UserError(Text(
            f"the database {redact(db.target)} holds {component} schema {found}, newer than "
            f"this program ({len(steps)}): update pz-excel",
            f"в базе данных {redact(db.target)} схема {component} версии {found} — новее этой "
            f"программы ({len(steps)}): обновите pz-excel"))
    for version in range(found + 1, len(steps) + 1):
        with db.transaction():
            if db.dialect == POSTGRESQL:  # one migrator at a time, the others wait here
                db.execute("SELECT pg_advisory_xact_lock(hashtext('pz-migrate:' || ?))",
                           (component,))
            now = max(int(db.one("SELECT version FROM schema_versions WHERE component = ?",
                                 (component,)) or 0), start or 0)
            if now >= version:
                continue  # another process did it meanwhile
            steps[version - 1](db)
            db.execute("DELETE FROM schema_versions WHERE component = ?", (component,))
            db.execute("INSERT INTO schema_versions(component, version, at) VALUES (?, ?, ?)",
                       (component, version, time.time()))
    return found
