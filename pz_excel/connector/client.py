"""The one connection to the connector, on websocket-client.

One background thread owns the socket: it connects, logs in, reads frames, sends queued
requests, pings, and reconnects with backoff. A second thread delivers events and state
changes to subscribers in arrival order, so a slow subscriber (Excel, a journal) never
delays the socket: pings stay answered and responses keep resolving while it works.

Why our own loop over ``websocket.WebSocket`` rather than ``WebSocketApp.run_forever``:
* the TLS socket is opened here, so a pinned fingerprint is checked *before* the HTTP
  upgrade, which carries the password (``CID``);
* one thread does every socket read and write (an ``SSLSocket`` is not safe to read and
  write from two threads), woken through a socketpair when a request is queued or on stop;
* stop is prompt in every phase: TCP connect (select on the wake socket), TLS and upgrade
  (socket shutdown), backoff wait (an event), connected (close handshake, bounded).

Encoding, decoding and close-code texts all come from :mod:`pz_excel.protocol`.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hmac
import itertools
import logging
import os
import queue
import random
import select
import socket
import ssl
import struct
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websocket
from websocket import ABNF

from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import Text
from pz_excel.protocol import codec as protocol

log = logging.getLogger(__name__)

CONNECTING = "connecting"
CONNECTED = "connected"
RETRYING = "retrying"
STOPPED = "stopped"

#: Legacy mode (PROTOCOL.md §5): no finite-field DH (the old connector offers a 512-bit
#: group), RSA key exchange allowed, SHA-1 and small keys accepted (security level 0).
LEGACY_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA:@SECLEVEL=0"
)

_ABANDONED_KEEP = 64  # ids of timed-out requests remembered per connection
_CLOSE_WAIT = 1.0  # how long a clean stop waits for the connector's close frame
#: A message (one frame, or its fragments together) beyond this is a broken peer: the
#: connection is dropped before the payload is read, not grown in memory without bound.
#: Up to it a message is read whole; over ``protocol.MAX_FRAME_BYTES`` (16 MiB) it reaches
#: the caller as a ``DecodeError`` that keeps the raw frame.
_MAX_MESSAGE = 2 * protocol.MAX_FRAME_BYTES


# --------------------------------------------------------------------------- options


class TlsConfigError(ValueError):
    """Invalid TLS options; ``str()`` gives both languages, ``.text`` the bilingual text."""

    def __init__(self, text: Text):
        super().__init__(text.both())
        self.text = text


@dataclass(frozen=True)
class TlsOptions:
    """How ``wss://`` is trusted. Ignored for ``ws://``.

    * default: the chain and host name are verified against the system CAs, or only
      against ``ca_file`` when given;
    * ``pin_sha256``: the pin is the trust anchor. The server certificate must have
      exactly this SHA-256 fingerprint; chain and host name are not checked, so a
      self-signed certificate works. Checked before the login is sent;
    * ``verify=False`` without a pin: no check at all (explicit opt-out, not advised);
    * ``legacy``: old connectors (TLS 1.0, weak ciphers, security level 0); only with a pin.
    """

    verify: bool = True
    ca_file: str | None = None
    pin_sha256: str | None = None
    legacy: bool = False

    def __post_init__(self) -> None:
        pin = (self.pin_sha256 or "").strip() or None
        if pin is not None:
            try:
                pin = tlsutil.normalize_fingerprint(pin)
            except ValueError as exc:
                raise TlsConfigError(
                    Text(
                        f"bad certificate fingerprint {self.pin_sha256!r}: "
                        "a SHA-256 fingerprint is 64 hex digits",
                        f"неверный отпечаток сертификата {self.pin_sha256!r}: "
                        "отпечаток SHA-256 — это 64 шестнадцатеричные цифры",
                    )
                ) from exc
        object.__setattr__(self, "pin_sha256", pin)
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", os.fspath(self.ca_file) or None)
        if self.legacy and not pin:
            raise TlsConfigError(
                Text(
                    "legacy TLS (TLS 1.0, weak ciphers) is allowed only with a pinned "
                    "certificate fingerprint (pin_sha256): without it anyone on the network "
                    "could pose as the connector",
                    "устаревший TLS (TLS 1.0, слабые шифры) разрешён только с закреплённым "
                    "отпечатком сертификата (pin_sha256): без него любой в сети может "
                    "выдать себя за коннектор",
                )
            )

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh client context for these options (reads ``ca_file`` now)."""
        if self.pin_sha256 or not self.verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.legacy:
            with warnings.catch_warnings():  # TLSv1 is deprecated: that is the point here
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers(LEGACY_CIPHERS)
        return ctx


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class ConnectionState:
    """What the connection is doing, as shown to the user."""

    kind: str  # "connecting" | "connected" | "retrying" | "stopped"
    text: Text
    retry_in: float | None = None
    close: protocol.CloseInfo | None = None
    since: float = 0.0  # time.time()

    @property
    def connected(self) -> bool:
        return self.kind == CONNECTED


