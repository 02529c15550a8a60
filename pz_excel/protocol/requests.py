"""Client requests (``<Request>`` XML): the SDK's Call, Transfer and SMS, and the
Diagnostic console's GetClients, GetVersion, Simulation and Generate."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape

#: ``<ProtocolVersion>`` of requests: the SDK-style client sends 1, Diagnostic sends 2.
CLIENT_REQUEST_VERSION = 1
DIAG_REQUEST_VERSION = 2


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


def sms_request(
    from_ext: str, to: str, text: str, request_id: int = 0, *, call_id: str = "", **kw: int
) -> str:
    """Send an SMS from the user's phone: Generate 128 with base64 UTF-8 text. A
    ``call_id`` of ours (as the vendor's console sends) lets its type-256 statuses be
    matched to it."""
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    fields: list[tuple[str, object]] = [("Event", 128), ("From", from_ext), ("To", to),
                                        ("Smstext", b64)]
    if call_id:
        fields.append(("CallID", call_id))
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
