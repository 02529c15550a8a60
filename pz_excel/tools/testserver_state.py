"""What the test connector remembers: sessions, known clients (GetClients), call history
for replay, pending transfer requests; and small helpers of its I/O."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from pz_excel.i18n import Text, UserError
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import Event

# --------------------------------------------------------------------------- server state


class Session:
    """One live connection. Frames go through a queue and one writer task, so the order
    of frames per connection is the order they were produced (events before a Generate's
    response) and a slow client never blocks the others."""

    def __init__(self, ws: ServerConnection, login: protocol.Login, ip: str, raw: bool):
        self.ws = ws
        self.login = login
        self.ip = ip
        self.transport = protocol.Transport.RAW if raw else protocol.Transport.BASE64
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport else None
        self.tls_version: str = (ssl_object.version() or "") if ssl_object is not None else ""

    @property
    def guid(self) -> str:
        return self.login.guid

    @property
    def phone(self) -> str:
        return self.login.phone

    @property
    def mask(self) -> int:
        return self.login.broadcast_mask

    def send(self, xml: str) -> None:
        self.queue.put_nowait(protocol.encode_frame(xml, self.transport))

    def send_event(self, xml: str) -> None:
        """An event: over ``wss://`` TestServer 1.1.2 ends each one with ``\\0`` (PROTOCOL.md
        §2); over ``ws://`` the base64 carries the XML alone."""
        if self.transport is protocol.Transport.RAW:
            self.queue.put_nowait(xml + "\0")
        else:
            self.send(xml)

    async def write_loop(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None:
                return
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                return


@dataclass
class KnownClient:
    """A known client: one row of GetClients, kept (Connected="0") after it leaves."""

    index: int
    guid: str
    client_type: str
    phone: str
    ip: str
    session: Session | None = None

    def row(self) -> dict[str, str]:
        return {
            "id": str(self.index),
            "ip": self.ip,
            "type": self.client_type,
            "GUID": self.guid,
            "Connected": "1" if self.session is not None else "0",
            "PhoneNumber": self.phone,
        }


@dataclass
class HistoryEntry:
    event: Event
    target_guid: str
    delivered: set[str] = field(default_factory=set)  # GUIDs that already have it


@dataclass
class PendingTransfer:
    call_id: str
    caller: str
    line: str
    system: str
    asked: set[str]  # GUIDs with an extension that got the request: they can take it
    declined: set[str] = field(default_factory=set)
    winner: str | None = None


# --------------------------------------------------------------------------- helpers


class HeaderView(Mapping[str, str]):
    """websockets' multi-valued Headers as the case-insensitive mapping parse_login wants."""

    def __init__(self, headers: Headers):
        self._headers = headers

    def __getitem__(self, key: str) -> str:
        return self._headers[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._headers.get(key, default)

    def __iter__(self) -> Any:
        return iter(self._headers.keys())

    def __len__(self) -> int:
        return len(self._headers)


def peer_ip(ws: ServerConnection) -> str:
    try:
        return str(ws.remote_address[0])
    except (TypeError, IndexError, AttributeError):
        return ""


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def quiet_logger() -> logging.Logger:
    # websockets logs refused handshakes and client hang-ups as errors; for a test
    # connector these are normal, and our own log says what matters.
    logger = logging.getLogger("pz_excel.testserver.websockets")
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    return logger


QUIET = quiet_logger()

ADDR_IN_USE = {errno.EADDRINUSE, 10048}  # 10048: WSAEADDRINUSE on Windows


def bind_error(exc: BaseException, host: str, port: int) -> BaseException:
    if not isinstance(exc, OSError):
        return exc
    if exc.errno in ADDR_IN_USE:
        err = UserError(
            Text(
                f"port {port} on {host} is already in use: is another connector or test "
                f"server running? Choose another one with --port",
                f"порт {port} на {host} уже занят: не запущен ли другой коннектор или "
                f"тестовый сервер? Выберите другой порт: --port",
            )
        )
    else:
        err = UserError(
            Text(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                f"не удалось открыть {host}:{port}: {exc.strerror or exc}",
            )
        )
    err.__cause__ = exc
    return err