class ConnectorError(Exception):
    """A request could not be answered: not connected, timed out, connection lost, stopped."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text

    def __str__(self) -> str:
        return str(self.text)


# --------------------------------------------------------------------------- backoff


class Backoff:
    """Reconnect delays, with jitter, by what the last attempt met.

    * **refused** (nothing listens: a connector restarting; costs it nothing): retried
      quickly, ``refused_base`` doubling to ``refused_cap`` (0.25 s → 1 s; never above
      ``base``/``cap``), so a connector that is back is found within about a second;
    * **any other failure** (accepted then dropped before or at login, a timeout, HTTP
      503, a connection that dropped within ``stable_after`` of its login): ``base``
      doubling to ``cap`` (0.5 s → 30 s);
    * **a connection that was logged in** (up for ``stable_after`` seconds, 0.5 s: a
      connector refuses a login at once, with HTTP 403 or a close right after the upgrade)
      resets both sequences, so its drop is retried promptly (after one ``base`` delay).

    And whatever the delays say, at most ``max_per_minute`` attempts that reached the
    connector (TCP accepted, see :meth:`reached`) in any rolling minute: a connector that
    accepts and drops is never hammered. ``None`` or 0: no cap.

    ``jitter``: ``"equal"`` (default: half the ceiling plus a random half, so a restarted
    connector is not hit by every client at once yet no client hammers it), ``"full"``
    (random in [0, ceiling)) or ``"none"``. ``rand`` and ``clock`` are injectable for tests.
    """

    WINDOW = 60.0  # seconds of the rolling attempt cap

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: str = "equal",
        stable_after: float = 0.5,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        *,
        refused_base: float = 0.25,
        refused_cap: float = 1.0,
        max_per_minute: int | None = 30,
    ):
        if jitter not in ("equal", "full", "none"):
            raise ValueError(f"jitter must be 'equal', 'full' or 'none', not {jitter!r}")
        if base <= 0 or cap < base or factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")
        if refused_base <= 0 or refused_cap < refused_base:
            raise ValueError("backoff needs 0 < refused_base <= refused_cap")
        self.base, self.cap, self.factor = base, cap, factor
        self.jitter, self.stable_after = jitter, stable_after
        self.refused_base = min(refused_base, base)
        self.refused_cap = min(refused_cap, cap)
        self.max_per_minute = max_per_minute or None
        self._rand, self._clock = rand, clock
        self._attempt = 0
        self._refused = 0
        self._up_since: float | None = None
        self._reached: deque[float] = deque(maxlen=self.max_per_minute)

    @property
    def attempt(self) -> int:
        """Failures (other than refused connects) since the last reset."""
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def refused_ceiling(self, attempt: int) -> float:
        return min(self.refused_cap, self.refused_base * self.factor ** min(attempt, 64))

    def reached(self) -> None:
        """A TCP connection to the connector was made: it counts toward the per-minute cap
        (refused connects do not), and the connector listens again."""
        self._refused = 0
        if self.max_per_minute is not None:
            self._reached.append(self._clock())

    def connected(self) -> None:
        """The upgrade succeeded: a reset follows if it stays up for ``stable_after``."""
        self._up_since = self._clock()

    def reset(self) -> None:
        self._attempt = 0
        self._refused = 0
        self._up_since = None

    def next_delay(self, refused: bool = False) -> float:
        """The wait before the next attempt (call once per failure or drop); ``refused``:
        the connect was refused (nothing listens)."""
        now = self._clock()
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.reset()  # it was logged in: its drop is retried promptly
        self._up_since = None
        if refused:
            ceiling = self.refused_ceiling(self._refused)
            self._refused += 1
        else:
            ceiling = self.ceiling(self._attempt)
            self._attempt += 1
        r = min(max(float(self._rand()), 0.0), 1.0)
        if self.jitter == "full":
            delay = ceiling * r
        elif self.jitter == "equal":
            delay = ceiling / 2 + ceiling / 2 * r
        else:
            delay = ceiling
        return max(delay, self._capped_until(now) - now)

    def _capped_until(self, now: float) -> float:
        """When the next attempt may reach the connector without passing the cap."""
        cap = self.max_per_minute
        if cap is None or len(self._reached) < cap:
            return now
        oldest = self._reached[0]  # the deque holds the last ``cap`` attempts
        return max(now, oldest + self.WINDOW)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Outcome:
    """Why a connection attempt or session ended."""

    text: Text
    retry: bool
    close: protocol.CloseInfo | None = None
    by_user: bool = False
    refused: bool = False  # the connect was refused: nothing listens (Backoff's fast lane)


class _Stopped(Exception):
    """stop() was called while connecting."""


class _PinMismatch(Exception):
    def __init__(self, expected: str, got: str):
        super().__init__(f"expected {expected}, got {got}")
        self.expected, self.got = expected, got


class _TlsSetupError(Exception):
    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exc = exc


@dataclass
class _Pending:
    future: concurrent.futures.Future[protocol.Response]
    ttl: float | None
    deadline: float | None  # time.monotonic()


class _Conn:
    """One live WebSocket and what rides on it."""

    def __init__(self, ws: websocket.WebSocket):
        self.ws = ws
        self.pending: OrderedDict[str, _Pending] = OrderedDict()  # oldest first
        self.outbox: deque[str] = deque()
        self.abandoned: OrderedDict[str, None] = OrderedDict()
        self.echoes_ids = False  # the connector echoed one of our non-zero ids
        self.fragments: list[bytes] | None = None
        self.fragments_size = 0

    def assemble(self, frame: ABNF) -> bytes | None:
        """A data frame in; a whole message out once its last fragment is in."""
        op, data = frame.opcode, bytes(frame.data)
        if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            if self.fragments is not None:
                raise websocket.WebSocketProtocolException("new message inside a fragmented one")
            if frame.fin:
                return data
            self.fragments, self.fragments_size = [data], len(data)
            return None
        if op != ABNF.OPCODE_CONT or self.fragments is None:
            raise websocket.WebSocketProtocolException(f"unexpected frame (opcode {op})")
        self.fragments.append(data)
        self.fragments_size += len(data)
        if self.fragments_size > _MAX_MESSAGE:
            raise websocket.WebSocketProtocolException(
                f"fragmented message over the {_MAX_MESSAGE}-byte limit"
            )
        if not frame.fin:
            return None
        message, self.fragments = b"".join(self.fragments), None
        return message


class _Run:
    """One start()…stop() lifetime: its threads, wake socket and dispatch queue."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.finished = threading.Event()  # the connection thread has said "stopped"
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.conn: _Conn | None = None
        self.live_sock: socket.socket | None = None  # for stop() to cut a blocked read
        self.thread: threading.Thread | None = None
        self.dispatcher: threading.Thread | None = None

    def wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except OSError:  # buffer full (a wake is pending anyway) or run already over
            pass

    def drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass

    def close_wake(self) -> None:
        for s in (self.wake_r, self.wake_w):
            try:
                s.close()
            except OSError:
                pass


