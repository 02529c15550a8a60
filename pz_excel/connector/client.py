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

This module keeps the I/O: threads, the socket loop, reconnects. What the protocol must
remember (request ids, matching answers to requests, expiry, close meanings) is the
sans-IO :class:`pz_excel.protocol.session.Session`, one per connection; opening a
connection (TCP, TLS, pin, upgrade) is :mod:`.dial`, frame limits :mod:`.framing`, delays
:mod:`.backoff`, trust options :mod:`.trust`, failure texts :mod:`.outcomes`.

Every log line of the connector comes from this module's logger, which the diagnostic
console quiets by name.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import websocket
from websocket import ABNF

from pz_excel.connector.backoff import Backoff
from pz_excel.connector.delivery import Delivery
from pz_excel.connector.dial import Dialer, Stopped
from pz_excel.connector.framing import echo_close, read_frame
from pz_excel.connector.lifetime import END_OF_DISPATCH, Connection, Lifetime, hard_shutdown
from pz_excel.connector.outcomes import (
    Outcome,
    answer_lost_text,
    classify_open_error,
    classify_session_error,
)
from pz_excel.connector.state import (
    CONNECTED,
    CONNECTING,
    RETRYING,
    STOPPED,
    ConnectionState,
    ConnectorError,
    StateHistory,
    not_connected_text,
    timed_out_text,
)
from pz_excel.connector.trust import TlsConfigError, TlsOptions
from pz_excel.i18n import Text
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.session import Session, Unmatched

__all__ = [  # what other modules import from here
    "CONNECTED", "CONNECTING", "RETRYING", "STOPPED", "Backoff", "ConnectionState",
    "ConnectorClient", "ConnectorError", "TlsConfigError", "TlsOptions",
]

log = logging.getLogger(__name__)

