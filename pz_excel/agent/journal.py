"""The agent's journal: an SQLite file (WAL), or a PostgreSQL database (the team server's,
given as a ``postgresql://`` DSN), that stores every event before it is acted on.

Two parts:

* ``log`` — append-only: every connector event as received (attributes, raw frame), and
  what we did about it (requests, responses, transfer decisions, state changes);
* ``calls`` — the merged current state of each call (one row per callID), with a
  ``version`` bumped on every change and the ``written_version`` the workbook has. A row
  with ``version > written_version`` is *dirty*: it still has to reach the Calls sheet.
  So a locked workbook, a crash or a kill only delay rows, never lose them.

Durability: ``journal_mode=WAL`` and, by default, ``synchronous=NORMAL``. Every method
commits before it returns. In WAL mode a commit has been ``write()``-n to the WAL file
when it returns, so a killed process (kill -9, a crash, Task Manager) loses nothing: the
OS has the data. What NORMAL gives up is the ``fsync`` per commit, so an OS crash or power
loss may roll back the last transactions since the last checkpoint (the file stays
consistent either way). That trade buys ~8x the event rate on a fast disk and far more on
Windows, where each fsync costs milliseconds; on a desktop that loses power Excel loses
its unsaved work too. ``Journal(path, synchronous="FULL")`` fsyncs every commit.

Checkpoints (copying the WAL into the database file, with an fsync) run in a thread of
their own, never inside a commit: SQLite's automatic checkpoint runs in the COMMIT that
crosses 1000 WAL pages, so every few hundred events a caller waiting for a transfer would
have waited for a checkpoint too.

Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway); other
processes may read the file at the same time (WAL).

On PostgreSQL (``Journal("postgresql://...")``) the same tables, methods and results;
durability is the server's (``synchronous`` is ignored). Several processes may write one
database at once (the team leader, a standby's API): ``apply_event`` takes a per-call
lock before it reads the row, so two writers of one call never lose an update or make two
rows; a transaction PostgreSQL aborts as a deadlock is run again. Where the SQL of the two
engines differs: ``journal_sql.DIALECTS``, in one place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pz_excel.agent import journal_schema, journal_sql, sqldb, summaries
from pz_excel.agent.checkpointer import (
    Checkpointer,
)
from pz_excel.agent.journal_sql import CALL_COLS, DIALECTS, call_row, dt, iso, sql_int
from pz_excel.crm import phones
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import Event

log = logging.getLogger("pz_excel.agent.journal")

Normalizer = Callable[[str], str | None]
Mapper = Callable[[CallRow | None, Event], CallRow | None]


class JournalClosed(RuntimeError):
    """The journal was used after ``close()``."""


def _new_seq(db: sqldb.Db, sql: str, args: Sequence[Any]) -> int:
    """Run an INSERT; the new row's seq. PostgreSQL: ``RETURNING``; SQLite: the cursor's
    ``lastrowid`` (RETURNING needs SQLite 3.35, newer than some Linux Pythons carry)."""
    if db.dialect == sqldb.POSTGRESQL:
        return int(db.execute(sql + " RETURNING seq", args).fetchall()[0][0])
    return int(db.execute(sql, args).lastrowid or 0)


class Journal:
    """See the module docstring. Every public method commits before it returns."""

    def __init__(
        self,
        path: Path | str,
        *,
        normalize: Normalizer | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        dsn = sqldb.is_dsn(path)
        #: The SQLite file (None for a PostgreSQL journal).
        self.path: Path | None = None if dsn else Path(path).expanduser()
        #: What the journal is, fit for a message: the file, or the DSN without a password.
        self.target = sqldb.redact(path) if dsn else str(self.path)
        self._normalize = normalize or phones.normalize
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._checkpointer: Checkpointer | None = None
        #: A journal file made just now: a spool left beside it belonged to another one.
        self.fresh = self.path is not None and not (
            self.path.exists() and self.path.stat().st_size > 0)
        try:
            db = sqldb.connect(str(path) if dsn else self.path)  # type: ignore[arg-type]
        except (sqlite3.Error, OSError) as exc:
            raise self._open_error(exc) from exc
        try:
            wal = journal_schema.settle(db, self.path, synchronous.upper())
        except UserError:
            db.close()
            raise
        except Exception as exc:
            db.close()
            if isinstance(exc, sqlite3.DatabaseError) or hasattr(exc, "sqlstate"):
                raise self._open_error(exc) from exc
            raise
        self._conn: sqldb.Db | None = db
        self._sql = DIALECTS[db.dialect]
        # Reads (the writer's dirty rows, the Dashboard's sums, the API's questions) go
        # through a connection of their own: in WAL (and on PostgreSQL) they never wait
        # for a write nor hold the writers' lock, so the reading thread's commit — the
        # caller's wait — never queues behind a Dashboard refresh. Without WAL readers
        # and writers lock each other anyway: one connection then.
        self._front: sqldb.Db | None = None
        if dsn:
            try:
                self._front = sqldb.connect(str(path))
            except Exception:  # noqa: BLE001 - one connection still works, only slower
                log.warning("journal %s: no second connection for messages", self.target)
        self._reader: sqldb.Db | None = db
        if wal or dsn:
            try:
                self._reader = sqldb.connect(str(path) if dsn else self.path)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - one connection still works, only slower
                log.warning("journal %s: no second connection for reads", self.target)
        if wal and self.path is not None:
            self._checkpointer = Checkpointer(self.path)

    def _open_error(self, exc: Exception) -> UserError:
        reason = str(exc).strip()
        if self.path is None:
            return UserError(Text(f"cannot open the journal {self.target}: {reason}",
                                  f"не удаётся открыть журнал {self.target}: {reason}"))
        return UserError(
            Text(
                f"cannot open the journal {self.path}: {reason}. If the file is damaged, move "
                "it away and start again (a new journal is created; pending rows in it are "
                "lost)",
                f"не удаётся открыть журнал {self.path}: {reason}. Если файл повреждён, "
                "переместите его и запустите снова (будет создан новый журнал; "
                "незаписанные строки из старого не попадут в книгу)",
            )
        )

    # ------------------------------------------------------------------ plumbing

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        db = self._conn
        if db is None:
            return
        with db.lock:
            if self._conn is None:
                return
            for statement in self._sql.on_close:
                try:
                    db.execute(statement)
                except Exception:  # noqa: BLE001 - only an optimisation
                    pass
            db.close()
            self._conn = None
        for extra in (self._reader, self._front):
            if extra is not None and extra is not db:
                with extra.lock:
                    extra.close()
        self._reader = self._front = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def db(self) -> sqldb.Db:
        """The database (``sqldb.Db``): the team server keeps its own tables beside ours."""
        if self._conn is None:
            raise JournalClosed(f"journal {self.target} is closed")
        return self._conn

    def _write(self, fn: Callable[[sqldb.Db], Any], on: sqldb.Db | None = None) -> Any:
        """Run ``fn`` in one transaction (SQLite: IMMEDIATE), committed or rolled back
        here; on PostgreSQL run again when aborted as a deadlock (``journal_sql``).
        ``on``: another connection of this journal's (``record_frames``)."""
        for attempt in range(1, journal_sql.RETRIES + 1):
            try:
                with (on or self.db).transaction() as db:
                    return fn(db)
            except Exception as exc:
                if attempt == journal_sql.RETRIES or not journal_sql.retryable(exc):
                    raise
                log.info("journal transaction aborted (%s): running it again", exc)
        raise AssertionError("unreachable")

    def _reads(self) -> sqldb.Db:
        """The connection for reads (see ``__init__``)."""
        reader = self._reader
        if reader is None or self._conn is None:
            raise JournalClosed(f"journal {self.target} is closed")
        return reader

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        db = self._reads()
        with db.lock:
            return db.execute(sql, args).fetchall()

    def _key(self, phone: str) -> str | None:
        if not phone:
            return None
        try:
            return self._normalize(phone)
        except Exception:  # an odd caller ID must never lose the event
            log.debug("phone %r not normalised", phone, exc_info=True)
            return None

    # ------------------------------------------------------------------ the log

    @staticmethod
    def _insert_event(db: sqldb.Db, event: Event, raw_frame: str | None) -> int:
        attrs = dict(event.attrs)
        attrs.setdefault("type", str(event.type))
        attrs.setdefault("callID", event.call_id)
        return _new_seq(
            db,
            "INSERT INTO log(at, kind, call_id, event_type, payload, raw) "
            "VALUES (?, 'event', ?, ?, ?, ?)",
            (time.time(), event.call_id, sql_int(event.type),
             json.dumps(attrs, ensure_ascii=False), raw_frame),
        )

    def record_event(
        self,
        event: Event,
        raw_frame: str | None = None,
        *,
        then: tuple[str, dict] | None = None,
        frame: int | None = None,
    ) -> int:
        """Append a received event (all attributes, unknown ones too); returns its seq.

        ``then``: ``(kind, payload)`` of what we decided about it, stored in the same
        transaction, right after it (a transfer request and its decision: one commit
        while the caller waits, not two).
        """
        text = json.dumps(then[1], ensure_ascii=False, default=str) if then else ""

        def insert(con: sqldb.Db) -> int:
            seq = self._insert_event(con, event, raw_frame)
            if then is not None:
                con.execute(
                    "INSERT INTO log(at, kind, call_id, payload) VALUES (?, ?, ?, ?)",
                    (time.time(), then[0], event.call_id, text),
                )
            if frame is not None:
                con.execute("UPDATE frames SET applied = 1 WHERE seq = ?", (frame,))
            return seq

        return self._write(insert)

    def record_frame(self, raw: str, decided: Sequence[tuple[Event, tuple[str, dict]]] = (),
                     applied: bool = False) -> int:
        """Store a connector message as received, with its transfer requests and what we
        decided about each (``(event, (kind, payload))``), in ONE commit: a caller waits
        for one commit, not two. ``applied``: nothing else in it to apply. Returns its seq."""
        return self.record_frames([(raw, decided, applied)])[0]

    def record_frames(self, frames: Sequence[tuple[str, Sequence[tuple[Event, tuple[str, dict]]],
                                                   bool]],
                      mark: tuple[str, int] | None = None) -> list[int]:
        """``record_frame`` for several messages in arrival order, in ONE commit (a burst —
        a connector's replay of thousands of calls — costs one commit, not thousands, so a
        transfer request behind it is stored and answered at once). Returns their seqs.
        ``mark``: the spool's (generation, offset) these end at, kept in the same commit."""

        def work(con: sqldb.Db) -> list[int]:
            if mark is not None:
                con.execute("DELETE FROM spool_mark")
                con.execute("INSERT INTO spool_mark(id, generation, upto) VALUES (1, ?, ?)",
                            mark)
            seqs = []
            for raw, decided, applied in frames:
                seqs.append(_new_seq(con, "INSERT INTO frames(at, raw, applied) VALUES (?, ?, ?)",
                                     (time.time(), raw, int(applied))))
                for event, (kind, payload) in decided:
                    self._insert_event(con, event, None)
                    con.execute("INSERT INTO log(at, kind, call_id, payload) VALUES (?, ?, ?, ?)",
                                (time.time(), kind, event.call_id,
                                 json.dumps(payload, ensure_ascii=False, default=str)))
            return seqs

        # PostgreSQL: on a connection of its own, so the reading thread's commit runs beside
        # pz-events' (the server takes both at once) instead of after it. SQLite has one
        # writer per file anyway, and a second would wait in sleeps: the shared one.
        front = self._front if self._front is not None and self._conn is not None else None
        return self._write(work, on=front) if frames else []

    def spool_mark(self) -> tuple[str, int] | None:
        """The spool's (generation, offset) the frames table holds everything up to."""
        found = self._read("SELECT generation, upto FROM spool_mark WHERE id = 1")
        return (str(found[0][0]), int(found[0][1])) if found else None

    def last_frame(self) -> int:
        """The newest stored message's seq (0: none)."""
        found = self._read("SELECT max(seq) FROM frames")
        return int(found[0][0] or 0) if found else 0

    def frame_applied(self, seq: int) -> None:
        """A stored message none of whose events needs applying (only transfer requests,
        handled on their own path) is done."""
        self._write(lambda con: con.execute("UPDATE frames SET applied = 1 WHERE seq = ?",
                                            (seq,)))

    def open_frames(self, after: int = 0, up_to: int | None = None,
                    limit: int = 500) -> list[tuple[int, str]]:
        """Stored messages (seq > ``after``) whose events are not all applied, oldest first."""
        sql = "SELECT seq, raw FROM frames WHERE applied = 0 AND seq > ?"
        args: list[Any] = [after]
        if up_to is not None:
            sql += " AND seq <= ?"
            args.append(up_to)
        sql += " ORDER BY seq LIMIT ?"
        return [tuple(r) for r in self._read(sql, [*args, limit])]

    def record(self, kind: str, payload: dict | str, call_id: str = "") -> int:
        """Append what we did: a request, a response, a decision, a state change."""
        text = json.dumps(payload, ensure_ascii=False, default=str)

        return self._write(lambda db: _new_seq(
            db, "INSERT INTO log(at, kind, call_id, payload) VALUES (?, ?, ?, ?)",
            (time.time(), kind, call_id or "", text)))

    def entries(
        self,
        kind: str | None = None,
        call_id: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Log entries in order: seq, at (local ISO), kind, call_id, event_type, payload, raw."""
        clause, args = sqldb.where(("seq > ?", since_seq), ("kind = ?", kind),
                                   ("call_id = ?", call_id))
        sql = ("SELECT seq, at, kind, call_id, event_type, payload, raw FROM log"
               + clause + " ORDER BY seq")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._read(sql, args)
        out = []
        for seq, at, kind_, cid, etype, payload, raw in rows:
            out.append(
                {
                    "seq": seq,
                    "at": datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds"),
                    "kind": kind_,
                    "call_id": cid,
                    "event_type": etype,
                    "payload": json.loads(payload),
                    "raw": raw,
                }
            )
        return out

    def events(self, since_seq: int = 0) -> Iterator[tuple[int, Event]]:
        """Stored events as ``Event`` objects again (for a rebuild or a diagnosis)."""
        for entry in self.entries(kind="event", since_seq=since_seq):
            attrs = {str(k): str(v) for k, v in entry["payload"].items()}
            yield entry["seq"], Event(int(entry["event_type"]), entry["call_id"], attrs)

    def prune(self, before: datetime) -> int:
        """The retention policy's step (``AgentConfig.keep_days``): log entries and stored
        messages older than ``before`` go. Call rows never do — the Calls sheet, the
        Dashboard's running sums and the PZ_* functions read them — nor a message whose
        events are not applied yet, nor PZ_CALL's once-keys. Returns how many rows went."""
        cutoff = before.timestamp()

        def work(con: sqldb.Db) -> int:
            gone = con.execute("DELETE FROM log WHERE at < ?", (cutoff,)).rowcount
            gone += con.execute("DELETE FROM frames WHERE at < ? AND applied = 1",
                                (cutoff,)).rowcount
            return gone

        return self._write(work)

    # ------------------------------------------------------------------ call rows

    def _upsert(self, db: sqldb.Db, row: CallRow) -> None:
        db.execute(journal_sql.UPSERT_CALL, (
            row.call_id, row.direction, row.status, row.client_phone,
            self._key(row.client_phone), row.contact, row.owner,
            row.owner.strip().casefold(), row.extension, iso(row.start), iso(row.end),
            sql_int(row.duration), row.recording, row.line, int(bool(row.late)), time.time(),
        ))

    @staticmethod
    def _get(db: sqldb.Db, call_id: str) -> CallRow | None:
        found = db.execute(f"SELECT {CALL_COLS} FROM calls WHERE call_id = ?",
                           (call_id,)).fetchone()
        return call_row(found) if found else None

    def upsert_call(self, row: CallRow) -> None:
        """Store the merged state of a call and mark it dirty (``version`` + 1)."""
        if not row.call_id:
            raise ValueError("a call row needs a call_id")
        self._write(lambda con: self._upsert(con, row))

    def get_call(self, call_id: str) -> CallRow | None:
        db = self._reads()
        with db.lock:
            return self._get(db, call_id)

    def apply_event(
        self,
        event: Event,
        mapper: Mapper,
        raw_frame: str | None = None,
        *,
        reused: Callable[[CallRow, Event], bool] | None = None,
        frame: int | None = None,
    ) -> CallRow | None:
        """Log ``event`` and update its call row in ONE transaction.

        So after a crash the log and the call state always agree. Returns the new row when
        the call changed (it is then dirty), else ``None`` (a duplicate, an SMS…). If the
        mapper fails, the event is still stored, with an ``error`` entry next to it.
        ``frame``: the stored message this event is the last of (marked applied with it);
        ``reused``: tells whether the event starts a new call under an old ID.
        """
        failure: list[BaseException] = []

        def work(con: sqldb.Db) -> CallRow | None:
            failure.clear()  # a deadlocked attempt's failure is not this one's
            if self._sql.lock_call and event.call_id:  # before the row is read: see above
                con.execute(self._sql.lock_call, (event.call_id,))
            if frame is not None:  # the last event of a stored message: it is done
                con.execute("UPDATE frames SET applied = 1 WHERE seq = ?", (frame,))
            seq = self._insert_event(con, event, raw_frame)
            if not event.call_id:
                return None
            found = con.execute("SELECT current FROM call_alias WHERE call_id = ?",
                                (event.call_id,)).fetchone()
            key = found[0] if found else event.call_id
            current = self._get(con, key)
            if current is not None and reused is not None and reused(current, event):
                key = self._new_alias(con, event.call_id, seq)
                current = None
            try:
                new = mapper(current, event)
            except Exception as exc:  # noqa: BLE001 - the event itself must stay stored
                failure.append(exc)
                con.execute(
                    "INSERT INTO log(at, kind, call_id, payload) VALUES (?, 'error', ?, ?)",
                    (time.time(), event.call_id,
                     json.dumps({"seq": seq, "error": f"{type(exc).__name__}: {exc}"})),
                )
                return None
            if new is None or new == current:
                return None
            if new.call_id != key:
                new = dataclasses.replace(new, call_id=key)
            self._upsert(con, new)
            return new

        result = self._write(work)
        if failure:
            log.error("event %s of call %s not mapped", event.type, event.call_id,
                      exc_info=failure[0])
        return result

    @staticmethod
    def _new_alias(con: sqldb.Db, call_id: str, seq: int) -> str:
        """A new call under a reused ID gets a row of its own: 'ID #2', 'ID #3'…; the old
        row stays as it was, and the reuse is flagged in the log and the journal."""
        n = 2
        while con.execute("SELECT 1 FROM calls WHERE call_id = ?",
                          (f"{call_id} #{n}",)).fetchone():
            n += 1
        key = f"{call_id} #{n}"
        con.execute("INSERT INTO call_alias(call_id, current) VALUES (?, ?) "
                    "ON CONFLICT(call_id) DO UPDATE SET current = excluded.current",
                    (call_id, key))
        con.execute("INSERT INTO log(at, kind, call_id, payload) VALUES (?, 'reused', ?, ?)",
                    (time.time(), call_id, json.dumps({"seq": seq, "row": key})))
        log.warning("%s", Text(
            f"the connector reused call ID {call_id} for a new call: it is written as {key}",
            f"коннектор повторно выдал ID звонка {call_id} новому звонку: он записан как {key}"))
        return key

    def reindex_phones(self) -> int:
        """Recompute every stored phone key (after the normaliser's rules changed)."""

        def work(con: sqldb.Db) -> int:
            recs = con.execute("SELECT call_id, client_phone, client_key FROM calls").fetchall()
            changed = [(key, cid) for cid, phone, old in recs if (key := self._key(phone)) != old]
            con.executemany("UPDATE calls SET client_key = ? WHERE call_id = ?", changed)
            return len(changed)

        return self._write(work)

    def dirty_calls(self, limit: int | None = None) -> list[tuple[CallRow, int]]:
        """Rows the workbook does not have yet (first changed first), with their version."""
        sql = self._sql.dirty.format(cols=CALL_COLS)
        args: list[int] = []
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [(call_row(rec), int(rec[13])) for rec in self._read(sql, args)]

    def mark_written(self, versions: Iterable[tuple[str, int]]) -> None:
        """Record that these versions reached the workbook. A row changed since stays dirty."""
        rows = [(int(v), str(cid), int(v)) for cid, v in versions]
        if not rows:
            return
        self._write(lambda db: db.executemany(
            "UPDATE calls SET written_version = ? WHERE call_id = ? AND written_version < ?",
            rows))

    def mark_all_unwritten(self) -> int:
        """Every call is dirty again (the Calls sheet was recreated): all go out anew."""
        return self._write(lambda con: con.execute(
            "UPDATE calls SET written_version = 0 WHERE written_version > 0").rowcount)

    def recent_calls(
        self, limit: int = 50, number_key: str | None = None, since: datetime | None = None
    ) -> list[CallRow]:
        """Newest first (by start)."""
        where, args = journal_sql.call_filters(number_key, since)
        sql = f"SELECT {CALL_COLS} FROM calls{where} ORDER BY {self._sql.newest_first} LIMIT ?"
        return [call_row(r) for r in self._read(sql, [*args, int(limit)])]

    def count_calls(
        self,
        number_key: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        owner: str | None = None,
    ) -> int:
        where, args = journal_sql.call_filters(number_key, since, status, owner)
        return int(self._read(f"SELECT count(*) FROM calls{where}", args)[0][0])

    def missed_not_called_back(self, owner: str | None = None,
                               limit: int | None = None) -> list[CallRow]:
        """Missed incoming calls with no later outgoing call to the same client, newest first.

        "Same client" is the normalised phone (the raw text when it does not normalise),
        so ``+7 343 011-22-33`` called back as ``83430112233`` counts. Read through the
        running sums (``summaries.client_waiting``): only waiting clients' calls are read.
        """
        cols = ", ".join("m." + c.strip() for c in CALL_COLS.split(","))
        key = owner.strip().casefold() if owner is not None else None
        db = self._reads()
        with db.lock:
            return [call_row(r) for r in summaries.missed_calls(db, cols, key, limit)]

    def count_missed_not_called_back(self, owner: str | None = None) -> int:
        key = owner.strip().casefold() if owner is not None else None
        db = self._reads()
        with db.lock:
            return int(summaries.missed_calls(db, "count(*)", key)[0][0])

    def waiting_clients(self, limit: int) -> tuple[int, list[tuple[str, str, str, datetime, int]]]:
        """Clients whose missed calls nobody returned (``missed_not_called_back``'s rule):
        how many, and the newest ``limit`` of them as (phone, contact, owner, last missed,
        times missed), from the running sums (``summaries``)."""
        db = self._reads()
        with db.lock:
            total, rows = summaries.waiting(db, limit)
        return total, [(p, c, o, dt(last), int(n)) for p, c, o, last, n in rows]  # type: ignore[misc]

    def call_tallies(self, since: datetime, until: datetime) -> list[tuple]:
        """(day 'YYYY-MM-DD', direction, status, owner, calls, talk seconds) for the days
        in [since, until), from the running sums (``summaries``): what the Dashboard adds
        up. Talk time counts answered calls' plausible durations (under ~4 months) only."""
        db = self._reads()
        with db.lock:
            return [tuple(r) for r in summaries.tallies(db, since, until)]

    # ------------------------------------------------------------------ PZ_CALL once-keys

    def once_get(self, key: str) -> str | None:
        found = self._read("SELECT value FROM once WHERE key = ?", (key,))
        return found[0][0] if found else None

    def once_put(self, key: str, value: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO once(key, value, at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = excluded.at",
            (key, value, time.time())))

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, Any]:
        """Events, calls, dirty rows, where it is, and its size in bytes (SQLite: the
        file with its WAL; PostgreSQL: the database's, 0 when not allowed to know)."""
        db = self._reads()
        with db.lock:
            events = int(db.one("SELECT count(*) FROM log WHERE kind = 'event'"))
            calls = int(db.one("SELECT count(*) FROM calls"))
            dirty = int(db.one("SELECT count(*) FROM calls WHERE version > written_version"))
            size = 0
            if self._sql.size is not None:
                try:
                    size = int(db.one(self._sql.size) or 0)
                except Exception:  # noqa: BLE001 - a figure for a status line only
                    size = 0
        for suffix in ("", "-wal", "-shm", "-spool") if self.path is not None else ():
            try:
                size += Path(f"{self.path}{suffix}").stat().st_size
            except OSError:
                pass
        return {"events": events, "calls": calls, "dirty": dirty, "path": self.target,
                "size": size}
