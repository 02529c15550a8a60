"""The team server (issue 15): transfers at 200 requests/s with 1 M contacts, the journal's
ingest into PostgreSQL next to SQLite, and failover times — in one run.

    python -m bench.bench_team [--quick]

PostgreSQL: ``PZ_TEST_PG_DSN`` if set, else a throwaway cluster started from the installed
binaries for this run (tests/pgcluster.py), stopped at the end. Everything on loopback.

* **transfers** — ``pz-excel team run`` in a child process (leader at once: no other server)
  on our test connector, journal in PostgreSQL, the shared CRM book of 1 M contacts (quick:
  10 k); type-1 requests at 200/s (after a warm-up at 50/s), each timed on the wire (type 1
  sent → Transfer received, the connector's log), as ``bench_agent`` times the desktop agent.
* **ingest** — ``Journal.record_event`` (the log only, what a transfer request costs) and
  ``Journal.apply_event`` (log + merged call row) per event, on a PostgreSQL database and on
  an SQLite file, same events, same process: events/s side by side.
* **failover** — ``bench_failover``: leader killed with SIGKILL → standby logged in.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._util import contacts_workbook
from bench.bench_agent import (
    WireClock,
    _phones,
    _wait,
    isolate_home,
    play_transfer_load,
)
from tests.teamproc import stop_all, team_run

TEAM_GID = "pz-team"


def _cluster() -> Any:
    from tests.pgcluster import Cluster

    return Cluster().start()


def bench_transfers(contacts: int, rate: float, count: int, dsn: str, folder: Path) -> dict:
    from pz_excel.tools.testserver import ServerThread

    book = folder / f"team-crm-{contacts}.xlsx"
    shutil.copy(contacts_workbook(contacts), book)
    phones = _phones(book)
    clock = WireClock()
    server = ServerThread(host="127.0.0.1", port=0, on_log=clock).start()
    started = time.perf_counter()
    proc = team_run(server.url, dsn, book, folder / "team.xlsx", folder / "team.log")
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"team run exited with code {proc.returncode}: see "
                                   f"{(folder / 'team.log')}")
            return any(c["GUID"] == TEAM_GID and c["Connected"] == "1"
                       for c in server.clients())

        _wait(up, 600, "the team server to lead and log in")
        ready_s = time.perf_counter() - started
        phases = play_transfer_load(server, clock, [(rate, count)], phones)
    finally:
        stop_all([proc], timeout=60)
        server.stop()
    return {"contacts": contacts, "ready_s": ready_s, "transfers": phases}


def bench_ingest(n: int, dsn: str, folder: Path) -> dict:
    from bench.bench_journal import _rate, events
    from pz_excel.agent.calllog import CallMapper
    from pz_excel.agent.journal import Journal

    batch = events(n)
    mapper = CallMapper(lookup=lambda number: ("Ivan Petrov", "101"))
    out: dict[str, Any] = {"events": n}
    for engine, target_of in (("postgresql", lambda k: _fresh_db(dsn, k)),
                              ("sqlite", lambda k: folder / f"ingest-{k}.sqlite")):
        with Journal(target_of("record")) as journal:
            rate, _s = _rate(journal.record_event, batch)
        with Journal(target_of("apply")) as journal:
            rate2, _s2 = _rate(lambda e, j=journal: j.apply_event(e, mapper), batch)
            calls = journal.stats()["calls"]
        out[engine] = {"record_event_per_s": rate, "apply_event_per_s": rate2, "calls": calls}
    return out


def _fresh_db(dsn: str, name: str) -> str:
    import uuid

    import psycopg

    db = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    return dsn.rsplit("/", 1)[0] + "/" + db


def run(*, quick: bool = False, out: Callable[[str], None] = print) -> dict:
    isolate_home()
    contacts, count = (10_000, 200) if quick else (1_000_000, 4_000)
    results: dict[str, Any] = {"benchmark": "team", "quick": quick}
    cluster = _cluster()
    try:
        dsn = cluster.new_database()
        with tempfile.TemporaryDirectory(prefix="pz-bench-team-") as tmp:
            folder = Path(tmp)
            results["transfers"] = bench_transfers(contacts, 200.0, count, dsn, folder)
            results["ingest"] = bench_ingest(500 if quick else 30_000, cluster.dsn(), folder)
        if not quick:  # (the test suite kills a leader too: tests/test_team_server.py)
            from bench import bench_failover

            results["failover"] = bench_failover.run(quick=quick, n=10, out=out,
                                                     db=cluster.new_database())
    finally:
        cluster.stop()
    _report(results, out)
    p = results["transfers"]["transfers"][0]
    results["targets"] = {"team_transfers_none_lost_at_200rps": p["lost"] == 0}
    if "failover" in results:
        results["targets"]["failover_under_5s"] = results["failover"]["max_s"] < 5.0
    return results


def _report(results: dict, out: Callable[[str], None]) -> None:
    t = results["transfers"]
    p = t["transfers"][0]
    out(f"Team server, {t['contacts']:,} contacts, journal in PostgreSQL "
        f"(ready {t['ready_s']:.1f} s after start)")
    out(f"  transfers at {p['rate']:.0f}/s: {p['answered']}/{p['requests']} answered, "
        f"p50 {p['p50_s'] * 1e3:.2f} ms, p99 {p['p99_s'] * 1e3:.2f} ms, "
        f"max {p['max_s'] * 1e3:.2f} ms, lost {p['lost']}")
    ing = results["ingest"]
    out(f"  journal ingest, {ing['events']:,} events, one transaction each:")
    out(f"    {'':<12} {'record_event/s':>15} {'apply_event/s':>14}")
    for engine in ("postgresql", "sqlite"):
        r = ing[engine]
        out(f"    {engine:<12} {r['record_event_per_s']:>15,.0f} {r['apply_event_per_s']:>14,.0f}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.bench_team")
    parser.add_argument("--quick", action="store_true")
    run(quick=parser.parse_args().quick)
