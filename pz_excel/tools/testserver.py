"""A stand-in for the vendor's TestServer 1.1.2, on ``websockets`` (asyncio), any OS.

By default it behaves exactly as TestServer 1.1.2 was observed to (PROTOCOL.md and
``shared/protocol/captures``; where they differ, the capture wins), and is never kinder:
both login forms; a wrong password as the vendor answers it (query form with a wrong
``CID``: accepted, then closed 4008 "Invalid password"; no ``CID``, the header form, or no
parameters at all: HTTP 403); one connection per GUID (4009); base64 frames over ``ws://``
and raw XML over ``wss://`` (events there end with ``\0``); event routing by extension
and broadcast mask (PROTOCOL.md §1); replay of missed call history; the first-answer-wins
transfer race; one ping timer for all clients (payload ``server ping string``); call IDs
``(unix second << 18) | n`` with ``n`` counting up, as in the captures; requests answered as
in :mod:`pz_excel.tools.testserver_requests`.

``production_like=True`` (``--production-like``) adds what production connectors do and
TestServer does not, for the demo: a wrong password closes 4008 "Authorization error" for
every login form, ``ClientGUID`` of a ``Generate`` also reaches that GUID, a taken transfer
rings (type 2), and ``Simulation on`` plays call progress after ``Call`` and ``Transfer``.

Two ways to run it:

* ``pz-excel testserver`` — a console process for people (``command`` below);
* :class:`ServerThread` — embedded in tests, the demo and the benchmarks: the server runs
  on its own asyncio loop in a daemon thread and is driven from ordinary threads.

All XML goes through :mod:`pz_excel.protocol`; nothing here encodes or parses by hand.
"""


from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import ipaddress
import logging
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import IO, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import Event
from pz_excel.tools.testserver_events import CallIds, belongs, build_event
from pz_excel.tools.testserver_requests import SIMULATION_TASK, RequestsMixin
from pz_excel.tools.testserver_state import (
    QUIET,
    HeaderView,
    HistoryEntry,
    KnownClient,
    PendingTransfer,
    Session,
    bind_error,
    on_loop,
    peer_ip,
)

DEFAULT_VERSION = "Test Server v1.1.2"  # GetVersion, exactly as the vendor's
SERVER_HEADER = "WebSocket++/0.2.0dev"  # the vendor's upgrade response (diagnostic capture)
PING_INTERVAL = 31.0  # seconds: TestServer 1.1.2 pings every client at once about this often
PING_PAYLOAD = b"server ping string"  # the vendor's ping payload
#: Close reason of the older connection of a GUID that logged in again (capture wording).
DUPLICATE_REASON = "User with the same GUID is connected"
AUTH_REASON = "Authorization error"  # production connectors (production_like)
INVALID_PASSWORD_REASON = "Invalid password"  # TestServer 1.1.2, query form
HISTORY_LIMIT = 10_000  # completed calls kept for replay
PENDING_TRANSFER_LIMIT = 10_000  # transfer requests remembered for their answers
LOG_LINES_LIMIT = 100_000  # ``log_lines`` is trimmed past this, so a long run stays small

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the server


