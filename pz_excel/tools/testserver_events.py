"""The events our test connector makes: what a Diagnostic ``Generate`` emits, and which
client each one belongs to (extension, broadcast mask)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping

from pz_excel.protocol.codec import Event


class CallIds:
    """Call IDs the server picks when a ``Generate`` gives none: ``(unix second << 18) | n``
    with ``n`` counting up for the server's life. Read off the captures: the type-1 events
    ``470667155996673`` and ``470667156520962`` of one session are ``n`` = 1 and 2 (at their
    seconds), and the next server-picked one, in a later session, ``470667182735363``, is 3."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            n = next(self._counter)
        return str((int(time.time()) << 18) | (n & 0x3FFFF))


SHARED_IDS = CallIds()  # for events built outside a server (tests, benchmarks)


def direction_text(value: str) -> str:
    """Generate's ``Direction``: 0/1 on the wire; the words of the console accepted too."""
    text = value.strip().lower()
    return {"in": "0", "incoming": "0", "out": "1", "outgoing": "1"}.get(text, text or "0")


def build_event(
    event_type: int,
    fields: Mapping[str, object | None],
    new_call_id: Callable[[], str] | None = None,
) -> tuple[Event, str]:
    """What the server emits for a ``Generate`` with these ``Data`` fields.

    Returns the event and the extra recipient GUID (``ClientGUID`` other than ``*``, else
    ``""``). Attribute sets per type are those of the captures; an absent Line (types
    1/2/32/4) and Record (4) become ``" "``, an absent CallID ``new_call_id()``.
    """
    values = {k: "" if v is None else str(v) for k, v in fields.items()}

    def val(name: str) -> str:
        return values.get(name, "")

    def blank(name: str) -> str:
        return val(name) or " "

    etype = int(event_type)
    call_id = val("CallID").strip() or (new_call_id or SHARED_IDS.next)()
    target = val("ClientGUID").strip()
    if target == "*":
        target = ""
    attrs: dict[str, str] = {}
    if etype == 1:
        attrs = {"from": val("From"), "line": blank("Line")}
    elif etype in (2, 32):
        attrs = {"from": val("From"), "line": blank("Line"), "to": val("To")}
    elif etype in (8, 16):
        attrs = {"from": val("From"), "to": val("To")}
    elif etype == 4:
        now = int(time.time())
        end = val("End").strip() or str(now)
        start = val("Start").strip() or end
        duration = val("Duration").strip()
        if not duration:
            try:
                duration = str(max(0, int(end) - int(start)))
            except ValueError:
                duration = "0"
        attrs = {
            "direction": direction_text(val("Direction")),
            "duration": duration,
            "end": end,
            "from": val("From"),
            "line": blank("Line"),
            "record": blank("Record"),
            "start": start,
            "to": val("To"),
        }
    elif etype == 128:
        attrs = {"from": val("From"), "smstext": val("Smstext"), "to": val("To")}
    elif etype == 256:
        attrs = {"result": val("Result").strip() or "0", "to": val("To")}
    else:  # a type we don't know: pass the fields through, named as attributes are
        for name, value in values.items():
            if name not in ("Event", "CallID", "ClientGUID", "System") and name:
                attrs[name[:1].lower() + name[1:]] = value
    system = val("System")
    if system.strip():
        attrs["system"] = system
    full = {"type": str(etype), "callID": call_id, **attrs}
    return Event(etype, call_id, full), target


def belongs(event: Event, phone: str, mask: int = 0) -> bool:
    """Whether a client with this extension and broadcast mask gets ``event`` (as observed).

    Own events: 2/32/256 to ``to``; 8/16/128 to ``from``; 4 to ``to`` when incoming
    (direction 0) and to ``from`` when outgoing (1). ``BroadcastEventsMask`` (PROTOCOL.md
    §1): a type whose bit is set comes for every extension; the type-1 transfer request
    comes to a client whose mask is 0 or has bit 1, so mask 4 gets no type 1 at all.
    """
    etype = event.type
    if etype == 1:
        return mask == 0 or bool(mask & 1)
    if mask & etype:
        return True
    if not phone:
        return False
    if etype in (2, 32, 256):
        return event.to == phone
    if etype in (8, 16, 128):
        return event.from_ == phone
    if etype == 4:
        return (event.from_ if event.direction == 1 else event.to) == phone
    return False
