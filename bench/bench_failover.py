"""Team server failover: two ``pz-excel team run`` processes on one team database and our
test connector; the leader is killed (SIGKILL) and we time until the standby is logged in
to the connector (the connector's own "Client connected" line for the team GID).

    python -m bench.bench_failover [--quick] [-n 10] [--db DSN|PATH]

Without ``--db`` a throwaway PostgreSQL cluster is started from the installed binaries
(tests/pgcluster.py, a source checkout); without one, an SQLite file (one machine, the
file-lock variant). Each killed leader is replaced by a fresh standby before the next
round, so every round measures a warm standby taking over. A 4009 (two logins of the
team GID at once) is counted and must stay 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._util import percentile
from tests.teamproc import stop_all, team_run

GUID = "pz-team"
BOUND = 5.0  # the design's failover bound (team/leader.py)


class _Logins:
    """Monotonic times of the connector's login lines for the team GID, and 4009s."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.duplicates = 0
        self._cond = threading.Condition()

    def on_log(self, line: str) -> None:
        with self._cond:
            if f"Client connected: GUID = {GUID}," in line:
                self.times.append(time.monotonic())
            if "(4009)" in line:
                self.duplicates += 1
            self._cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.times) >= n, timeout)


def _wait(pred: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def _leader_pid(info: object, alive: dict) -> int | None:
    pid = getattr(info, "pid", None)
    return pid if pid in alive else None


def run(*, quick: bool = False, n: int | None = None, db: str | None = None,
        out: Callable[[str], None] = print) -> dict:
    from pz_excel.agent import sqldb
    from pz_excel.books.template import write_template
    from pz_excel.team.leader import read_leader
    from pz_excel.tools.testserver import ServerThread

    rounds = n or (3 if quick else 10)
    work = Path(tempfile.mkdtemp(prefix="pz-bench-failover-"))
    cluster = None
    if db is None:
        try:
            from tests.pgcluster import Cluster

            cluster = Cluster().start()
            db = cluster.new_database()
        except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: the file-lock variant
            out(f"no PostgreSQL ({exc}); using an SQLite file (one machine)")
            db = str(work / "team.sqlite")
    contacts = write_template(work / "crm.xlsx", contacts=[("Ivan", "73430112233", "101")],
                              managers=[("Anna", "101")])
    book = work / "team.xlsx"
    logins = _Logins()
    srv = ServerThread(host="127.0.0.1", port=0, on_log=logins.on_log).start()
    procs: list[subprocess.Popen] = []
    count = 0

    def spawn() -> subprocess.Popen:
        nonlocal count
        count += 1
        log = work / f"team{count}.log"
        proc = team_run(srv.url, db, contacts, book, log, home=work / f"home{count}")
        proc.log = log  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    rows = sqldb.connect(db)
    times: list[float] = []
    try:
        spawn()
        spawn()
        if not logins.wait_count(1, 30):
            raise RuntimeError("no team server logged in within 30 s")
        out(f"failover: {rounds} rounds, database {sqldb.redact(db)}")
        for i in range(1, rounds + 1):
            alive = {p.pid: p for p in procs if p.poll() is None}
            leader = alive[int(_wait(lambda alive=alive: _leader_pid(read_leader(rows), alive),
                                     10, "the leader's row"))]
            standby = next(p for p in alive.values() if p is not leader)
            log = standby.log  # type: ignore[attr-defined]
            _wait(lambda log=log: "standby: leader is" in log.read_text(), 20,
                  "a waiting standby")
            before = len(logins.times)
            os.kill(leader.pid, signal.SIGKILL)
            killed = time.monotonic()
            leader.wait(10)
            if not logins.wait_count(before + 1, 15):
                raise RuntimeError(f"round {i}: the standby did not log in within 15 s")
            took = logins.times[before] - killed
            times.append(took)
            out(f"  round {i:2d}: standby logged in {took:.2f} s after kill -9")
            spawn()  # the next standby
    finally:
        stop_all(procs)
        rows.close()
        srv.stop()
        if cluster is not None:
            cluster.stop()
    result = {"rounds": len(times), "min_s": min(times), "p50_s": percentile(times, 50),
              "max_s": max(times), "bound_s": BOUND, "duplicate_logins_4009": logins.duplicates}
    out(f"failover min {result['min_s']:.2f} s, p50 {result['p50_s']:.2f} s, "
        f"max {result['max_s']:.2f} s (bound {BOUND:.0f} s); 4009: {logins.duplicates}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_failover",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("-n", type=int, default=None, help="rounds (default 10)")
    parser.add_argument("--db", default=None, help="team database: DSN or SQLite path")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, n=args.n, db=args.db)
    return 0 if result["max_s"] < BOUND and not result["duplicate_logins_4009"] else 1


if __name__ == "__main__":
    sys.exit(main())
