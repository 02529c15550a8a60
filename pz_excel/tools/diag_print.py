"""What the diagnostic console prints: events and the clients table, in the vendor's words."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any

from pz_excel.protocol import codec as protocol
from pz_excel.tools.diag_commands import say

# --------------------------------------------------------------------------- printing


def when_text(value: int | None) -> str:
    if value is None:
        return "?"
    try:
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(value)


def sms_text(b64: str) -> str:
    try:
        return base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return b64  # not base64 (or mangled by a lowercasing console): show it as sent


def describe_event(event: protocol.Event) -> str:
    """One line that says what happened, in the current language."""
    parts = [f"{event.name} [{event.type}]"]
    if event.from_:
        parts.append(say("from", "от") + f" {event.from_}")
    if event.to:
        parts.append(say("to", "кому") + f" {event.to}")
    if event.line:
        parts.append(say("line", "линия") + f" {event.line}")
    if event.type == 4:
        direction = {0: say("incoming", "входящий"), 1: say("outgoing", "исходящий")}
        parts.append(direction.get(event.direction or 0, str(event.direction)))
        parts.append(say("start", "начало") + f" {when_text(event.start)}")
        parts.append(say("duration", "длительность") + f" {event.duration or 0} " + say("s", "с"))
        if event.record:
            parts.append(say("record", "запись") + f" {event.record}")
    if event.type == 128:
        parts.append(say("text", "текст") + f" {sms_text(event.smstext)!r}")
    if event.type == 256:
        results = {0: say("sending", "отправляется"), 1: say("sent", "отправлено")}
        parts.append(results.get(event.result or 0, say("failed", "ошибка")) + f" ({event.result})")
    if event.system:
        parts.append(say("info", "инфо") + f" {event.system}")
    parts.append(f"callID {event.call_id}")
    shown = {"type", "callID", "from", "to", "line", "direction", "start", "end", "duration"}
    shown |= {"record", "smstext", "result", "system", "missed", "missedFinal"}
    extra = [f"{k}={v!r}" for k, v in event.attrs.items() if k not in shown]
    parts.extend(extra)
    if event.missed:
        parts.append(
            say("(missed, last)", "(пропущенное, последнее)")
            if event.missed_final
            else say("(missed)", "(пропущенное)")
        )
    return "<- " + ", ".join(parts)


def clients_table(clients: Sequence[dict[str, str] | Any]) -> str:
    """GetClients rows as the vendor lists them: index, type, ip, guid, state, extension."""
    header = ["#", say("type", "тип"), "ip", "GUID", say("state", "состояние"), say("ext", "доб.")]
    rows = [header]
    for c in clients:
        state = (
            say("connected", "подключён") if c.get("Connected") == "1"
            else say("offline", "отключён")
        )
        rows.append(
            [
                c.get("id", ""),
                c.get("type", ""),
                c.get("ip", ""),
                c.get("GUID", ""),
                state,
                c.get("PhoneNumber", ""),
            ]
        )
    if len(rows) == 1:
        return say("no clients", "клиентов нет")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


