"""The journal on real engines: SQLite files (durability under kill -9, WAL, checkpoints)
and, for everything the two engines share, a real PostgreSQL too (tests/journal_engines.py):
dirty tracking, queries, merging, migrations, concurrent writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pz_excel.agent import sqldb
from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal, JournalClosed
from pz_excel.agent.journal_schema import SCHEMA_VERSION
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import UserError
from pz_excel.protocol.codec import Event
from tests.conftest import wait_until
from tests.journal_engines import ENGINES, engine_target, set_schema_version

T0 = 1_700_000_000


def digits(raw: str) -> str | None:
    """Stand-in normaliser: Russian numbers to 7XXXXXXXXXX, as phones.normalize does."""
    d = "".join(ch for ch in raw if ch.isdigit())
    if len(d) == 11 and d[0] == "8":
        d = "7" + d[1:]
    return d or None


@pytest.fixture(params=ENGINES)
def target(request, tmp_path):
    """An SQLite path, then a PostgreSQL DSN: the tests that take it run on both."""
    return engine_target(request, tmp_path)


@pytest.fixture
def journal(target):
    with Journal(target, normalize=digits) as j:
        yield j


def ev(etype: int, call_id: str, **attrs: str) -> Event:
    data = {"type": str(etype), "callID": call_id}
    data.update({("from" if k == "from_" else k): v for k, v in attrs.items()})
    return Event(etype, call_id, data)


def history(call_id, frm, to, start, dur, direction="0", **kw):
    return ev(4, call_id, from_=frm, to=to, start=str(start), end=str(start + dur),
              duration=str(dur), direction=direction, **kw)


MAPPER = CallMapper(tz=timezone.utc, clock=lambda: datetime(2024, 1, 1, 12, 0, 0))


# ------------------------------------------------------------------ the log


def test_creates_dirs_uses_wal_and_keeps_every_attribute(target):
    path = target.parent / "a" / "b" / "j.sqlite" if isinstance(target, Path) else None
    with Journal(path or target, normalize=digits) as j:
        if path is not None:
            assert j.path == path and path.exists() and j.target == str(path)
        else:
            assert j.path is None and j.target == sqldb.redact(target)
        raw = "PEV2ZW50IC8+"
        event = ev(2, "470667154161667", from_="73430112233", to="101", line=" ",
                   futureAttr="kept")
        seq1 = j.record_event(event, raw_frame=raw)
        seq2 = j.record("decision", {"to": "101", "reason": "владелец"}, call_id="470667154161667")
        seq3 = j.record("state", "connected")
        assert seq1 < seq2 < seq3
        entries = j.entries()
        assert [e["kind"] for e in entries] == ["event", "decision", "state"]
        assert entries[0]["payload"]["futureAttr"] == "kept" and entries[0]["raw"] == raw
        assert entries[1]["payload"]["reason"] == "владелец"
        assert entries[2]["payload"] == "connected"
        assert j.entries(call_id="470667154161667", kind="decision")[0]["seq"] == seq2
        [(seq, back)] = list(j.events())
        assert seq == seq1 and back == event
    if path is None:
        return
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_apply_event_logs_and_merges_in_one_transaction(journal):
    row = journal.apply_event(ev(2, "1", from_="8 343 011-22-33", to="101"), MAPPER)
    assert row is not None and row.status == "ringing"
    assert journal.apply_event(ev(2, "1", from_="8 343 011-22-33", to="101"), MAPPER) is None
    done = journal.apply_event(history("1", "8 343 011-22-33", "101", T0, 5), MAPPER)
    assert done.status == "completed" and journal.get_call("1") == done
    assert journal.apply_event(ev(128, "2", from_="101", to="7999"), MAPPER) is None
    st = journal.stats()
    assert (st["events"], st["calls"], st["dirty"]) == (4, 1, 1)
    [(dirty, version)] = journal.dirty_calls()
    assert dirty == done and version == 2  # the duplicate ring did not bump it


def test_a_failing_mapper_still_stores_the_event(journal):
    def broken(row, event):
        raise ValueError("boom")

    assert journal.apply_event(ev(2, "9", from_="1", to="101"), broken) is None
    kinds = [e["kind"] for e in journal.entries()]
    assert kinds == ["event", "error"] and journal.get_call("9") is None
    assert "boom" in journal.entries(kind="error")[0]["payload"]["error"]


def test_reopen_keeps_everything_and_refuses_a_newer_schema(target):
    with Journal(target, normalize=digits) as j:
        j.upsert_call(CallRow("1", "incoming", "missed", "73430112233", start=datetime(2024, 1, 1)))
        j.once_put("crm.xlsx|B2", "2024-01-01 10:00:00")
        j.once_put("crm.xlsx|B2", "2024-01-01 10:00:00")  # a second put replaces
        j.record("state", "connected")
    with Journal(target, normalize=digits) as j:
        assert j.get_call("1").status == "missed"
        assert j.once_get("crm.xlsx|B2") == "2024-01-01 10:00:00" and j.once_get("x") is None
        assert j.stats()["calls"] == 1 and j.stats()["dirty"] == 1
        assert j.record("state", "again") == j.entries()[0]["seq"] + 1  # seqs go on
        set_schema_version(j.db, 99)
    with pytest.raises(UserError) as exc:
        Journal(target)
    assert "newer" in exc.value.text.en and "новее" in exc.value.text.ru


def test_a_file_newer_for_older_programs_is_refused_too(tmp_path):
    """SQLite files keep their version in ``user_version`` too (journal_schema): one that
    only says so there (written by a program that knew only it) is refused as well."""
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(UserError) as exc:
        Journal(path)
    assert "newer" in exc.value.text.en


def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path):
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError) as exc:
        Journal(path)
    assert str(path) in exc.value.text.en and "журнал" in exc.value.text.ru


def test_closed_journal_says_so(target):
    j = Journal(target, normalize=digits)
    j.close()
    j.close()  # twice is fine
    with pytest.raises(JournalClosed):
        j.record("state", {})


def test_prune_drops_old_log_entries_but_never_call_rows(journal):
    journal.apply_event(ev(2, "1", from_="1", to="101"), MAPPER)
    assert journal.prune(datetime.now() + timedelta(seconds=5)) == 1
    assert journal.entries() == [] and journal.stats()["dirty"] == 1


# ------------------------------------------------------------------ dirty rows


def test_mark_written_keeps_a_row_dirty_when_a_newer_update_arrived(journal):
    journal.apply_event(ev(2, "1", from_="73430112233", to="101"), MAPPER)
    journal.apply_event(ev(8, "2", from_="101", to="79120000001"), MAPPER)
    batch = journal.dirty_calls()
    assert [(r.call_id, v) for r, v in batch] == [("1", 1), ("2", 1)]
    # while the batch is being saved, call 1 is answered
    journal.apply_event(ev(32, "1", from_="73430112233", to="101"), MAPPER)
    journal.mark_written((r.call_id, v) for r, v in batch)
    [(row, version)] = journal.dirty_calls()
    assert (row.call_id, row.status, version) == ("1", "answered", 2)
    journal.mark_written([("1", 1)])  # a stale acknowledgement changes nothing
    assert journal.stats()["dirty"] == 1
    journal.mark_written([("1", 2)])
    assert journal.dirty_calls() == [] and journal.stats()["dirty"] == 0
    assert journal.dirty_calls(limit=0) == []


def test_threads_ingest_while_a_writer_flushes(journal):
    """Receive threads and a writer share one journal; every call ends up written once."""
    written: dict[str, int] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            while True:
                done = stop.is_set()
                batch = journal.dirty_calls(limit=50)
                for row, version in batch:
                    written[row.call_id] = max(written.get(row.call_id, 0), version)
                journal.mark_written((r.call_id, v) for r, v in batch)
                if done and not batch:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def receiver(base: int):
        try:
            for i in range(150):
                cid = str(base + i)
                journal.apply_event(ev(2, cid, from_="73430112233", to="101"), MAPPER)
                journal.apply_event(history(cid, "73430112233", "101", T0 + i, 5), MAPPER)
                journal.record("state", {"i": i})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    w = threading.Thread(target=writer)
    w.start()
    receivers = [threading.Thread(target=receiver, args=(k * 1000,)) for k in range(4)]
    for t in receivers:
        t.start()
    for t in receivers:
        t.join()
    stop.set()
    w.join(30)
    assert not errors
    assert len(written) == 600 and journal.stats()["dirty"] == 0
    assert all(journal.get_call(cid).status == "completed" for cid in written)


# ------------------------------------------------------------------ queries


def test_missed_not_called_back_and_counts(journal):
    day = datetime(2024, 5, 6, 9, 0)
    rows = [
        # Ivan missed at 9:00, called back at 9:30 in another format → resolved
        CallRow("1", "incoming", "missed", "+7 (343) 011-22-33", owner="Анна", start=day),
        CallRow("2", "outgoing", "completed", "83430112233", owner="Анна",
                start=day + timedelta(minutes=30)),
        # Olga: an outgoing call *before* her missed call does not count
        CallRow("3", "outgoing", "completed", "79125554433", owner="Boris", start=day),
        CallRow("4", "incoming", "missed", "89125554433", owner="Boris",
                start=day + timedelta(hours=1)),
        # a stranger, and Ivan missed again after the callback
        CallRow("5", "incoming", "missed", "79990001122", owner="", start=day + timedelta(hours=2)),
        CallRow("6", "incoming", "missed", "73430112233", owner="анна ",
                start=day + timedelta(hours=3)),
        CallRow("7", "incoming", "completed", "79990001122", owner="", start=day),
        CallRow("8", "incoming", "missed", "", owner="", start=day),  # anonymous: no callback
    ]
    for row in rows:
        journal.upsert_call(row)
    assert [r.call_id for r in journal.missed_not_called_back()] == ["6", "5", "4"]
    assert [r.call_id for r in journal.missed_not_called_back(owner="АННА")] == ["6"]
    assert [r.call_id for r in journal.missed_not_called_back(owner="boris")] == ["4"]

    assert journal.count_calls(number_key="73430112233") == 3
    assert journal.count_calls(number_key="73430112233", status="missed") == 2
    assert journal.count_calls(since=day + timedelta(minutes=1)) == 4
    assert journal.count_calls(owner="Анна") == 3
    recent = journal.recent_calls(limit=2, number_key="73430112233")
    assert [r.call_id for r in recent] == ["6", "2"]
    assert [r.call_id for r in journal.recent_calls(since=day + timedelta(hours=1))] == [
        "6",
        "5",
        "4",
    ]


def test_reindex_phones_after_the_rules_changed(target):
    path = target
    with Journal(path, normalize=lambda s: "".join(c for c in s if c.isdigit())) as j:
        j.upsert_call(CallRow("1", "incoming", "missed", "8 (343) 011-22-33"))
        j.upsert_call(CallRow("2", "incoming", "missed", "73430112233"))
        assert j.count_calls(number_key="73430112233") == 1
    with Journal(path, normalize=digits) as j:
        assert j.reindex_phones() == 1 and j.reindex_phones() == 0
        assert j.count_calls(number_key="73430112233") == 2
        assert j.stats()["dirty"] == 2  # keys are ours: the workbook has nothing new to get


# ------------------------------------------------------------------ durability and speed

_CHILD = r"""
import sys
from datetime import timezone
from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal
from pz_excel.protocol.codec import Event

