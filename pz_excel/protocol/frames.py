"""Text frames: XML → frame payload for a transport, and any frame → its messages.

Over ``ws://`` each text frame is base64 of UTF-8 XML; over ``wss://`` it is raw XML; a
message may end with ``\\n`` (responses do) or ``\\0`` (old connectors); several elements
per frame are allowed. The decoder never raises: what it cannot read is a ``DecodeError``
that keeps the raw frame.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from pz_excel.protocol.login import Transport
from pz_excel.protocol.messages import DecodeError, Event, Message, Request, Response, Unknown

#: The largest frame the decoder takes (payload as sent: base64 over ``ws://``, raw XML over
#: ``wss://``). Generous: one message may carry thousands of events (PROTOCOL.md), a
#: 3,000-event message is about 0.6 MB. Bigger frames give a ``DecodeError`` (raw kept).
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Element nesting the decoder accepts (frame wrapper not counted). Real messages nest 3
#: deep (``Response/Data/Client``); deeper XML is refused as a ``DecodeError``, so nothing
#: downstream (serialising an unknown element) can recurse without bound.
MAX_XML_DEPTH = 64


def encode_frame(xml: str, transport: Transport = Transport.BASE64) -> str:
    """XML → text frame payload for the given transport."""
    if transport is Transport.RAW:
        return xml
    return base64.b64encode(xml.encode("utf-8")).decode("ascii")


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


def parse_tree(body: str) -> Element:
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
        root = parse_tree(body)
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