_CLOSE_WAIT = 1.0  # how long a clean stop waits for the connector's close frame


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
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._request_ttl = request_ttl

        self._lock = threading.Lock()
        self._ids = itertools.count()  # never reset: ids stay unique across reconnects
        self._frame_hook: Callable[[str, list[protocol.Event]], None] | None = None
        self._idle_hook: Callable[[], None] | None = None
        self._delivery = Delivery(log, on_decode_error)
        self._run: Lifetime | None = None
        first = ConnectionState(STOPPED, Text("not started", "не запущено"), since=time.time())
        self._states = StateHistory(self._lock, first)
        self._decode_errors = 0
        self._attempted = False  # the first attempt decides first_failure
        self._first_failure: Outcome | None = None
        self._dialer = Dialer(
            settings,
            self._tls,
            header_login=header_login,
            connect_timeout=connect_timeout,
            lock=self._lock,
            on_reached=self._backoff.reached,
        )

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
            return self._states.current

    @property
    def decode_errors(self) -> int:
        """Frames that could not be decoded since this client was made (they are skipped)."""
        with self._lock:
            return self._decode_errors

    @property
    def first_failure(self) -> Outcome | None:
        """Why the first attempt failed, until an attempt connects (``run`` says once
        what to check when a connector was never reached)."""
        with self._lock:
            return self._first_failure

    def subscribe(self, fn: Callable[[protocol.Event], None]) -> Callable[[], None]:
        """Receive every event, in arrival order. Returns the unsubscribe function."""
        return self._delivery.add("event", fn)

    def on_state(self, fn: Callable[[ConnectionState], None]) -> Callable[[], None]:
        """Receive every state change. Returns the unsubscribe function."""
        return self._delivery.add("state", fn)

    def on_idle(self, fn: Callable[[], None] | None) -> None:
        """``fn()`` on the reading thread whenever it has nothing more to read right now
        (and when a connection ends): where ``on_frame``'s listener stores what it grouped."""
        self._idle_hook = fn

    def on_frame(self, fn: Callable[[str, list[protocol.Event]], None] | None) -> None:
        """``fn(frame, events)`` runs on the reading thread for every message that holds
        events, before they are dispatched: the agent stores the message there, so a
        crash can lose nothing that was read. It must be quick and must not block."""
        self._frame_hook = fn

    def on_message(
        self, fn: Callable[[protocol.Unknown | protocol.Request], None]
    ) -> Callable[[], None]:
        """Receive elements that are neither events nor responses (newer connectors)."""
        return self._delivery.add("message", fn)

    def wait_state(
        self, predicate: Callable[[ConnectionState], bool], timeout: float
    ) -> ConnectionState | None:
        """The first state (the current one or any later) that satisfies ``predicate``;
        ``None`` after ``timeout``. Short-lived states between two polls are not missed."""
        return self._states.wait(predicate, timeout)

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
            run = Lifetime()
            self._run = run
            # Said now, not by the thread: wait_connected() right after start() must not
            # see the previous "stopped" and give up.
            self._publish_locked(run, CONNECTING, self._connecting_text())
            run.dispatcher = threading.Thread(
                target=self._delivery.run,
                args=(run.queue,),
                name="pz-connector-events",
                daemon=True,
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
        hard_shutdown(connecting_sock)  # TLS or upgrade in progress: nothing to close cleanly
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        if run.thread is not None and run.thread is not me:
            # A clean close first; if the thread is stuck in a read or write, cut the socket.
            run.thread.join(max(0.0, timeout * 0.6))
            if run.thread.is_alive():
                hard_shutdown(run.live_sock)
                run.thread.join(max(0.0, deadline - time.monotonic()))
            if run.thread.is_alive():
                log.warning("connector thread did not stop within %.1f s", timeout)
        if run.dispatcher is not None and run.dispatcher is not me:
            run.dispatcher.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._run is run:
                if self._states.current.kind != STOPPED:  # the thread could not say it itself
                    self._publish_locked(run, STOPPED, Text("stopped", "остановлено"))
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
                Text(
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

    def call_async(
        self, number: str, from_ext: str | None = None
    ) -> concurrent.futures.Future[protocol.Response]:
        """``from_ext``: the extension that rings first, when it is not ours (the team
        server dials for the manager whose token asked)."""
        return self.request_async(self._call_builder(number, from_ext))

    def transfer(self, call_id: str, ext: str, timeout: float = 5.0) -> protocol.Response:
        """Answer a transfer request: route ``call_id`` to ``ext``, or decline with ``""``."""
        return self.request(self._transfer_builder(call_id, ext), timeout)

    def transfer_async(
        self, call_id: str, ext: str
    ) -> concurrent.futures.Future[protocol.Response]:
        return self.request_async(self._transfer_builder(call_id, ext))

    def send_sms(
        self, number: str, text: str, timeout: float = 5.0, call_id: str = ""
    ) -> protocol.Response:
        """Send an SMS to ``number`` from the user's phone (``call_id``: ours, to match
        its status events)."""
        return self.request(self._sms_builder(number, text, call_id), timeout)

    def _call_builder(self, number: str, from_ext: str | None = None) -> Callable[[int], str]:
        phone, pv = from_ext or self._settings.phone, self._request_version
        return lambda rid: protocol.call_request(phone, number, rid, protocol_version=pv)

    def _transfer_builder(self, call_id: str, ext: str) -> Callable[[int], str]:
        pv = self._request_version
        return lambda rid: protocol.transfer_request(call_id, ext, rid, protocol_version=pv)

    def _sms_builder(self, number: str, text: str, call_id: str = "") -> Callable[[int], str]:
        phone, pv = self._settings.phone, self._request_version
        return lambda rid: protocol.sms_request(
            phone, number, text, rid, call_id=call_id, protocol_version=pv
        )

    def _submit(
        self, build: Callable[[int], str], timeout: float | None
    ) -> tuple[str, concurrent.futures.Future[protocol.Response]]:
        with self._lock:
            run, state = self._run, self._states.current
            conn = run.conn if run is not None else None
            # One counter for every connection (the sessions share it): ids never repeat.
            rid = conn.session.next_id() if conn is not None else next(self._ids)
        if run is None or conn is None:
            return str(rid), _failed(ConnectorError(not_connected_text(state)))
        frame = conn.session.frame(build(rid))
        fut: concurrent.futures.Future[protocol.Response] = concurrent.futures.Future()
        ttl = self._request_ttl if timeout is None else timeout
        with self._lock:
            conn = run.conn
            if conn is not None:
                conn.session.track(rid, now=time.monotonic(), ttl=ttl, waiter=fut)
                conn.outbox.append(frame)
            state = self._states.current
        if conn is None:  # dropped while the XML was being built
            return str(rid), _failed(ConnectorError(not_connected_text(state)))
        if threading.current_thread() is run.thread:
            # From the reading thread (a transfer in the frame hook): out now, not queued
            # behind the threads this message wakes (they took the GIL at the write).
            try:
                self._flush_outbox(conn)
            except Exception:  # the loop meets the broken socket next and ends the connection
                log.debug("send from the reading thread failed", exc_info=True)
                run.wake()
        else:
            run.wake()
        return str(rid), fut

    def _abandon(
        self,
        run: Lifetime | None,
        rid: str,
        fut: concurrent.futures.Future[protocol.Response],
        timeout: float,
    ) -> None:
        with self._lock:
            conn = run.conn if run is not None else None
            if conn is not None:
                conn.session.abandon(rid)
        _settle(fut, exc=ConnectorError(timed_out_text(timeout)))

    # ------------------------------------------------------------------ state publishing

    def _publish(self, run: Lifetime, kind: str, text: Text, **kw: Any) -> None:
        with self._lock:
            self._publish_locked(run, kind, text, **kw)

    def _publish_locked(self, run: Lifetime, kind: str, text: Text, **kw: Any) -> None:
        if run is not self._run:  # a thread of an earlier run that outlived stop()
            return
        st = ConnectionState(kind, text, since=time.time(), **kw)
        self._states.set(st)
        run.queue.put(("state", st))  # under the lock: queue order == state order
        log.debug("connector state: %s", text.en)

    # ------------------------------------------------------------------ connection thread

    def _io_loop(self, run: Lifetime) -> None:
        final: Outcome | None = None
        try:
            while not run.stopping.is_set():
                outcome = self._attempt(run)
                if run.stopping.is_set() or outcome.by_user:
                    break
                if not outcome.retry or not self._reconnect:
                    final = outcome
                    break
                delay = self._backoff.next_delay(refused=outcome.refused)
                self._publish(
                    run,
                    RETRYING,
                    Text(
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
            final = Outcome(
                Text(f"internal error: {exc!r}", f"внутренняя ошибка: {exc!r}"), retry=False
            )
        finally:
            if final is None:
                text, close = Text("stopped", "остановлено"), None
            else:
                text = Text(f"stopped: {final.text.en}", f"остановлено: {final.text.ru}")
                close = final.close
            with self._lock:  # atomic for start(): whoever sees "stopped" may start again
                self._publish_locked(run, STOPPED, text, close=close)
                run.finished.set()
            run.queue.put(END_OF_DISPATCH)
            run.close_wake()

    def _connecting_text(self) -> Text:
        url = self._settings.url  # never connect_url(): its query holds the password
        return Text(f"connecting to {url}", f"подключение к {url}")

    def _attempt(self, run: Lifetime) -> Outcome:
        """One connection attempt and, if it succeeds, its whole life."""
        url = self._settings.url
        with self._lock:
            if self._states.current.kind != CONNECTING:  # start() said it for the first attempt
                self._publish_locked(run, CONNECTING, self._connecting_text())
        try:
            ws = self._dialer.open(run)
        except Stopped:
            return Outcome(Text("stopped", "остановлено"), retry=False, by_user=True)
        except Exception as exc:  # every failure becomes a state, never a crash
            if run.stopping.is_set():
                return Outcome(Text("stopped", "остановлено"), retry=False, by_user=True)
            host = urlsplit(url).hostname or ""
            outcome = classify_open_error(exc, host, self._tls.ca_file, legacy=self._tls.legacy)
            if outcome.unexpected:
                log.error("unexpected error while connecting", exc_info=exc)
            with self._lock:
                if not self._attempted:
                    self._first_failure = outcome
                self._attempted = True
            return outcome
        finally:
            with self._lock:
                run.live_sock = None

        conn = Connection(ws, Session(self._settings.transport, ids=self._ids))
        with self._lock:
            run.conn = conn
            run.live_sock = ws.sock
            self._attempted, self._first_failure = True, None
        self._backoff.connected()
        self._publish(run, CONNECTED, Text(f"connected to {url}", f"подключено к {url}"))
        outcome: Outcome | None = None
        try:
            outcome = self._serve(run, conn)
        except Exception as exc:  # every failure becomes a state, never a crash
            outcome = classify_session_error(exc)
            if outcome.unexpected:
                log.error("unexpected error on the connection", exc_info=exc)
        finally:
            if outcome is None:  # BaseException: still release the waiters
                outcome = Outcome(Text("stopped", "остановлено"), retry=False, by_user=True)
            self._end_conn(run, conn, outcome)
        return outcome

    def _end_conn(self, run: Lifetime, conn: Connection, outcome: Outcome) -> None:
        self._idle()  # what was read before the end is stored now, not at the next frame
        with self._lock:
            run.conn = None
            run.live_sock = None
            pending = conn.session.connection_lost()
            conn.outbox.clear()
        try:
            conn.ws.shutdown()
        except Exception:
            log.debug("socket close failed", exc_info=True)
        for p in pending:
            _settle(p.waiter, exc=ConnectorError(answer_lost_text(outcome)))

    # ---------------------------------------------------------------- connected


    def _serve(self, run: Lifetime, conn: Connection) -> Outcome:
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
                return Outcome(Text("stopped", "остановлено"), retry=False, by_user=True)
            self._flush_outbox(conn)
            now = time.monotonic()
            next_deadline = self._expire(conn, now)
            wait = None if next_deadline is None else max(0.0, next_deadline - now)
            if interval:
                silent = now - last_rx
                if silent >= interval + self._ping_timeout:
                    text = Text(
                        f"no answer from the connector for {silent:.0f} s",
                        f"коннектор молчит {silent:.0f} с",
                    )
                    return Outcome(text, retry=True, close=protocol.CloseInfo(1006, text, True))
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
                r, _w, _x = select.select([sock, run.wake_r], [], [], 0)
                if not r:  # nothing more right now: what was read is stored before we wait
                    self._idle()
                    r, _w, _x = select.select([sock, run.wake_r], [], [], wait)
                if run.wake_r in r:
                    run.drain_wake()
                readable = sock in r
            if not readable:
                continue
            frame = read_frame(ws, self._ping_timeout)
            if frame is None:
                continue  # half a frame, or TLS bytes that held no data: back to select
            last_rx = time.monotonic()
            if frame.opcode == ABNF.OPCODE_CLOSE:
                return self._closed_by_connector(ws, frame.data)
            if frame.opcode == ABNF.OPCODE_PING:
                ws.pong(frame.data)
            elif frame.opcode != ABNF.OPCODE_PONG:  # a pong only proves the peer is alive
                message = conn.assembler.feed(frame)
                if message is not None:
                    self._on_frame(run, conn, message)

    def _idle(self) -> None:
        hook = self._idle_hook
        if hook is not None:
            try:
                hook()
            except Exception:
                log.exception("connector idle hook failed")

    def _flush_outbox(self, conn: Connection) -> None:
        while True:
            with self._lock:
                if not conn.outbox:
                    return
                frame = conn.outbox.popleft()
            conn.ws.send(frame)

    def _expire(self, conn: Connection, now: float) -> float | None:
        """Fail requests past their deadline; return the next deadline."""
        with self._lock:
            expired = conn.session.expire(now)
            next_deadline = conn.session.next_deadline
        for p in expired:
            _settle(p.waiter, exc=ConnectorError(timed_out_text(p.ttl or 0.0)))
        return next_deadline

    def _goodbye(self, ws: websocket.WebSocket) -> None:
        try:
            ws.close(status=1000, timeout=_CLOSE_WAIT)
        except Exception:
            log.debug("close handshake failed", exc_info=True)

    def _closed_by_connector(self, ws: websocket.WebSocket, data: bytes) -> Outcome:
        # Echo the close, but the code matters more: a peer that already hung up (and
        # makes this send fail) must not turn a 4009 into a "connection lost" and a retry.
        try:
            echo_close(ws, data)
        except Exception:
            log.debug("close echo failed", exc_info=True)
        closed = Session.closed(data)
        if not closed.retry:
            log.warning("connector closed the connection: %s", closed.text.both())
        return Outcome(closed.text, retry=closed.retry, close=closed.info)

    def _on_frame(self, run: Lifetime, conn: Connection, data: bytes | str) -> None:
        # Decoded outside the lock (a frame may be megabytes); matched under it, one by one.
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

    def _resolve(self, conn: Connection, resp: protocol.Response) -> None:
        with self._lock:
            answer = conn.session.answer(resp)
        if isinstance(answer, Unmatched):
            log.info("response with RequestID %r matches no request; ignored", resp.request_id)
            return
        _settle(answer.request.waiter, resp)
