"""The journal's spool (agent/spool.py): a caller's transfer is answered after one write to
it, and the SQLite commit follows. What is in the spool is stored: a start after a crash
puts it into the journal exactly once; a damaged tail was never acted on; and the caller's
answer never waits for SQLite (a journal locked by another process)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from pz_excel.agent.eventpath import EventPath
from pz_excel.agent.inbox import Inbox
from pz_excel.agent.journal import Journal
from pz_excel.agent.spool import Spool, peek, spool_path
from pz_excel.protocol import codec as protocol
from tests.conftest import wait_until
from tests.test_agent import make_book, start_agent


def frame(*events: tuple[int, str]) -> str:
    return "".join(f'<Event type="{t}" callID="{cid}" from="73430112233" to="101"/>'
                   for t, cid in events)


def test_records_come_back_in_order_and_a_commit_starts_the_file_over(tmp_path):
    spool = Spool(tmp_path / "j.sqlite-spool")
    try:
        gen, first = spool.append([(frame((2, "1")), [], False)])
        _, second = spool.append([(frame((1, "2")), [("2", "decision", {"to": "101"})], True),
                                  (frame((4, "3")), [], False)])
        entries, end = spool.pending(None)
        assert [e[0] for e in entries] == [frame((2, "1")), frame((1, "2")), frame((4, "3"))]
        assert entries[1][1] == [("2", "decision", {"to": "101"})] and entries[1][2] is True
        assert end == second
        assert [e[0] for e in spool.pending((gen, first))[0]] == [frame((1, "2")),
                                                                 frame((4, "3"))]
        spool.committed(gen, first)  # not all of it: the file stays
        assert len(spool.pending(None)[0]) == 3
        spool.committed(gen, second)
        assert spool.pending(None)[0] == [] and spool.generation != gen
        assert spool.path.stat().st_size < 64
    finally:
        spool.close()


def test_a_damaged_tail_ends_the_replay(tmp_path):
    path = tmp_path / "j.sqlite-spool"
    spool = Spool(path)
    spool.append([(frame((2, "1")), [], False)])
    spool.append([(frame((2, "2")), [], False)])
    spool.close()
    with open(path, "r+b") as f:  # the second record cut short (a crash mid-write)
        f.truncate(path.stat().st_size - 5)
    assert [e[0] for e in peek(path, None)] == [frame((2, "1"))]


def test_a_start_after_a_crash_stores_the_spool_once(tmp_path):
    """Killed after the spool write (the caller answered), before the commit: the next start
    commits those messages; killed after the commit but before the file was cut back: the
    journal's mark keeps them from going in twice. Then pz-events applies them."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    spool = Spool(spool_path(path))
    request = protocol.decode_frame(frame((1, "7")))[0]
    gen, end = spool.append([(frame((2, "5")), [], False)])
    journal.record_frames([(frame((2, "5")), [], False)], mark=(gen, end))  # committed
    spool.append([(frame((1, "7")), [("7", "decision", {"to": "102"})], True),
                  (frame((4, "8")), [], False)])  # not committed: the crash
    spool.close()
    assert [e[0] for e in peek(spool_path(path), journal.spool_mark())] == [
        frame((1, "7")), frame((4, "8"))]
    journal.close()
    journal = Journal(path)  # the next start

    applied: list[str] = []
    path_ = EventPath(journal, Inbox(), apply=lambda e, f: applied.append(e.call_id),
                      decide=lambda e: (None, ("decision", {})), send=lambda e, d: None,
                      answered=lambda *a: None)
    path_.start()
    try:
        raws = [r for (r,) in sqlite3.connect(path).execute("SELECT raw FROM frames ORDER BY seq")]
        assert raws == [frame((2, "5")), frame((1, "7")), frame((4, "8"))]
        decision = journal.entries(kind="decision", call_id="7")
        assert [d["payload"] for d in decision] == [{"to": "102"}]
        assert request.call_id == "7"
        # the unapplied ones (both of them, the first was committed but not applied) go on
        wait_until(lambda: applied == ["5", "8"], 10, "the stored messages applied")
        assert peek(spool_path(path), journal.spool_mark()) == []
    finally:
        path_.stop()
        journal.close()


@pytest.fixture
def spooled_agent(tmp_path, server):
    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server)
    yield agent
    agent.stop()


def test_the_answer_does_not_wait_for_a_locked_journal(spooled_agent, server):
    """Another process holds the journal's write lock: the caller is answered at
    once all the same (from the spool), and the journal gets the message when it can."""
    agent = spooled_agent
    journal_file = agent.config.journal
    other = sqlite3.connect(journal_file, isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")  # the write lock
    try:
        server.generate(1, {"From": "73430112233", "CallID": "4242"})
        t0 = time.monotonic()
        wait_until(lambda: server.transfers.get("4242") == "101", 5, "the transfer")
        answered_in = time.monotonic() - t0
        assert answered_in < 1.5, f"answered after {answered_in:.2f} s, behind the lock"
        assert peek(spool_path(journal_file), None), "answered before it was stored"
    finally:
        other.execute("ROLLBACK")
        other.close()
    with Journal(journal_file) as j:
        wait_until(lambda: j.entries(kind="decision", call_id="4242"), 10,
                   "the decision in the journal once the lock is gone")


def test_a_spool_beside_a_new_journal_is_not_replayed_into_it(tmp_path):
    """The user moved a damaged journal away (as its error message suggests): what the
    spool beside it holds may already be in that file, so it does not go into the new one."""
    path = tmp_path / "j.sqlite"
    spool = Spool(spool_path(path))
    spool.append([(frame((2, "9")), [], False)])
    spool.close()
    journal = Journal(path)  # a new file
    lane = EventPath(journal, Inbox(), apply=lambda e, f: None,
                     decide=lambda e: (None, ("decision", {})), send=lambda e, d: None,
                     answered=lambda *a: None)
    lane.start()
    try:
        assert sqlite3.connect(path).execute("SELECT count(*) FROM frames").fetchone()[0] == 0
        assert peek(spool_path(path), None) == []
    finally:
        lane.stop()
        journal.close()
