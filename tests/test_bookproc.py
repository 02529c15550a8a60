"""The workbook file written by a process of its own (books/bookproc.py): rows and parts go
through the pipe and are read back from the real file; errors come back whole, in both
languages; what the child logs is logged here; a child that is killed loses nothing; and
the agent answers callers while its book process is stopped dead."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import psutil
import pytest

from pz_excel.books import BookLocked
from pz_excel.books.bookproc import FileBookProcess
from pz_excel.books.contacts_append import ContactAppend
from pz_excel.i18n import UserError
from tests.conftest import wait_until
from tests.test_agent import calls_sheet, start_agent, wait_rows
from tests.test_agent import make_book as crm_book
from tests.test_filebook import call, headers, make_book, sheet_rows


def book_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children()
            if "pz_excel.books.bookproc" in " ".join(p.cmdline())]


def test_rows_go_through_the_child_into_the_file(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    book = FileBookProcess(path)
    try:
        (child,) = book_processes()
        assert child.pid != os.getpid()
        assert book.write_calls([call("1"), call("2", duration=7)]) == 2
        assert book.write_calls([call("2", duration=9)]) == 1  # an upsert, not a new row
        rows = sheet_rows(path)[1]
        assert set(rows) == {"1", "2"} and rows["2"]["Duration (s)"].value == 9
        assert book.existing_call_ids() == {"1", "2"}
        assert book.take_recreated() is False
    finally:
        book.close()
    assert book_processes() == []  # close ends the child
    assert book.write_calls([call("3")]) == 1  # and a later call starts another
    book.close()
    assert set(sheet_rows(path)[1]) == {"1", "2", "3"}


def test_errors_come_back_whole_in_both_languages(tmp_path):
    cols = [h for h in headers("en") if h != "Client phone"]
    book = FileBookProcess(make_book(tmp_path / "bad.xlsx", calls_columns=cols))
    try:  # FileBook refuses the book on opening: the first call raises it
        with pytest.raises(UserError) as exc:
            book.ensure_calls_sheet()
        assert "Client phone" in exc.value.text.en and "Телефон клиента" in exc.value.text.ru
    finally:
        book.close()

    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    lock = tmp_path / "~$crm.xlsx"
    lock.write_text("\x04Anna")
    book = FileBookProcess(path)
    try:
        with pytest.raises(BookLocked) as locked:
            book.write_calls([call("1")])
        assert "Anna" in locked.value.text.en and "открыта в Excel" in locked.value.text.ru
        assert locked.value.lock_path == str(lock)
        lock.unlink()
        assert book.write_calls([call("1")]) == 1
    finally:
        book.close()


def test_what_the_child_logs_is_logged_here(tmp_path, caplog):
    path = make_book(tmp_path / "crm.xlsx")  # no Calls sheet
    book = FileBookProcess(path, lang="en")
    try:
        with caplog.at_level(logging.INFO, logger="pz_excel"):
            assert book.ensure_calls_sheet() is True
        # the sheet was made: known here at once (the agent writes the journal's calls back)
        assert book.take_recreated() is True and book.take_recreated() is False
        assert any("Calls sheet added" in r.getMessage() and r.name.startswith("pz_excel")
                   for r in caplog.records)
        assert book.write_calls([call("1")]) == 1
    finally:
        book.close()
    assert set(sheet_rows(path, "Calls")[1]) == {"1"}


def test_a_parts_writer_notes_what_it_did_here(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx")
    book = FileBookProcess(path)
    try:
        writer = ContactAppend("Пётр Новиков", "+7 343 555-00-00", "101")
        assert book.write_parts(writer) is True
        assert writer.row == 6  # the four contacts of the template start on row 2
    finally:
        book.close()


POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32",
                                reason="SIGKILL and SIGSTOP are POSIX signals")


@pytest.fixture
def running(tmp_path, server):
    """An agent that has written its first row (call 700), and its book process."""
    book = crm_book(tmp_path / "crm.xlsx")
    agent = start_agent(book, server)
    try:
        server.generate(2, {"From": "73430112233", "To": "101", "CallID": "700"})
        wait_rows(book, agent, lambda r: "700" in r)
        (child,) = book_processes()
        yield book, agent, child
    finally:
        agent.stop()
    assert book_processes() == []  # the agent's stop ends it


@POSIX_ONLY
def test_a_killed_book_process_loses_no_row(running, server):
    book, agent, child = running
    os.kill(child.pid, signal.SIGKILL)
    child.wait(5)
    server.generate(2, {"From": "73430112233", "To": "101", "CallID": "701"})
    rows = wait_rows(book, agent, lambda r: "701" in r)
    assert set(rows) == {"700", "701"}
    assert [p.pid for p in book_processes()] != [child.pid]


@POSIX_ONLY
def test_callers_are_answered_while_the_book_process_is_stopped(running, server):
    book, agent, child = running
    os.kill(child.pid, signal.SIGSTOP)  # mid-save or idle: the writer waits on it
    try:
        server.generate(2, {"From": "73430112233", "To": "101", "CallID": "801"})
        for n in range(5):
            call_id = f"80{n + 2}"
            server.generate(1, {"From": "73430112233", "CallID": call_id})
            t0 = time.monotonic()
            wait_until(lambda cid=call_id: server.transfers.get(cid) == "101", 5,
                       "the transfer")
            assert time.monotonic() - t0 < 1.0
        assert "801" not in calls_sheet(book)  # the row waits in the journal
    finally:
        os.kill(child.pid, signal.SIGCONT)
    wait_rows(book, agent, lambda r: "801" in r)
