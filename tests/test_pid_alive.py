"""Whether an agent's process still runs, read without psutil on Linux (``pz-excel status``
and ``call`` must answer fast): alive, gone, and a zombie (dead, not yet reaped)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pz_excel.agent.discovery import pid_alive


def test_a_running_process_is_alive() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)  # gone and reaped


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a zombie needs fork (POSIX)")
def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Not reaped yet: wait until the kernel marks it dead (a zombie), without waitpid.
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child.pid}/stat", encoding="ascii") as fh:
                if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    break
        except OSError:
            pytest.skip("no /proc here")
        time.sleep(0.01)
    try:
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_nonsense_pids_are_not_alive() -> None:
    assert not pid_alive(0x7FFFFFF0)
