"""Connecting: the server address, who we are (``ConnectSettings``), both login forms
(query string and headers) and reading a login back on the connector's side."""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

DEFAULT_PORT = 10150
MAX_PASSWORD_LENGTH = 32
#: ``PzProtocolVersion`` login value of the current JS SDK and the Diagnostic console.
LOGIN_PROTOCOL_VERSION = 2


class ProtocolError(ValueError):
    """Bad settings or arguments given to the codec by our own code or the user."""


class Transport(enum.Enum):
    """How XML travels in a text frame."""

    BASE64 = "base64"  # ws://
    RAW = "raw"  # wss://

    @classmethod
    def for_url(cls, url: str) -> Transport:
        return cls.RAW if url.lower().startswith("wss://") else cls.BASE64


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
    """The query-string login, as the JS SDK sends it: ``'?CID=' + btoa(password)``.

    The base64 goes in as it is, ``+ / =`` and all: TestServer 1.1.2 does not URL-decode
    ``CID`` and refuses a percent-encoded one (PROTOCOL.md §1), so encoding it failed every
    password whose length is not a multiple of 3 or whose base64 holds ``+`` or ``/``.
    The other values are URL-encoded (they never hold those characters in practice)."""
    query = urlencode(
        [
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
    return f"{settings.url}?CID={settings.cid}&{query}"


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
    cid_given: bool = True  # the query form named a CID (TestServer refuses one without)


def _decode_cid(cid: str) -> str | None:
    """The password of a ``CID`` as TestServer reads it: the base64 taken literally (a
    percent-encoded one is not base64, so its login fails, as on TestServer)."""
    try:
        return base64.b64decode(cid, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _literal_cid(path: str) -> str | None:
    """``CID`` from the raw query, not URL-decoded (TestServer 1.1.2 does not decode it)."""
    for item in urlsplit(path).query.split("&"):
        name, _, value = item.partition("=")
        if name == "CID":
            return value
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
            "cid": _literal_cid(path) or "",
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
        cid_given=form == "header" or _literal_cid(path) is not None,
    )
