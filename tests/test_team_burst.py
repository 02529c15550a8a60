"""Issue 15, the whole office at once: 20 simulated managers and two ``pz-excel team run``
processes on one real PostgreSQL and our test connector (broadcast mask), 10,000 calls,
the leader killed with SIGKILL in the middle of the burst while the standby runs.

Every call must end up exactly once in PostgreSQL and in the team book's Calls sheet, and
every transfer request made while a team server is logged in is answered — with no desktop
agent running (the managers here only log and report their own calls, as a desktop agent
with ``--team`` does: ``agent/teamreport.py``).

Where each call reaches the team: the leader's broadcast connection; after the kill, the
connector's replay of completed calls to the new leader (``missed="1"``, PROTOCOL.md §4);
and the managers' reports (``POST /api/v1/events``), which also cover what the dead leader
had read but not stored. All three merge per call ID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pz_excel.agent.journal import Journal
from pz_excel.agent.teamlink import TeamLink
from pz_excel.agent.teamreport import TeamReporter
from pz_excel.books.template import write_template
from pz_excel.connector.client import ConnectorClient
from pz_excel.protocol import codec as protocol
from pz_excel.team import tlscert
from pz_excel.team.leader import read_leader
from pz_excel.team.users import Users
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.teamproc import stop_all, team_run

MANAGERS = [(f"Manager {n}", str(n)) for n in range(101, 121)]  # 20
CALLS = 10_000
KILL_AT = CALLS // 2
FIRST_ID = 5_000_000_000
TEAM = "pz-team"


def _contacts(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """200 contacts, ten per manager: (their phone, the owner's extension)."""
    rows, owned = [], []
    for i in range(200):
        phone = f"7343{2000000 + i:07d}"
        name, ext = MANAGERS[i % len(MANAGERS)]
        rows.append((f"Client {i}", phone, name if i % 2 else ext, ""))
        owned.append((phone, ext))
    book = write_template(tmp_path / "crm.xlsx", lang="en", contacts=rows, managers=MANAGERS)
    return book, owned


def _team_run(tmp_path: Path, name: str, url: str, dsn: str, crm: Path, cert: tlscert.TeamCert
              ) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"team-{name}.log"
    return team_run(url, dsn, crm, tmp_path / "team.xlsx", log, home=tmp_path / f"home-{name}",
                    extra=["--cert", str(cert.cert), "--key", str(cert.key)]), log


def _api_url(proc: subprocess.Popen, log: Path) -> str:
    def found() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"team run exited {proc.returncode}:\n{log.read_text()}")
        m = re.search(r"team API:\s+(https://\S+)", log.read_text())
        return m.group(1) if m else None

    return str(wait_until(found, 30, "the team API's address"))


def _team_logged_in(server: ServerThread) -> bool:
    return any(c["GUID"] == TEAM and c["Connected"] == "1" for c in server.clients())


class Manager:
    """One manager's PC, reduced to what matters here: its own connector login (GID = its
    extension), a journal that stores every event as it comes, and the reporter."""

    def __init__(self, ext: str, url: str, folder: Path, team_urls: str, token: str, pin: str):
        self.journal = Journal(folder / f"manager-{ext}.sqlite")
        self.client = ConnectorClient(protocol.ConnectSettings(server=url, phone=ext))
        self.client.on_frame(self._store)
        self.client.start()
        self.reporter = TeamReporter(self.journal, TeamLink(team_urls, token, pin), ext,
                                     interval=0.5).start()

    def _store(self, raw: str, events: list[protocol.Event]) -> None:
        for event in events:
            if event.type != protocol.EventType.TRANSFER_REQUEST:
                self.journal.record_event(event, raw)

    def stop(self) -> None:
        self.client.stop()
        self.reporter.stop()
        self.journal.close()


def _transfers(server: ServerThread, owned: list[tuple[str, str]], first: int) -> dict:
    """One transfer request per manager; the expected answers."""
    expected = {}
    for k, (phone, ext) in enumerate(owned[:20]):
        call_id = str(first + k)
        server.generate(1, {"From": phone, "CallID": call_id})
        expected[call_id] = ext
    return expected


def _calls_in_book(book: Path) -> list[str]:
    wb = load_workbook(book, read_only=True)
    try:
        ws = wb["Calls"]
        rows = ws.iter_rows(values_only=True)
        header = list(next(rows))
        col = header.index("Call ID")
        return [str(r[col]) for r in rows if r and r[col] is not None]
    finally:
        wb.close()


