"""The agent's journal: an SQLite file (WAL) that stores every event before it is acted on.

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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pz_excel.agent import journal_schema, summaries
from pz_excel.agent.checkpointer import (
    COMMIT_CHECKPOINT_PAGES,
    WAL_SIZE_LIMIT,
    Checkpointer,
)
from pz_excel.crm import phones
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import Event

log = logging.getLogger("pz_excel.agent.journal")

Normalizer = Callable[[str], str | None]
Mapper = Callable[[CallRow | None, Event], CallRow | None]


_CALL_COLS = (
    "call_id, direction, status, client_phone, contact, owner, extension, started, ended, "
    "duration, recording, line, late"
)


class JournalClosed(RuntimeError):
    """The journal was used after ``close()``."""


def _sql_int(value: object) -> int | None:
    """An integer SQLite can hold, else None (the value stays in the JSON payload): a
    30-digit event type must not roll back the transaction that stores the event."""
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row(rec: sqlite3.Row | tuple) -> CallRow:
    (call_id, direction, status, phone, contact, owner, ext, started, ended,
     duration, recording, line, late) = tuple(rec)[:13]
    return CallRow(
        call_id=call_id,
        direction=direction,
        status=status,
        client_phone=phone,
        contact=contact,
        owner=owner,
        extension=ext,
        start=_dt(started),
        end=_dt(ended),
        duration=duration,
        recording=recording,
        line=line,
        late=bool(late),
    )


class Journal:
    """See the module docstring. Every public method commits before it returns."""

    def __init__(
        self,
        path: Path | str,
        *,
        normalize: Normalizer | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path).expanduser()
        self._normalize = normalize or phones.normalize
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(
                str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            wal = str(mode).lower() == "wal"
            if not wal:  # e.g. some network shares
                log.warning("journal %s: WAL not available, using %s", self.path, mode)
            con.execute(f"PRAGMA synchronous={synchronous.upper()}")
            con.execute("PRAGMA busy_timeout=10000")
            if wal:
                con.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
                # After a checkpoint the WAL file is cut back to this: on a small disk the
                # journal's footprint stays bounded, not at its busiest second's high mark.
                con.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            journal_schema.migrate(con)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._open_error(exc) from exc
        self._con: sqlite3.Connection | None = con
        self._checkpointer = Checkpointer(self.path) if wal else None

    def _open_error(self, exc: Exception) -> UserError:
        return UserError(
            Text(
                f"cannot open the journal {self.path}: {exc}. If the file is damaged, move it "
                "away and start again (a new journal is created; pending rows in it are lost)",
                f"не удаётся открыть журнал {self.path}: {exc}. Если файл повреждён, "
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
        with self._lock:
            if self._con is None:
                return
            try:
                self._con.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self._con.close()
            self._con = None

    @property
    def closed(self) -> bool:
        return self._con is None

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise JournalClosed(f"journal {self.path} is closed")
        return self._con

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one IMMEDIATE transaction, committed (or rolled back) here."""
        with self._lock:
            con = self._db()
            con.execute("BEGIN IMMEDIATE")
            try:
                result = fn(con)
                con.execute("COMMIT")  # may fail too (disk full): rolled back below
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return result

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
    def _insert_event(con: sqlite3.Connection, event: Event, raw_frame: str | None) -> int:
        attrs = dict(event.attrs)
        attrs.setdefault("type", str(event.type))
        attrs.setdefault("callID", event.call_id)
        cur = con.execute(
            "INSERT INTO log(at, kind, call_id, event_type, payload, raw) "
            "VALUES (?, 'event', ?, ?, ?, ?)",
            (time.time(), event.call_id, _sql_int(event.type),
             json.dumps(attrs, ensure_ascii=False), raw_frame),
        )
        return int(cur.lastrowid or 0)

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

        def insert(con: sqlite3.Connection) -> int:
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

        def work(con: sqlite3.Connection) -> int:
            seq = int(con.execute("INSERT INTO frames(at, raw, applied) VALUES (?, ?, ?)",
                                  (time.time(), raw, int(applied))).lastrowid or 0)
            for event, (kind, payload) in decided:
                self._insert_event(con, event, None)
                con.execute("INSERT INTO log(at, kind, call_id, payload) VALUES (?, ?, ?, ?)",
                            (time.time(), kind, event.call_id,
                             json.dumps(payload, ensure_ascii=False, default=str)))
            return seq

        return self._write(work)

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
        with self._lock:
            return list(self._db().execute(sql, [*args, limit]))

    def record(self, kind: str, payload: dict | str, call_id: str = "") -> int:
        """Append what we did: a request, a response, a decision, a state change."""
        text = json.dumps(payload, ensure_ascii=False, default=str)

        def insert(con: sqlite3.Connection) -> int:
            cur = con.execute(
                "INSERT INTO log(at, kind, call_id, payload) VALUES (?, ?, ?, ?)",
                (time.time(), kind, call_id or "", text),
            )
            return int(cur.lastrowid or 0)

        return self._write(insert)

    def entries(
        self,
        kind: str | None = None,
        call_id: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Log entries in order: seq, at (local ISO), kind, call_id, event_type, payload, raw."""
        where, args = ["seq > ?"], [since_seq]
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if call_id is not None:
            where.append("call_id = ?")
            args.append(call_id)
        sql = (
            "SELECT seq, at, kind, call_id, event_type, payload, raw FROM log WHERE "
            + " AND ".join(where)
            + " ORDER BY seq"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db().execute(sql, args).fetchall()
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

        def work(con: sqlite3.Connection) -> int:
            gone = con.execute("DELETE FROM log WHERE at < ?", (cutoff,)).rowcount
            gone += con.execute("DELETE FROM frames WHERE at < ? AND applied = 1",
                                (cutoff,)).rowcount
            return gone

        return self._write(work)

    # ------------------------------------------------------------------ call rows

    def _upsert(self, con: sqlite3.Connection, row: CallRow) -> None:
        con.execute(
            """
            INSERT INTO calls(call_id, direction, status, client_phone, client_key, contact,
                owner, owner_key, extension, started, ended, duration, recording, line, late,
                version, written_version, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?)
            ON CONFLICT(call_id) DO UPDATE SET
                direction = excluded.direction, status = excluded.status,
                client_phone = excluded.client_phone, client_key = excluded.client_key,
                contact = excluded.contact, owner = excluded.owner,
                owner_key = excluded.owner_key, extension = excluded.extension,
                started = excluded.started, ended = excluded.ended,
                duration = excluded.duration, recording = excluded.recording,
                line = excluded.line, late = excluded.late,
                version = calls.version + 1, updated_at = excluded.updated_at
            """,
            (
                row.call_id, row.direction, row.status, row.client_phone,
                self._key(row.client_phone), row.contact, row.owner,
                row.owner.strip().casefold(), row.extension, _iso(row.start), _iso(row.end),
                _sql_int(row.duration), row.recording, row.line, int(bool(row.late)), time.time(),
            ),
        )

    @staticmethod
    def _get(con: sqlite3.Connection, call_id: str) -> CallRow | None:
        rec = con.execute(f"SELECT {_CALL_COLS} FROM calls WHERE call_id = ?", (call_id,))
        found = rec.fetchone()
        return _row(found) if found else None

    def upsert_call(self, row: CallRow) -> None:
        """Store the merged state of a call and mark it dirty (``version`` + 1)."""
        if not row.call_id:
            raise ValueError("a call row needs a call_id")
        self._write(lambda con: self._upsert(con, row))

    def get_call(self, call_id: str) -> CallRow | None:
        with self._lock:
            return self._get(self._db(), call_id)

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

        def work(con: sqlite3.Connection) -> CallRow | None:
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
    def _new_alias(con: sqlite3.Connection, call_id: str, seq: int) -> str:
        """A new call under a reused ID gets a row of its own: 'ID #2', 'ID #3'…; the old
        row stays as it was, and the reuse is flagged in the log and the journal."""
        n = 2
        while con.execute("SELECT 1 FROM calls WHERE call_id = ?",
                          (f"{call_id} #{n}",)).fetchone():
            n += 1
        key = f"{call_id} #{n}"
        con.execute("INSERT OR REPLACE INTO call_alias(call_id, current) VALUES (?, ?)",
                    (call_id, key))
        con.execute("INSERT INTO log(at, kind, call_id, payload) VALUES (?, 'reused', ?, ?)",
                    (time.time(), call_id, json.dumps({"seq": seq, "row": key})))
        log.warning("%s", Text(
            f"the connector reused call ID {call_id} for a new call: it is written as {key}",
            f"коннектор повторно выдал ID звонка {call_id} новому звонку: он записан как {key}"))
        return key

    def reindex_phones(self) -> int:
        """Recompute every stored phone key (after the normaliser's rules changed)."""

        def work(con: sqlite3.Connection) -> int:
            recs = con.execute("SELECT call_id, client_phone, client_key FROM calls").fetchall()
            changed = [(key, cid) for cid, phone, old in recs if (key := self._key(phone)) != old]
            con.executemany("UPDATE calls SET client_key = ? WHERE call_id = ?", changed)
            return len(changed)

        return self._write(work)

    def dirty_calls(self, limit: int | None = None) -> list[tuple[CallRow, int]]:
        """Rows the workbook does not have yet (first changed first), with their version."""
        sql = (
            # The partial index holds only dirty rows: no scan of a big, clean table.
            f"SELECT {_CALL_COLS}, version FROM calls INDEXED BY calls_dirty "
            "WHERE version > written_version ORDER BY rowid"
        )
        args: list[int] = []
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            recs = self._db().execute(sql, args).fetchall()
        return [(_row(rec), int(rec[13])) for rec in recs]

    def mark_written(self, versions: Iterable[tuple[str, int]]) -> None:
        """Record that these versions reached the workbook. A row changed since stays dirty."""
        pairs = [(int(v), str(cid)) for cid, v in versions]
        if not pairs:
            return
        self._write(
            lambda con: con.executemany(
                "UPDATE calls SET written_version = max(written_version, ?) WHERE call_id = ?",
                pairs,
            )
        )

    def mark_all_unwritten(self) -> int:
        """Every call is dirty again (the Calls sheet was recreated): all go out anew."""
        return self._write(lambda con: con.execute(
            "UPDATE calls SET written_version = 0 WHERE written_version > 0").rowcount)

    def _filters(
        self,
        number_key: str | None,
        since: datetime | None,
        status: str | None = None,
        owner: str | None = None,
    ) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if number_key is not None:
            where.append("client_key = ?")
            args.append(number_key)
        if since is not None:
            where.append("started >= ?")
            args.append(_iso(since))
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if owner is not None:
            where.append("owner_key = ?")
            args.append(owner.strip().casefold())
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def recent_calls(
        self, limit: int = 50, number_key: str | None = None, since: datetime | None = None
    ) -> list[CallRow]:
        """Newest first (by start)."""
        where, args = self._filters(number_key, since)
        sql = f"SELECT {_CALL_COLS} FROM calls{where} ORDER BY started DESC, rowid DESC LIMIT ?"
        with self._lock:
            return [_row(r) for r in self._db().execute(sql, [*args, int(limit)])]

    def count_calls(
        self,
        number_key: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        owner: str | None = None,
    ) -> int:
        where, args = self._filters(number_key, since, status, owner)
        with self._lock:
            return int(self._db().execute(f"SELECT count(*) FROM calls{where}", args).fetchone()[0])

    def missed_not_called_back(self, owner: str | None = None,
                               limit: int | None = None) -> list[CallRow]:
        """Missed incoming calls with no later outgoing call to the same client, newest first.

        "Same client" is the normalised phone (the raw text when it does not normalise),
        so ``+7 343 011-22-33`` called back as ``83430112233`` counts. Read through the
        running sums (``summaries.client_waiting``): only waiting clients' calls are read.
        """
        cols = ", ".join("m." + c.strip() for c in _CALL_COLS.split(","))
        key = owner.strip().casefold() if owner is not None else None
        with self._lock:
            return [_row(r) for r in summaries.missed_calls(self._db(), cols, key, limit)]

    def count_missed_not_called_back(self, owner: str | None = None) -> int:
        key = owner.strip().casefold() if owner is not None else None
        with self._lock:
            return int(summaries.missed_calls(self._db(), "count(*)", key)[0][0])

    def waiting_clients(self, limit: int) -> tuple[int, list[tuple[str, str, str, datetime, int]]]:
        """Clients whose missed calls nobody returned (``missed_not_called_back``'s rule):
        how many, and the newest ``limit`` of them as (phone, contact, owner, last missed,
        times missed), from the running sums (``summaries``)."""
        with self._lock:
            total, rows = summaries.waiting(self._db(), limit)
        return total, [(p, c, o, _dt(last), n) for p, c, o, last, n in rows]  # type: ignore[misc]

    def call_tallies(self, since: datetime, until: datetime) -> list[tuple]:
        """(day 'YYYY-MM-DD', direction, status, owner, calls, talk seconds) for the days
        in [since, until), from the running sums (``summaries``): what the Dashboard adds
        up. Talk time counts answered calls' plausible durations (under ~4 months) only."""
        with self._lock:
            return summaries.tallies(self._db(), since, until)

    # ------------------------------------------------------------------ PZ_CALL once-keys

    def once_get(self, key: str) -> str | None:
        with self._lock:
            found = self._db().execute("SELECT value FROM once WHERE key = ?", (key,)).fetchone()
        return found[0] if found else None

    def once_put(self, key: str, value: str) -> None:
        self._write(
            lambda con: con.execute(
                "INSERT OR REPLACE INTO once(key, value, at) VALUES (?, ?, ?)",
                (key, value, time.time()),
            )
        )

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, Any]:
        with self._lock:
            con = self._db()
            events = con.execute("SELECT count(*) FROM log WHERE kind = 'event'").fetchone()[0]
            calls = con.execute("SELECT count(*) FROM calls").fetchone()[0]
            dirty = con.execute(
                "SELECT count(*) FROM calls WHERE version > written_version"
            ).fetchone()[0]
        size = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                size += Path(f"{self.path}{suffix}").stat().st_size
            except OSError:
                pass
        return {"events": events, "calls": calls, "dirty": dirty, "path": str(self.path),
                "size": size}