j = Journal(sys.argv[1], normalize=lambda s: s)
mapper = CallMapper(tz=timezone.utc)
i = 0
while True:
    cid = str(10**14 + i)
    attrs = {"type": "4", "callID": cid, "from": "7343011%04d" % (i % 10000), "to": "101",
             "start": str(1700000000 + i), "end": str(1700000005 + i), "duration": "5",
             "direction": "0"}
    j.apply_event(Event(4, cid, attrs), mapper)
    j.record("state", {"i": i})
    i += 1
"""


def _count(path: Path, table: str) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_loses_nothing_committed(tmp_path):
    path = tmp_path / "j.sqlite"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], env=env, cwd=root,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _count(path, "calls") >= 3000, 30, "child wrote 3000 calls")
        seen = _count(path, "calls")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    with Journal(path, normalize=digits) as j:
        con = j.db
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        calls = j.stats()["calls"]
        assert calls >= seen  # everything a reader saw committed is still there
        # event and call row were committed together: they agree exactly
        assert j.stats()["events"] == calls
        seqs = [r[0] for r in con.execute("SELECT seq FROM log ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))  # no hole in the log
        last = str(10**14 + calls - 1)
        assert j.get_call(last).status == "completed"
        assert j.stats()["dirty"] == calls  # and all of them still wait for the workbook


def test_ingest_rate(tmp_path, capsys):
    """record_event commits each event; ≥ 5000/s is the target on a developer machine."""
    n = 3000
    events = [history(str(i), "73430112233", "101", T0 + i, 5) for i in range(n)]
    with Journal(tmp_path / "j.sqlite", normalize=digits) as j:
        t = time.perf_counter()
        for event in events:
            j.record_event(event)
        record_rate = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for event in events:
            j.apply_event(event, MAPPER)
        apply_rate = n / (time.perf_counter() - t)
    with capsys.disabled():
        print(f"\n  journal: record_event {record_rate:,.0f}/s, apply_event {apply_rate:,.0f}/s")
    # generous floor: shared CI disks are slow; the figure above is what gets reported
    assert record_rate > 1000 and apply_rate > 500


def test_a_transfer_request_and_its_decision_are_one_commit(journal):
    event = ev(1, "77", from_="73430112233")
    seq = journal.record_event(event, then=("decision", {"to": "101", "rule": "owner"}))
    entries = journal.entries(call_id="77")
    assert [(e["kind"], e["seq"]) for e in entries] == [("event", seq), ("decision", seq + 1)]
    assert entries[1]["payload"] == {"to": "101", "rule": "owner"}


def test_checkpoints_happen_off_the_commit_path(tmp_path):
    """Commits never checkpoint (below the safety net); a thread of the journal's own
    copies the WAL into the database file within a few seconds."""
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        assert j.db.one("PRAGMA wal_autocheckpoint") == 10_000
        start = path.stat().st_size
        for i in range(2000):  # ~6000 WAL frames, ~150 pages of data
            j.record("request", {"n": i, "pad": "x" * 200})
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1000 * 4096  # past SQLite's default: it did not checkpoint
        wait_until(lambda: path.stat().st_size > start + 100 * 4096, timeout=10,
                   what="the background checkpoint to fill the database file")
        assert len(j.entries(kind="request")) == 2000
        checkpointer = j._checkpointer
        assert checkpointer is not None
    assert not checkpointer._thread.is_alive()  # stopped with the journal


def test_retention_keeps_call_rows_and_what_is_not_applied(target):
    """The retention policy (AgentConfig.keep_days): old log entries and applied stored
    messages go; call rows, and a message whose events wait, stay."""
    import time as _time
    from datetime import datetime as _dt
    from datetime import timedelta as _td

    from pz_excel.crm.schema import CallRow

    with Journal(target) as j:
        j.upsert_call(CallRow(call_id="c1", direction="incoming", status="completed"))
        j.record("state", {"agent": "started"})
        done, waiting = j.record_frame("<old/>"), j.record_frame("<waiting/>")
        j.frame_applied(done)
        j.record("state", {"agent": "later"})
        assert j.prune(_dt.now() - _td(days=1)) == 0  # nothing that old yet
        assert j.prune(_dt.fromtimestamp(_time.time() + 1)) == 3  # 2 log entries, 1 message
        assert j.get_call("c1") is not None
        assert [seq for seq, _raw in j.open_frames()] == [waiting]
        assert j.entries() == []
