"""Opening a connection: TCP (stoppable), TLS with the pin checked before the login is
sent, then the WebSocket upgrade that carries the login."""

from __future__ import annotations

import errno
import hmac
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import websocket

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.framing import MAX_MESSAGE_BYTES, limit_frame_size
from pz_excel.connector.lifetime import Lifetime
from pz_excel.connector.trust import TlsOptions
from pz_excel.protocol.login import DEFAULT_PORT, ConnectSettings, connect_headers, connect_url

_CONNECT_PENDING = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, 10035}  # 10035: Win


class Stopped(Exception):
    """stop() was called while connecting."""


class PinMismatch(Exception):
    """The server certificate is not the pinned one (the password was not sent)."""

    def __init__(self, expected: str, got: str):
        super().__init__(f"expected {expected}, got {got}")
        self.expected, self.got = expected, got


class TlsSetupError(Exception):
    """The TLS context could not be made (a bad CA file, say)."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exc = exc


class Dialer:
    """Opens WebSockets to one connector. ``lock`` guards ``Lifetime.live_sock`` (the
    socket ``stop()`` may cut); ``on_reached`` runs once TCP is accepted."""

    def __init__(
        self,
        settings: ConnectSettings,
        tls: TlsOptions,
        *,
        header_login: bool,
        connect_timeout: float,
        lock: threading.Lock,
        on_reached: Callable[[], None],
    ):
        self._settings = settings
        self._tls = tls
        self._header_login = header_login
        self._connect_timeout = connect_timeout
        self._lock = lock
        self._on_reached = on_reached

    def open(self, run: Lifetime) -> websocket.WebSocket:
        parts = urlsplit(self._settings.url)
        host, port = parts.hostname or "", parts.port or DEFAULT_PORT
        sock = self._tcp_connect(run, host, port)
        self._on_reached()  # counts toward the attempts-per-minute cap
        with self._lock:
            run.live_sock = sock
        if run.stopping.is_set():
            sock.close()
            raise Stopped
        try:
            if parts.scheme == "wss":
                try:
                    ctx = self._tls.ssl_context()
                except (OSError, ssl.SSLError, ValueError) as exc:
                    raise TlsSetupError(exc) from exc
                sock = ctx.wrap_socket(sock, server_hostname=host)
                with self._lock:
                    run.live_sock = sock
                self._check_pin(sock)  # before the upgrade: it carries the password
            if run.stopping.is_set():
                raise Stopped
            ws = websocket.WebSocket(skip_utf8_validation=True)  # bad UTF-8 = a DecodeError
            if self._header_login:
                target, headers = self._settings.url, connect_headers(self._settings)
            else:
                target, headers = connect_url(self._settings), None
            try:
                # redirect_limit=0: a redirect would open a socket behind our pin check.
                ws.connect(target, socket=sock, header=headers, redirect_limit=0)
                limit_frame_size(ws, MAX_MESSAGE_BYTES)
            except websocket.WebSocketException:
                resp = ws.handshake_response  # set only when the answer was a redirect
                if resp is not None and resp.status != 101:
                    raise websocket.WebSocketBadStatusException(
                        f"redirect {resp.status}", resp.status
                    ) from None
                raise
            return ws
        except BaseException:
            try:
                sock.close()
            except OSError:
                pass
            raise

    def _tcp_connect(self, run: Lifetime, host: str, port: int) -> socket.socket:
        """Non-blocking connect, so stop() is not held up by an unreachable host."""
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        last: Exception | None = None
        for family, stype, proto, _name, addr in infos:
            sock = socket.socket(family, stype, proto)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(addr)
                if err in _CONNECT_PENDING:
                    err = self._await_connect(run, sock)
                if err:
                    raise OSError(err, os.strerror(err))  # errno picks the subclass
                sock.setblocking(True)
                sock.settimeout(self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                return sock
            except Stopped:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")

    def _await_connect(self, run: Lifetime, sock: socket.socket) -> int:
        deadline = time.monotonic() + self._connect_timeout
        while True:
            if run.stopping.is_set():
                raise Stopped
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "connect timed out")
            # Windows reports a failed connect in the "exceptional" set, POSIX as writable.
            r, w, x = select.select([run.wake_r], [sock], [sock], remaining)
            if r:
                run.drain_wake()
            if w or x:
                return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def _check_pin(self, sock: ssl.SSLSocket) -> None:
        pin = self._tls.pin_sha256
        if not pin:
            return
        der = sock.getpeercert(binary_form=True)
        got = tlsutil.fingerprint_sha256(der) if der else ""
        if not hmac.compare_digest(got, pin):
            raise PinMismatch(pin, got or "none")
