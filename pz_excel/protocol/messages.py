"""The decoded messages: events, responses, requests, unknown elements and decode
errors, as value types."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from pz_excel.i18n import Text
from pz_excel.protocol.replies import encode_event


class EventType(enum.IntEnum):
    TRANSFER_REQUEST = 1
    INCOMING = 2
    HISTORY = 4
    OUTGOING = 8
    OUTGOING_ANSWERED = 16
    INCOMING_ANSWERED = 32
    SMS = 128
    SMS_STATUS = 256


EVENT_NAMES: dict[int, Text] = {
    1: Text("transfer request", "запрос перевода"),
    2: Text("incoming call ringing", "входящий звонок"),
    4: Text("completed call", "завершённый звонок"),
    8: Text("outgoing call", "исходящий звонок"),
    16: Text("outgoing call answered", "исходящий: ответили"),
    32: Text("incoming call answered", "входящий: ответили"),
    128: Text("SMS", "SMS"),
    256: Text("SMS status", "статус SMS"),
}


def _blank(value: str | None) -> str:
    """The connector writes ``" "`` for empty; fold whitespace-only to ``""``."""
    if value is None:
        return ""
    return "" if value.strip() == "" else value


def _int_or_none(value: str | None) -> int | None:
    value = _blank(value).strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Event:
    """A connector event. ``attrs`` keeps every attribute as received, unknown ones too."""

    type: int
    call_id: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """Attribute value with ``" "`` folded to ``""``."""
        return _blank(self.attrs.get(name))

    @property
    def known(self) -> bool:
        return self.type in EventType._value2member_map_

    @property
    def name(self) -> Text:
        return EVENT_NAMES.get(
            self.type, Text(f"event type {self.type}", f"событие типа {self.type}")
        )

    from_ = property(lambda self: self.get("from"))
    to = property(lambda self: self.get("to"))
    line = property(lambda self: self.get("line"))
    record = property(lambda self: self.get("record"))
    system = property(lambda self: self.get("system"))
    smstext = property(lambda self: self.get("smstext"))
    start = property(lambda self: _int_or_none(self.attrs.get("start")))
    end = property(lambda self: _int_or_none(self.attrs.get("end")))
    duration = property(lambda self: _int_or_none(self.attrs.get("duration")))
    direction = property(lambda self: _int_or_none(self.attrs.get("direction")))
    result = property(lambda self: _int_or_none(self.attrs.get("result")))
    missed = property(lambda self: self.get("missed") == "1")
    missed_final = property(lambda self: self.get("missedFinal") == "1")

    def to_xml(self) -> str:
        rest = {k: v for k, v in self.attrs.items() if k not in ("type", "callID")}
        return encode_event(self.type, self.call_id, rest)


@dataclass(frozen=True)
class Response:
    """A connector response. ``data`` keeps the inner XML of ``<Data>``."""

    code: int
    request_id: str
    details: str = ""
    data: str = ""
    clients: tuple[Mapping[str, str], ...] = ()
    version: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Request:
    """A client request, as the test connector decodes it."""

    method: str
    request_id: str
    protocol_version: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True)
class Unknown:
    """A well-formed element we don't know (newer connectors): kept, not dropped."""

    tag: str
    attrs: Mapping[str, str]
    xml: str


@dataclass(frozen=True)
class DecodeError:
    """A frame that could not be decoded (wholly or in part), and why. The decoder never
    raises.

    ``excerpt`` is a short start of the frame, for log lines; ``raw`` is the whole frame as
    received (bytes decoded as UTF-8 with replacement), for a journal: what was not
    understood is kept, not lost. ``raw`` is left out of ``repr`` (it may be megabytes).
    """

    reason: str
    excerpt: str = ""
    raw: str = field(default="", repr=False)


Message = Event | Response | Request | Unknown | DecodeError
