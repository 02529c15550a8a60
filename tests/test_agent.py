"""The agent end to end: our test connector on loopback, real .xlsx files read back with
openpyxl, a real SQLite journal. Nothing of ours is mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pz_excel.agent.api import ApiClient, running_agents
from pz_excel.agent.journal import Journal
from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.template import write_template
from pz_excel.i18n import UserError
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until

MANAGERS = [("Anna Smirnova", "101"), ("Boris Ivanov", "102"), ("Vera Petrova", "103")]
CONTACTS = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),  # owner by extension
    ("Olga Sidorova", "8 912 555 44 33", "boris ivanov ", "Rosa"),  # owner by name, odd case
    ("No Owner Ltd", "79120000001", "", "Nobody"),
    ("Ghost", "79120000002", "Somebody Unknown", "Ghost Inc"),
]


def make_book(path: Path, lang: str = "en") -> Path:
    rows = [(n, p, o, c) for n, p, o, c in CONTACTS]
    return write_template(path, lang=lang, contacts=rows, managers=MANAGERS)


@pytest.fixture
def book(tmp_path):
    return make_book(tmp_path / "crm.xlsx")


def start_agent(book: Path, server: ServerThread, phone: str = "101", **kw) -> Agent:
    cfg = AgentConfig(
        workbook=book, server=server.url, phone=phone, save_interval=0.1, lang="en", **kw
    )
    agent = Agent(cfg).start()
    wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
    return agent


@pytest.fixture
def agent(book, server):
    a = start_agent(book, server)
    yield a
    a.stop()


def calls_sheet(book: Path) -> dict[str, dict]:
    """Calls rows by Call ID, as a user's Excel would see them (values + data types)."""
    wb = load_workbook(book)
    ws = wb["Calls"]
    header = [c.value for c in ws[1]]
    out: dict[str, dict] = {}
    for row in ws.iter_rows(min_row=2):
        values = {header[i]: cell for i, cell in enumerate(row) if i < len(header)}
        call_id = values["Call ID"].value
        if call_id is None:
            continue
        assert str(call_id) not in out, f"duplicate row for call {call_id}"
        out[str(call_id)] = values
    return out


def wait_rows(book: Path, agent: Agent, predicate, timeout: float = 8.0) -> dict[str, dict]:
    def check():
        if agent.journal.stats().get("dirty", 1):
            return None
        rows = calls_sheet(book)
        return rows if predicate(rows) else None

    return wait_until(check, timeout, "Calls sheet rows")


# ------------------------------------------------------------------ smart transfer


@pytest.mark.parametrize(
    ("caller", "expected", "rule"),
    [
        ("73430112233", "101", "owner-extension"),
        ("+79125554433", "102", "owner-name"),
        ("79990001122", "", "unknown-caller"),
    ],
)
def test_transfer_decisions_on_the_wire(agent, server, caller, expected, rule):
    call_id = f"77{abs(hash(caller)) % 10**10}"
    server.generate(1, {"From": caller, "CallID": call_id})
    wait_until(lambda: any(d.call_id == call_id for d in agent.decisions), 5, "decision")
    decision = next(d for d in agent.decisions if d.call_id == call_id)
    assert decision.to == expected and decision.rule == rule
    if expected:
        wait_until(lambda: server.transfers.get(call_id) == expected, 5, "transfer won")
        assert any(f"callID = {call_id}, dst = {expected}" in line for line in server.log_lines)
    else:
        assert call_id not in server.transfers
    # the decision and its reason are journalled
    with Journal(agent.config.journal) as j:
        assert any(e["kind"] == "decision" and e["call_id"] == call_id for e in j.entries())


def test_unknown_caller_goes_to_the_fallback(book, server):
    a = start_agent(book, server, fallback="103")
    try:
        server.generate(1, {"From": "79990001122", "CallID": "5001"})
        wait_until(lambda: server.transfers.get("5001") == "103", 5, "fallback transfer")
    finally:
        a.stop()


