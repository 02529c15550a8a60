"""SMS from the user's phone through the agent: the request, and its status as it comes.

The connector sends an SMS on ``Generate`` event 128 (PROTOCOL.md §3); the status comes
later as type-256 events (``callID``, ``to``, ``result``: 0 sending, 1 sent, anything else
failed). The request carries a ``<CallID>`` we choose, as the vendor's console does, so
the status events can be matched to it. ``SmsTracker`` keeps the status of the latest
SMS in memory (the journal has the requests and every event): ``pz-excel sms`` polls it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pz_excel.agent.api import ApiError
from pz_excel.crm import phones
from pz_excel.i18n import Text, excerpt
from pz_excel.protocol import codec as protocol

#: Longest SMS text accepted (characters): several SMS parts, the vendor's app joins them.
MAX_TEXT = 1000
#: How many SMS statuses are kept in memory (the oldest are forgotten).
KEEP = 500

SENDING, SENT, FAILED, UNKNOWN = "sending", "sent", "failed", "unknown"


def status_of(result: str) -> str:
    """A type-256 ``result`` as a status: 0 sending, 1 sent, anything else failed."""
    result = (result or "").strip()
    return SENDING if result == "0" else SENT if result == "1" else FAILED


def check_text(text: object) -> str:
    """The SMS text, or ``ApiError`` 400: empty, or longer than ``MAX_TEXT``."""
    text = text if isinstance(text, str) else ""
    if not text.strip():
        raise ApiError(400, Text("the SMS text is empty", "текст SMS пуст"))
    if len(text) > MAX_TEXT:
        raise ApiError(400, Text(
            f"the SMS text has {len(text)} characters; at most {MAX_TEXT} are sent",
            f"в тексте SMS {len(text)} символов; отправляется не больше {MAX_TEXT}",
        ))
    return text


def check_number(number: object, area_code: str) -> str:
    """The number to send to (``+`` and the key), or ``ApiError`` 400 saying why not
    (``phones.normalize``, with the workbook's area code)."""
    raw = number if isinstance(number, str) else ""
    shown = excerpt(raw)
    key = phones.normalize(raw, area_code=area_code)
    if key is None:
        raise ApiError(400, not_a_number(raw, area_code))
    if phones.is_internal(key):
        raise ApiError(400, Text(
            f"{shown} is an internal extension: an SMS goes to a mobile number",
            f"{shown} — внутренний добавочный: SMS отправляют на мобильный номер",
        ))
    return "+" + key


def not_a_number(raw: str, area_code: str) -> Text:
    """Why ``raw`` is not a phone number, with the area-code rule when it is the cause."""
    shown = excerpt(raw)
    if not shown:
        return Text("no phone number given", "не указан номер телефона")
    mismatch = phones.local_mismatch(raw, area_code)
    if mismatch is not None:
        digits, expected = mismatch
        return Text(
            f"'{shown}' is not a phone number: a local number of area code {area_code} has "
            f"{expected} digits, this one {digits}; give it with the area code",
            f"«{shown}» — не номер телефона: местный номер с кодом города {area_code} "
            f"состоит из {expected} цифр, а в этом {digits}; укажите его с кодом города",
        )
    return Text(
        f"'{shown}' is not a phone number (e.g. +7 343 011-22-33, 8 912 555-44-33"
        f"{', or a local number' if area_code else ''})",
        f"«{shown}» — не номер телефона (например, +7 343 011-22-33, 8 912 555-44-33"
        f"{' или местный номер' if area_code else ''})",
    )


def new_call_id() -> str:
    """A decimal call ID (as the connector's, within 63 bits) no other SMS will have:
    the second, and 20 random bits."""
    return str((int(time.time()) << 20) | secrets.randbits(20))


class SmsTracker:
    """Statuses of the SMS sent through this agent, by call ID; thread-safe.

    ``attach(subscribe)`` hooks it to the connection's events once (before the first
    request goes out, so no status can come before we listen)."""

    def __init__(
        self, keep: int = KEEP, on_done: Callable[[str, str, str], None] | None = None
    ) -> None:
        # on_done(call_id, to, status) once an SMS is sent or failed: the agent tells the
        # user (a toast), so a ribbon user who pressed Send SMS learns how it ended.
        self._on_done = on_done
        self._lock = threading.Lock()
        self._keep = keep
        self._sms: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._attached = False

    def attach(self, subscribe: Callable[[Callable[[protocol.Event], None]], Any]) -> None:
        with self._lock:
            if self._attached:
                return
            self._attached = True
        subscribe(self.on_event)

    def track(self, call_id: str, to: str) -> None:
        with self._lock:
            self._sms[call_id] = {"status": SENDING, "to": to, "at": time.time()}
            while len(self._sms) > self._keep:
                self._sms.popitem(last=False)

    def fail(self, call_id: str) -> None:
        """The connector refused the request: no status event will come."""
        with self._lock:
            if call_id in self._sms:
                self._sms[call_id]["status"] = FAILED

    def on_event(self, event: protocol.Event) -> None:
        """Type 256 of an SMS of ours: its new status (a late "sending" after "sent" or
        "failed" does not undo them)."""
        if event.type != protocol.EventType.SMS_STATUS:
            return
        with self._lock:
            sms = self._sms.get(event.call_id)
            if sms is None:
                return
            new = status_of(str(event.get("result") or ""))
            ended = new != SENDING and sms["status"] == SENDING
            if not (new == SENDING and sms["status"] != SENDING):
                sms["status"] = new
            to = sms["to"]
        if ended and self._on_done is not None:
            self._on_done(event.call_id, to, new)

    def status(self, call_id: str) -> dict[str, Any]:
        with self._lock:
            sms = self._sms.get(call_id)
            if sms is None:
                return {"call_id": call_id, "status": UNKNOWN, "to": ""}
            return {"call_id": call_id, "status": sms["status"], "to": sms["to"]}
