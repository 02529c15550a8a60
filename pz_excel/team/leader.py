"""Who of the team servers leads: only the leader connects to the connector.

Both team servers log in with one client GID, and the connector keeps one connection per
GID (PROTOCOL.md §1: a second login drops the first with 4009). So at most one of them may
be connected at any moment, and that is decided here, by a lock in the team database:

* PostgreSQL: a session-level ``pg_try_advisory_lock(LOCK_KEY)`` held on a DEDICATED
  connection. PostgreSQL releases it the moment that session ends: at once when the leader
  process dies (its socket is closed by the OS, even on kill -9), after the server's TCP
  keepalive (``tcp_keepalives_idle/interval/count`` = 2/1/2 s, set on the session: about
  4 s) when the leader's machine vanishes from the network.
* An SQLite path: an OS file lock (``pz_excel.locks.InstanceLock``) on ``<db>.leader.lock``
  next to the database — one machine, released by the OS when the holder dies.

A standby tries the lock every ``POLL`` (0.25) s. The table ``team_leader`` (one row:
holder, host, pid, API address, since, heartbeat) says who leads; the leader refreshes its
heartbeat every ``HEARTBEAT`` (1) s; ``pz-excel team status`` and the standbys read it.

Fencing — the numbers that make two connected leaders impossible:

* The leader's watchdog runs a query (``SELECT 1`` or the heartbeat, with a 0.5 s
  ``statement_timeout``) every ``CHECK_EVERY`` = 0.5 s on the lock connection. A failed
  query fires ``lost`` at once; so does ``SILENCE`` = 1.5 s without a good answer (a
  server or network that stopped answering — libpq keepalives 2/1/2 s and
  ``tcp_user_timeout`` cut that connection soon after). So a leader knows within
  ``NOTICE`` = 1.5 s that it may have lost the lock.
* On ``lost`` the team server closes its connector connection at once, cutting the
  socket after at most ``FENCE_CLOSE`` = 0.5 s. Worst case from lock loss to
  disconnected: 1.5 + 0.5 = 2.0 s.
* A new leader waits ``GRACE`` = 2.5 s after acquiring the lock before it connects:
  longer than those 2.0 s, so the old leader is gone from the connector first.
* Failover after a leader is killed: PostgreSQL frees the lock at once, the standby sees
  it within 0.25 s, waits 2.5 s and logs in (a fraction of a second): about 3 s, well
  under the 5 s bound (``bench/bench_failover.py`` measures it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pz_excel.agent import sqldb
from pz_excel.i18n import Text, UserError
from pz_excel.locks import AlreadyRunning, InstanceLock

log = logging.getLogger("pz_excel.team.leader")

#: The advisory lock's key: "pz-team" as a number (one team per database).
LOCK_KEY = int.from_bytes(b"pz-team", "big")
POLL = 0.25
HEARTBEAT = 1.0
CHECK_EVERY = 0.5
SILENCE = 1.5
NOTICE = SILENCE
FENCE_CLOSE = 0.5
GRACE = 2.5
assert GRACE > NOTICE + FENCE_CLOSE  # the fencing rule above, kept true by construction

#: libpq options of the lock connection: a dead server is noticed in seconds, not hours.
_LIBPQ_KEEPALIVE = ("keepalives=1&keepalives_idle=2&keepalives_interval=1"
                    "&keepalives_count=2&tcp_user_timeout=3000")
#: The same on the server's side of that session: a dead leader's lock goes in ~4 s.
_SERVER_SESSION = (
    "SET tcp_keepalives_idle = 2",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 2",
    "SET statement_timeout = 500",
)


def _create_table(db: sqldb.Db) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS team_leader ("
               "id INTEGER PRIMARY KEY, holder TEXT NOT NULL, host TEXT NOT NULL, "
               "pid INTEGER NOT NULL, api TEXT NOT NULL, since DOUBLE PRECISION NOT NULL, "
               "heartbeat DOUBLE PRECISION NOT NULL)")  # PG REAL: 4 bytes, minutes off


def ensure_table(db: sqldb.Db) -> None:
    sqldb.migrate(db, "team_leader", [_create_table])


@dataclass(frozen=True)
class LeaderInfo:
    holder: str
    host: str
    pid: int
    api: str
    since: float
    heartbeat: float

    @property
    def heartbeat_age(self) -> float:
        return max(0.0, time.time() - self.heartbeat)

    def describe(self) -> Text:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        api = f", API {self.api}" if self.api else ""
        return Text(f"{self.host}/{self.pid} since {since}{api}",
                    f"{self.host}/{self.pid} с {since}{api}")


def read_leader(db: sqldb.Db) -> LeaderInfo | None:
    """The ``team_leader`` row (it may be a dead leader's: look at its heartbeat)."""
    row = db.execute("SELECT holder, host, pid, api, since, heartbeat FROM team_leader "
                     "WHERE id = 1").fetchone()
    if row is None:
        return None
    return LeaderInfo(str(row[0]), str(row[1]), int(row[2]), str(row[3]), float(row[4]),
                      float(row[5]))


def lock_file(target: str | Path) -> Path:
    """The SQLite variant's lock: a file next to the database."""
    path = Path(target).expanduser()
    return path.with_name(path.name + ".leader.lock")


def _lock_connection(target: str) -> sqldb.Db:
    joiner = "&" if "?" in target else "?"
    db = sqldb.connect(f"{target}{joiner}{_LIBPQ_KEEPALIVE}", app="pz-excel team leader",
                       timeout=3)
    db.target = target  # messages name the DSN as given
    for sql in _SERVER_SESSION:
        db.execute(sql)
    return db


class Leadership:
    """``acquire`` blocks as a standby until this process leads; then ``held`` is set and
    a watchdog fires ``lost`` (and clears ``held``) the moment the lock may be gone."""

    def __init__(self, target: str | Path, *, holder: str, api_address: str = "") -> None:
        self.target = str(target)
        self.pg = sqldb.is_dsn(self.target)
        self.holder = holder
        self.api_address = api_address
        self.host = socket.gethostname()
        self.held = threading.Event()
        self.lost = threading.Event()
        self.since = 0.0
        self.lost_reason: Text | None = None
        #: Called on the watchdog's thread the moment ``lost`` fires (the server's fencing).
        self.on_lost: Callable[[], None] | None = None
        self._db: sqldb.Db | None = None  # PG: the lock connection; SQLite: the row's
        self._file_lock: InstanceLock | None = None
        self._quit = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_ok = 0.0
        self._fire = threading.Lock()

    # ------------------------------------------------------------------ standby

    def acquire(self, stop: threading.Event,
                on_wait: Callable[[LeaderInfo | None], None] | None = None) -> bool:
        """Wait as a standby until the lock is ours (True) or ``stop`` is set (False).
        ``on_wait`` is told who leads, at first and whenever that changes. A database
        that cannot be reached at the first try is a user error; later it is retried."""
        self.release()
        self.lost.clear()
        self.lost_reason = None
        seen: object = ()
        first = True
        trouble = False
        while not stop.is_set():
            try:
                if self._try_lock():
                    self._lead()
                    return True
                info = read_leader(self._rows())
                key = None if info is None else (info.host, info.pid, info.since)
                if on_wait is not None and key != seen:
                    on_wait(info)
                seen = key
                trouble = False
            except Exception as exc:  # retried; the first failure is reported
                if first and isinstance(exc, UserError):
                    raise
                if not trouble:
                    log.warning("%s", Text(
                        f"team database {sqldb.redact(self.target)}: {exc}; retrying",
                        f"база данных команды {sqldb.redact(self.target)}: {exc}; "
                        "повторяем попытки"))
                trouble = True
                self._drop_connection()
            first = False
            stop.wait(POLL)
        return False

    def _rows(self) -> sqldb.Db:
        if self._db is None:
            self._db = _lock_connection(self.target) if self.pg else sqldb.connect(self.target)
            ensure_table(self._db)
        return self._db

    def _try_lock(self) -> bool:
        if self.pg:
            return bool(self._rows().one("SELECT pg_try_advisory_lock(?)", (LOCK_KEY,)))
        self._rows()
        lock = InstanceLock(lock_file(self.target))
        try:
            lock.acquire()
        except AlreadyRunning:
            return False
        self._file_lock = lock
        return True

    def _drop_connection(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            # Closed off this thread: a connection stuck on a dead network must not hold
            # up the standby loop or the fencing.
            threading.Thread(target=_quiet_close, args=(db,), name="pz-leader-close",
                             daemon=True).start()

    # ------------------------------------------------------------------ leading

    def _lead(self) -> None:
        db = self._rows()
        self.since = time.time()
        with db.transaction():
            db.execute("DELETE FROM team_leader WHERE id = 1")
            db.execute("INSERT INTO team_leader(id, holder, host, pid, api, since, heartbeat) "
                       "VALUES (1, ?, ?, ?, ?, ?, ?)",
                       (self.holder, self.host, os.getpid(), self.api_address, self.since,
                        self.since))
        self._quit = threading.Event()
        self._last_ok = time.monotonic()
        self.held.set()
        checker = threading.Thread(target=self._check_loop, args=(db, self._quit),
                                   name="pz-leader-check", daemon=True)
        self._threads = [checker]
        if self.pg:  # a silent database is noticed even while a query hangs
            self._threads.append(threading.Thread(target=self._watch_loop, args=(self._quit,),
                                                  name="pz-leader-watch", daemon=True))
        for thread in self._threads:
            thread.start()

    def _check_loop(self, db: sqldb.Db, quit_: threading.Event) -> None:
        next_beat = time.monotonic() + HEARTBEAT
        while not quit_.is_set():
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT
                    db.execute("UPDATE team_leader SET heartbeat = ? WHERE id = 1 AND pid = ? "
                               "AND host = ?", (time.time(), os.getpid(), self.host))
                elif self.pg:
                    db.execute("SELECT 1")
                self._last_ok = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - any failure: the lock may be gone
                if quit_.is_set():
                    return
                if self.pg:
                    self._fire_lost(Text(f"the lock connection failed: {exc}",
                                         f"соединение блокировки прервано: {exc}"))
                    return
                # SQLite: the file lock is ours until we die; a busy row is only a warning
                log.warning("team_leader heartbeat not written: %s", exc)
            quit_.wait(CHECK_EVERY)

    def _watch_loop(self, quit_: threading.Event) -> None:
        while not quit_.wait(0.1):
            silent = time.monotonic() - self._last_ok
            if silent > SILENCE:
                self._fire_lost(Text(
                    f"the database did not answer for {silent:.1f} s",
                    f"база данных не отвечала {silent:.1f} с"))
                return

    def _fire_lost(self, reason: Text) -> None:
        with self._fire:
            if not self.held.is_set():
                return
            self.held.clear()
            self.lost_reason = reason
            self.lost.set()
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:  # the lock is given up below all the same
                log.exception("fencing failed")
        log.warning("%s", Text(f"leadership lost: {reason.en}",
                               f"лидерство потеряно: {reason.ru}"))
        self._quit.set()
        self._drop_connection()  # the session (and any lock it still has) ends

    def release(self) -> None:
        """Let go of the lock (a clean stop, or after ``lost``): the row goes too."""
        self._quit.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._threads = []
        was_held = self.held.is_set()
        self.held.clear()
        db = self._db
        if was_held and db is not None:
            try:
                db.execute("DELETE FROM team_leader WHERE id = 1 AND pid = ? AND host = ?",
                           (os.getpid(), self.host))
                if self.pg:
                    db.execute("SELECT pg_advisory_unlock(?)", (LOCK_KEY,))
            except Exception as exc:  # noqa: BLE001 - closing the session frees it anyway
                log.debug("leader row not removed: %s", exc)
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        self._drop_connection()

    def current(self) -> LeaderInfo | None:
        """Who leads, as the table says (None: nobody yet, or unreadable now)."""
        try:
            return read_leader(self._rows())
        except Exception:  # noqa: BLE001 - a status question, never fatal
            return None


def _quiet_close(db: sqldb.Db) -> None:
    try:
        db.close()
    except Exception:  # noqa: BLE001 - it is going away either way
        pass