def test_three_agents_race_and_the_owner_gets_the_ring(tmp_path):
    # The ring after a taken transfer is what production connectors send (TestServer
    # 1.1.2 does not): production_like.
    server = ServerThread(host="127.0.0.1", port=0, production_like=True).start()
    agents = [
        start_agent(make_book(tmp_path / f"b{ext}.xlsx"), server, phone=ext)
        for ext in ("101", "102", "103")
    ]
    try:
        server.generate(1, {"From": "89125554433", "CallID": "6001"})  # Olga → Boris (102)
        wait_until(lambda: server.transfers.get("6001") == "102", 5, "transfer won")
        boris = agents[1]
        wait_until(lambda: boris.journal.get_call("6001") is not None, 5, "ring at 102")
        assert boris.journal.get_call("6001").status == "ringing"
        assert agents[0].journal.get_call("6001") is None
    finally:
        for a in agents:
            a.stop()
        server.stop()


# ------------------------------------------------------------------ Calls sheet


def test_incoming_outgoing_and_missed_rows(agent, server, book):
    g = server.generate
    g(2, {"From": "73430112233", "To": "101", "CallID": "100"})
    g(32, {"From": "73430112233", "To": "101", "CallID": "100"})
    g(
        4,
        {
            "From": "73430112233",
            "To": "101",
            "CallID": "100",
            "Start": "1700000000",
            "End": "1700000042",
            "Duration": "42",
            "Direction": "0",
            "Record": "http://rec.example/100.mp3",
        },
    )
    g(8, {"From": "101", "To": "89125554433", "CallID": "200"})
    g(16, {"From": "101", "To": "89125554433", "CallID": "200"})
    g(2, {"From": "79990001122", "To": "101", "CallID": "300"})
    g(
        4,
        {
            "From": "79990001122",
            "To": "101",
            "CallID": "300",
            "Start": "1700000100",
            "End": "1700000120",
            "Duration": "0",
            "Direction": "0",
        },
    )
    rows = wait_rows(
        book,
        agent,
        lambda r: (
            {"100", "200", "300"} <= set(r)
            and r["100"]["Status"].value == "completed"
            and r["300"]["Status"].value == "missed"
        ),
    )
    inc = rows["100"]
    assert inc["Direction"].value == "incoming"
    assert inc["Contact"].value == "Ivan Petrov" and inc["Owner"].value == "101"
    assert inc["Duration (s)"].value == 42
    assert inc["Recording"].hyperlink.target == "http://rec.example/100.mp3"
    assert (inc["End"].value - inc["Start"].value).total_seconds() == 42
    out = rows["200"]
    assert (out["Direction"].value, out["Status"].value) == ("outgoing", "answered")
    assert out["Contact"].value == "Olga Sidorova"
    assert rows["300"]["Late"].value in (None, "")


def test_replayed_history_merges_and_is_marked_late(book, server):
    a = start_agent(book, server)
    server.generate(
        4,
        {
            "From": "73430112233",
            "To": "101",
            "CallID": "400",
            "Start": "1700000000",
            "End": "1700000010",
            "Duration": "10",
            "Direction": "0",
        },
    )
    wait_rows(book, a, lambda r: "400" in r)
    a.stop()
    server.generate(
        4,
        {
            "From": "89125554433",
            "To": "101",
            "CallID": "401",
            "Start": "1700000500",
            "End": "1700000530",
            "Duration": "30",
            "Direction": "0",
        },
    )
    a = start_agent(book, server)
    try:
        rows = wait_rows(book, a, lambda r: "401" in r)
        assert rows["401"]["Late"].value == "yes"
        assert rows["400"]["Late"].value in (None, "")
        assert len(rows) == 2  # calls_sheet() asserts there is no duplicate
    finally:
        a.stop()


def test_formula_looking_caller_id_stays_text(agent, server, book):
    evil = '=HYPERLINK("http://x","y")'
    server.generate(2, {"From": evil, "To": "101", "CallID": "500"})
    rows = wait_rows(book, agent, lambda r: "500" in r)
    cell = rows["500"]["Client phone"]
    assert cell.value == evil and cell.data_type == "s"


def test_locked_workbook_rows_arrive_after_unlock(agent, server, book):
    lock = book.with_name("~$" + book.name)
    lock.write_text("someone")
    server.generate(2, {"From": "73430112233", "To": "101", "CallID": "600"})
    wait_until(lambda: agent.book_error is not None, 5, "lock noticed")
    assert "600" not in calls_sheet(book)
    assert agent.journal.stats()["dirty"] == 1
    lock.unlink()
    wait_rows(book, agent, lambda r: "600" in r)


