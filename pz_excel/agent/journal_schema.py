"""The journal's tables, and the migrations between their versions.

A journal file outlives program versions: ``migrate`` brings an older one up to date in one
transaction (all of the schema or none of it), and refuses a newer one.
"""

from __future__ import annotations

import sqlite3

from pz_excel.agent import summaries

SCHEMA_VERSION = 4  # 2: call_alias; 3: frames; 4: running sums (summaries.py)

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         REAL    NOT NULL,            -- Unix time we stored it
    kind       TEXT    NOT NULL,            -- event | request | response | decision | state ...
    call_id    TEXT    NOT NULL DEFAULT '',
    event_type INTEGER,
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
    started         TEXT,                   -- local naive ISO, sorts as text
    ended           TEXT,
    duration        INTEGER,
    recording       TEXT NOT NULL DEFAULT '',
    line            TEXT NOT NULL DEFAULT '',
    late            INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1,
    written_version INTEGER NOT NULL DEFAULT 0,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_key ON calls(client_key, started);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started);
CREATE INDEX IF NOT EXISTS calls_dirty ON calls(call_id) WHERE version > written_version;

-- Every connector message with events, stored as received on the thread that read it,
-- before its events go anywhere: a crash loses none of them. ``applied`` once all its
-- events are in the log and the calls table (the same transaction as the last of them).
CREATE TABLE IF NOT EXISTS frames (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL    NOT NULL,
    raw     TEXT    NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS frames_open ON frames(seq) WHERE applied = 0;

-- A call ID the connector reused for a new call: its events now go to call_id 'ID #n'.
CREATE TABLE IF NOT EXISTS call_alias (
    call_id TEXT PRIMARY KEY,
    current TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS once (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at    REAL NOT NULL
);
"""


def migrate(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"journal schema {version} is newer than this program ({SCHEMA_VERSION})"
        )
    if version < SCHEMA_VERSION:
        con.execute("BEGIN IMMEDIATE")
        try:
            # One by one (executescript would commit): all of the schema or none of it.
            for statement in (SCHEMA + ";" + summaries.SCHEMA).split(";"):
                if statement.strip():
                    con.execute(statement)
            for statement in summaries.TRIGGERS:
                con.execute(statement)
            if version < 4:  # a journal from before the running sums: add them up once
                for statement in summaries.BACKFILL:
                    con.execute(statement)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
