"""Journal ingest: events stored per second, next to plain SQLite inserts.

    python -m bench.bench_journal [--quick]

Every connector event is committed to the journal (SQLite, WAL, synchronous=NORMAL)
before the agent acts on it, one transaction per event. Measured on a fresh file in a
temp folder:

* ``record_event`` — the raw log only (what a transfer request costs before deciding);
* ``apply_event`` — the log entry plus the merged call row, in one transaction (every
  call event), through the real ``CallMapper``;
* baselines: a plain ``INSERT`` + ``COMMIT`` per row with the same pragmas (the floor for
  one durable transaction per event), and the same inserts 1000 per transaction (what
  batching would buy, at the price of acting on events before they are stored).

Events are a realistic mix (ringing, answered, completed with history attributes), made
by the test connector's own ``build_event``.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal
from pz_excel.protocol.codec import Event
from pz_excel.tools.testserver_events import build_event

FULL_EVENTS = 50_000
QUICK_EVENTS = 5_000


def events(n: int) -> list[Event]:
    """``n`` events of ``n // 3`` calls: ringing, answered, completed (history)."""
    out: list[Event] = []
    base = 1_700_000_000
    for i in range(n):
        call, step = divmod(i, 3)
        fields = {"From": f"7343{call % 10_000_000:07d}", "To": "101",
                  "CallID": str(4_000_000_000 + call)}
        if step == 2:
            fields.update(Start=str(base + call), End=str(base + call + 42), Duration="42",
                          Direction="0", Record=f"https://rec.example/{call}.mp3")
        out.append(build_event((2, 32, 4)[step], fields)[0])
    return out


def _rate(fn: Callable[[Event], object], batch: list[Event]) -> tuple[float, float]:
    started = time.perf_counter()
    for event in batch:
        fn(event)
    seconds = time.perf_counter() - started
    return len(batch) / seconds, seconds


def _plain(path: Path, batch: list[Event], per_txn: int) -> tuple[float, float]:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, kind TEXT, "
                "call_id TEXT, event_type INTEGER, payload TEXT)")
    rows = [(time.time(), "event", e.call_id, e.type, json.dumps(e.attrs)) for e in batch]
    started = time.perf_counter()
    for at in range(0, len(rows), per_txn):
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO log(at, kind, call_id, event_type, payload) "
                        "VALUES (?, ?, ?, ?, ?)", rows[at : at + per_txn])
        con.execute("COMMIT")
    seconds = time.perf_counter() - started
    con.close()
    return len(rows) / seconds, seconds


def run(*, quick: bool = False, out: Callable[[str], None] = print) -> dict:
    n = QUICK_EVENTS if quick else FULL_EVENTS
    batch = events(n)
    mapper = CallMapper(lookup=lambda number: ("Ivan Petrov", "101"))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pz-bench-journal-") as tmp:
        folder = Path(tmp)
        with Journal(folder / "record.sqlite") as journal:
            rate, seconds = _rate(journal.record_event, batch)
        results["record_event"] = {"events_per_s": rate, "seconds": seconds}
        with Journal(folder / "apply.sqlite") as journal:
            rate, seconds = _rate(lambda e: journal.apply_event(e, mapper), batch)
            calls = journal.stats()["calls"]
        results["apply_event"] = {"events_per_s": rate, "seconds": seconds, "calls": calls}
        rate, seconds = _plain(folder / "plain.sqlite", batch, 1)
        results["sqlite_insert_commit_each"] = {"events_per_s": rate, "seconds": seconds}
        rate, seconds = _plain(folder / "plain-batch.sqlite", batch, 1000)
        results["sqlite_insert_1000_per_txn"] = {"events_per_s": rate, "seconds": seconds}
    floor = results["sqlite_insert_commit_each"]["events_per_s"]
    out(f"Journal ingest, {n:,} events (WAL, synchronous=NORMAL, a fresh file)")
    out(f"{'what':<44} {'events/s':>10} {'µs/event':>10} {'vs plain':>9}")
    labels = {
        "record_event": "Journal.record_event (log only)",
        "apply_event": "Journal.apply_event (log + call row)",
        "sqlite_insert_commit_each": "baseline: INSERT + COMMIT per event",
        "sqlite_insert_1000_per_txn": "baseline: INSERT, 1000 per transaction",
    }
    for key, label in labels.items():
        r = results[key]
        r["vs_plain"] = r["events_per_s"] / floor
        out(f"{label:<44} {r['events_per_s']:>10,.0f} {1e6 / r['events_per_s']:>10.1f} "
            f"{r['vs_plain']:>8.2f}×")
    return {"benchmark": "journal", "quick": quick, "events": n, **results}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.bench_journal")
    parser.add_argument("--quick", action="store_true")
    run(quick=parser.parse_args().quick)
