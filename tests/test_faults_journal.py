"""Fault suite, the journal side (docs/reliability.md): the journal's disk fills up while
calls come in. Real agent, real test connector, a real (tiny) tmpfs for the journal."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from pz_excel.agent.journal import Journal
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.test_agent import calls_sheet, make_book, start_agent

pytestmark = pytest.mark.fault


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs (CI runs as root; elsewhere the test says why it cannot run)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system (what a full disk looks like)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: close() has nothing left
        for size in (65536, 512):  # then the last bytes, a big block at a time is too coarse
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_costs_no_caller_and_no_call(tmp_path, small_disk):
    book = make_book(tmp_path / "crm.xlsx")
    with ServerThread() as srv:
        agent = start_agent(book, srv, journal=small_disk / "journal.sqlite")
        try:
            filler = fill(small_disk)
            transfers = [f"91{i:04d}" for i in range(100)]
            calls = [f"92{i:04d}" for i in range(200)]
            for cid in transfers:
                srv.generate(1, {"From": "73430112233", "CallID": cid})
            for cid in calls:
                srv.generate(2, {"From": "73430112233", "To": "101", "CallID": cid})
            # every caller answered while nothing can be stored
            wait_until(lambda: all(srv.transfers.get(c) == "101" for c in transfers), 20,
                       "every transfer request answered")
            status = wait_until(lambda: (s := agent.status())["waiting_to_save"] and s, 10)
            assert "disk full" in status["journal_error"]
            assert status["state"] == "connected"
            filler.unlink()  # the user frees space
            wait_until(lambda: agent.status()["waiting_to_save"] == 0, 20, "all saved")
            assert agent.status()["journal_error"] is None
            wait_until(lambda: set(calls) <= set(calls_sheet(book)), 20, "rows written")
        finally:
            agent.stop()
    with Journal(small_disk / "journal.sqlite") as j:
        decided = {e["call_id"] for e in j.entries(kind="decision")}
        events = {e["call_id"] for e in j.entries(kind="event")}
    assert set(transfers) <= decided  # the requests and their decisions: stored late
    assert set(calls) <= events
