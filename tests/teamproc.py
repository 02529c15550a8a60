"""``pz-excel team run`` as a child process, as an admin runs it — shared by the team
tests and the team benchmarks (one command line, one way to stop it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def team_run(url: str, db: str, contacts: Path, book: Path, log: Path, *,
             home: Path | None = None, extra: Sequence[str] = ()) -> subprocess.Popen:
    """A team server on ``db`` for the connector at ``url``, its API on a free loopback
    port, its output in ``log``; ``home``: its own PZ_EXCEL_HOME (two servers on one
    machine must not share their per-user state)."""
    env = dict(os.environ, PZ_LANG="en")
    if home is not None:
        env["PZ_EXCEL_HOME"] = str(home)
    with open(log, "w") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "pz_excel", "team", "run", "--server", url, "--db", db,
             "--contacts", str(contacts), "--team-book", str(book),
             "--listen", "127.0.0.1:0", *extra],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def stop_all(procs: Iterable[subprocess.Popen], timeout: float = 30.0) -> None:
    """A clean stop (SIGINT, as systemd's KillSignal=SIGINT) for every one still running,
    then SIGKILL for one that does not end in ``timeout`` s."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
