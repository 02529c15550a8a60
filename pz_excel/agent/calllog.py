"""Connector events → Calls sheet rows. Pure: no I/O, no clock (``now`` is passed in).

One row per ``callID``. Each event updates the row the earlier ones made:

======  ==========================================  =====================================
type    meaning                                     row
======  ==========================================  =====================================
2       incoming call ringing at the manager        incoming, ringing; client = from
32      incoming call answered                      answered
8       outgoing call started                       outgoing, dialing; client = to
16      outgoing call answered                      answered
4       completed call (history)                    completed, or missed (incoming, 0 s)
1, 128, 256, unknown                                no row
======  ==========================================  =====================================

Rules that make it safe against the connector's delivery (PROTOCOL.md §4):

* a final row (completed / missed) is never downgraded by a ringing or answer event that
  arrives out of order; such an event only fills fields that are still empty;
* a replayed history event (``missed="1"``, same callID) merges into the existing row,
  it never makes a second one; ``Late`` is set only when the late event is the one that
  completes the call (a replay of a call we already logged live is not "late");
* ``missed="1"`` means *delivered late*, not *unanswered*: unanswered is ``duration=0``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from pz_excel.crm.schema import CallRow
from pz_excel.protocol.codec import Event, EventType

log = logging.getLogger("pz_excel.agent.calllog")

#: Contact lookup by the client's phone: ``(contact name, owner)`` or ``None``.
Lookup = Callable[[str], tuple[str, str] | None]

#: How far a status has got; a lower rank never replaces a higher one.
_RANK = {"": 0, "ringing": 1, "dialing": 1, "answered": 2, "completed": 3, "missed": 3}
FINAL = frozenset({"completed", "missed"})

#: Event types that make or change a call row.
ROW_TYPES = frozenset(
    {
        EventType.INCOMING,
        EventType.INCOMING_ANSWERED,
        EventType.OUTGOING,
        EventType.OUTGOING_ANSWERED,
        EventType.HISTORY,
    }
)


#: A call's plausible bounds. A value outside them is left out of the row (it stays, as
#: received, in the journal's event log): a 3,000-year call or one dated 9999 would
#: otherwise sit in the sheet and skew every sum on the Dashboard.
MAX_DURATION = 7 * 24 * 3600
MAX_YEAR = 2100


def local_time(ts: int | None, tz: tzinfo | None = None) -> datetime | None:
    """Unix UTC seconds → naive local datetime, as Excel wants it (it has no time zones).

    ``tz=None`` is the machine's zone. 0, negative and absurd values give ``None``: the
    connector writes 0 for "unknown", and one bad attribute must not lose the whole row.
    """
    if ts is None or ts <= 0:
        return None
    try:
        if tz is None:
            when = datetime.fromtimestamp(ts)
        else:
            when = datetime.fromtimestamp(ts, tz).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None
    return when if when.year <= MAX_YEAR else None


#: A call that ended this long ago and "starts" again under its ID is a new call: some
#: PBXs reuse IDs (a counter that wraps, a restart that starts again from 1).
REUSE_GAP = timedelta(hours=6)


def is_new_call(current: CallRow, event: Event, now: datetime | None = None) -> bool:
    """Does ``event`` belong to a new call that reuses ``current``'s ID?"""
    if current.status not in FINAL or current.start is None:
        return False
    if event.type in (EventType.INCOMING, EventType.OUTGOING):  # ringing again
        ended = current.end or current.start
        return (now or datetime.now()) - ended > REUSE_GAP
    if event.type == EventType.HISTORY:  # the record of another call entirely
        start = local_time(event.start)
        return start is not None and abs(start - current.start) > REUSE_GAP
    return False


def _fill(current: str, new: str) -> str:
    """Keep what we have, take the new value only where we had nothing."""
    return current or new


