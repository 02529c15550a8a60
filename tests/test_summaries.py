"""The running sums kept by triggers equal a recount from scratch, after any mix of new
calls, updates (status, direction, number, owner, start, duration) and deletions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from pz_excel.agent import summaries
from pz_excel.agent.journal import Journal
from pz_excel.crm.schema import CallRow


def recount(con):  # the backfill statements are the from-scratch definition
    con.execute("SAVEPOINT recount")
    try:
        for statement in summaries.BACKFILL:
            con.execute(statement)
        tallies = sorted(con.execute(
            "SELECT day, direction, status, owner, calls, talk FROM day_tallies "
            "WHERE calls != 0"))
        waiting = sorted(con.execute(
            "SELECT client, waiting, last_missed, last_out FROM client_waiting "
            "WHERE waiting > 0"))
    finally:
        con.execute("ROLLBACK TO recount")
        con.execute("RELEASE recount")
    return tallies, waiting


def kept(con):
    tallies = sorted(con.execute(
        "SELECT day, direction, status, owner, calls, talk FROM day_tallies WHERE calls != 0"))
    waiting = sorted(con.execute(
        "SELECT client, waiting, last_missed, last_out FROM client_waiting WHERE waiting > 0"))
    return tallies, waiting


def test_triggers_keep_the_sums_equal_to_a_recount(tmp_path):
    rng = random.Random(4)
    base = datetime(2026, 11, 1, 9, 0)
    phones = ["+7 343 011-22-33", "83430112233", "ext-5", ""] + [
        f"+7 912 000-00-{i:02d}" for i in range(30)]
    with Journal(tmp_path / "j.sqlite") as journal:
        con = journal._db()
        for step in range(800):
            cid = str(rng.randrange(300))
            if rng.random() < 0.03:
                journal._write(lambda c, cid=cid: c.execute(
                    "DELETE FROM calls WHERE call_id = ?", (cid,)))
                continue
            journal.upsert_call(CallRow(
                call_id=cid,
                direction=rng.choice(["incoming", "outgoing", ""]),
                status=rng.choice(["ringing", "answered", "completed", "missed"]),
                client_phone=rng.choice(phones),
                owner=rng.choice(["Анна", "101", "", "Boris"]),
                start=rng.choice([None, base + timedelta(hours=rng.randrange(400))]),
                duration=rng.choice([None, 0, 30, 2**40]),
            ))
            assert kept(con) == recount(con), f"step {step}"  # after every change
        assert kept(con) == recount(con)
