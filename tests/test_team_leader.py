"""Team leadership on a real PostgreSQL (the ``pg_dsn`` fixture) and on an SQLite file:
exactly one holder, a lost lock connection fires ``lost`` and the standby takes over."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from pz_excel.agent import sqldb
from pz_excel.team import leader as leader_mod
from pz_excel.team.leader import GRACE, NOTICE, Leadership, read_leader
from tests.conftest import wait_until


def _standby(lead: Leadership, stop: threading.Event) -> tuple[threading.Thread, list]:
    """``lead`` waiting for the lock on a thread; the list gets what ``on_wait`` is told
    (who leads), then what ``acquire`` returned."""
    seen: list = []
    thread = threading.Thread(target=lambda: seen.append(lead.acquire(stop, on_wait=seen.append)),
                              daemon=True)
    thread.start()
    return thread, seen


def _lock_pid(dsn: str, app: str = "pz-excel team leader") -> list[int]:
    """Backend pids of sessions holding our advisory lock."""
    db = sqldb.connect(dsn)
    try:
        rows = db.execute(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        ).fetchall()
        return [int(r[0]) for r in rows]
    finally:
        db.close()


@pytest.fixture
def pair(pg_dsn):
    """Two servers' leaderships on one PostgreSQL, "a" first; released after the test."""
    stop = threading.Event()
    a = Leadership(pg_dsn, holder="a", api_address="10.0.0.1:10190")
    b = Leadership(pg_dsn, holder="b")
    yield stop, a, b
    stop.set()
    a.release()
    b.release()


def test_fencing_numbers_hold():
    assert GRACE > NOTICE + leader_mod.FENCE_CLOSE
    assert leader_mod.POLL + GRACE < 4.0  # room under the 5 s failover bound


def test_two_on_one_postgresql_exactly_one_holds_and_a_killed_session_fails_over(pair, pg_dsn):
    stop, a, b = pair
    assert a.acquire(stop) is True
    assert a.held.is_set()
    t, seen = _standby(b, stop)
    # b waits, and is told who leads (a's row)
    wait_until(lambda: any(getattr(x, "holder", None) == "a" for x in seen), 5, "on_wait")
    assert not b.held.is_set() and t.is_alive()
    assert len(_lock_pid(pg_dsn)) == 1
    db = sqldb.connect(pg_dsn)
    info = read_leader(db)
    assert info is not None and info.holder == "a" and info.api == "10.0.0.1:10190"
    # the heartbeat moves
    first = info.heartbeat
    wait_until(lambda: read_leader(db).heartbeat > first, 4, "heartbeat")
    # kill a's lock session from a third connection
    (pid,) = _lock_pid(pg_dsn)
    killed = time.monotonic()
    db.execute("SELECT pg_terminate_backend(?)", (pid,))
    assert a.lost.wait(NOTICE + 0.5), "a did not notice it lost the lock"
    noticed = time.monotonic() - killed
    assert not a.held.is_set()
    wait_until(lambda: b.held.is_set(), 5, "b takes over")
    took = time.monotonic() - killed
    assert noticed <= NOTICE + 0.2 and took < 2.0, (noticed, took)
    t.join(2)
    assert seen[-1] is True
    wait_until(lambda: read_leader(db).holder == "b", 3, "b's row")
    assert len(_lock_pid(pg_dsn)) == 1
    db.close()


def test_a_clean_release_hands_over_and_removes_the_row(pair):
    stop, a, b = pair
    assert a.acquire(stop)
    t, _seen = _standby(b, stop)
    a.release()
    wait_until(lambda: b.held.is_set(), 3, "b leads after a's release")
    t.join(2)
    assert not a.lost.is_set()  # a release is not a loss


def test_acquire_returns_false_when_stopped(pair):
    stop, a, b = pair
    assert a.acquire(stop)
    t, seen = _standby(b, stop)
    stop.set()
    t.join(3)
    assert not t.is_alive() and seen[-1] is False


def test_unreachable_database_is_a_user_error():
    from pz_excel.i18n import UserError

    with pytest.raises(UserError) as err:
        Leadership("postgresql://nobody:secret@127.0.0.1:1/x", holder="a").acquire(
            threading.Event())
    assert "secret" not in str(err.value)


def test_sqlite_file_lock_variant(tmp_path):
    target = tmp_path / "team.sqlite"
    stop = threading.Event()
    a, b = Leadership(target, holder="a"), Leadership(target, holder="b")
    try:
        assert a.acquire(stop)
        assert leader_mod.lock_file(target).exists()
        t, seen = _standby(b, stop)
        wait_until(lambda: any(getattr(x, "holder", None) == "a" for x in seen), 5, "on_wait")
        assert not b.held.is_set()
        a.release()
        wait_until(lambda: b.held.is_set(), 3, "b leads")
        t.join(2)
        db = sqldb.connect(target)
        assert read_leader(db).holder == "b"
        db.close()
    finally:
        stop.set()
        a.release()
        b.release()


def test_team_status_names_the_leader(pg_dsn, capsys):
    from pz_excel.cli.main import main

    assert main(["team", "status", "--db", pg_dsn]) == 0
    out = capsys.readouterr().out
    assert re.search(r"leader\s+none", out) and re.search(r"calls stored\s+0", out)
    stop = threading.Event()
    a = Leadership(pg_dsn, holder="a", api_address="https://team:10190")
    try:
        assert a.acquire(stop)
        assert main(["team", "status", "--db", pg_dsn]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"leader\s+{re.escape(a.host)}/{os.getpid()} \(a\)", out), out
        assert re.search(r"heartbeat\s+\d+\.\d s ago\n", out), out
        assert "https://team:10190" in out
    finally:
        a.release()
    assert main(["team", "status", "--db", pg_dsn]) == 0
    assert re.search(r"leader\s+none", capsys.readouterr().out)  # a clean stop: row gone


def test_team_status_of_a_missing_file_is_a_user_error(tmp_path, capsys):
    from pz_excel.cli.main import main

    assert main(["team", "status", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no team database" in capsys.readouterr().err
