"""The Prostie Zvonki client protocol, sans-IO.

Pure functions and value types: connect URL and header set, request encoding, frame
decoding into typed messages, close codes. No sockets, threads or clocks live here, so the
client, the test connector and the diagnostic console all share one codec, and tests can
drive it with the vendor's captured frames (``shared/protocol/captures``).

Wire facts (PROTOCOL.md, checked against the captures):
* over ``ws://`` each text frame is base64 of UTF-8 XML; over ``wss://`` it is raw XML;
* a message may end with ``\\n`` (responses do) or ``\\0`` (old connectors);
* events carry attributes only, ``" "`` means empty, several per message are allowed;
* the vendor's server writes ``type``, ``callID``, then the other attributes sorted by name.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from xml.etree.ElementTree import Element, TreeBuilder
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from pz_excel.i18n import Text

DEFAULT_PORT = 10150
MAX_PASSWORD_LENGTH = 32
#: The largest frame the decoder takes (payload as sent: base64 over ``ws://``, raw XML over
#: ``wss://``). Generous: one message may carry thousands of events (PROTOCOL.md), a
#: 3,000-event message is about 0.6 MB. Bigger frames give a ``DecodeError`` (raw kept).
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Element nesting the decoder accepts (frame wrapper not counted). Real messages nest 3
#: deep (``Response/Data/Client``); deeper XML is refused as a ``DecodeError``, so nothing
#: downstream (serialising an unknown element) can recurse without bound.
MAX_XML_DEPTH = 64
#: ``PzProtocolVersion`` login value of the current JS SDK and the Diagnostic console.
LOGIN_PROTOCOL_VERSION = 2
#: ``<ProtocolVersion>`` of requests: the SDK-style client sends 1, Diagnostic sends 2.
CLIENT_REQUEST_VERSION = 1
DIAG_REQUEST_VERSION = 2


class ProtocolError(ValueError):
    """Bad settings or arguments given to the codec by our own code or the user."""


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


class Transport(enum.Enum):
    """How XML travels in a text frame."""

    BASE64 = "base64"  # ws://
    RAW = "raw"  # wss://

    @classmethod
    def for_url(cls, url: str) -> Transport:
        return cls.RAW if url.lower().startswith("wss://") else cls.BASE64


# --------------------------------------------------------------------------- connecting


def normalize_server_url(server: str) -> str:
    """``host`` → ``ws://host:10150/``; keeps an explicit scheme, port and path."""
    text = (server or "").strip()
    if not text:
        raise ProtocolError("server address is empty")
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ProtocolError(f"server address must start with ws:// or wss://, not {scheme}://")
    if not parts.hostname:
        raise ProtocolError(f"server address has no host: {server!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ProtocolError(f"bad port in server address {server!r}") from exc
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return urlunsplit((scheme, f"{host}:{port}", parts.path or "/", "", ""))


@dataclass(frozen=True)
class ConnectSettings:
    """Who we are to the connector. One object yields both login forms."""

    server: str
    phone: str
    password: str = ""
    client_type: str = "excel"
    guid: str = ""  # empty: the extension, as the SDKs do
    broadcast_mask: int = 0
    broadcast_group: str = ""
    protocol_version: int = LOGIN_PROTOCOL_VERSION
    build_time: str = ""  # only the native (header) form sends it

    def __post_init__(self) -> None:
        if len(self.password) > MAX_PASSWORD_LENGTH:
            raise ProtocolError(
                f"password is longer than {MAX_PASSWORD_LENGTH} characters ({len(self.password)})"
            )

    @property
    def client_guid(self) -> str:
        return self.guid or self.phone

    @property
    def url(self) -> str:
        return normalize_server_url(self.server)

    @property
    def transport(self) -> Transport:
        return Transport.for_url(self.url)

    @property
    def cid(self) -> str:
        return base64.b64encode(self.password.encode("utf-8")).decode("ascii")


def connect_url(settings: ConnectSettings) -> str:
    """The query-string login (JS SDK form); values URL-encoded (``+ / =`` of base64)."""
    query = urlencode(
        [
            ("CID", settings.cid),
            ("CT", settings.client_type),
            ("GID", settings.client_guid),
            ("PhoneNumber", settings.phone),
            ("BroadcastEventsMask", str(settings.broadcast_mask)),
            ("BroadcastGroup", settings.broadcast_group),
            ("PzProtocolVersion", str(settings.protocol_version)),
        ],
        quote_via=quote,
        safe="",
    )
    return f"{settings.url}?{query}"


def connect_headers(settings: ConnectSettings) -> dict[str, str]:
    """The header login (native form, as the vendor's Diagnostic console sends it)."""
    headers = {
        "BroadcastEventsMask": str(settings.broadcast_mask),
        "BroadcastGroup": settings.broadcast_group,
        "BuildTime": settings.build_time,
        "ClientGUID": settings.client_guid,
        "ClientID": settings.cid,
        "ClientType": settings.client_type,
        "PhoneNumber": settings.phone,
        "PzProtocolVersion": str(settings.protocol_version),
    }
    if not settings.build_time:
        del headers["BuildTime"]
    return headers


@dataclass(frozen=True)
class Login:
    """A login as the connector sees it, from either form."""

    guid: str
    password: str
    client_type: str
    phone: str
    broadcast_mask: int
    broadcast_group: str
    protocol_version: str
    form: str  # "query" or "header"


def _decode_cid(cid: str) -> str | None:
    # A client that forgot to URL-encode turns base64 '+' into a space: undo it.
    for candidate in (cid, cid.replace(" ", "+")):
        try:
            return base64.b64decode(candidate, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
    return None


def parse_login(path: str, headers: Mapping[str, str]) -> Login | None:
    """Read a login from the upgrade request: query form first, else header form.

    ``headers`` lookups should be case-insensitive (as HTTP headers are). Returns ``None``
    when neither form names the client (no GID/ClientGUID and no extension).
    """
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    if "GID" in query or "CID" in query or "PhoneNumber" in query:
        values = {
            "guid": query.get("GID", ""),
            "cid": query.get("CID", ""),
            "type": query.get("CT", ""),
            "phone": query.get("PhoneNumber", ""),
            "mask": query.get("BroadcastEventsMask", "0"),
            "group": query.get("BroadcastGroup", ""),
            "pv": query.get("PzProtocolVersion", ""),
        }
        form = "query"
    else:

        def h(name: str, default: str = "") -> str:
            value = headers.get(name)
            return default if value is None else str(value).strip()

        if h("ClientGUID") == "" and h("PhoneNumber") == "" and headers.get("ClientID") is None:
            return None
        values = {
            "guid": h("ClientGUID"),
            "cid": h("ClientID"),
            "type": h("ClientType"),
            "phone": h("PhoneNumber"),
            "mask": h("BroadcastEventsMask", "0"),
            "group": h("BroadcastGroup"),
            "pv": h("PzProtocolVersion"),
        }
        form = "header"
    password = _decode_cid(values["cid"])
    if password is None:
        password = "\x00invalid"  # never equals a real password: the login fails cleanly
    try:
        mask = int(values["mask"] or 0)
    except ValueError:
        mask = 0
    guid = values["guid"] or values["phone"]
    if not guid:
        return None
    return Login(
        guid=guid,
        password=password,
        client_type=values["type"],
        phone=values["phone"],
        broadcast_mask=mask,
        broadcast_group=values["group"],
        protocol_version=values["pv"],
        form=form,
    )


# --------------------------------------------------------------------------- requests


def _field(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def encode_request(
    method: str,
    request_id: int | str,
    data: Iterable[tuple[str, object]] | None = None,
    *,
    protocol_version: int = CLIENT_REQUEST_VERSION,
    empty_data: str = "<Data/>",
) -> str:
    """``<Request>`` XML. ``data`` is ordered (name, value) pairs; values XML-escaped.

    With no fields the vendor's tools write ``<Data/>``; ``empty_data`` lets a caller
    choose ``<Data></Data>`` (the form hand-written clients use).
    """
    fields = list(data or ())
    body = "<Data>" + "".join(_field(k, v) for k, v in fields) + "</Data>" if fields else empty_data
    return (
        f"<Request><ProtocolVersion>{protocol_version}</ProtocolVersion>"
        f"<Method>{escape(method)}</Method><RequestID>{escape(str(request_id))}</RequestID>"
        f"{body}</Request>"
    )


def call_request(from_ext: str, to: str, request_id: int = 0, **kw: int) -> str:
    """Originate a call from our extension to ``to`` (passed exactly as typed)."""
    return encode_request("Call", request_id, [("From", from_ext), ("To", to)], **kw)


def transfer_request(call_id: str, to: str, request_id: int = 0, **kw: int) -> str:
    """Answer a type-1 transfer request; ``to=""`` declines (``<To></To>``)."""
    return encode_request("Transfer", request_id, [("CallID", call_id), ("To", to)], **kw)


def sms_request(from_ext: str, to: str, text: str, request_id: int = 0, **kw: int) -> str:
    """Send an SMS from the user's phone: Generate 128 with base64 UTF-8 text."""
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    fields = [("Event", 128), ("From", from_ext), ("To", to), ("Smstext", b64)]
    return encode_request("Generate", request_id, fields, **kw)


def get_clients_request(request_id: int = 0, **kw: int) -> str:
    return encode_request("GetClients", request_id, None, **kw)


def get_version_request(request_id: int = 0, **kw: int) -> str:
    return encode_request("GetVersion", request_id, None, **kw)


def simulation_request(on: bool, request_id: int = 0, **kw: int) -> str:
    return encode_request("Simulation", request_id, [("Mode", "on" if on else "off")], **kw)


# Element order of Diagnostic 1.1.2's Generate requests, per event type (from the capture).
GENERATE_FIELD_ORDER: dict[int, tuple[str, ...]] = {
    1: ("From", "Line", "ClientGUID", "System"),
    2: ("From", "To", "CallID", "Line", "ClientGUID", "System"),
    32: ("From", "To", "CallID", "Line", "ClientGUID", "System"),
    8: ("From", "To", "CallID", "ClientGUID", "System"),
    16: ("From", "To", "CallID", "ClientGUID", "System"),
    4: (
        "From",
        "To",
        "Start",
        "End",
        "Duration",
        "Record",
        "Direction",
        "Line",
        "ClientGUID",
        "CallID",
        "System",
    ),
    128: ("From", "To", "Smstext", "ClientGUID", "CallID", "System"),
    256: ("To", "Result", "ClientGUID", "CallID", "System"),
}


def generate_request(
    event_type: int,
    fields: Mapping[str, object | None],
    request_id: int = 0,
    **kw: int,
) -> str:
    """A Diagnostic-style ``Generate``: fields in the vendor's order, ``None`` omitted.

    Fields the vendor's order does not know (newer event types) follow in given order.
    """
    unknown = [k for k in fields if k not in ("Event",)]
    order = list(GENERATE_FIELD_ORDER.get(int(event_type), ()))
    order += [k for k in unknown if k not in order]
    pairs: list[tuple[str, object]] = [("Event", int(event_type))]
    pairs += [(k, fields[k]) for k in order if fields.get(k) is not None]
    return encode_request("Generate", request_id, pairs, **kw)


# --------------------------------------------------------------------------- server side


def encode_event(event_type: int, call_id: str, attrs: Mapping[str, object] | None = None) -> str:
    """An ``<Event/>`` the way TestServer 1.1.2 writes it: type, callID, then sorted names."""
    parts = [f"type={quoteattr(str(int(event_type)))}", f"callID={quoteattr(str(call_id))}"]
    for name in sorted(attrs or {}):
        value = (attrs or {})[name]
        if value is None or name in ("type", "callID"):
            continue
        parts.append(f"{name}={quoteattr(str(value))}")
    return "<Event " + " ".join(parts) + "/>"


def encode_response(
    code: int, request_id: int | str, details: str = "", data_xml: str | None = None
) -> str:
    """A ``<Response>``; the vendor ends it with a newline. ``data_xml`` is inner XML."""
    data = f"<Data>{data_xml}</Data>" if data_xml else "<Data/>"
    return (
        f"<Response><Code>{int(code)}</Code><RequestID>{escape(str(request_id))}</RequestID>"
        f"<Details>{escape(details)}</Details>{data}</Response>\n"
    )


def client_element(
    index: int, ip: str, client_type: str, guid: str, connected: bool, phone: str
) -> str:
    """One ``<Client/>`` of a GetClients answer (attribute order as the vendor's)."""
    return (
        f"<Client id={quoteattr(str(index))} ip={quoteattr(ip)} type={quoteattr(client_type)} "
        f"GUID={quoteattr(guid)} Connected={quoteattr('1' if connected else '0')} "
        f"PhoneNumber={quoteattr(phone)}/>"
    )


def version_element(version: str) -> str:
    return f"<Version>{escape(version)}</Version>"


# --------------------------------------------------------------------------- frames


def encode_frame(xml: str, transport: Transport = Transport.BASE64) -> str:
    """XML → text frame payload for the given transport."""
    if transport is Transport.RAW:
        return xml
    return base64.b64encode(xml.encode("utf-8")).decode("ascii")


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

_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.S)
_EXCERPT = 80


def _excerpt(frame: str | bytes) -> str:
    # Cut before decoding: a frame may be megabytes long.
    head = frame[: _EXCERPT + 1] if isinstance(frame, str) else frame[: 4 * _EXCERPT + 4]
    text = head if isinstance(head, str) else bytes(head).decode("utf-8", "replace")
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _too_big(size: int, frame: str | bytes) -> DecodeError:
    return DecodeError(f"frame larger than {MAX_FRAME_BYTES} bytes ({size})", _excerpt(frame))


def frame_to_xml(frame: str | bytes) -> str | DecodeError:
    """Frame payload → XML text. Raw XML (starts with ``<``) is taken as is on any
    transport, since base64 never starts with ``<``; anything else must be base64."""
    if len(frame) > MAX_FRAME_BYTES:  # characters <= bytes: no need to encode to know
        return _too_big(len(frame), frame)
    raw = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else bytes(frame)
    if len(raw) > MAX_FRAME_BYTES:
        return _too_big(len(raw), frame)
    body = raw.strip(b"\r\n\t \x00")
    if not body:
        return DecodeError("empty frame")
    if not body.startswith(b"<"):
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return DecodeError("frame is neither base64 nor XML", _excerpt(frame))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return DecodeError("frame is not UTF-8 text", _excerpt(frame))
    text = text.strip("\n\r\x00\t \ufeff")
    if not text:
        return DecodeError("frame decodes to nothing")
    return text


def _children_text(elem: Element) -> dict[str, str]:
    return {child.tag: child.text or "" for child in elem}


def _inner_xml(elem: Element) -> str:
    from xml.etree.ElementTree import tostring

    return "".join(tostring(child, encoding="unicode") for child in elem)


def _message(elem: Element) -> list[Message]:
    tag = elem.tag
    if tag == "Event":
        return [_event(elem)]
    if tag == "Response":
        return [_response(elem)]
    if tag == "Request":
        return [_request(elem)]
    nested = [_event(e) for e in elem.iter("Event") if e is not elem]
    if nested:
        return nested
    from xml.etree.ElementTree import tostring

    return [Unknown(tag, dict(elem.attrib), tostring(elem, encoding="unicode"))]


def _event(elem: Element) -> Event | DecodeError:
    attrs = dict(elem.attrib)
    try:
        etype = int(attrs.get("type", "").strip())
    except ValueError:
        return DecodeError(f"event without a numeric type: {attrs.get('type')!r}")
    # callID stays a string: it is a 64-bit number and an id, never arithmetic.
    return Event(etype, (attrs.get("callID") or "").strip(), attrs)


def _response(elem: Element) -> Response | DecodeError:
    kids = _children_text(elem)
    try:
        code = int((kids.get("Code") or "").strip())
    except ValueError:
        return DecodeError(f"response without a numeric code: {kids.get('Code')!r}")
    data_elem = elem.find("Data")
    clients: tuple[Mapping[str, str], ...] = ()
    version = ""
    data = ""
    if data_elem is not None:
        data = _inner_xml(data_elem) or (data_elem.text or "")
        clients = tuple(dict(c.attrib) for c in data_elem.iter("Client"))
        ver = data_elem.find("Version")
        version = (ver.text or "") if ver is not None else ""
    return Response(
        code=code,
        request_id=(kids.get("RequestID") or "").strip(),
        details=kids.get("Details") or "",
        data=data,
        clients=clients,
        version=version,
    )


def _request(elem: Element) -> Request:
    kids = _children_text(elem)
    data_elem = elem.find("Data")
    fields = _children_text(data_elem) if data_elem is not None else {}
    return Request(
        method=(kids.get("Method") or "").strip(),
        request_id=(kids.get("RequestID") or "").strip(),
        protocol_version=(kids.get("ProtocolVersion") or "").strip(),
        fields=fields,
    )


class _TooDeep(Exception):
    pass


class _DepthLimitedBuilder(TreeBuilder):
    """ElementTree's builder that refuses nesting deeper than ``limit`` as it parses."""

    def __init__(self, limit: int):
        super().__init__()
        self._limit = limit
        self._depth = 0

    def start(self, tag: Any, attrs: Any) -> Element:
        self._depth += 1
        if self._depth > self._limit:
            raise _TooDeep
        return super().start(tag, attrs)

    def end(self, tag: Any) -> Element:
        self._depth -= 1
        return super().end(tag)


def _parse_tree(body: str) -> Element:
    """``body`` inside one wrapper element, parsed by expat in one pass (linear time):
    no DTD, no entity declarations, no external entities (defusedxml), bounded depth."""
    parser = DefusedXMLParser(
        target=_DepthLimitedBuilder(MAX_XML_DEPTH + 1),  # +1: the wrapper
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    parser.feed("<pz-frame>")
    parser.feed(body)
    parser.feed("</pz-frame>")
    return parser.close()


def parse_xml(text: str) -> list[Message]:
    """XML text (one or several top-level elements) → messages. Never raises."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return [DecodeError("XML with a DTD or entities is refused", _excerpt(text))]
    body = _XML_DECL.sub("", text, count=1)
    try:
        root = _parse_tree(body)
    except _TooDeep:
        return [DecodeError(f"XML nested deeper than {MAX_XML_DEPTH} levels", _excerpt(text))]
    except (ParseError, DefusedXmlException, ValueError) as exc:
        return [DecodeError(f"frame is not well-formed XML: {exc}", _excerpt(text))]
    except RecursionError:
        return [DecodeError("XML nested too deeply", _excerpt(text))]
    messages: list[Message] = []
    for child in root:
        messages.extend(_message(child))
    if not messages:
        return [DecodeError("frame holds no XML element", _excerpt(text))]
    return messages


def decode_frame(frame: str | bytes) -> list[Message]:
    """One text frame (either transport) → its messages, or one ``DecodeError``.

    Never raises: a client must survive any garbage a server sends (PROTOCOL.md §2). Every
    ``DecodeError`` returned carries the whole frame in ``raw`` (one shared string), so a
    frame that could not be decoded whole can still be kept by the caller.
    """
    try:
        xml = frame_to_xml(frame)
        messages = [xml] if isinstance(xml, DecodeError) else parse_xml(xml)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        messages = [DecodeError(f"internal decoder error: {type(exc).__name__}: {exc}")]
    if any(isinstance(m, DecodeError) for m in messages):
        raw = _raw_text(frame)
        messages = [
            dataclasses.replace(m, raw=raw) if isinstance(m, DecodeError) else m for m in messages
        ]
    return messages


def _raw_text(frame: str | bytes) -> str:
    if isinstance(frame, str):
        return frame
    try:
        return bytes(frame).decode("utf-8", "replace")
    except (TypeError, ValueError):  # not a frame at all: "never raises" still holds
        return ""


# --------------------------------------------------------------------------- closing


@dataclass(frozen=True)
class CloseInfo:
    """What a close (or a refused upgrade) means to the user, and whether to retry."""

    code: int
    text: Text
    retry: bool
    http: bool = False


CLOSE_CODES: dict[int, Text] = {
    4001: Text("licence key check failed", "ошибка проверки лицензионного ключа"),
    4002: Text("licence key is invalid", "лицензионный ключ недействителен"),
    4003: Text("licence key has expired", "срок действия лицензионного ключа истёк"),
    4004: Text(
        "licence key is not valid for this PBX connector type",
        "лицензионный ключ не подходит для этого типа коннектора АТС",
    ),
    4005: Text(
        "licence key is not valid for this connector version",
        "лицензионный ключ не подходит для этой версии коннектора",
    ),
    4006: Text(
        "no licence for this client type (CT)",
        "нет лицензии для этого типа клиента (CT)",
    ),
    4007: Text("maximum number of users exceeded", "превышено максимальное число пользователей"),
    4008: Text("authorisation error: wrong password", "ошибка авторизации: неверный пароль"),
    4009: Text(
        "disconnected: the same user (GUID) connected elsewhere",
        "отключено: тот же пользователь (GUID) подключился в другом месте",
    ),
}

_NETWORK_CLOSES: dict[int, Text] = {
    1000: Text("connection closed by the connector", "коннектор закрыл соединение"),
    1001: Text("connector is going away (restart?)", "коннектор завершает работу (перезапуск?)"),
    1006: Text("connection lost", "соединение потеряно"),
    1011: Text("connector internal error", "внутренняя ошибка коннектора"),
    1012: Text("connector is restarting", "коннектор перезапускается"),
    1013: Text("connector is overloaded, try later", "коннектор перегружен, повторим позже"),
}


def describe_close(code: int | None, reason: str = "") -> CloseInfo:
    """Close code → user text (RU/EN) and retry-or-not.

    4001–4009 (and any other 4xxx: an application refusal we don't know) need the user:
    no automatic reconnect — after 4009 it would fight the other instance forever.
    """
    code = 1006 if code is None else int(code)
    suffix = f" ({reason})" if reason and code not in CLOSE_CODES else ""
    if code in CLOSE_CODES:
        return CloseInfo(code, CLOSE_CODES[code], retry=False)
    if 4000 <= code <= 4999:
        return CloseInfo(
            code,
            Text(
                f"connector refused the connection, code {code}{suffix}",
                f"коннектор отказал в подключении, код {code}{suffix}",
            ),
            retry=False,
        )
    base = _NETWORK_CLOSES.get(
        code, Text(f"connection closed, code {code}", f"соединение закрыто, код {code}")
    )
    return CloseInfo(code, Text(base.en + suffix, base.ru + suffix), retry=True)


def describe_http_status(status: int) -> CloseInfo:
    """A refused upgrade. 401/403: wrong password (TestServer 1.1.2 answers 403)."""
    if status in (401, 403):
        return CloseInfo(
            status,
            Text(
                f"wrong password or access denied (HTTP {status})",
                f"неверный пароль или доступ запрещён (HTTP {status})",
            ),
            retry=False,
            http=True,
        )
    if status == 404:
        return CloseInfo(
            status,
            Text(
                "no connector at this address (HTTP 404)",
                "по этому адресу нет коннектора (HTTP 404)",
            ),
            False,
            True,
        )
    return CloseInfo(
        status,
        Text(
            f"connector refused the upgrade (HTTP {status})",
            f"коннектор отклонил подключение (HTTP {status})",
        ),
        retry=True,
        http=True,
    )
