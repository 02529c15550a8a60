"""Running sums of the calls table, kept by SQLite triggers, for the Dashboard.

Adding up 100 k calls on every Dashboard refresh took a quarter of a second (and grows with
the journal). Instead, every insert or update of a call row adjusts two small tables in the
same transaction — so they can never disagree with the calls:

* ``day_tallies``: per day, direction, status and owner: calls and talk seconds. An update
  takes the old row's contribution away and adds the new one's.
* ``client_waiting``: per client (the normalised number, else the raw text): how many of
  its missed incoming calls came after its last outgoing call, and the latest of them.
  Recomputed for the one client a changed row belongs to (through the ``calls_key`` index:
  a client has a handful of calls), and for its old client if the number changed.

The Dashboard then reads a few hundred rows whatever the journal's size.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

SCHEMA = """
CREATE TABLE IF NOT EXISTS day_tallies (
    day       TEXT NOT NULL,
    direction TEXT NOT NULL,
    status    TEXT NOT NULL,
    owner     TEXT NOT NULL,
    calls     INTEGER NOT NULL,
    talk      INTEGER NOT NULL,
    PRIMARY KEY (day, direction, status, owner)
);
CREATE TABLE IF NOT EXISTS client_waiting (
    client      TEXT PRIMARY KEY,
    waiting     INTEGER NOT NULL,
    last_missed TEXT,
    call_id     TEXT,
    last_out    TEXT  -- the client's latest outgoing call, '' when none
);
CREATE INDEX IF NOT EXISTS client_waiting_last ON client_waiting(last_missed)
    WHERE waiting > 0;
CREATE INDEX IF NOT EXISTS calls_raw_phone ON calls(client_phone) WHERE client_key IS NULL
"""

#: Talk time a call adds: answered calls' plausible durations only.
_TALK = ("CASE WHEN {r}.status != 'missed' AND {r}.duration > 0 AND {r}.duration < 10000000 "
         "THEN {r}.duration ELSE 0 END")


def _add(row: str, sign: str) -> str:
    talk = _TALK.format(r=row)
    return f"""
        INSERT INTO day_tallies(day, direction, status, owner, calls, talk)
        SELECT substr({row}.started, 1, 10), {row}.direction, {row}.status, {row}.owner,
               {sign}1, {sign}({talk})
        WHERE {row}.started IS NOT NULL
        ON CONFLICT(day, direction, status, owner) DO UPDATE
        SET calls = calls + excluded.calls, talk = talk + excluded.talk;"""


def _client(row: str) -> str:
    """Recompute one client's waiting count (its key, or its raw text when it has none)."""
    same = (f"(({row}.client_key IS NOT NULL AND c.client_key = {row}.client_key) OR "
            f"({row}.client_key IS NULL AND c.client_key IS NULL "
            f"AND c.client_phone = {row}.client_phone))")
    return f"""
        DELETE FROM client_waiting WHERE client = coalesce({row}.client_key, {row}.client_phone);
        INSERT INTO client_waiting(client, waiting, last_missed, call_id, last_out)
        SELECT coalesce({row}.client_key, {row}.client_phone), count(*), max(c.started),
               c.call_id, back.last_out
        FROM (SELECT coalesce(max(o.started), '') AS last_out FROM calls o
              WHERE {same.replace('c.', 'o.')} AND o.direction = 'outgoing') AS back,
             calls c
        WHERE {same} AND c.direction = 'incoming' AND c.status = 'missed'
          AND c.client_phone != '' AND c.started IS NOT NULL AND c.started > back.last_out
        HAVING count(*) > 0;"""


_KEY = "coalesce({r}.client_key, {r}.client_phone)"
_MATTERS = "({r}.direction = 'outgoing' OR {r}.status = 'missed')"  # for client_waiting
_TALLIED = ("(OLD.started IS NOT NEW.started OR OLD.direction IS NOT NEW.direction OR "
            "OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner OR "
            "OLD.duration IS NOT NEW.duration)")

