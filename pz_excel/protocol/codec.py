"""The Prostie Zvonki client protocol, sans-IO: one name for the whole codec.

Pure functions and value types: connect URL and header set, request encoding, frame
decoding into typed messages, close codes. No sockets, threads or clocks live here, so the
client, the test connector and the diagnostic console all share one codec, and tests can
drive it with the vendor's captured frames (``shared/protocol/captures``).

Each job lives in a module of its own; this one gathers their names so users keep
writing ``from pz_excel.protocol import codec as protocol``:

* :mod:`~pz_excel.protocol.login`: the address, ``ConnectSettings``, both login forms;
* :mod:`~pz_excel.protocol.requests`: ``<Request>`` XML (Call, Transfer, SMS, Generate…);
* :mod:`~pz_excel.protocol.replies`: ``<Event/>`` and ``<Response>`` XML as the vendor's
  server writes them (type, callID, then the other attributes sorted by name);
* :mod:`~pz_excel.protocol.messages`: the decoded value types (``Event``, ``Response``…);
* :mod:`~pz_excel.protocol.frames`: frames for either transport, the never-raising decoder;
* :mod:`~pz_excel.protocol.closing`: close codes and refused upgrades → text, retry or not.

The request/response state of one connection (ids, matching, expiry) is
:mod:`pz_excel.protocol.session`.
"""

from __future__ import annotations

from pz_excel.protocol.closing import (
    CLOSE_CODES,
    CloseInfo,
    describe_close,
    describe_http_status,
    parse_close_payload,
)
from pz_excel.protocol.frames import (
    MAX_FRAME_BYTES,
    MAX_XML_DEPTH,
    decode_frame,
    encode_frame,
    frame_to_xml,
    parse_tree,
    parse_xml,
)
from pz_excel.protocol.login import (
    DEFAULT_PORT,
    LOGIN_PROTOCOL_VERSION,
    MAX_PASSWORD_LENGTH,
    ConnectSettings,
    Login,
    ProtocolError,
    Transport,
    connect_headers,
    connect_url,
    normalize_server_url,
    parse_login,
)
from pz_excel.protocol.messages import (
    EVENT_NAMES,
    DecodeError,
    Event,
    EventType,
    Message,
    Request,
    Response,
    Unknown,
)
from pz_excel.protocol.replies import (
    client_element,
    encode_event,
    encode_response,
    version_element,
)
from pz_excel.protocol.requests import (
    CLIENT_REQUEST_VERSION,
    DIAG_REQUEST_VERSION,
    GENERATE_FIELD_ORDER,
    call_request,
    encode_request,
    generate_request,
    get_clients_request,
    get_version_request,
    simulation_request,
    sms_request,
    transfer_request,
)

__all__ = [
    "CLIENT_REQUEST_VERSION",
    "CLOSE_CODES",
    "DEFAULT_PORT",
    "DIAG_REQUEST_VERSION",
    "EVENT_NAMES",
    "GENERATE_FIELD_ORDER",
    "LOGIN_PROTOCOL_VERSION",
    "MAX_FRAME_BYTES",
    "MAX_PASSWORD_LENGTH",
    "MAX_XML_DEPTH",
    "CloseInfo",
    "ConnectSettings",
    "DecodeError",
    "Event",
    "EventType",
    "Login",
    "Message",
    "ProtocolError",
    "Request",
    "Response",
    "Transport",
    "Unknown",
    "call_request",
    "client_element",
    "connect_headers",
    "connect_url",
    "decode_frame",
    "describe_close",
    "describe_http_status",
    "encode_event",
    "encode_frame",
    "encode_request",
    "encode_response",
    "frame_to_xml",
    "generate_request",
    "get_clients_request",
    "get_version_request",
    "normalize_server_url",
    "parse_close_payload",
    "parse_login",
    "parse_tree",
    "parse_xml",
    "simulation_request",
    "sms_request",
    "transfer_request",
    "version_element",
]
