"""The team server on our test connector: it answers transfer requests from the shared
contacts' Owner column and logs every extension's calls into the team book (read back
with openpyxl); two ``pz-excel team run`` processes fail over without a 4009."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pz_excel.agent import sqldb
from pz_excel.agent.api import running_agents
from pz_excel.agent.journal import Journal
from pz_excel.books.template import write_template
from pz_excel.team.config import TeamConfig
from pz_excel.team.leader import GRACE, read_leader
from pz_excel.team.server import LEADER, STANDBY, TeamServer
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.teamproc import stop_all, team_run

MANAGERS = [("Anna Smirnova", "101"), ("Boris Ivanov", "102")]
CONTACTS = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),
    ("Olga Sidorova", "8 912 555 44 33", "Boris Ivanov", "Rosa"),  # owned by 102, by name
]


@pytest.fixture
def contacts(tmp_path) -> Path:
    return write_template(tmp_path / "crm.xlsx", lang="en", contacts=CONTACTS,
                          managers=MANAGERS)


def _journal_takes_dsn() -> bool:
    import inspect

    return "sqldb" in inspect.getsource(Journal)


def calls_rows(book: Path) -> dict[str, dict]:
    wb = load_workbook(book)
    ws = wb["Calls"]
    header = [c.value for c in ws[1]]
    out: dict[str, dict] = {}
    for row in ws.iter_rows(min_row=2, values_only=True):
        values = dict(zip(header, row, strict=False))
        if values.get("Call ID") is not None:
            out[str(values["Call ID"])] = values
    return out


def _team(tmp_path, server, contacts, db) -> TeamServer:
    cfg = TeamConfig(server=server.url, db=db, contacts=contacts,
                     team_book=tmp_path / "team" / "team.xlsx", save_interval=0.1, lang="en")
    return TeamServer(cfg)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_team_server_routes_and_logs_every_extension(tmp_path, server, contacts, backend,
                                                     request):
    if backend == "postgresql":
        if not _journal_takes_dsn():
            pytest.skip("the journal does not take a PostgreSQL DSN yet")
        db = request.getfixturevalue("pg_dsn")
    else:
        db = str(tmp_path / "team.sqlite")
    roles: list[str] = []
    team = _team(tmp_path, server, contacts, db)
    team.on_role = lambda role, agent: roles.append(role)
    team.start()
    try:
        wait_until(lambda: team.role == LEADER, GRACE + 8, "team leads")
        client = team.leader_client()
        assert client is not None and client.wait_connected(10)
        assert roles[:2] == [STANDBY, LEADER]
        # logged in as the team GID with no extension and every event type
        row = next(c for c in server.clients() if c["GUID"] == "pz-team")
        assert row["PhoneNumber"] == ""
        assert running_agents() == []  # nobody's desktop agent
        book = team.config.team_book
        assert book.exists()
        names = load_workbook(book).sheetnames
        assert "Calls" in names and "Dashboard" in names

        # a transfer request for Olga (owned by 102), no desktop agent running
        server.generate(1, {"From": "89125554433", "CallID": "7001"})
        wait_until(lambda: server.transfers.get("7001") == "102", 5, "transfer to 102")

        # calls of two different extensions go into the team book
        for call_id, frm, to in (("8101", "73430112233", "101"), ("8102", "79125554433", "102")):
            server.generate(2, {"From": frm, "To": to, "CallID": call_id})
            server.generate(4, {"From": frm, "To": to, "CallID": call_id,
                                "Start": "1700000000", "End": "1700000030",
                                "Duration": "30", "Direction": "0"})
        agent = team.agent
        rows = wait_until(lambda: (not agent.journal.stats().get("dirty", 1)
                                   and {"8101", "8102"} <= set(calls_rows(book))
                                   and calls_rows(book)), 10, "team Calls rows")
        assert rows["8101"]["Contact"] == "Ivan Petrov"
        assert rows["8102"]["Contact"] == "Olga Sidorova"
        assert agent.last_pop == ""  # no screen pop on a team server

        # the team API's dial: From is the asking manager's extension, not the team's ""
        response = client.call_async("79120000001", from_ext="102").result(5)
        assert response.code == 0
        assert "Call event from CRM: src = 102, dst = 79120000001" in server.log_lines
    finally:
        team.stop()
    team.wait(1)
    assert team.role == "stopped"
    assert not any("(4009)" in line for line in server.log_lines)


def test_losing_the_lock_cuts_the_connector_connection(tmp_path, server, contacts, pg_dsn):
    """In process: the leader's lock session is killed; it disconnects at once and, as
    nobody else wants the lead, takes it again after the grace — never two logins."""
    team = _team(tmp_path, server, contacts, pg_dsn)
    team.start()
    try:
        wait_until(lambda: team.role == LEADER and team.leader_client() is not None
                   and team.leader_client().state.kind == "connected", GRACE + 8, "leads")
        first_client = team.leader_client()
        db = sqldb.connect(pg_dsn)
        (pid,) = [r[0] for r in db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchall()]
        killed = time.monotonic()
        db.execute("SELECT pg_terminate_backend(?)", (pid,))
        wait_until(lambda: first_client.state.kind == "stopped", 3, "fenced")
        assert time.monotonic() - killed < 2.0
        wait_until(lambda: team.role == LEADER and team.leader_client() is not None
                   and team.leader_client().state.kind == "connected", GRACE + 8, "leads again")
        assert read_leader(db).pid == os.getpid()
        db.close()
    finally:
        team.stop()
    assert not any("(4009)" in line for line in server.log_lines)


# ---------------------------------------------------------------------- two processes


def _logged_in(srv: ServerThread) -> list[str]:
    return [line for line in srv.log_lines if line.startswith("Client connected: GUID = pz-team")]


def test_failover_of_two_team_run_processes(tmp_path, contacts, pg_dsn):
    """kill -9 the leader: the standby is logged in within 5 s; the connector never
    drops a duplicate (4009) — two of the GID are never connected at once."""
    srv = ServerThread(host="127.0.0.1", port=0).start()
    db = pg_dsn if _journal_takes_dsn() else str(tmp_path / "team.sqlite")
    book = tmp_path / "team.xlsx"
    procs = [team_run(srv.url, db, contacts, book, tmp_path / f"team{i}.log",
                      home=tmp_path / f"home{i}") for i in range(2)]
    try:
        wait_until(lambda: len(_logged_in(srv)) == 1, GRACE + 20, "one team server logged in")
        lock = sqldb.connect(db)
        leader_pid = wait_until(lambda: getattr(read_leader(lock), "pid", None), 5, "leader row")
        leader = next(p for p in procs if p.pid == leader_pid)
        standby = next(p for p in procs if p is not leader)
        lines_before = len(_logged_in(srv))
        os.kill(leader.pid, signal.SIGKILL)
        killed = time.monotonic()
        leader.wait(5)
        wait_until(lambda: len(_logged_in(srv)) > lines_before, 8, "standby logged in")
        took = time.monotonic() - killed
        assert took < 5.0, f"failover took {took:.2f} s"
        connected = [c for c in srv.clients() if c["GUID"] == "pz-team"]
        assert len(connected) == 1 and connected[0]["Connected"] in ("true", "True", "1")
        assert wait_until(lambda: read_leader(lock).pid == standby.pid, 5, "new leader row")
        assert not any("(4009)" in line for line in srv.log_lines)
        assert standby.poll() is None
        out = (tmp_path / f"team{procs.index(standby)}.log").read_text()
        assert re.search(r"standby: leader is \S+/\d+ since", out), out
        assert "leader: connecting to" in out
        lock.close()
    finally:
        stop_all(procs)
        srv.stop()


def test_a_standby_warms_the_contacts_index_so_taking_over_is_a_load(tmp_path, server,
                                                                     contacts):
    """While waiting, the team server builds the shared book's index once and keeps it on
    this machine; the leader's start then loads it instead of parsing the sheet."""
    team = _team(tmp_path, server, contacts, str(tmp_path / "team.sqlite"))
    store = team.config.index_store
    assert not store.exists()
    team.start()
    try:
        wait_until(lambda: team.role == LEADER and team.agent is not None, GRACE + 8, "leads")
        assert store.exists()
        assert team.agent.watcher.started_from == "store"
        assert team.agent.index.lookup("+7 (343) 011-22-33").owner == "101"
    finally:
        team.stop()