def apply(
    row: CallRow | None,
    event: Event,
    *,
    now: datetime,
    lookup: Lookup | None = None,
    tz: tzinfo | None = None,
) -> CallRow | None:
    """The call row after ``event``; ``row`` is the current one (``None``: none yet).

    Returns a new object (``row`` is not modified), or ``row`` itself when the event does
    not concern the Calls sheet (transfer requests, SMS, unknown types, no callID).
    """
    if event.type not in ROW_TYPES or not event.call_id:
        return row
    now = now.replace(microsecond=0)  # the sheet shows seconds; equal rows compare equal
    new = dataclasses.replace(row) if row is not None else CallRow(call_id=event.call_id)
    final_before = new.status in FINAL
    etype = event.type

    if etype in (EventType.INCOMING, EventType.INCOMING_ANSWERED):
        status = "ringing" if etype == EventType.INCOMING else "answered"
        new.direction = _fill(new.direction, "incoming")
        new.client_phone = _fill(new.client_phone, event.from_)
        new.extension = _fill(new.extension, event.to)
        new.line = _fill(new.line, event.line)
        new.start = new.start or now
        _raise_status(new, status)
    elif etype in (EventType.OUTGOING, EventType.OUTGOING_ANSWERED):
        status = "dialing" if etype == EventType.OUTGOING else "answered"
        new.direction = _fill(new.direction, "outgoing")
        new.client_phone = _fill(new.client_phone, event.to)
        new.extension = _fill(new.extension, event.from_)
        new.line = _fill(new.line, event.line)
        new.start = new.start or now
        _raise_status(new, status)
    else:  # history: the connector's final word on the call, so its values win
        _apply_history(new, event, now=now, tz=tz)
        if event.missed and not final_before:
            new.late = True

    if lookup is not None and new.client_phone:
        try:
            found = lookup(new.client_phone)
        except Exception:  # a contacts glitch must not lose the call row
            log.exception("contact lookup failed for %r", new.client_phone)
            found = None
        if found is not None:
            new.contact, new.owner = found[0] or "", found[1] or ""
    return new


def _raise_status(row: CallRow, status: str) -> None:
    if _RANK[status] > _RANK.get(row.status, 0):
        row.status = status


def _apply_history(row: CallRow, event: Event, *, now: datetime, tz: tzinfo | None) -> None:
    direction = event.direction
    if direction == 0:
        row.direction = "incoming"
    elif direction == 1:
        row.direction = "outgoing"
    elif not row.direction:
        row.direction = "incoming"  # no attribute and nothing seen before: the common case
    if row.direction == "incoming":
        client, ext = event.from_, event.to
    else:
        client, ext = event.to, event.from_
    row.client_phone = client or row.client_phone
    row.extension = ext or row.extension

    duration = event.duration
    if duration is not None and not 0 <= duration <= MAX_DURATION:
        duration = None
    if duration is not None:
        row.duration = duration
    start, end = local_time(event.start, tz), local_time(event.end, tz)
    if start is None and end is not None and row.duration is not None:
        start = end - timedelta(seconds=row.duration)
    row.start = start or row.start or now
    row.end = end or row.end
    row.recording = event.record or row.recording
    row.line = event.line or row.line
    # Unanswered is "incoming with 0 s of talk"; a missing duration is not evidence of it.
    unanswered = row.direction == "incoming" and duration == 0
    row.status = "missed" if unanswered else "completed"


class CallMapper:
    """``apply`` with the agent's context bound: contact lookup, time zone, clock. Rows
    hold internal keys (``incoming``, ``missed``…); each workbook backend shows them in its
    sheet's language (``schema.word``)."""

    def __init__(
        self,
        lookup: Lookup | None = None,
        tz: tzinfo | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lookup = lookup
        self.tz = tz
        self.clock = clock

    def __call__(
        self, row: CallRow | None, event: Event, *, now: datetime | None = None
    ) -> CallRow | None:
        if now is None:
            now = self.now()
        return apply(row, event, now=now, lookup=self.lookup, tz=self.tz)

    apply = __call__

    def now(self) -> datetime:
        """The ring time of a live event: local naive, in the same zone as start/end."""
        if self.clock is not None:
            return self.clock()
        if self.tz is not None:
            return datetime.now(self.tz).replace(tzinfo=None)
        return datetime.now()
