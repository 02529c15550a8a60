"""Several writers of one journal (the team leader and a standby's API on one PostgreSQL
database; two processes on one SQLite file), and old journal files brought up to date."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from pz_excel.agent import journal_schema, sqldb
from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal
from pz_excel.agent.journal_sql import DIALECTS
from pz_excel.crm.schema import CallRow
from pz_excel.protocol.codec import Event
from tests.journal_engines import ENGINES, engine_target

T0 = 1_700_000_000
MAPPER = CallMapper(tz=timezone.utc, clock=lambda: datetime(2024, 1, 1, 12, 0, 0))


@pytest.fixture(params=ENGINES)
def target(request, tmp_path):
    return engine_target(request, tmp_path)


def ring(cid: str) -> Event:
    return Event(2, cid, {"type": "2", "callID": cid, "from": "73430112233", "to": "101"})


def answer(cid: str) -> Event:
    return Event(32, cid, {"type": "32", "callID": cid, "from": "73430112233", "to": "101"})


def history(cid: str, n: int) -> Event:
    return Event(4, cid, {"type": "4", "callID": cid, "from": "73430112233", "to": "101",
                          "start": str(T0 + n), "end": str(T0 + n + 7 + n % 50),
                          "duration": str(7 + n % 50), "direction": "0"})


def test_two_writers_of_the_same_calls_lose_no_update_and_make_no_second_row(target):
    """Two journals on one database apply events of the same 200 calls at the same time,
    call by call (a barrier starts both on each call together): the leader sees the ring
    and the answer, a desktop agent reports the history and a late ring. Whatever the
    interleaving, each call ends completed with its history's duration: a writer that
    read the row before the other's commit would put "answered" back over it."""
    calls = [f"c{n:03d}" for n in range(200)]
    together = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []
    Journal(target).close()  # the schema first: the race is about rows, not migrations

    def writer(events_of) -> None:
        try:
            with Journal(target, normalize=lambda s: s) as j:
                for n, cid in enumerate(calls):
                    together.wait()
                    for event in events_of(cid, n):
                        j.apply_event(event, MAPPER)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
            together.abort()

    threads = [threading.Thread(target=writer, args=(lambda c, n: [ring(c), answer(c)],)),
               threading.Thread(target=writer, args=(lambda c, n: [history(c, n), ring(c)],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with Journal(target, normalize=lambda s: s) as j:
        assert j.stats()["calls"] == 200 and j.stats()["events"] == 800
        rows = {cid: j.get_call(cid) for cid in calls}
        dirty = dict((r.call_id, r) for r, _v in j.dirty_calls())
        tallies = j.call_tallies(datetime(2023, 1, 1), datetime(2025, 1, 1))
    wrong = {cid: (r.status, r.duration) for n, (cid, r) in enumerate(rows.items())
             if (r.status, r.duration) != ("completed", 7 + n % 50)}
    assert not wrong, f"{len(wrong)} calls lost an update: {sorted(wrong.items())[:5]}"
    assert dirty == rows  # and every one still waits for the workbook, in its final state
    # the running sums saw every change exactly once too
    assert sum(t[4] for t in tallies) == 200
    assert sum(t[5] for t in tallies) == sum(7 + n % 50 for n in range(200))


def test_processes_starting_together_on_a_new_database_make_the_schema_once(target, request):
    """A leader and a standby starting at once on a new database: all open it (on
    PostgreSQL, IF NOT EXISTS alone lets the second CREATE fail on a catalog conflict)."""
    for n in range(3):  # a new database each round: the race is the first open's
        if n:
            target = (request.getfixturevalue("pg_cluster").new_database()
                      if isinstance(target, str) else target.with_name(f"j{n}.sqlite"))
        together = threading.Barrier(3, timeout=30)
        errors: list[BaseException] = []

        def open_it(where=target, together=together, errors=errors) -> None:
            try:
                together.wait()
                Journal(where).close()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with Journal(target) as j:
            assert sqldb.schema_version(j.db, "journal") == journal_schema.SCHEMA_VERSION


# ------------------------------------------------------------------ old SQLite files


def _old_file(path, version: int) -> None:
    """A journal as a program of schema ``version`` (1..3) left it, with calls in it."""
    con = sqlite3.connect(path)
    schema = journal_schema.SCHEMA.format(**DIALECTS[sqldb.SQLITE].types)
    con.executescript(schema)
    if version < 3:
        con.execute("DROP TABLE frames")
    if version < 2:
        con.execute("DROP TABLE call_alias")
    rows = [("1", "incoming", "missed", "+7 343 011-22-33", "73430112233", "2024-05-06 09:00:00"),
            ("2", "incoming", "completed", "79990001122", "79990001122", "2024-05-06 10:00:00"),
            ("3", "incoming", "missed", "79125554433", "79125554433", "2024-05-07 09:00:00"),
            ("4", "outgoing", "completed", "89125554433", "79125554433", "2024-05-07 10:00:00")]
    con.executemany(
        "INSERT INTO calls(call_id, direction, status, client_phone, client_key, started, "
        "duration, version, written_version, updated_at) VALUES (?, ?, ?, ?, ?, ?, 30, 1, 1, 0)",
        rows)
    con.execute(f"PRAGMA user_version={version}")
    con.commit()
    con.close()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_old_file_is_brought_up_to_date_with_its_sums(tmp_path, version):
    path = tmp_path / "old.sqlite"
    _old_file(path, version)
    with Journal(path) as j:
        assert sqldb.schema_version(j.db, "journal") == journal_schema.SCHEMA_VERSION
        assert j.db.one("PRAGMA user_version") == journal_schema.SCHEMA_VERSION
        # the running sums were added up from what the file held
        tallies = sorted(j.call_tallies(datetime(2024, 5, 1), datetime(2024, 6, 1)))
        assert tallies == [("2024-05-06", "incoming", "completed", "", 1, 30),
                           ("2024-05-06", "incoming", "missed", "", 1, 0),
                           ("2024-05-07", "incoming", "missed", "", 1, 0),
                           ("2024-05-07", "outgoing", "completed", "", 1, 30)]
        total, waiting = j.waiting_clients(10)
        assert total == 1 and waiting[0][0] == "+7 343 011-22-33"  # 3 was called back
        # and the tables the old file lacked work
        seq = j.record_frame("<frame/>")
        assert [s for s, _raw in j.open_frames()] == [seq]
        j.upsert_call(CallRow("5", "incoming", "missed", "73430112233",
                              start=datetime(2024, 5, 8, 9, 0)))
        assert j.waiting_clients(10)[1][0][4] == 2
    with Journal(path) as j:  # and opening it again changes nothing
        assert j.stats()["calls"] == 5 and j.stats()["dirty"] == 1
