"""The journal's tables, and the migrations between their versions, on both engines.

A journal outlives program versions: ``sqldb.migrate`` brings an older one up to date, one
version per transaction (all of a step or none of it), and refuses a newer one. The
version is kept in ``schema_versions`` (component "journal"), the same way on SQLite and
PostgreSQL. An SQLite file from before that table kept its version in ``PRAGMA
user_version`` (1..4): it is where ``migrate`` starts from. SQLite files go on getting
``user_version`` too, so an older pz-excel (which reads only that) still refuses a file
newer than itself instead of writing into tables it does not know.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pz_excel.agent import sqldb, summaries
from pz_excel.agent.checkpointer import COMMIT_CHECKPOINT_PAGES, WAL_SIZE_LIMIT
from pz_excel.agent.journal_sql import DIALECTS

SCHEMA_VERSION = 5  # 2: call_alias; 3: frames; 4: running sums (summaries.py); 5: spool_mark
COMPONENT = "journal"

#: ``{seq}``, ``{int}``, ``{real}``, ``{date}``, ``{rowid}``: the engine's column types and
#: PostgreSQL's explicit rowid (journal_sql.DIALECTS).
SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq        {seq},
    at         {real} NOT NULL,            -- Unix time we stored it
    kind       TEXT    NOT NULL,            -- event | request | response | decision | state ...
    call_id    TEXT    NOT NULL DEFAULT '',
    event_type {int},
    payload    TEXT    NOT NULL,            -- JSON (an event: all its attributes as received)
    raw        TEXT                         -- the frame as on the wire, when known
);
CREATE INDEX IF NOT EXISTS log_kind ON log(kind);
CREATE INDEX IF NOT EXISTS log_call ON log(call_id) WHERE call_id != '';

CREATE TABLE IF NOT EXISTS calls (
    call_id         TEXT PRIMARY KEY,
    direction       TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT '',
    client_phone    TEXT NOT NULL DEFAULT '',
    client_key      TEXT,                   -- normalised phone, for lookups
    contact         TEXT NOT NULL DEFAULT '',
    owner           TEXT NOT NULL DEFAULT '',
    owner_key       TEXT NOT NULL DEFAULT '', -- casefolded (SQLite lower() is ASCII only)
    extension       TEXT NOT NULL DEFAULT '',
    started         {date},                   -- local naive ISO, sorts as text
    ended           {date},
    duration        {int},
    recording       TEXT NOT NULL DEFAULT '',
    line            TEXT NOT NULL DEFAULT '',
    late            {int} NOT NULL DEFAULT 0,
    version         {int} NOT NULL DEFAULT 1,
    written_version {int} NOT NULL DEFAULT 0,
    updated_at      {real} NOT NULL{rowid}
);
CREATE INDEX IF NOT EXISTS calls_key ON calls(client_key, started);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started);
CREATE INDEX IF NOT EXISTS calls_dirty ON calls(call_id) WHERE version > written_version;

-- Every connector message with events, stored as received on the thread that read it,
-- before its events go anywhere: a crash loses none of them. ``applied`` once all its
-- events are in the log and the calls table (the same transaction as the last of them).
CREATE TABLE IF NOT EXISTS frames (
    seq     {seq},
    at      {real} NOT NULL,
    raw     TEXT    NOT NULL,
    applied {int} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS frames_open ON frames(seq) WHERE applied = 0;

-- A call ID the connector reused for a new call: its events now go to call_id 'ID #n'.
CREATE TABLE IF NOT EXISTS call_alias (
    call_id TEXT PRIMARY KEY,
    current TEXT NOT NULL
);

-- How far the spool (agent/spool.py) is in the frames table: committed with the frames,
-- so a replay after a crash stores none of them twice. One row.
CREATE TABLE IF NOT EXISTS spool_mark (
    id         {int} PRIMARY KEY,
    generation TEXT    NOT NULL,
    upto       {int} NOT NULL
);

CREATE TABLE IF NOT EXISTS once (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at    {real} NOT NULL
);
"""


def _run(db: sqldb.Db, script: str) -> None:
    # One by one (SQLite's executescript would commit): all of a step or none of it.
    for statement in script.format(**DIALECTS[db.dialect].types).split(";"):
        if statement.strip():
            db.execute(statement)


def _step(version: int) -> Callable[[sqldb.Db], None]:
    """Versions 1..3 and 5 only added tables, so the base script brings a journal to them
    (IF NOT EXISTS throughout); 4 adds the running sums and adds up what is there."""

    def step(db: sqldb.Db) -> None:
        _run(db, SCHEMA)
        if version == 4:
            _run(db, summaries.SCHEMA)
            for statement in summaries.triggers(db.dialect) + summaries.backfill(db.dialect):
                db.execute(statement)
        if db.dialect == sqldb.SQLITE:  # for older readers (module docstring)
            db.execute(f"PRAGMA user_version={version}")

    return step


STEPS = [_step(v) for v in range(1, SCHEMA_VERSION + 1)]


def migrate(db: sqldb.Db) -> int:
    """Bring the journal's tables in ``db`` up to ``SCHEMA_VERSION``; returns the version
    found. A newer journal is a user error, nothing touched."""
    start = 0
    if db.dialect == sqldb.SQLITE:
        start = int(db.one("PRAGMA user_version") or 0)
    return sqldb.migrate(db, COMPONENT, STEPS, start=start)


log = logging.getLogger("pz_excel.agent.journal")


def settle(db: sqldb.Db, path: Path | None, synchronous: str) -> bool:
    """A journal's settings (an SQLite file's: ``path``) and schema; whether the file is in
    WAL mode. Processes opening a NEW SQLite file at the same instant (a leader and a
    standby) may get "database is locked" at once — SQLite does not wait where waiting
    could deadlock (the switch to WAL, a read lock upgraded) — so that is tried again for
    a while, not reported."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            wal = _tune(db, path, synchronous) if path is not None else False
            migrate(db)
            return wal
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _tune(db: sqldb.Db, path: Path, synchronous: str) -> bool:
    """SQLite's settings for a journal file; whether it is in WAL mode."""
    mode = db.one("PRAGMA journal_mode=WAL")
    wal = str(mode).lower() == "wal"
    if not wal:  # e.g. some network shares
        log.warning("journal %s: WAL not available, using %s", path, mode)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    if wal:
        db.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
        # After a checkpoint the WAL file is cut back to this: on a small disk the
        # journal's footprint stays bounded, not at its busiest second's high mark.
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return wal
