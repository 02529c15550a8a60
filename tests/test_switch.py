"""Hand-over between the live book and the file: no row lost or doubled.

The live backend needs Excel, which these machines don't have; the switch logic is tested
with the probe answered by a flag and a second file backend (on a scratch copy of the
book) in the live role. It exercises the same interface LiveBook implements; LiveBook's
own xlwings calls are checked statically in test_livebook_static.py.
"""

from __future__ import annotations

import shutil

from openpyxl import load_workbook

from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.filebook import FileBook
from pz_excel.books.switch import SwitchingBook
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.test_agent import calls_sheet, make_book


def test_excel_closed_without_saving_rows_reach_the_file(tmp_path):
    book = make_book(tmp_path / "crm.xlsx")
    scratch = tmp_path / "excel-memory.xlsx"  # what Excel holds in memory, never saved
    shutil.copy(book, scratch)
    excel_open = {"value": True}
    switch = SwitchingBook(
        book,
        lambda: FileBook(book),
        live_probe=lambda p: excel_open["value"],
        live_factory=lambda p: FileBook(scratch),
    )
    with ServerThread() as srv:
        cfg = AgentConfig(workbook=book, server=srv.url, phone="101", save_interval=0.05, lang="en")
        agent = Agent(cfg, book_factory=lambda: switch).start()
        try:
            wait_until(lambda: agent.client.state.kind == "connected", 10)
            srv.generate(2, {"From": "73430112233", "To": "101", "CallID": "700"})
            wait_until(lambda: "700" in calls_sheet(scratch), 5, "row written live")
            assert switch.kind == "excel" and "700" not in calls_sheet(book)
            excel_open["value"] = False  # Excel closed, the row never saved to the file
            srv.generate(2, {"From": "89125554433", "To": "101", "CallID": "701"})
            rows = wait_until(
                lambda: {"700", "701"} <= set(calls_sheet(book)) and calls_sheet(book),
                8,
                "hand-over to the file",
            )
            assert switch.kind == "file"
            assert sorted(rows) == ["700", "701"]  # calls_sheet asserts no duplicates
        finally:
            agent.stop()


def test_rows_saved_by_excel_are_not_written_twice(tmp_path):
    book = make_book(tmp_path / "crm.xlsx")
    excel_open = {"value": True}
    live = {"book": None}

    def live_factory(p):
        live["book"] = FileBook(book)  # Excel saves into the same file
        return live["book"]

    switch = SwitchingBook(
        book,
        lambda: FileBook(book),
        live_probe=lambda p: excel_open["value"],
        live_factory=live_factory,
    )
    with ServerThread() as srv:
        cfg = AgentConfig(workbook=book, server=srv.url, phone="101", save_interval=0.05)
        agent = Agent(cfg, book_factory=lambda: switch).start()
        try:
            wait_until(lambda: agent.client.state.kind == "connected", 10)
            srv.generate(2, {"From": "73430112233", "To": "101", "CallID": "710"})
            wait_until(lambda: "710" in calls_sheet(book), 5)
            excel_open["value"] = False
            srv.generate(2, {"From": "73430112233", "To": "101", "CallID": "711"})
            wait_until(lambda: "711" in calls_sheet(book), 5)
            assert switch.take_handed_back() == []
            assert sorted(calls_sheet(book)) == ["710", "711"]
        finally:
            agent.stop()


def test_dashboard_sheet_is_kept_by_the_agent(tmp_path):
    book = make_book(tmp_path / "crm.xlsx")
    with ServerThread() as srv:
        cfg = AgentConfig(
            workbook=book,
            server=srv.url,
            phone="101",
            save_interval=0.05,
            lang="en",
            dashboard_interval=0,
        )
        agent = Agent(cfg).start()
        try:
            wait_until(lambda: agent.client.state.kind == "connected", 10)
            srv.generate(
                4,
                {
                    "From": "73430112233",
                    "To": "101",
                    "CallID": "720",
                    "Start": "1700000000",
                    "End": "1700000042",
                    "Duration": "42",
                    "Direction": "0",
                },
            )

            def has_dashboard():
                wb = load_workbook(book, read_only=True)
                try:
                    return "Dashboard" in wb.sheetnames and "720" in calls_sheet(book)
                finally:
                    wb.close()

            wait_until(has_dashboard, 10, "dashboard written")
        finally:
            agent.stop()


def test_refresh_takes_contacts_from_the_open_book(tmp_path):
    """With the book live, Refresh contacts reads what Excel shows (unsaved edits too)."""
    book = make_book(tmp_path / "crm.xlsx")

    class OpenBookTable(FileBook):
        # the live role: a second backend on an edited copy, read through read_table()
        def read_table(self, names):
            wb = load_workbook(edited, read_only=True)
            try:
                ws = next(wb[n] for n in names if n in wb.sheetnames)
                return [list(r) for r in ws.iter_rows(values_only=True)]
            finally:
                wb.close()

    edited = tmp_path / "unsaved.xlsx"
    wb = load_workbook(book)
    wb["Contacts"].append(["New Lead", "+7 900 123-45-67", "103", "Fresh"])
    wb.save(edited)
    switch = SwitchingBook(
        book,
        lambda: FileBook(book),
        live_probe=lambda p: True,
        live_factory=lambda p: OpenBookTable(edited),
    )
    with ServerThread() as srv:
        agent = Agent(
            AgentConfig(workbook=book, server=srv.url, phone="101"), book_factory=lambda: switch
        ).start()
        try:
            assert agent.index.lookup("79001234567") is None
            switch.write_calls([])  # the writer's first batch opens the live book
            agent.api_refresh({}, {})
            contact = agent.index.lookup("89001234567")
            assert contact is not None and contact.name == "New Lead"
            assert agent.api_lookup({"number": "+79001234567"}, {})["extension"] == "103"
        finally:
            agent.stop()


def test_the_dashboard_follows_the_calls_of_a_running_agent(tmp_path):
    book = make_book(tmp_path / "crm.xlsx")

    def today_calls() -> object:
        wb = load_workbook(book, read_only=True)
        try:
            return wb["Dashboard"]["B4"].value if "Dashboard" in wb.sheetnames else None
        finally:
            wb.close()

    with ServerThread() as srv:
        cfg = AgentConfig(workbook=book, server=srv.url, phone="101", save_interval=0.05,
                          lang="en", dashboard_interval=0)
        agent = Agent(cfg).start()
        try:
            wait_until(lambda: agent.client.state.kind == "connected", 10)
            srv.generate(2, {"From": "73430112233", "To": "101", "CallID": "730"})
            wait_until(lambda: "730" in calls_sheet(book), 5, "row written")
            wait_until(lambda: today_calls() == 1, 5, "the Dashboard counts the call")
            srv.generate(2, {"From": "73430112234", "To": "101", "CallID": "731"})
            wait_until(lambda: today_calls() == 2, 5, "the Dashboard counts the next call")
        finally:
            agent.stop()
