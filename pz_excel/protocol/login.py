"""Connecting: the server address, who we are (``ConnectSettings``), both login forms
(query string and headers) and reading a login back on the connector's side."""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pz_excel.i18n import Text

DEFAULT_PORT = 10150
MAX_PASSWORD_LENGTH = 32
#: ``PzProtocolVersion`` login value of the current JS SDK and the Diagnostic console.
LOGIN_PROTOCOL_VERSION = 2


class ProtocolError(ValueError):
    """Bad settings or arguments given to the codec by our own code or the user.

    ``text``: the message in both languages when it reaches a user (the address rule
    below); without it, the English message serves for both. ``str()`` is in the user's
    language, so callers that wrap it in their own ``Text`` read naturally either way."""

    def __init__(self, message: str, text: Text | None = None):
        super().__init__(message)
        self.text = text or Text(message, message)

    def __str__(self) -> str:
        return str(self.text)


class Transport(enum.Enum):
    """How XML travels in a text frame."""

    BASE64 = "base64"  # ws://
    RAW = "raw"  # wss://

    @classmethod
    def for_url(cls, url: str) -> Transport:
        return cls.RAW if url.lower().startswith("wss://") else cls.BASE64


#: How the address is written; every message about a bad one ends with it.
ADDRESS_EXAMPLE = Text(
    f"write it as ws://host:{DEFAULT_PORT} (wss://host:port for TLS)",
    f"пишите так: ws://хост:{DEFAULT_PORT} (wss://хост:порт для TLS)",
)

# ``ws//x``, ``wss//x``, ``ws:/x``, ``ws:x``: a scheme with its "://" mistyped (not
# ``ws:10150``, which is the host "ws" and a port). Unchecked, ``ws//127.0.0.1:22417``
# became ``ws://ws:10150//127.0.0.1:22417`` and the agent retried a host named "ws".
_SCHEME_TYPO = re.compile(r"(?i)^wss?(?::/{0,3}|//+)(?!\d+(?:/|$))")
_LABEL = re.compile(r"(?i)^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")


def _bad_address(server: str, en: str, ru: str) -> ProtocolError:
    text = Text(
        f"connector address {server!r} is not valid: {en}; {ADDRESS_EXAMPLE.en}",
        f"адрес коннектора «{server}» указан неверно: {ru}; {ADDRESS_EXAMPLE.ru}",
    )
    return ProtocolError(text.en, text)


def _checked_host(server: str, host: str) -> str:
    """The host as the URL carries it (lowercase; IPv6 in brackets; IDN as punycode)."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return host.lower()
        except ValueError:
            raise _bad_address(
                server, f"{host} is not an IPv6 address", f"{host} — не адрес IPv6"
            ) from None
    if _DOTTED_NUMBERS.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _bad_address(
                server, f"{host} is not an IPv4 address", f"{host} — не адрес IPv4"
            ) from None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.removesuffix(".").split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_LABEL.match(x) for x in labels):
        raise _bad_address(
            server,
            f"{host!r} is not a host name or IP address",
            f"«{host}» — не имя хоста и не IP-адрес",
        )
    return ascii_host


def normalize_server_url(server: str) -> str:
    """``host`` → ``ws://host:10150/``; keeps an explicit scheme, port and path.

    The one rule for a connector address: everything that takes one (``run``, ``init``,
    ``diag``, the Settings sheet and dialog, the keyring key) goes through here, so a bad
    one is refused before anything connects, with what is wrong and how to write it."""
    text = (server or "").strip()
    if not text:
        raise _bad_address(server or "", "it is empty", "он пуст")
    if any(ch.isspace() for ch in text):
        raise _bad_address(server, "it contains spaces", "в нём есть пробелы")
    if "://" not in text:
        if _SCHEME_TYPO.match(text):
            raise _bad_address(
                server, "the scheme must be ws:// or wss://", "схема должна быть ws:// или wss://"
            )
        text = "ws://" + text
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme not in ("ws", "wss"):
        raise _bad_address(
            server,
            f"it must start with ws:// or wss://, not {scheme}://",
            f"он должен начинаться с ws:// или wss://, а не с {scheme}://",
        )
    netloc, slash, path = rest.partition("/")
    path = slash + path
    if path.startswith("//"):
        raise _bad_address(
            server, "the path after the port starts with //", "путь после порта начинается с //"
        )
    netloc = re.split(r"[?#]", netloc, maxsplit=1)[0]  # a query or fragment is dropped
    if "@" in netloc:
        raise _bad_address(
            server,
            "a user name or password must not be part of it (the password is kept apart: "
            "pz-excel password set)",
            "имя пользователя или пароль в адрес не пишут (пароль хранится отдельно: "
            "pz-excel password set)",
        )
    if netloc.startswith("["):
        host, bracket, port_text = netloc.partition("]")
        host += bracket
        if not bracket or (port_text and not port_text.startswith(":")):
            raise _bad_address(
                server,
                "an IPv6 address must be written [addr]:port",
                "адрес IPv6 пишут так: [адрес]:порт",
            )
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        if netloc.count(":") > 1:
            raise _bad_address(
                server,
                "an IPv6 address must be in brackets: [addr]:port",
                "адрес IPv6 берут в квадратные скобки: [адрес]:порт",
            )
        host, colon, port_text = netloc.partition(":")
        has_port = bool(colon)
    if not host:
        raise _bad_address(server, "it has no host", "в нём нет хоста")
    host = _checked_host(server, host)
    port = DEFAULT_PORT
    if has_port:
        if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
            raise _bad_address(
                server,
                f"the port {port_text!r} is not a number from 1 to 65535",
                f"порт «{port_text}» — не число от 1 до 65535",
            )
        port = int(port_text)
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    return urlunsplit((scheme, f"{host}:{port}", path or "/", "", ""))


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
                f"password is longer than {MAX_PASSWORD_LENGTH} characters ({len(self.password)})",
                Text(
                    f"password is longer than {MAX_PASSWORD_LENGTH} characters "
                    f"({len(self.password)})",
                    f"пароль длиннее {MAX_PASSWORD_LENGTH} символов ({len(self.password)})",
                ),
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