_END = object()  # dispatch queue sentinel


def _limit_frame_size(ws: websocket.WebSocket, limit: int) -> None:
    """Refuse a frame whose header announces more than ``limit`` bytes before its payload
    is read. websocket-client itself reads any announced length (up to 2**63) into memory;
    its frame buffer reads the payload through ``recv`` once ``length`` is known."""
    buffer = getattr(ws, "frame_buffer", None)
    recv = getattr(buffer, "recv", None)
    if buffer is None or recv is None or not hasattr(buffer, "length"):
        return  # another websocket-client layout: the fragment limit still holds

    def guarded(bufsize: int) -> bytes:
        length = buffer.length
        if length is not None and length > limit:
            raise websocket.WebSocketProtocolException(
                f"a frame of {length} bytes is over the {limit}-byte limit"
            )
        return recv(bufsize)

    buffer.recv = guarded


def _hard_shutdown(sock: socket.socket | None) -> None:
    """Cut a socket under a blocked read, bypassing SSLSocket.shutdown (not thread-safe)."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def _settle(
    fut: concurrent.futures.Future[Any], result: Any = None, exc: BaseException | None = None
) -> None:
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:  # cancelled by its owner
        pass


def _failed(exc: BaseException) -> concurrent.futures.Future[Any]:
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_exception(exc)
    return fut


def _t(en: str, ru: str) -> Text:
    return Text(en, ru)


_CONNECT_PENDING = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, 10035}  # 10035: Win


# --------------------------------------------------------------------------- the client


class ConnectorClient:
    """The one connection to a Prostie Zvonki connector. Thread-safe.

    Events go to :meth:`subscribe` callbacks, states to :meth:`on_state` callbacks,
    unknown elements to :meth:`on_message` callbacks, all on one delivery thread, in
    arrival order; a callback that raises is logged and the others still run.
    Futures of :meth:`request_async` are resolved on the connection thread: their
    done-callbacks must be quick and must not block on another request.
    """

    def __init__(
        self,
        settings: protocol.ConnectSettings,
        *,
        header_login: bool = False,
        request_version: int = protocol.CLIENT_REQUEST_VERSION,
        reconnect: bool = True,
        tls: TlsOptions | None = None,
        backoff: Backoff | None = None,
        on_decode_error: Callable[[protocol.DecodeError], None] | None = None,
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        request_ttl: float | None = 60.0,
    ):
        settings.url  # noqa: B018 - a bad address fails here (ProtocolError), not in the thread
        self._settings = settings
        self._header_login = header_login
        self._request_version = request_version
        self._reconnect = reconnect
        self._tls = tls or TlsOptions()
        self._backoff = backoff or Backoff()
        self._on_decode_error = on_decode_error
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._request_ttl = request_ttl

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ids = itertools.count()  # never reset: ids stay unique across reconnects
        self._subscribers: tuple[Callable[[protocol.Event], None], ...] = ()
        self._frame_hook: Callable[[str, list[protocol.Event]], None] | None = None
        self._state_fns: tuple[Callable[[ConnectionState], None], ...] = ()
        self._message_fns: tuple[Callable[[Any], None], ...] = ()
        self._run: _Run | None = None
        self._state = ConnectionState(STOPPED, _t("not started", "не запущено"), since=time.time())
        self._seq = 0
        self._history: deque[tuple[int, ConnectionState]] = deque(maxlen=64)
        self._decode_errors = 0

        if self._settings.transport is protocol.Transport.BASE64 and (
            self._tls.pin_sha256 or self._tls.legacy or self._tls.ca_file
        ):
            log.warning("TLS options are ignored for a ws:// address (%s)", self._settings.url)

    # ------------------------------------------------------------------ observers

    @property
    def settings(self) -> protocol.ConnectSettings:
        return self._settings

    @property
    def state(self) -> ConnectionState:
        with self._lock:
            return self._state

    @property
    def decode_errors(self) -> int:
        """Frames that could not be decoded since this client was made (they are skipped)."""
        with self._lock:
            return self._decode_errors

    def subscribe(self, fn: Callable[[protocol.Event], None]) -> Callable[[], None]:
        """Receive every event, in arrival order. Returns the unsubscribe function."""
        return self._add("_subscribers", fn)

    def on_state(self, fn: Callable[[ConnectionState], None]) -> Callable[[], None]:
        """Receive every state change. Returns the unsubscribe function."""
        return self._add("_state_fns", fn)

    def on_frame(self, fn: Callable[[str, list[protocol.Event]], None] | None) -> None:
        """``fn(frame, events)`` runs on the reading thread for every message that holds
        events, before they are dispatched: the agent stores the message there, so a
        crash can lose nothing that was read. It must be quick and must not block."""
        self._frame_hook = fn

    def on_message(
        self, fn: Callable[[protocol.Unknown | protocol.Request], None]
    ) -> Callable[[], None]:
        """Receive elements that are neither events nor responses (newer connectors)."""
        return self._add("_message_fns", fn)

    def _add(self, attr: str, fn: Callable[[Any], None]) -> Callable[[], None]:
        with self._lock:
            setattr(self, attr, (*getattr(self, attr), fn))

        def remove() -> None:
            with self._lock:
                fns = list(getattr(self, attr))
                if fn in fns:
                    fns.remove(fn)
                    setattr(self, attr, tuple(fns))

        return remove

    def wait_state(
        self, predicate: Callable[[ConnectionState], bool], timeout: float
    ) -> ConnectionState | None:
        """The first state (the current one or any later) that satisfies ``predicate``;
        ``None`` after ``timeout``. Short-lived states between two polls are not missed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if predicate(self._state):
                return self._state
            seen = self._seq
            while True:
                for seq, st in self._history:
                    if seq > seen and predicate(st):
                        return st
                seen = self._seq
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_connected(self, timeout: float) -> bool:
        """True once connected; False on timeout or if the client stops first."""
        st = self.wait_state(lambda s: s.kind in (CONNECTED, STOPPED), timeout)
        return st is not None and st.kind == CONNECTED

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (no-op if already running)."""
        with self._lock:
            old = self._run
            if old is not None and not old.finished.is_set():
                return  # running (a run that ended by itself, e.g. after 4009, is replaced)
            run = _Run()
            self._run = run
            # Said now, not by the thread: wait_connected() right after start() must not
            # see the previous "stopped" and give up.
            self._publish_locked(run, CONNECTING, self._connecting_text())
            run.dispatcher = threading.Thread(
                target=self._dispatch_loop, args=(run,), name="pz-connector-events", daemon=True
            )
            run.thread = threading.Thread(
                target=self._io_loop, args=(run,), name="pz-connector", daemon=True
            )
        run.dispatcher.start()
        run.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and end the threads. Idempotent; callable from callbacks."""
        with self._lock:
            run = self._run
        if run is None:
            return
        run.stopping.set()
        run.wake()
        with self._lock:
            connecting_sock = run.live_sock if run.conn is None else None
        _hard_shutdown(connecting_sock)  # TLS or upgrade in progress: nothing to close cleanly
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        if run.thread is not None and run.thread is not me:
            # A clean close first; if the thread is stuck in a read or write, cut the socket.
            run.thread.join(max(0.0, timeout * 0.6))
            if run.thread.is_alive():
                _hard_shutdown(run.live_sock)
                run.thread.join(max(0.0, deadline - time.monotonic()))
            if run.thread.is_alive():
                log.warning("connector thread did not stop within %.1f s", timeout)
        if run.dispatcher is not None and run.dispatcher is not me:
            run.dispatcher.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._run is run:
                if self._state.kind != STOPPED:  # the thread could not say it itself
                    self._publish_locked(run, STOPPED, _t("stopped", "остановлено"))
                self._run = None

    # ------------------------------------------------------------------ requests

    def request_async(
        self, build: Callable[[int], str], timeout: float | None = None
    ) -> concurrent.futures.Future[protocol.Response]:
        """Queue a request; ``build(request_id)`` returns its XML. Never blocks.

        The future fails with :class:`ConnectorError` when not connected, when the
        connection drops first, or after ``timeout`` (default: ``request_ttl``).
        """
        return self._submit(build, timeout)[1]

    def request(self, build: Callable[[int], str], timeout: float = 5.0) -> protocol.Response:
        """Send a request and wait for its response; raises :class:`ConnectorError`."""
        with self._lock:
            run = self._run
        if run is not None and threading.current_thread() is run.thread:
            raise ConnectorError(
                _t(
                    "a blocking request from the connection thread would never be answered: "
                    "use request_async()",
                    "блокирующий запрос из потока соединения не получит ответа: "
                    "используйте request_async()",
                )
            )
        rid, fut = self._submit(build, timeout)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            self._abandon(run, rid, fut, timeout)
            return fut.result(0)  # the answer may have won the race; else the timeout error

    def call(self, number: str, timeout: float = 5.0) -> protocol.Response:
        """Originate a call from our extension to ``number`` (passed as typed)."""
        return self.request(self._call_builder(number), timeout)

    def call_async(self, number: str) -> concurrent.futures.Future[protocol.Response]:
        return self.request_async(self._call_builder(number))

    def transfer(self, call_id: str, ext: str, timeout: float = 5.0) -> protocol.Response:
        """Answer a transfer request: route ``call_id`` to ``ext``, or decline with ``""``."""
        return self.request(self._transfer_builder(call_id, ext), timeout)

    def transfer_async(
        self, call_id: str, ext: str
    ) -> concurrent.futures.Future[protocol.Response]:
        return self.request_async(self._transfer_builder(call_id, ext))

    def send_sms(self, number: str, text: str, timeout: float = 5.0) -> protocol.Response:
        """Send an SMS to ``number`` from the user's phone."""
        return self.request(self._sms_builder(number, text), timeout)

    def send_sms_async(
        self, number: str, text: str
    ) -> concurrent.futures.Future[protocol.Response]:
        return self.request_async(self._sms_builder(number, text))

    def _call_builder(self, number: str) -> Callable[[int], str]:
        phone, pv = self._settings.phone, self._request_version
        return lambda rid: protocol.call_request(phone, number, rid, protocol_version=pv)

    def _transfer_builder(self, call_id: str, ext: str) -> Callable[[int], str]:
        pv = self._request_version
        return lambda rid: protocol.transfer_request(call_id, ext, rid, protocol_version=pv)

    def _sms_builder(self, number: str, text: str) -> Callable[[int], str]:
        phone, pv = self._settings.phone, self._request_version
        return lambda rid: protocol.sms_request(phone, number, text, rid, protocol_version=pv)

    def _submit(
        self, build: Callable[[int], str], timeout: float | None
    ) -> tuple[str, concurrent.futures.Future[protocol.Response]]:
        with self._lock:
            run, rid = self._run, next(self._ids)
            state = self._state
        if run is None or run.conn is None:
            return str(rid), _failed(ConnectorError(self._not_connected(state)))
        frame = protocol.encode_frame(build(rid), self._settings.transport)
        fut: concurrent.futures.Future[protocol.Response] = concurrent.futures.Future()
        ttl = self._request_ttl if timeout is None else timeout
        deadline = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            conn = run.conn
            if conn is not None:
                conn.pending[str(rid)] = _Pending(fut, ttl, deadline)
                conn.outbox.append(frame)
            state = self._state
        if conn is None:  # dropped while the XML was being built
            return str(rid), _failed(ConnectorError(self._not_connected(state)))
        run.wake()
        return str(rid), fut

    def _abandon(
        self,
        run: _Run | None,
        rid: str,
        fut: concurrent.futures.Future[protocol.Response],
        timeout: float,
    ) -> None:
        with self._lock:
            conn = run.conn if run is not None else None
            if conn is not None and conn.pending.get(rid, None) is not None:
                del conn.pending[rid]
                self._remember_abandoned(conn, rid)
        _settle(fut, exc=ConnectorError(self._timeout_text(timeout)))

    @staticmethod
    def _remember_abandoned(conn: _Conn, rid: str) -> None:
        conn.abandoned[rid] = None
        while len(conn.abandoned) > _ABANDONED_KEEP:
            conn.abandoned.popitem(last=False)

    @staticmethod
    def _timeout_text(timeout: float) -> Text:
        return _t(
            f"no answer from the connector within {timeout:g} s",
            f"коннектор не ответил за {timeout:g} с",
        )

    @staticmethod
    def _not_connected(state: ConnectionState) -> Text:
        return _t(
            f"not connected to the connector ({state.text.en})",
            f"нет соединения с коннектором ({state.text.ru})",
        )

    # ------------------------------------------------------------------ state publishing

    def _publish(self, run: _Run, kind: str, text: Text, **kw: Any) -> None:
        with self._lock:
            self._publish_locked(run, kind, text, **kw)

    def _publish_locked(self, run: _Run, kind: str, text: Text, **kw: Any) -> None:
        if run is not self._run:  # a thread of an earlier run that outlived stop()
            return
        st = ConnectionState(kind, text, since=time.time(), **kw)
        self._state = st
        self._seq += 1
        self._history.append((self._seq, st))
        self._cond.notify_all()
        run.queue.put(("state", st))  # under the lock: queue order == state order
        log.debug("connector state: %s", text.en)

    # ------------------------------------------------------------------ delivery thread

    def _dispatch_loop(self, run: _Run) -> None:
        while True:
            item = run.queue.get()
            if item is _END:
                return
            kind, payload = item
            if kind == "event":
                fns: tuple[Callable[[Any], None], ...] = self._subscribers
            elif kind == "state":
                fns = self._state_fns
            elif kind == "message":
                fns = self._message_fns
            else:  # decode error
                fns = (self._on_decode_error,) if self._on_decode_error else ()
            for fn in fns:
                try:
                    fn(payload)
                except Exception:
                    log.exception("connector %s callback %r failed", kind, fn)

    # ------------------------------------------------------------------ connection thread

    def _io_loop(self, run: _Run) -> None:
        final: _Outcome | None = None
        try:
            while not run.stopping.is_set():
                outcome = self._session(run)
                if run.stopping.is_set() or outcome.by_user:
                    break
                if not outcome.retry or not self._reconnect:
                    final = outcome
                    break
                delay = self._backoff.next_delay(refused=outcome.refused)
                self._publish(
                    run,
                    RETRYING,
                    _t(
                        f"retrying in {delay:.1f} s: {outcome.text.en}",
                        f"повтор через {delay:.1f} с: {outcome.text.ru}",
                    ),
                    retry_in=delay,
                    close=outcome.close,
                )
                if run.stopping.wait(delay):
                    break
        except Exception as exc:  # a bug here must still end in "stopped", never a hang
            log.exception("connector thread failed")
            final = _Outcome(
                _t(f"internal error: {exc!r}", f"внутренняя ошибка: {exc!r}"), retry=False
            )
        finally:
            if final is None:
                text, close = _t("stopped", "остановлено"), None
            else:
                text = _t(f"stopped: {final.text.en}", f"остановлено: {final.text.ru}")
                close = final.close
            with self._lock:  # atomic for start(): whoever sees "stopped" may start again
                self._publish_locked(run, STOPPED, text, close=close)
                run.finished.set()
            run.queue.put(_END)
            run.close_wake()

    def _connecting_text(self) -> Text:
        url = self._settings.url  # never connect_url(): its query holds the password
        return _t(f"connecting to {url}", f"подключение к {url}")

    def _session(self, run: _Run) -> _Outcome:
        """One connection attempt and, if it succeeds, its whole life."""
        url = self._settings.url
        with self._lock:
            if self._state.kind != CONNECTING:  # start() said it for the first attempt
                self._publish_locked(run, CONNECTING, self._connecting_text())
        try:
            ws = self._open(run)
        except _Stopped:
            return _Outcome(_t("stopped", "остановлено"), retry=False, by_user=True)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a state, never a crash
            if run.stopping.is_set():
                return _Outcome(_t("stopped", "остановлено"), retry=False, by_user=True)
            return self._classify_open_error(exc)
        finally:
            with self._lock:
                run.live_sock = None

        conn = _Conn(ws)
        with self._lock:
            run.conn = conn
            run.live_sock = ws.sock
        self._backoff.connected()
        self._publish(run, CONNECTED, _t(f"connected to {url}", f"подключено к {url}"))
        outcome: _Outcome | None = None
        try:
            outcome = self._serve(run, conn)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a state, never a crash
            outcome = self._classify_session_error(exc)
        finally:
            if outcome is None:  # BaseException: still release the waiters
                outcome = _Outcome(_t("stopped", "остановлено"), retry=False, by_user=True)
            self._end_conn(run, conn, outcome)
        return outcome

    def _end_conn(self, run: _Run, conn: _Conn, outcome: _Outcome) -> None:
        with self._lock:
            run.conn = None
            run.live_sock = None
            pending = list(conn.pending.values())
            conn.pending.clear()
            conn.outbox.clear()
        try:
            conn.ws.shutdown()
        except Exception:
            log.debug("socket close failed", exc_info=True)
        if pending:
            text = (
                _t("stopped before the answer came", "остановлено до получения ответа")
                if outcome.by_user
                else _t(
                    f"connection lost before the answer came: {outcome.text.en}",
                    f"соединение потеряно до получения ответа: {outcome.text.ru}",
                )
            )
            for p in pending:
                _settle(p.future, exc=ConnectorError(text))

    # ---------------------------------------------------------------- connecting

    def _open(self, run: _Run) -> websocket.WebSocket:
        parts = urlsplit(self._settings.url)
        host, port = parts.hostname or "", parts.port or protocol.DEFAULT_PORT
        sock = self._tcp_connect(run, host, port)
        self._backoff.reached()  # counts toward the attempts-per-minute cap
        with self._lock:
            run.live_sock = sock
        if run.stopping.is_set():
            sock.close()
            raise _Stopped
        try:
            if parts.scheme == "wss":
                try:
                    ctx = self._tls.ssl_context()
                except (OSError, ssl.SSLError, ValueError) as exc:
                    raise _TlsSetupError(exc) from exc
                sock = ctx.wrap_socket(sock, server_hostname=host)
                with self._lock:
                    run.live_sock = sock
                self._check_pin(sock)  # before the upgrade: it carries the password
            if run.stopping.is_set():
                raise _Stopped
            ws = websocket.WebSocket(skip_utf8_validation=True)  # bad UTF-8 = a DecodeError
            if self._header_login:
                target, headers = self._settings.url, protocol.connect_headers(self._settings)
            else:
                target, headers = protocol.connect_url(self._settings), None
            try:
                # redirect_limit=0: a redirect would open a socket behind our pin check.
                ws.connect(target, socket=sock, header=headers, redirect_limit=0)
                _limit_frame_size(ws, _MAX_MESSAGE)
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

    def _tcp_connect(self, run: _Run, host: str, port: int) -> socket.socket:
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
            except _Stopped:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")

    def _await_connect(self, run: _Run, sock: socket.socket) -> int:
        deadline = time.monotonic() + self._connect_timeout
        while True:
            if run.stopping.is_set():
                raise _Stopped
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
            raise _PinMismatch(pin, got or "none")

    # ---------------------------------------------------------------- connected

    def _serve(self, run: _Run, conn: _Conn) -> _Outcome:
        ws = conn.ws
        sock = ws.sock
        assert sock is not None
        # Sends block at most this long (a peer that never reads); reads never block.
        ws.settimeout(self._ping_timeout)
        last_rx = last_ping = time.monotonic()
        interval = self._ping_interval
        while True:
            if run.stopping.is_set():
                self._goodbye(ws)
                return _Outcome(_t("stopped", "остановлено"), retry=False, by_user=True)
            self._flush_outbox(conn)
            now = time.monotonic()
            next_deadline = self._expire(conn, now)
            wait = None if next_deadline is None else max(0.0, next_deadline - now)
            if interval:
                silent = now - last_rx
                if silent >= interval + self._ping_timeout:
                    text = _t(
                        f"no answer from the connector for {silent:.0f} s",
                        f"коннектор молчит {silent:.0f} с",
                    )
                    return _Outcome(text, retry=True, close=protocol.CloseInfo(1006, text, True))
                if now - max(last_rx, last_ping) >= interval:
                    ws.ping()
                    last_ping = now
                due = min(
                    max(last_rx, last_ping) + interval, last_rx + interval + self._ping_timeout
                )
                wait = max(0.0, due - now) if wait is None else min(wait, max(0.0, due - now))
            pending_tls = getattr(sock, "pending", None)
            if pending_tls is not None and pending_tls() > 0:
                readable = True  # decrypted bytes wait in the SSL buffer: select can't see them
            else:
                r, _w, _x = select.select([sock, run.wake_r], [], [], wait)
                if run.wake_r in r:
                    run.drain_wake()
                readable = sock in r
            if not readable:
                continue
            frame = self._read_frame(ws)
            if frame is None:
                continue  # half a frame, or TLS bytes that held no data: back to select
            last_rx = time.monotonic()
            if frame.opcode == ABNF.OPCODE_CLOSE:
                return self._closed_by_connector(ws, frame.data)
            if frame.opcode == ABNF.OPCODE_PING:
                ws.pong(frame.data)
            elif frame.opcode != ABNF.OPCODE_PONG:  # a pong only proves the peer is alive
                message = conn.assemble(frame)
                if message is not None:
                    self._on_frame(run, conn, message)

    def _read_frame(self, ws: websocket.WebSocket) -> ABNF | None:
        """One frame if it is all there. Non-blocking, so a frame that stops half-way (or
        a TLS record with no data) can't hold up queued requests; websocket-client's
        frame buffer keeps the part read and resumes on the next call."""
        ws.settimeout(0)
        try:
            return ws.recv_frame()
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        finally:
            ws.settimeout(self._ping_timeout)

    def _flush_outbox(self, conn: _Conn) -> None:
        while True:
            with self._lock:
                if not conn.outbox:
                    return
                frame = conn.outbox.popleft()
            conn.ws.send(frame)

    def _expire(self, conn: _Conn, now: float) -> float | None:
        """Fail requests past their deadline; return the next deadline."""
        expired: list[_Pending] = []
        next_deadline: float | None = None
        with self._lock:
            for rid, p in list(conn.pending.items()):
                if p.deadline is None:
                    continue
                if p.deadline <= now:
                    del conn.pending[rid]
                    self._remember_abandoned(conn, rid)
                    expired.append(p)
                elif next_deadline is None or p.deadline < next_deadline:
                    next_deadline = p.deadline
        for p in expired:
            _settle(p.future, exc=ConnectorError(self._timeout_text(p.ttl or 0.0)))
        return next_deadline

    def _goodbye(self, ws: websocket.WebSocket) -> None:
        try:
            ws.close(status=1000, timeout=_CLOSE_WAIT)
        except Exception:
            log.debug("close handshake failed", exc_info=True)

    def _closed_by_connector(self, ws: websocket.WebSocket, data: bytes) -> _Outcome:
        # Echo the close, but the code matters more: a peer that already hung up (and
        # makes this send fail) must not turn a 4009 into a "connection lost" and a retry.
        try:
            ws.send_close()
        except Exception:
            log.debug("close echo failed", exc_info=True)
        if len(data) >= 2:
            code = struct.unpack("!H", data[:2])[0]
            reason = data[2:].decode("utf-8", "replace")
        else:
            code, reason = 1005, ""  # close frame without a status
        info = protocol.describe_close(code, reason)
        text = _t(f"{info.text.en} (code {code})", f"{info.text.ru} (код {code})")
        if not info.retry:
            log.warning("connector closed the connection: %s", text.both())
        return _Outcome(text, retry=info.retry, close=info)

    def _on_frame(self, run: _Run, conn: _Conn, data: bytes | str) -> None:
        messages = protocol.decode_frame(data)
        hook = self._frame_hook
        if hook is not None:
            events = [m for m in messages if isinstance(m, protocol.Event)]
            if events:  # on this (the reading) thread, before any event goes on
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                try:
                    hook(text, events)
                except Exception:
                    log.exception("connector frame hook failed")
        for msg in messages:
            if isinstance(msg, protocol.Event):
                run.queue.put(("event", msg))
            elif isinstance(msg, protocol.Response):
                self._resolve(conn, msg)
            elif isinstance(msg, protocol.DecodeError):
                with self._lock:
                    self._decode_errors += 1
                    count = self._decode_errors
                log.warning("undecodable frame skipped (%d so far): %s", count, msg.reason)
                run.queue.put(("decode_error", msg))
            else:
                run.queue.put(("message", msg))

    def _resolve(self, conn: _Conn, resp: protocol.Response) -> None:
        """By RequestID; else the oldest pending (SDK-style connectors always answer 0)."""
        rid = resp.request_id
        with self._lock:
            p = conn.pending.pop(rid, None)
            if p is not None:
                if rid != "0":
                    conn.echoes_ids = True
            elif conn.echoes_ids and rid in conn.abandoned:
                del conn.abandoned[rid]  # a late answer to a timed-out request
            elif conn.pending:
                _rid, p = conn.pending.popitem(last=False)
        if p is None:
            log.info("response with RequestID %r matches no request; ignored", rid)
            return
        _settle(p.future, resp)

    # ---------------------------------------------------------------- error texts

    def _classify_open_error(self, exc: BaseException) -> _Outcome:
        host = urlsplit(self._settings.url).hostname or ""
        if isinstance(exc, _PinMismatch):
            text = _t(
                "the server certificate does not match the pinned fingerprint "
                f"(expected {exc.expected}, got {exc.got}); the password was not sent",
                "сертификат сервера не совпадает с закреплённым отпечатком "
                f"(ожидался {exc.expected}, получен {exc.got}); пароль не отправлен",
            )
            return _Outcome(text, retry=False)
        if isinstance(exc, _TlsSetupError):
            text = _t(
                f"cannot set up TLS (CA file {self._tls.ca_file!r}?): {exc.exc}",
                f"не удалось настроить TLS (файл CA {self._tls.ca_file!r}?): {exc.exc}",
            )
            return _Outcome(text, retry=False)
        if isinstance(exc, websocket.WebSocketBadStatusException):
            info = protocol.describe_http_status(int(exc.status_code))
            return _Outcome(info.text, retry=info.retry, close=info)
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = exc.verify_message or str(exc)
            text = _t(
                f"the server certificate is not trusted ({why}): give a CA file or pin its "
                "fingerprint",
                f"сертификат сервера не признан доверенным ({why}): укажите файл CA или "
                "закрепите его отпечаток",
            )
            return _Outcome(text, retry=False)
        if isinstance(exc, (TimeoutError, websocket.WebSocketTimeoutException)):
            return _Outcome(_t("connection timed out", "превышено время подключения"), True)
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            # Retried (a restart looks the same), but old connectors close here too.
            text = _t(
                "connection closed during the TLS handshake (an old connector may need the "
                "legacy TLS mode with a pinned certificate)",
                "соединение закрыто во время согласования TLS (старому коннектору может "
                "понадобиться режим устаревшего TLS с закреплённым сертификатом)",
            )
            return _Outcome(text, retry=True)
        if isinstance(exc, ssl.SSLError):
            why = exc.reason or str(exc)
            text = _t(
                f"TLS handshake failed ({why}); an old connector may need the legacy TLS mode "
                "with a pinned certificate",
                f"ошибка TLS ({why}); старому коннектору может понадобиться режим "
                "устаревшего TLS с закреплённым сертификатом",
            )
            return _Outcome(text, retry=False)
        if isinstance(exc, ConnectionRefusedError):
            return _Outcome(
                _t("connection refused", "в подключении отказано"), retry=True, refused=True
            )
        if isinstance(exc, socket.gaierror):
            return _Outcome(
                _t(f"server name {host!r} not found", f"имя сервера {host!r} не найдено"),
                retry=True,
            )
        if isinstance(exc, websocket.WebSocketConnectionClosedException):
            return _Outcome(
                _t("connection closed during login", "соединение закрыто при входе"), True
            )
        if isinstance(exc, websocket.WebSocketException):
            text = _t(
                f"the server did not answer as a WebSocket connector: {exc}",
                f"сервер ответил не как WebSocket-коннектор: {exc}",
            )
            return _Outcome(text, retry=True)
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
            return _Outcome(_t(f"network error: {why}", f"ошибка сети: {why}"), retry=True)
        log.error("unexpected error while connecting", exc_info=exc)
        return _Outcome(_t(f"unexpected error: {exc!r}", f"непредвиденная ошибка: {exc!r}"), True)

    def _classify_session_error(self, exc: BaseException) -> _Outcome:
        if isinstance(
            exc, (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException)
        ):
            text = _t(f"WebSocket protocol error: {exc}", f"ошибка протокола WebSocket: {exc}")
            return _Outcome(text, retry=True, close=protocol.describe_close(1002))
        if isinstance(exc, (OSError, websocket.WebSocketException)):
            info = protocol.describe_close(1006)
            return _Outcome(info.text, retry=True, close=info)
        log.error("unexpected error on the connection", exc_info=exc)
        info = protocol.describe_close(1006)
        text = _t(f"unexpected error: {exc!r}", f"непредвиденная ошибка: {exc!r}")
        return _Outcome(text, retry=True, close=info)