@pytest.mark.timeout(600)
def test_ten_thousand_calls_twenty_managers_leader_killed_mid_burst(tmp_path, pg_dsn):
    crm, owned = _contacts(tmp_path)
    cert = tlscert.load(hosts=["127.0.0.1"], folder=tmp_path / "cert")
    server = ServerThread(host="127.0.0.1", port=0).start()
    procs: list[subprocess.Popen] = []
    managers: list[Manager] = []
    try:
        first, first_log = _team_run(tmp_path, "a", server.url, pg_dsn, crm, cert)
        procs.append(first)
        url_a = _api_url(first, first_log)
        wait_until(lambda: _team_logged_in(server), 30, "the first team server leads")
        second, second_log = _team_run(tmp_path, "b", server.url, pg_dsn, crm, cert)
        procs.append(second)
        url_b = _api_url(second, second_log)

        users = Users(pg_dsn)
        tokens = {ext: users.add(ext, name) for name, ext in MANAGERS}
        users.close()
        for _name, ext in MANAGERS:
            managers.append(Manager(ext, server.url, tmp_path, f"{url_a},{url_b}",
                                    tokens[ext], cert.fingerprint))
        wait_until(lambda: all(any(c["GUID"] == ext and c["Connected"] == "1"
                                   for c in server.clients()) for _n, ext in MANAGERS),
                   30, "the managers logged in")

        # transfers with the first leader, no desktop agent anywhere
        expected = _transfers(server, owned, 9_100_000)
        wait_until(lambda: all(server.transfers.get(c) == e for c, e in expected.items()),
                   10, f"every transfer answered: {expected}")

        killed_at = 0.0
        back: list[float] = []  # when the standby was logged in (monotonic)
        watcher = threading.Thread()
        for i in range(CALLS):
            if i == KILL_AT:  # the leader dies in the middle of the burst
                leader = read_leader_pid(pg_dsn)
                victim = next(p for p in procs if p.pid == leader)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                killed_at = time.monotonic()
                watcher = threading.Thread(target=lambda: back.append(
                    wait_until(lambda: _team_logged_in(server) and time.monotonic(), 30,
                               "the standby logged in")), daemon=True)
                watcher.start()
            _name, ext = MANAGERS[i % len(MANAGERS)]
            client = owned[(i * 7) % len(owned)][0] if i % 3 else f"7912{i:07d}"
            start = 1_764_000_000 + i
            server.generate(4, {"From": client, "To": ext, "CallID": str(FIRST_ID + i),
                                "Start": str(start), "End": str(start + 40),
                                "Duration": str(40 if i % 4 else 0), "Direction": "0"})

        survivor = next(p for p in procs if p.poll() is None)
        watcher.join(40)
        assert back, "the standby never logged in"
        assert back[0] - killed_at < 5.0  # failover under the burst: within the 5 s bound
        assert survivor.poll() is None
        assert not any("same GUID" in line for line in server.log_lines)  # no 4009

        # transfers with the new leader
        expected = _transfers(server, owned[20:], 9_200_000)
        wait_until(lambda: all(server.transfers.get(c) == e for c, e in expected.items()),
                   10, "every transfer answered by the new leader")

        ids = {str(FIRST_ID + i) for i in range(CALLS)}
        journal = Journal(pg_dsn)
        try:
            def in_db() -> set[str]:
                rows = journal.db.execute(
                    "SELECT call_id FROM calls WHERE call_id LIKE ?", ("5%",)).fetchall()
                return {r[0] for r in rows}

            wait_until(lambda: in_db() >= ids, 300, "every call in PostgreSQL")
            found = journal.db.execute(
                "SELECT call_id, status FROM calls WHERE call_id LIKE ?", ("5%",)).fetchall()
            assert sorted(r[0] for r in found) == sorted(ids)  # once each, no "ID #2"
            assert {r[1] for r in found} <= {"completed", "missed"}
            wait_until(lambda: journal.stats()["dirty"] == 0, 120, "every row in the book")
        finally:
            journal.close()
        in_book = wait_until(lambda: (lambda got: got if ids <= set(got) else None)(
            _calls_in_book(tmp_path / "team.xlsx")), 60, "every call in the team book")
        ours = [c for c in in_book if c in ids]
        assert len(ours) == len(set(ours)) == CALLS  # each exactly once in the sheet
    finally:
        for m in managers:
            m.stop()
        stop_all(procs)
        server.stop()


def read_leader_pid(dsn: str) -> int:
    from pz_excel.agent import sqldb

    db = sqldb.connect(dsn)
    try:
        info = read_leader(db)
        assert info is not None
        return info.pid
    finally:
        db.close()
