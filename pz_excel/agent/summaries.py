"""Running sums of the calls table, kept by triggers (SQLite, or PL/pgSQL on PostgreSQL),
for the Dashboard.

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

from datetime import datetime
from typing import Any

from pz_excel.agent.journal_sql import DIALECTS, Dialect

#: ``{int}``, ``{date}``: the engine's column types (journal_sql.DIALECTS).
SCHEMA = """
CREATE TABLE IF NOT EXISTS day_tallies (
    day       {date} NOT NULL,
    direction TEXT NOT NULL,
    status    TEXT NOT NULL,
    owner     TEXT NOT NULL,
    calls     {int} NOT NULL,
    talk      {int} NOT NULL,
    PRIMARY KEY (day, direction, status, owner)
);
CREATE TABLE IF NOT EXISTS client_waiting (
    client      TEXT PRIMARY KEY,
    waiting     {int} NOT NULL,
    last_missed {date},
    call_id     TEXT,
    last_out    {date}  -- the client's latest outgoing call, '' when none
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
    # Qualified on the right: PostgreSQL finds a bare "calls" ambiguous (it is "excluded"'s too).
    return f"""
        INSERT INTO day_tallies(day, direction, status, owner, calls, talk)
        SELECT substr({row}.started, 1, 10), {row}.direction, {row}.status, {row}.owner,
               {sign}1, {sign}({talk})
        WHERE {row}.started IS NOT NULL
        ON CONFLICT(day, direction, status, owner) DO UPDATE
        SET calls = day_tallies.calls + excluded.calls, talk = day_tallies.talk + excluded.talk;"""


def _client(row: str, d: Dialect) -> str:
    """Recompute one client's waiting count (its key, or its raw text when it has none)."""
    same = (f"(({row}.client_key IS NOT NULL AND c.client_key = {row}.client_key) OR "
            f"({row}.client_key IS NULL AND c.client_key IS NULL "
            f"AND c.client_phone = {row}.client_phone))")
    key = _KEY.format(r=row)
    return f"""
        {d.lock_client.format(key=key)}
        DELETE FROM client_waiting WHERE client = {key};
        INSERT INTO client_waiting(client, waiting, last_missed, call_id, last_out)
        SELECT {key}, count(*), max(c.started), {d.latest_call.format(c="c")}, back.last_out
        FROM (SELECT coalesce(max(o.started), '') AS last_out FROM calls o
              WHERE {same.replace('c.', 'o.')} AND o.direction = 'outgoing') AS back,
             calls c
        WHERE {same} AND c.direction = 'incoming' AND c.status = 'missed'
          AND c.client_phone != '' AND c.started IS NOT NULL AND c.started > back.last_out
        GROUP BY back.last_out HAVING count(*) > 0;"""


_KEY = "coalesce({r}.client_key, {r}.client_phone)"
_MATTERS = "({r}.direction = 'outgoing' OR {r}.status = 'missed')"  # for client_waiting
_TALLIED = ("(OLD.started {x} NEW.started OR OLD.direction {x} NEW.direction OR "
            "OLD.status {x} NEW.status OR OLD.owner {x} NEW.owner OR "
            "OLD.duration {x} NEW.duration)")


def triggers(dialect: str) -> list[str]:
    """The statements that make the triggers, in ``dialect``. Each fires only when its
    sum can change: most updates (a contact name, a recording) touch neither."""
    d = DIALECTS[dialect]
    matters_new, matters_old = _MATTERS.format(r="NEW"), _MATTERS.format(r="OLD")
    rekeyed = f"{_KEY.format(r='OLD')} {d.is_not} {_KEY.format(r='NEW')}"
    specs = [  # name, event, when, body
        ("sum_insert", "AFTER INSERT", "", _add("NEW", "+")),
        ("sum_update", "AFTER UPDATE", _TALLIED.format(x=d.is_not),
         _add("OLD", "-") + _add("NEW", "+")),
        ("sum_delete", "AFTER DELETE", "", _add("OLD", "-")),
        ("client_insert", "AFTER INSERT", matters_new, _client("NEW", d)),
        ("client_update", "AFTER UPDATE", f"{matters_new} OR {matters_old}",
         _client("NEW", d)),
        ("client_rekey", "AFTER UPDATE", f"{matters_old} AND {rekeyed}", _client("OLD", d)),
        ("client_delete", "AFTER DELETE", matters_old, _client("OLD", d)),
    ]
    return [template.format(name=name, event=event, when=f"WHEN ({when})" if when else "",
                            body=body)
            for name, event, when, body in specs for template in d.trigger]


def backfill(dialect: str) -> list[str]:
    """For a journal written before the triggers: the sums of what it holds, once (and
    the from-scratch definition the tests compare the triggers' sums with)."""
    latest = DIALECTS[dialect].latest_call.format(c="m")
    return [
        "DELETE FROM day_tallies",
        f"""INSERT INTO day_tallies(day, direction, status, owner, calls, talk)
            SELECT substr(started, 1, 10), direction, status, owner, count(*),
                   sum({_TALK.format(r="calls")})
            FROM calls WHERE started IS NOT NULL
            GROUP BY substr(started, 1, 10), direction, status, owner""",
        "DELETE FROM client_waiting",
        f"""INSERT INTO client_waiting(client, waiting, last_missed, call_id, last_out)
            WITH back AS (SELECT coalesce(client_key, client_phone) AS k,
                                 max(started) AS last_out
                          FROM calls WHERE direction = 'outgoing'
                          GROUP BY coalesce(client_key, client_phone))
            SELECT coalesce(m.client_key, m.client_phone), count(*), max(m.started),
                   {latest}, coalesce(back.last_out, '')
            FROM calls m LEFT JOIN back ON back.k = coalesce(m.client_key, m.client_phone)
            WHERE m.status = 'missed' AND m.direction = 'incoming' AND m.client_phone != ''
              AND m.started IS NOT NULL AND (back.last_out IS NULL OR back.last_out < m.started)
            GROUP BY coalesce(m.client_key, m.client_phone), back.last_out""",
    ]


def tallies(con: Any, since: datetime, until: datetime) -> list[tuple]:
    """(day, direction, status, owner, calls, talk) for the days in [since, until)."""
    return con.execute(
        "SELECT day, direction, status, owner, calls, talk FROM day_tallies "
        "WHERE day >= ? AND day < ? AND calls != 0",
        (since.date().isoformat(), until.date().isoformat()),
    ).fetchall()


def waiting(con: Any, limit: int) -> tuple[int, list[tuple]]:
    """How many clients wait, and the newest ``limit``: (phone, contact, owner, last
    missed ISO, times) of the client's latest missed call."""
    total = con.execute("SELECT count(*) FROM client_waiting WHERE waiting > 0").fetchone()[0]
    rows = con.execute(
        "SELECT c.client_phone, c.contact, c.owner, w.last_missed, w.waiting "
        "FROM client_waiting w JOIN calls c ON c.call_id = w.call_id "
        "WHERE w.waiting > 0 ORDER BY w.last_missed DESC LIMIT ?", (limit,)
    ).fetchall()
    return int(total), rows


def missed_calls(con: Any, cols: str, owner_key: str | None,
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
