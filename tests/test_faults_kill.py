"""Fault suite: kill -9 of a running agent (docs/reliability.md).

The agent runs as its own process (``pz-excel run``) against our test connector. Bursts of
calls are sent, and the agent is killed with SIGKILL at a random moment in each burst, then
started again. What it had read must all be there: the events in the journal are exactly
the first ones the connector sent (no gaps — a loss may only be the tail still in flight in
the socket when the process died), and after the restart every stored event is applied to
its call row. The figures are printed (``pytest -s``) for docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pz_excel.testserver import ServerThread

from .conftest import wait_until
from .test_agent import make_book

pytestmark = pytest.mark.fault

KILLS = 10
BURST = 200


def start(book: Path, srv: ServerThread, home: Path) -> subprocess.Popen:
    env = dict(os.environ, PZ_EXCEL_HOME=str(home), PZ_LANG="en")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pz_excel", "run", "-w", str(book), "-s", srv.url, "-p", "101"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: connected(srv), 20, "agent logged in")
    return proc


def connected(srv: ServerThread) -> bool:
    return any(c["PhoneNumber"] == "101" and c["Connected"] == "1" for c in srv.clients())


def journal_of(home: Path) -> Path:
    found = list(home.rglob("*.sqlite"))
    assert len(found) == 1, found
    return found[0]


def stored(journal: Path) -> tuple[list[str], set[str]]:
    """Call IDs of the events in stored messages (in order), and of the call rows."""
    from pz_excel import protocol

    con = sqlite3.connect(journal)
    try:
        ids = [m.call_id for (raw,) in con.execute("SELECT raw FROM frames ORDER BY seq")
               for m in protocol.decode_frame(raw) if isinstance(m, protocol.Event)]
        rows = {cid for (cid,) in con.execute("SELECT call_id FROM calls")}
    finally:
        con.close()
    return ids, rows


def test_kill_9_during_bursts_loses_nothing_that_was_read(tmp_path):
    book = make_book(tmp_path / "crm.xlsx")
    home = tmp_path / "home"
    rng = random.Random(9)
    sent: list[str] = []
    lost_in_flight = 0
    with ServerThread() as srv:
        proc = start(book, srv, home)
        try:
            for kill in range(KILLS):
                burst = [f"{kill:02d}{i:04d}" for i in range(BURST)]
                killed = threading.Event()
                done: list[str] = []

                def send(ids: list[str] = burst, done: list[str] = done,
                         killed: threading.Event = killed) -> None:
                    for cid in ids:
                        if killed.is_set():
                            return  # sent after the kill: to nobody, not counted
                        srv.generate(2, {"From": "73430112233", "To": "101", "CallID": cid})
                        done.append(cid)

                sender = threading.Thread(target=send)
                sender.start()
                time.sleep(rng.uniform(0.005, 0.040))  # the random moment of the kill
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()
                proc.wait(10)
                sender.join(30)
                burst = list(done)
                sent += burst
                wait_until(lambda: not connected(srv), 10, "the server saw the agent go")
                journal = journal_of(home)
                ids, _rows = stored(journal)
                have = set(ids)
                read = [cid for cid in sent if cid in have]
                # what was read is a prefix of what was sent in this burst: no gaps
                got = [cid for cid in burst if cid in have]
                assert got == burst[:len(got)], f"kill {kill}: a gap in what was stored"
                lost_in_flight += len(burst) - len(got)
                proc = start(book, srv, home)  # the next run applies what was stored
                wait_until(lambda r=set(read), j=journal: r <= stored(j)[1], 20,
                           f"kill {kill}: stored events applied after the restart")
        finally:
            proc.kill()
            proc.wait(10)
    total = len(sent)
    print(f"\nkill -9 x{KILLS}: {total} events sent, {total - lost_in_flight} stored and "
          f"applied; {lost_in_flight} never read (in flight at the kill, "
          f"{1000 * lost_in_flight / total:.1f} per 1,000); 0 lost of those read")