#: Split by hand (not on ";"): trigger bodies hold several statements. Each fires only
#: when its sum can change: most updates (a contact name, a recording) touch neither.
TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS sum_insert AFTER INSERT ON calls BEGIN
        {_add("NEW", "+")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS sum_update AFTER UPDATE ON calls WHEN {_TALLIED} BEGIN
        {_add("OLD", "-")}
        {_add("NEW", "+")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS sum_delete AFTER DELETE ON calls BEGIN
        {_add("OLD", "-")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS client_insert AFTER INSERT ON calls
        WHEN {_MATTERS.format(r="NEW")} BEGIN
        {_client("NEW")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS client_update AFTER UPDATE ON calls
        WHEN {_MATTERS.format(r="NEW")} OR {_MATTERS.format(r="OLD")} BEGIN
        {_client("NEW")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS client_rekey AFTER UPDATE ON calls
        WHEN {_MATTERS.format(r="OLD")}
         AND {_KEY.format(r="OLD")} IS NOT {_KEY.format(r="NEW")} BEGIN
        {_client("OLD")}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS client_delete AFTER DELETE ON calls
        WHEN {_MATTERS.format(r="OLD")} BEGIN
        {_client("OLD")}
    END""",
]

#: For a journal written before the triggers: the sums of what it holds, once.
BACKFILL = [
    "DELETE FROM day_tallies",
    f"""INSERT INTO day_tallies(day, direction, status, owner, calls, talk)
        SELECT substr(started, 1, 10), direction, status, owner, count(*),
               sum({_TALK.format(r="calls")})
        FROM calls WHERE started IS NOT NULL GROUP BY 1, 2, 3, 4""",
    "DELETE FROM client_waiting",
    """INSERT INTO client_waiting(client, waiting, last_missed, call_id, last_out)
        WITH back AS (SELECT coalesce(client_key, client_phone) AS k, max(started) AS last_out
                      FROM calls WHERE direction = 'outgoing' GROUP BY k)
        SELECT coalesce(m.client_key, m.client_phone) AS client, count(*), max(m.started),
               m.call_id, coalesce(back.last_out, '')
        FROM calls m LEFT JOIN back ON back.k = coalesce(m.client_key, m.client_phone)
        WHERE m.status = 'missed' AND m.direction = 'incoming' AND m.client_phone != ''
          AND m.started IS NOT NULL AND (back.last_out IS NULL OR back.last_out < m.started)
        GROUP BY client""",
]


def tallies(con: sqlite3.Connection, since: datetime, until: datetime) -> list[tuple]:
    """(day, direction, status, owner, calls, talk) for the days in [since, until)."""
    return con.execute(
        "SELECT day, direction, status, owner, calls, talk FROM day_tallies "
        "WHERE day >= ? AND day < ? AND calls != 0",
        (since.date().isoformat(), until.date().isoformat()),
    ).fetchall()


def waiting(con: sqlite3.Connection, limit: int) -> tuple[int, list[tuple]]:
    """How many clients wait, and the newest ``limit``: (phone, contact, owner, last
    missed ISO, times) of the client's latest missed call."""
    total = con.execute("SELECT count(*) FROM client_waiting WHERE waiting > 0").fetchone()[0]
    rows = con.execute(
        "SELECT c.client_phone, c.contact, c.owner, w.last_missed, w.waiting "
        "FROM client_waiting w JOIN calls c ON c.call_id = w.call_id "
        "WHERE w.waiting > 0 ORDER BY w.last_missed DESC LIMIT ?", (limit,)
    ).fetchall()
    return int(total), rows


def missed_calls(con: sqlite3.Connection, cols: str, owner_key: str | None,
                 limit: int | None = None) -> list[tuple]:
    """The missed calls themselves (``cols`` of ``calls m``; "count(*)" counts them),
    newest first: those of the waiting clients after the client's last outgoing call."""
    where = "AND m.owner_key = ?" if owner_key is not None else ""
    order = "" if cols == "count(*)" else " ORDER BY m.started DESC, m.rowid DESC"
    sql = f"""
        SELECT {cols} FROM client_waiting w JOIN calls m
          ON (m.client_key = w.client OR (m.client_key IS NULL AND m.client_phone = w.client))
        WHERE w.waiting > 0 AND m.direction = 'incoming' AND m.status = 'missed'
          AND m.client_phone != '' AND m.started > w.last_out {where}{order}"""
    args: list[object] = [owner_key] if owner_key is not None else []
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return con.execute(sql, args).fetchall()