class ServerThread(RequestsMixin):
    """The test connector on its own asyncio loop in a daemon thread.

    ``start()`` returns once it listens; ``stop()`` closes every connection (1001) and
    stops listening; ``start()`` again listens on the same port (a port of 0 is resolved
    on the first start and kept). Known clients, call history and transfers survive a
    restart, like a connector with a persistent store.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "",
        *,
        ssl_context: ssl.SSLContext | None = None,
        production_like: bool = False,
        simulate: bool = False,
        simulate_delay: float = 0.05,
        log_path: str | Path | None = None,
        ping_interval: float | None = PING_INTERVAL,
        version: str = DEFAULT_VERSION,
        on_log: Callable[[str], None] | None = None,
        close_timeout: float = 1.0,
    ):
        self.host = host
        self.port = int(port)
        self.password = password
        self.ssl_context = ssl_context
        self.production_like = production_like
        self.simulate_delay = simulate_delay
        self.log_path = Path(log_path) if log_path else None
        self.ping_interval = ping_interval
        self.version = version
        # Called with each timestamped log line (the CLI prints them); may be None.
        self.on_log = on_log
        # Short: raw test clients that never read would otherwise hold stop() for 10 s.
        self.close_timeout = close_timeout

        self.log_lines: list[str] = []
        self.transfers: dict[str, str] = {}
        # (GUID, the close code its client sent back) per ended connection, in order.
        self.closes_received: list[tuple[str, int | None]] = []

        # One re-entrant lock guards all state; the Condition lets threads wait on it.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._simulate = simulate  # plays only when production_like
        self._call_ids = CallIds()
        self._clients: dict[str, KnownClient] = {}  # by GUID, in first-login order
        self._history: deque[HistoryEntry] = deque(maxlen=HISTORY_LIMIT)
        self._pending: OrderedDict[str, PendingTransfer] = OrderedDict()
        self._log_file: IO[str] | None = None

        self._start_stop = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> ServerThread:
        """Listen, then return. Raises :class:`UserError` if the port can't be bound."""
        with self._start_stop:
            if self._thread is not None:
                return self
            started = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(started, failure), name="pz-testserver", daemon=True
            )
            thread.start()
            started.wait()
            if failure:
                thread.join(5)
                raise failure[0]
            self._thread = thread
            self._log(f"Server started on {self.url}")
            return self

    def stop(self) -> None:
        """Close every connection (1001), stop listening, end the loop thread."""
        with self._start_stop:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            try:
                fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                fut.result(timeout=self.close_timeout + 10)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _log.warning("test server did not shut down cleanly")
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
                self._thread = None
                self._loop = None
            self._log("Server stopped")
            with self._lock:
                if self._log_file is not None:
                    self._log_file.close()
                    self._log_file = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                failure.append(bind_error(exc, self.host, self.port))
                return
            self._loop = loop
            started.set()
            loop.run_forever()
        finally:
            started.set()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ssl=self.ssl_context,
            ping_interval=None,  # one timer for all clients instead, as the vendor's
            close_timeout=self.close_timeout,
            server_header=SERVER_HEADER,
            logger=QUIET,
        )
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        if self.ping_interval:
            self._spawn(self._ping_all(self.ping_interval), "pz-ping")

    async def _ping_all(self, interval: float) -> None:
        """Ping every connected client at once, every ``interval`` seconds (PROTOCOL.md §1).
        No pong is awaited: the vendor was not seen dropping a client that did not answer."""
        while True:
            await asyncio.sleep(interval)
            with self._lock:
                sessions = self._sessions()
            for session in sessions:
                with contextlib.suppress(Exception):  # closing, or the last ping unanswered
                    await session.ws.ping(PING_PAYLOAD)

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            if task.get_name() in (SIMULATION_TASK, "pz-ping"):
                task.cancel()  # the 4009 closes must finish, or their sockets linger
        server, self._server = self._server, None
        if server is None:
            return
        server.close()  # 1001 "going away" to every connection
        try:
            await asyncio.wait_for(server.wait_closed(), self.close_timeout + 1)
        except asyncio.TimeoutError:
            # A peer that half-closed and never let go: drop it rather than hang stop().
            for connection in list(server.all_connections):
                connection.transport.abort()
            await asyncio.wait_for(server.wait_closed(), 5)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str = "") -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the loop thread (where sessions live) and return its result; run it
        here when the server is stopped (no sessions then) or we are the loop thread."""
        loop = self._loop
        if loop is None or not loop.is_running() or on_loop(loop):
            with self._lock:
                return fn()
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            try:
                with self._lock:
                    fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                fut.set_exception(exc)

        loop.call_soon_threadsafe(work)
        return fut.result(timeout=10)

    # ------------------------------------------------------------------ public helpers

    def generate(self, event_type: int, fields: dict[str, str]) -> list[Event]:
        """Emit what a Diagnostic ``Generate`` with these ``Data`` fields emits (thread-safe).

        Keys as on the wire: From, To, CallID, Line, Start, End, Duration, Direction,
        Record, Smstext, System, ClientGUID. Returns the distinct events sent.
        """

        def work() -> list[Event]:
            event, target = build_event(event_type, fields, self._new_call_id)
            self._emit(event, target)
            return [event]

        return self._call(work)

    def send_raw(self, frame: str, guid: str | None = None) -> int:
        """Send one text frame exactly as given (no encoding, no routing, no history) to
        every connected client, or to ``guid`` only: for tests of what a connector may
        send, e.g. many events in one message, or an oversize or broken frame. Returns the
        number of clients it was queued for, in order after what they were sent before."""

        def work() -> int:
            sessions = [s for s in self._sessions() if guid is None or s.guid == guid]
            for session in sessions:
                session.queue.put_nowait(frame)
            return len(sessions)

        return self._call(work)

    def clients(self) -> list[dict[str, str]]:
        """The GetClients rows: id, ip, type, GUID, Connected, PhoneNumber (as strings)."""
        with self._lock:
            return [c.row() for c in self._clients.values()]

    def _new_call_id(self) -> str:
        return self._call_ids.next()

    def set_simulation(self, on: bool) -> None:
        with self._lock:
            self._simulate = bool(on)
            self._log(f"Simulation mode {'on' if on else 'off'}")

    @property
    def simulation(self) -> bool:
        return self._simulate

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is true (re-checked on every state change)."""
        with self._cond:
            return bool(self._cond.wait_for(predicate, timeout))

    # ------------------------------------------------------------------ logging

    def _log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        stamped = f"{stamp}.{int(time.time() * 1000) % 1000:03d} {line}"
        with self._cond:
            self.log_lines.append(line)
            if len(self.log_lines) > LOG_LINES_LIMIT:
                del self.log_lines[: LOG_LINES_LIMIT // 10]
            if self.log_path is not None:
                try:
                    if self._log_file is None:
                        self.log_path.parent.mkdir(parents=True, exist_ok=True)
                        self._log_file = self.log_path.open("a", encoding="utf-8")
                    self._log_file.write(stamped + "\n")
                    self._log_file.flush()
                except OSError as exc:  # a full disk must not take the server down
                    _log.warning("cannot write the log file %s: %s", self.log_path, exc)
                    self.log_path = None
            self._cond.notify_all()
        if self.on_log is not None:
            self.on_log(stamped)

    # ------------------------------------------------------------------ connections

    def _process_request(self, ws: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        login = protocol.parse_login(request.path, HeaderView(request.headers))
        ip = peer_ip(ws)
        if login is None:  # TestServer 1.1.2: a login with no parameters is a 403 too
            self._log(f"Connection refused: no client GUID or extension, ip = {ip}")
            return ws.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        if login.password != self.password and not self.production_like:
            if login.form == "query" and login.cid_given:
                return None  # PROTOCOL.md §1: accepted (101), then closed 4008, see _handler
            self._log(f"Authorization failed: GUID = {login.guid}, ip = {ip}")
            return ws.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # the handshake is done
        login = protocol.parse_login(request.path, HeaderView(request.headers))
        if login is None:  # refused in _process_request already
            return
        ip = peer_ip(ws)
        if login.password != self.password:  # a query-form CID, or production_like
            self._log(f"Authorization failed: GUID = {login.guid}, ip = {ip}")
            await ws.close(4008, AUTH_REASON if self.production_like else INVALID_PASSWORD_REASON)
            return
        session = Session(ws, login, ip, raw=self.ssl_context is not None)
        session.writer = asyncio.get_running_loop().create_task(session.write_loop())
        with self._lock:
            older = self._register(session)
        if older is not None:
            self._spawn(older.ws.close(4009, DUPLICATE_REASON))
        try:
            async for message in ws:
                with self._lock:
                    self._on_frame(session, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.closes_received.append((session.guid, ws.close_code))
                self._unregister(session)
            session.queue.put_nowait(None)  # flush what is queued, then end the writer
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.writer, timeout=self.close_timeout)

    def _register(self, session: Session) -> Session | None:
        login = session.login
        client = self._clients.get(login.guid)
        older = None
        if client is None:
            client = KnownClient(
                len(self._clients), login.guid, login.client_type, login.phone, session.ip
            )
            self._clients[login.guid] = client
        else:
            older = client.session
            client.client_type, client.phone, client.ip = (
                login.client_type,
                login.phone,
                session.ip,
            )
        client.session = session
        if older is not None:
            self._log(
                f"User with the same GUID is connected: GUID = {login.guid}, "
                f"the older connection is closed (4009)"
            )
        self._log(
            f"Client connected: GUID = {login.guid}, type = {login.client_type}, "
            f"PhoneNumber = {login.phone}, ip = {session.ip}, login = {login.form}"
            + (f", tls = {session.tls_version}" if session.tls_version else "")
        )
        self._replay(session)
        return older

    def _unregister(self, session: Session) -> None:
        client = self._clients.get(session.guid)
        if client is not None and client.session is session:
            client.session = None
            code = session.ws.close_code
            self._log(f"Client disconnected: GUID = {session.guid}, code = {code}")

    def _replay(self, session: Session) -> None:
        """Send the history this GUID has not had, marked missed (the last missedFinal)."""
        owed = [
            entry
            for entry in self._history
            if session.guid not in entry.delivered
            and (
                belongs(entry.event, session.phone, session.mask)
                or entry.target_guid == session.guid  # "" unless production_like: _emit
            )
        ]
        for n, entry in enumerate(owed, 1):
            attrs = dict(entry.event.attrs, missed="1")
            if n == len(owed):
                attrs["missedFinal"] = "1"
            session.send_event(Event(entry.event.type, entry.event.call_id, attrs).to_xml())
            entry.delivered.add(session.guid)
        if owed:
            self._log(f"Missed events sent: GUID = {session.guid}, count = {len(owed)}")

    # ------------------------------------------------------------------ events

    def _sessions(self) -> list[Session]:
        return [c.session for c in self._clients.values() if c.session is not None]

    def _emit(self, event: Event, target_guid: str = "") -> list[Session]:
        """Route one event to its recipients; remember history and transfer requests.

        ``target_guid`` (a Generate's ``ClientGUID``) is a recipient only when production_like:
        TestServer 1.1.2 sent ``generate outans … GUID`` to the ``from`` extension alone."""
        if not self.production_like:
            target_guid = ""
        recipients = [
            s
            for s in self._sessions()
            if belongs(event, s.phone, s.mask) or (target_guid and s.guid == target_guid)
        ]
        xml = event.to_xml()
        for session in recipients:
            session.send_event(xml)
        if event.type == 4:
            self._history.append(HistoryEntry(event, target_guid, {s.guid for s in recipients}))
        elif event.type == 1:
            self._pending[event.call_id] = PendingTransfer(
                event.call_id,
                event.from_,
                event.attrs.get("line", " "),
                event.system,
                {s.guid for s in recipients if s.phone},
            )
            while len(self._pending) > PENDING_TRANSFER_LIMIT:
                self._pending.popitem(last=False)
        extra = f", to = {event.to}" if event.to else ""
        self._log(
            f"Event sent: type = {event.type}, callID = {event.call_id}, "
            f"from = {event.from_}{extra}, clients = {len(recipients)}"
        )
        return recipients

    def _emit_fields(self, event_type: int, fields: Mapping[str, object | None]) -> Event:
        event, target = build_event(event_type, fields, self._new_call_id)
        self._emit(event, target)
        return event

    async def _play(self, steps: list[tuple[int, dict[str, str]]]) -> None:
        """Simulated call progress: one event per ``simulate_delay``."""
        for event_type, fields in steps:
            await asyncio.sleep(self.simulate_delay)
            with self._lock:
                self._emit_fields(event_type, fields)