# ------------------------------------------------------------------ API and single instance


def test_api_call_status_lookup(agent, server):
    client = ApiClient.discover(phone="101")
    st = client.get("/status")
    assert st["state"] == "connected" and st["contacts"] == len(CONTACTS)
    assert client.post("/call", {"number": "+7 (343) 011-22-33"})["code"] == 0
    wait_until(
        lambda: any("src = 101, dst = +7 (343) 011-22-33" in x for x in server.log_lines),
        5,
        "Call reached the connector",
    )
    info = client.get("/lookup", number="83430112233")
    assert info["contact"]["name"] == "Ivan Petrov" and info["extension"] == "101"
    assert client.get("/lookup", number="89125554433")["extension"] == "102"


def test_pz_call_once_key_dials_once(agent, server):
    client = ApiClient.discover(phone="101")
    first = client.post("/call", {"number": "555", "once_key": "crm.xlsx|Sheet1|B2|555"})
    assert first["code"] == 0 and not first["already"]
    again = client.post("/call", {"number": "555", "once_key": "crm.xlsx|Sheet1|B2|555"})
    assert again["already"]
    burst = client.post("/call", {"number": "556", "once_key": "crm.xlsx|Sheet1|B3|556"})
    assert burst["code"] == -1  # fill-down guard
    assert sum("dst = 555" in x for x in server.log_lines) == 1


def test_second_agent_for_same_extension_and_book_is_refused(agent, book, server):
    cfg = AgentConfig(workbook=book, server=server.url, phone="101")
    with pytest.raises(UserError) as exc:
        Agent(cfg).start()
    assert "already running" in exc.value.text.en and str(os.getpid()) in exc.value.text.en


def test_a_book_without_calls_gets_the_sheet_before_the_agent_connects(tmp_path, server):
    from openpyxl import load_workbook

    from tests.test_filebook import make_book as contacts_only

    path = contacts_only(tmp_path / "own.xlsx")
    a = start_agent(path, server)
    try:
        assert "Calls" in load_workbook(path, read_only=True).sheetnames
    finally:
        a.stop()


def test_missing_workbook_is_a_user_error(tmp_path, server):
    with pytest.raises(UserError):
        Agent(AgentConfig(workbook=tmp_path / "nope.xlsx", server=server.url, phone="101")).start()


# ------------------------------------------------------------------ kill -9


def test_kill_9_mid_burst_then_restart_every_call_exactly_once(book, server, tmp_path):
    env = dict(os.environ, PZ_LANG="en")
    cmd = [
        sys.executable,
        "-m",
        "pz_excel",
        "run",
        "--workbook",
        str(book),
        "--server",
        server.url,
        "--phone",
        "101",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: running_agents(), 15, "agent API up")
        wait_until(
            lambda: any(c["GUID"] == "101" and c["Connected"] == "1" for c in server.clients()),
            10,
            "agent connected",
        )
        ids = [str(9000 + i) for i in range(60)]
        journal_path = Path(running_agents()[0].journal)
        for i, call_id in enumerate(ids):
            server.generate(
                4,
                {
                    "From": "73430112233",
                    "To": "101",
                    "CallID": call_id,
                    "Start": str(1700000000 + i),
                    "End": str(1700000010 + i),
                    "Duration": "10",
                    "Direction": "0",
                },
            )
            if i == 30:
                # Kill in the middle of the burst, while the writer is saving rows. Frames
                # already delivered are in the journal first (that is the contract we test);
                # the rest of the burst arrives as replayed history after the restart.
                wait_until(lambda: _journal_calls(journal_path) >= 31, 10, "rows journalled")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                wait_until(
                    lambda: (
                        not any(
                            c["GUID"] == "101" and c["Connected"] == "1" for c in server.clients()
                        )
                    ),
                    10,
                    "server saw it go",
                )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # restart: replayed history (missed while dead) + pending rows from the journal
    a = start_agent(book, server)
    try:
        rows = wait_rows(book, a, lambda r: set(ids) <= set(r), timeout=20)
        assert sorted(r for r in rows if r in ids) == sorted(ids)  # exactly once each
    finally:
        a.stop()


def _journal_calls(path: Path) -> int:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("select count(*) from calls").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0
