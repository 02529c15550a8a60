"""A desktop agent reports its own calls' events to the team server (issue 15).

Why: the team server's leader may be killed between reading a connector message and
committing it, and the connector counts that message delivered. The managers' own agents
saw their calls too; the team server merges their reports per call ID, which closes the
hole.

How: the journal's ``log`` has every event received, in order (``kind='event'``). A
background thread sends those after the last reported seq in batches, in order, and keeps
that seq in the journal's once-table after each accepted batch. So a restart, or a team
server that is away for a while, loses nothing, and nothing accepted is sent again (were
a batch sent twice — an answer lost on the way — the server's per-call merge absorbs it).
Transfer requests (type 1) are the team server's own business and are not reported.

"In order" leans on the desktop journal being an SQLite file: one writer at a time, so
seqs become visible in order. (On PostgreSQL a later seq may commit before an earlier one;
a desktop agent's journal is not kept there.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pz_excel.agent.journal import Journal
from pz_excel.agent.teamlink import (
    F_ATTRS,
    F_CALL_ID,
    F_TYPE,
    MAX_EVENTS_PER_POST,
    REFUSED,
    TeamError,
    TeamLink,
)
from pz_excel.crm import phones
from pz_excel.i18n import Text
from pz_excel.protocol.messages import EventType

log = logging.getLogger("pz_excel.agent.teamreport")

#: The once-table key holding the seq of the last event the team server accepted.
SEQ_KEY = "team-report-seq"

#: What is reported: calls' events. Transfer requests are answered by the team server.
REPORTED_TYPES = frozenset({EventType.INCOMING, EventType.HISTORY, EventType.OUTGOING,
                            EventType.OUTGOING_ANSWERED, EventType.INCOMING_ANSWERED})

MAX_BACKOFF = 60.0  # s between tries while the team server is away


def wire_event(entry: dict[str, Any]) -> dict[str, Any]:
    """A journal log entry as the team API takes it: {"type","callID","attrs"}."""
    attrs = {str(k): str(v) for k, v in (entry.get("payload") or {}).items()
             if k not in ("type", "callID")}
    return {F_TYPE: int(entry["event_type"]), F_CALL_ID: entry["call_id"], F_ATTRS: attrs}


class TeamReporter:
    """Sends the journal's events of ``extension`` to the team server from its own thread
    (``start``/``stop``), or all pending ones at once (``run_once``)."""

    def __init__(self, journal: Journal, link: TeamLink, extension: str, *,
                 interval: float = 1.0, batch: int = MAX_EVENTS_PER_POST,
                 on_problem: Callable[[Text | None], None] | None = None):
        self.journal = journal
        self.link = link
        self.extension = phones.extension(extension) or extension
        self.interval = interval
        self.batch = max(1, min(batch, MAX_EVENTS_PER_POST))
        self.on_problem = on_problem
        self.problem: Text | None = None  # why the last try failed (None: it went through)
        self.sent = 0  # events accepted by the team server in this run
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()

    @property
    def reported_seq(self) -> int:
        """The journal seq up to which the team server has everything of ours."""
        return int(self.journal.once_get(SEQ_KEY) or 0)

    def _ours(self, entry: dict[str, Any]) -> bool:
        if entry.get("event_type") not in REPORTED_TYPES:
            return False
        payload = entry.get("payload") or {}
        # The team API's own test of "ours" (phones.extension on from and to): what it
        # would refuse is not sent.
        return self.extension in (phones.extension(payload.get("from")),
                                  phones.extension(payload.get("to")))

    def run_once(self) -> int:
        """Send every pending event now, batch by batch; returns how many were sent.
        Raises :class:`TeamError` when the team server cannot take them (they wait)."""
        sent = 0
        with self._send_lock:
            while not self._stopping.is_set():
                since = self.reported_seq
                entries = self.journal.entries(kind="event", since_seq=since, limit=self.batch)
                if not entries:
                    return sent
                last = entries[-1]["seq"]
                events = [wire_event(e) for e in entries if self._ours(e)]
                if events:
                    try:
                        self._send(events)
                    except TeamError as exc:
                        if exc.kind != REFUSED or exc.status in (None, 429) or exc.status >= 500:
                            raise
                        # The server can never take this batch (400, 413): said and
                        # skipped, so the events after it still go.
                        self._skipped(since, last, exc)
                    else:
                        sent += len(events)
                        self.sent += len(events)
                self.journal.once_put(SEQ_KEY, str(last))
        return sent

    def _send(self, events: list[dict[str, Any]]) -> None:
        """One request; one the server finds too large (413) goes again in halves, so
        only a single event larger than the server takes can ever be refused."""
        try:
            self.link.report(events)
        except TeamError as exc:
            if exc.status != 413 or len(events) == 1:
                raise
            half = len(events) // 2
            self._send(events[:half])
            self._send(events[half:])

    def _skipped(self, since: int, last: int, exc: TeamError) -> None:
        log.error("%s", Text(
            f"the team server refused our events #{since + 1}–#{last}, they are skipped: "
            f"{exc.text.en}",
            f"командный сервер не принял наши события №{since + 1}–№{last}, они пропущены: "
            f"{exc.text.ru}"))
        self.journal.record("team-report", {"skipped_from": since + 1, "skipped_to": last,
                                            "error": exc.text.en})

    # ------------------------------------------------------------------ the thread

    def start(self) -> TeamReporter:
        self._thread = threading.Thread(target=self._loop, name="pz-team-report", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """New events are in the journal: send them without waiting for the interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.link.close()

    def _loop(self) -> None:
        wait = self.interval
        while not self._stopping.is_set():
            try:
                self.run_once()
                wait = self.interval
                self._set_problem(None)
            except TeamError as exc:
                wait = min(max(wait * 2, 1.0), MAX_BACKOFF)  # the events wait in the journal
                self._set_problem(exc.text)
            except Exception:  # the thread must outlive any surprise; the journal has it all
                log.exception("reporting to the team server failed; the events wait")
                wait = min(max(wait * 2, 1.0), MAX_BACKOFF)
            self._wake.wait(wait)
            self._wake.clear()

    def _set_problem(self, text: Text | None) -> None:
        changed = (text is None) != (self.problem is None)
        self.problem = text
        if changed:
            if text is not None:
                log.warning("%s", Text(f"events not reported to the team server yet: {text.en}",
                                       f"события пока не переданы на командный сервер: "
                                       f"{text.ru}"))
            else:
                log.info("%s", Text("reporting to the team server again",
                                    "передача событий на командный сервер возобновлена"))
            if self.on_problem is not None:
                self.on_problem(text)
