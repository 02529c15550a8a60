"""Fault suite, the workbook side (docs/reliability.md): two writers, kill -9 leftovers,
permissions, read-only books, merged headers, absurd values, a Calls sheet deleted while the
agent runs. Real files, real processes; every loop bounded."""

from __future__ import annotations

import multiprocessing
import os
import pwd
import stat
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from pz_excel.agent.journal import Journal
from pz_excel.agent.writer import flush_dirty
from pz_excel.books import BookLocked
from pz_excel.books.filebook import FileBook
from pz_excel.crm.schema import CALLS, CallRow
from pz_excel.protocol.codec import Event

pytestmark = pytest.mark.fault
START = datetime(2026, 11, 26, 10, 0)


def call(call_id: str, **kw) -> CallRow:
    base = dict(call_id=call_id, direction="incoming", status="completed",
                client_phone="+7 343 011-22-33", start=START, duration=42,
                recording="https://rec.example/1.mp3")
    base.update(kw)
    return CallRow(**base)


def calls_book(path: Path, title_rows: int = 0, merged: bool = False) -> Path:
    """A book of the test's own: Contacts, and a Calls sheet with its header."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Contacts"
    ws.append(["Name", "Phone", "Owner"])
    calls = wb.create_sheet("Calls")
    for r in range(1, title_rows + 1):
        calls.cell(r, 1, f"title line {r}")
    top = title_rows + 1
    for i, col in enumerate(CALLS.columns, start=1):
        calls.cell(top, i, col.en)
        if merged:  # a two-line header: each header cell merged down over two rows
            calls.merge_cells(start_row=top, start_column=i, end_row=top + 1, end_column=i)
    wb.save(path)
    return path


def call_ids(path: Path) -> list[str]:
    ws = load_workbook(path, read_only=True)["Calls"]
    return [r[0] for r in ws.iter_rows(values_only=True)
            if isinstance(r[0], str) and r[0].startswith("c")]


# ---------------------------------------------------------------------- two writers


def _writer(path: str, prefix: str, n: int, batch: int, start, journal: str) -> None:
    book = FileBook(path)  # read before the other writes: its copy goes stale
    with Journal(Path(journal), normalize=lambda s: s) as j:
        for i in range(n):
            j.upsert_call(call(f"c{prefix}{i}"))
        start.wait(10)
        while j.stats()["dirty"]:
            flush_dirty(j, book, max_rows=batch)


def _race(path: Path, tmp: Path, n: int, batch: int) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), p, n, batch, start,
                                               str(tmp / f"j{p}.sqlite")))
             for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_two_processes_each_writing_one_row_keep_both(tmp_path):
    """The deterministic repro: both read the book, then both save one row."""
    for round_ in range(5):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        path = calls_book(folder / "crm.xlsx")
        _race(path, folder, 1, 1)
        assert sorted(call_ids(path)) == ["ca0", "cb0"]


def test_two_writers_under_a_burst_lose_no_row_the_journal_marks_written(tmp_path):
    """Two agents' writers (journal → flush_dirty → FileBook, as in the agent) on one book,
    500 calls each in batches of 25, ten times over: every row is in the sheet once."""
    for round_ in range(10):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        path = calls_book(folder / "crm.xlsx")
        _race(path, folder, 250, 25)
        ids = call_ids(path)
        assert len(ids) == len(set(ids)) == 500, f"round {round_}"


# ---------------------------------------------------------------------- files


def test_temp_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    path = calls_book(tmp_path / "crm.xlsx")
    left = [tmp_path / ".crm.xlsx.4242.pz-saving", tmp_path / ".crm.xlsx.dashboard.tmp"]
    for f in left:
        f.write_bytes(b"x" * 1000)
    FileBook(path).write_calls([call("c1")])
    assert not any(f.exists() for f in left)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_save_keeps_the_books_mode_and_owner(tmp_path):
    path = calls_book(tmp_path / "crm.xlsx")
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.chmod(path, 0o600)
    FileBook(path).write_calls([call("c1")])
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == nobody.pw_uid
    assert call_ids(path) == ["c1"]


def test_a_read_only_book_is_respected_and_written_once_writable(tmp_path):
    path = calls_book(tmp_path / "crm.xlsx")
    os.chmod(path, 0o444)
    saved = path.read_bytes()
    book = FileBook(path)
    with Journal(tmp_path / "j.sqlite", normalize=lambda s: s) as j:
        j.upsert_call(call("c1"))
        with pytest.raises(BookLocked, match="read-only") as err:
            flush_dirty(j, book)
        assert "только для чтения" in err.value.text.ru
        assert path.read_bytes() == saved and j.stats()["dirty"] == 1
        os.chmod(path, 0o644)
        assert flush_dirty(j, book) == 1
    assert call_ids(path) == ["c1"]


# ---------------------------------------------------------------------- the sheet


@pytest.mark.parametrize("title_rows, merged", [(0, True), (1, False), (2, True)])
def test_rows_never_land_in_a_merged_or_titled_header(tmp_path, title_rows, merged):
    path = calls_book(tmp_path / "crm.xlsx", title_rows, merged)
    book = FileBook(path)
    for i in range(30):
        book.write_calls([call(f"c{i}")])
    ws = load_workbook(path)["Calls"]
    header = title_rows + 1
    assert ws.cell(header, 1).value == "Call ID"
    assert call_ids(path) == [f"c{i}" for i in range(30)]
    first = header + (2 if merged else 1)
    assert ws.cell(first, 1).value == "c0"
    assert all(ws.cell(r, 11).hyperlink is None for r in range(1, first))  # K1 keeps no link


def test_a_very_long_call_id_updates_its_one_row(tmp_path):
    path = calls_book(tmp_path / "crm.xlsx")
    long_id = "c" + "7" * 40_000  # over Excel's 32,767 characters a cell holds
    book = FileBook(path)
    book.write_calls([call(long_id, status="ringing")])
    book.write_calls([call(long_id, status="completed")])
    assert len(call_ids(path)) == 1


def test_absurd_values_are_stored_and_bounded(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        from pz_excel.agent.calllog import CallMapper

        mapper = CallMapper(lookup=lambda _n: None)
        for attrs in (
            {"type": "4", "callID": "c1", "from": "101", "to": "73430112233",
             "duration": str(2**64), "start": "253402300799"},  # year 9999
            {"type": "1" + "0" * 29, "callID": "c2", "from": "73430112233"},
        ):
            j.apply_event(Event(int(attrs["type"]), attrs["callID"], attrs), mapper)
        kinds = [e for e in j.entries() if e["kind"] == "event"]
        assert len(kinds) == 2  # both stored, whatever their values
        row = j.get_call("c1")
        assert row is not None and row.duration is None and (row.start is None or
                                                             row.start.year < 2100)


def test_a_calls_sheet_deleted_while_the_agent_runs_gets_every_call_back(tmp_path):
    from pz_excel.agent.lifecycle import Agent, AgentConfig
    from pz_excel.tools.testserver import ServerThread
    from tests.conftest import wait_until
    from tests.test_agent import calls_sheet, make_book

    book = make_book(tmp_path / "crm.xlsx")

    def ids() -> set[str]:
        wb = load_workbook(book, read_only=True)
        try:
            return set(calls_sheet(book)) if "Calls" in wb.sheetnames else set()
        finally:
            wb.close()

    with ServerThread() as srv:
        cfg = AgentConfig(workbook=book, server=srv.url, phone="101", save_interval=0.05,
                          lang="en", dashboard_interval=3600)
        agent = Agent(cfg).start()
        try:
            wait_until(lambda: agent.client.state.kind == "connected", 10)
            for cid in ("801", "802"):
                srv.generate(2, {"From": "73430112233", "To": "101", "CallID": cid})
            wait_until(lambda: {"801", "802"} <= ids(), 5, "first calls written")
            wb = load_workbook(book)  # the user deletes the Calls sheet and saves (in Excel)
            del wb["Calls"]
            wb.save(book)
            srv.generate(2, {"From": "73430112233", "To": "101", "CallID": "803"})
            wait_until(lambda: {"801", "802", "803"} <= ids(), 10, "all calls back")
        finally:
            agent.stop()


def test_toast_processes_are_bounded():
    """On Windows each ringing call used to start a PowerShell toast, with no limit."""
    import sys

    from pz_excel.agent.notify import Spawner

    spawner = Spawner(limit=2)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]  # lives until killed
    started = [spawner.spawn(sleeper) for _ in range(5)]
    try:
        assert started == [True, True, False, False, False]
    finally:
        for p in spawner._alive:
            p.kill()
            p.wait(10)
    assert spawner.spawn([sys.executable, "-c", "pass"])  # room again once they are gone


def test_a_deleted_contacts_sheet_is_said_once_per_reload(tmp_path, caplog):
    import logging

    from pz_excel.agent.lifecycle import Agent, AgentConfig
    from pz_excel.tools.testserver import ServerThread
    from tests.conftest import wait_until
    from tests.test_agent import make_book

    book = make_book(tmp_path / "crm.xlsx")
    caplog.set_level(logging.WARNING)
    with ServerThread() as srv:
        agent = Agent(AgentConfig(workbook=book, server=srv.url, phone="101", lang="en",
                                  save_interval=0.05)).start()
        try:
            wb = load_workbook(book)  # the user deletes Contacts and saves
            del wb["Contacts"]
            wb.save(book)
            wait_until(lambda: agent.watcher.last_error is not None, 10, "reload tried")
            skipped = agent.watcher.skipped
            for cid in ("811", "812"):  # our own saves change the file: nothing new to say
                srv.generate(2, {"From": "73430112233", "To": "101", "CallID": cid})
            wait_until(lambda: agent.watcher.skipped > skipped, 10, "our save looked at")
        finally:
            agent.stop()
    said = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_a_reused_call_id_keeps_both_calls(tmp_path):
    import time as _time

    from pz_excel.agent.calllog import CallMapper, is_new_call

    mapper = CallMapper(lookup=lambda _n: None)
    two_days_ago = int(_time.time()) - 2 * 86400
    with Journal(tmp_path / "j.sqlite") as j:
        def feed(etype: int, **attrs: str) -> None:
            attrs = {"type": str(etype), "callID": "77", **attrs}
            j.apply_event(Event(etype, "77", attrs), mapper, reused=is_new_call)

        feed(2, **{"from": "73430112233", "to": "101"})  # the first call: rings…
        feed(4, **{"from": "73430112233", "to": "101", "start": str(two_days_ago),
                   "end": str(two_days_ago + 60), "duration": "60"})  # …and ended
        feed(2, **{"from": "79120000000", "to": "101"})  # two days later, "77" rings again
        feed(4, **{"from": "79120000000", "to": "101", "duration": "30"})
        first, second = j.get_call("77"), j.get_call("77 #2")
        assert first is not None and first.client_phone == "73430112233"
        assert first.duration == 60
        assert second is not None and second.client_phone == "79120000000"
        assert second.duration == 30
        assert [e["call_id"] for e in j.entries(kind="reused")] == ["77"]
        path = calls_book(tmp_path / "crm.xlsx")
        assert flush_dirty(j, FileBook(path)) == 2
    ws = load_workbook(path)["Calls"]
    assert sorted(str(ws.cell(r, 1).value) for r in (2, 3)) == ["77", "77 #2"]
