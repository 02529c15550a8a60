"""ConnectorClient on real loopback sockets.

Most tests talk to the test connector (``ServerThread``). A small raw server stands in
where we need misbehaviour the test connector never shows: garbage frames, licence close
codes, SDK-style ``RequestID`` 0 answers, late answers, a silent peer, HTTP 503.
Every wait is on a condition with a timeout; nothing sleeps and hopes.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import queue
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.sync.server import ServerConnection, serve

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.client import (
    Backoff,
    ConnectionState,
    ConnectorClient,
    ConnectorError,
    TlsOptions,
)
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, Event, Response
from pz_excel.tools.testserver import DUPLICATE_REASON, ServerThread

T = 5.0  # generous ceiling for every wait; passing tests take milliseconds


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, cap=0.2, jitter="none")


class Recorder:
    """Collects a client's events and states; waits on them with a condition."""

    def __init__(self, client: ConnectorClient):
        self.events: list[Event] = []
        self.states: list[ConnectionState] = []
        self.cond = threading.Condition()
        client.subscribe(self._event)
        client.on_state(self._state)

    def _event(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def _state(self, state: ConnectionState) -> None:
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def wait_events(self, n: int, timeout: float = T) -> list[Event]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout), self.events
            return list(self.events)

    def wait_kinds(self, predicate: Callable[[list[str]], bool], timeout: float = T) -> None:
        """Callbacks run on the delivery thread: wait for them, not for the state."""
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.kinds()), timeout), self.kinds()

    def kinds(self) -> list[str]:
        with self.cond:
            return [s.kind for s in self.states]


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[ConnectorClient, Recorder]]]:
    """Build clients (and a Recorder for each) that are always stopped at teardown."""
    made: list[ConnectorClient] = []

    def make(
        url: str, phone: str = "101", password: str = "", *, start: bool = True, **kw: object
    ) -> tuple[ConnectorClient, Recorder]:
        kw.setdefault("backoff", fast_backoff())
        client = ConnectorClient(ConnectSettings(url, phone, password), **kw)  # type: ignore[arg-type]
        rec = Recorder(client)
        made.append(client)
        if start:
            client.start()
        return client, rec

    yield make
    for client in made:
        client.stop()


@pytest.fixture
def server() -> Iterator[ServerThread]:
    srv = ServerThread().start()
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- raw servers


def b64_frame(xml: str) -> str:
    return protocol.encode_frame(xml, protocol.Transport.BASE64)


def requests_of(frame: str | bytes) -> list[protocol.Request]:
    return [m for m in protocol.decode_frame(frame) if isinstance(m, protocol.Request)]


@contextlib.contextmanager
def raw_server(handler: Callable[[ServerConnection], None], **kw: object) -> Iterator[str]:
    """A bare ``websockets`` server running ``handler`` per connection; yields its ws:// URL."""
    kw.setdefault("ping_interval", None)
    srv = serve(handler, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/"
    finally:
        srv.shutdown()
        thread.join(T)


@contextlib.contextmanager
def socket_server(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    """A plain TCP server (for HTTP-level misbehaviour); yields a ws:// URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        # shutdown() first: close() alone wakes neither accept() nor a blocked recv().
        for sock in (listener, *conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread.join(T)


def read_http_request(conn: socket.socket) -> dict[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    lines = data.decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:]) if k}


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame (payloads under 64 KiB)."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    return head + bytes([126]) + struct.pack("!H", len(payload)) + payload


def read_client_frame(conn: socket.socket) -> bytes:
    """The payload of one masked client frame (payloads under 64 KiB)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    length = exactly(2)[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", exactly(2))[0]
    mask = exactly(4)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(exactly(length)))


def upgrade_answer(headers: dict[str, str]) -> bytes:
    """A valid 101 for a WebSocket upgrade request read by ``read_http_request``."""
    magic = headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    accept = base64.b64encode(hashlib.sha1(magic.encode()).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


# --------------------------------------------------------------------------- connecting, events


def test_connects_with_query_login_and_delivers_events_in_order(server, make_client):
    client, rec = make_client(server.url)
    assert client.wait_connected(T)
    rec.wait_kinds(lambda kinds: kinds[:2] == ["connecting", "connected"])
    assert client.state.text.en == f"connected to {client.settings.url}"
    assert server.wait_for(lambda: any("login = query" in x for x in server.log_lines), T)

    sent = []
    for n in range(20):
        event_type = (2, 32, 4)[n % 3]
        sent += server.generate(event_type, {"From": f"7343011{n:04d}", "To": "101"})
    got = rec.wait_events(len(sent))
    assert [(e.type, e.call_id, e.from_) for e in got] == [
        (e.type, e.call_id, e.from_) for e in sent
    ]
    assert client.decode_errors == 0


def test_header_login(server, make_client):
    client, _ = make_client(server.url, header_login=True)
    assert client.wait_connected(T)
    assert server.wait_for(lambda: any("login = header" in x for x in server.log_lines), T)


def test_requests_before_start_fail_fast(server, make_client):
    client, _ = make_client(server.url, start=False)
    with pytest.raises(ConnectorError) as err:
        client.call("102", timeout=T)
    assert "not connected" in err.value.text.en and "нет соединения" in err.value.text.ru
    fut = client.transfer_async("1", "101")
    assert isinstance(fut.exception(0), ConnectorError)


def test_bad_address_fails_in_the_constructor():
    with pytest.raises(protocol.ProtocolError):
        ConnectorClient(ConnectSettings("http://pbx", "101"))


# --------------------------------------------------------------------------- requests


def test_call_transfer_sms_answered_by_request_id(server, make_client):
    client, rec = make_client(server.url)
    assert client.wait_connected(T)

    resp = client.call("+7 (343) 0112233")
    assert resp.ok
    assert server.wait_for(
        lambda: "Call event from CRM: src = 101, dst = +7 (343) 0112233" in server.log_lines, T
    )

    [request] = server.generate(1, {"From": "73430112233"})
    assert rec.wait_events(1)[0].call_id == request.call_id
    assert client.transfer(request.call_id, "101").ok
    assert server.transfers[request.call_id] == "101"

    assert client.send_sms("+79001234567", "Привет & <hi>").ok

    # Many requests at once from many threads: each gets the answer with its own id.
    ids: dict[int, int] = {}
    lock = threading.Lock()

    def version(n: int) -> Callable[[int], str]:
        def build(rid: int) -> str:
            with lock:
                ids[n] = rid
            return protocol.get_version_request(rid)

        return build

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: client.request(version(n), timeout=T), range(40)))
    assert [a.request_id for a in answers] == [str(ids[n]) for n in range(40)]
    assert len(set(ids.values())) == 40
    assert all(a.version.startswith("Test Server") for a in answers)


def test_requests_from_inside_a_subscriber(server, make_client):
    """The agent answers a transfer request from its event callback: no deadlock."""
    client, _ = make_client(server.url)
    answers: queue.Queue[object] = queue.Queue()

    def on_event(event: Event) -> None:
        if event.type == 1:
            fut = client.transfer_async(event.call_id, "101")
            answers.put(client.request(protocol.get_version_request, timeout=T))  # blocking too
            answers.put(fut.result(T))

    client.subscribe(on_event)
    assert client.wait_connected(T)
    [request] = server.generate(1, {"From": "73430112233"})
    version, transfer = answers.get(timeout=T), answers.get(timeout=T)
    assert isinstance(version, Response) and version.version
    assert isinstance(transfer, Response) and transfer.ok
    assert server.transfers[request.call_id] == "101"


def test_unmatched_request_id_goes_to_the_oldest_pending(make_client):
    """SDK-style connectors answer every request with RequestID 0, in order."""
    got_all = threading.Event()

    def handler(ws: ServerConnection) -> None:
        held: list[protocol.Request] = []
        for frame in ws:
            for req in requests_of(frame):
                if req.get("To") == "warm-up":
                    ws.send(b64_frame(protocol.encode_response(0, "0", "warm-up")))
                    continue
                held.append(req)
            if len(held) == 3:  # answer only when all three wait, so all are pending
                got_all.set()
                for req in held:
                    ws.send(b64_frame(protocol.encode_response(0, "0", req.get("To"))))
                held.clear()

    with raw_server(handler) as url:
        client, _ = make_client(url)
        assert client.wait_connected(T)
        assert client.call("warm-up").details == "warm-up"  # ids 1, 2, 3 follow
        futures = [client.call_async(n) for n in ("a", "b", "c")]
        assert got_all.wait(T)
        assert [f.result(T).details for f in futures] == ["a", "b", "c"]


def test_request_timeout_and_a_late_answer_is_not_misattributed(make_client):
    late_sent = threading.Event()

    def handler(ws: ServerConnection) -> None:
        slow: protocol.Request | None = None
        for frame in ws:
            for req in requests_of(frame):
                if req.get("To") == "slow":
                    slow = req  # answered only after the client gave up on it
                    continue
                if slow is not None:
                    ws.send(b64_frame(protocol.encode_response(0, slow.request_id, "slow")))
                    slow = None
                    late_sent.set()
                ws.send(b64_frame(protocol.encode_response(0, req.request_id, req.get("To"))))

    with raw_server(handler) as url:
        client, _ = make_client(url)
        assert client.wait_connected(T)
        assert client.call("w0").details == "w0"
        assert client.call("w1").details == "w1"  # a non-zero id echoed: ids are trusted
        started = time.monotonic()
        with pytest.raises(ConnectorError) as err:
            client.call("slow", timeout=0.2)
        assert time.monotonic() - started < 2
        assert "no answer" in err.value.text.en and "не ответил" in err.value.text.ru
        # The stale answer arrives while this request waits: it must not take it.
        assert client.call("next").details == "next"
        assert late_sent.is_set()
        assert client.state.connected


def test_pending_requests_fail_fast_when_the_connection_drops(make_client):
    def handler(ws: ServerConnection) -> None:
        for frame in ws:
            if requests_of(frame):
                ws.close(1011, "boom")  # no answer, then gone

    with raw_server(handler) as url:
        client, _rec = make_client(url, backoff=Backoff(base=5, cap=5, jitter="none"))
        assert client.wait_connected(T)
        started = time.monotonic()
        with pytest.raises(ConnectorError) as err:
            client.call("102", timeout=T)
        assert time.monotonic() - started < 2
        assert "connection lost" in err.value.text.en
        retrying = client.wait_state(lambda s: s.kind == "retrying", T)
        assert retrying is not None and retrying.close is not None
        assert retrying.close.code == 1011 and retrying.retry_in == 5


# --------------------------------------------------------------------------- refusals: no retry


def test_two_clients_with_one_gid_the_older_stops_for_good(server, make_client):
    older, older_rec = make_client(server.url)
    assert older.wait_connected(T)
    newer, newer_rec = make_client(server.url)
    assert newer.wait_connected(T)

    stopped = older.wait_state(lambda s: s.kind == "stopped", T)
    assert stopped is not None and stopped.close is not None
    assert stopped.close.code == 4009 and not stopped.close.retry
    assert stopped.text.en.startswith("stopped: disconnected: the same user (GUID)")
    assert "(code 4009)" in stopped.text.en and "остановлено" in stopped.text.ru
    older.stop()  # joins the connection thread: it has ended, so it can never come back

    assert "retrying" not in older_rec.kinds() and older_rec.kinds().count("connected") == 1
    newer_rec.wait_kinds(lambda kinds: "connected" in kinds)
    assert newer.state.connected and newer_rec.kinds().count("connected") == 1
    assert newer.call("102").ok  # still the live connection
    assert sum(DUPLICATE_REASON in x for x in server.log_lines) == 1
    [row] = server.clients()
    assert row["Connected"] == "1"


def test_the_4009_close_is_echoed_with_its_code(server, make_client):
    """RFC 6455 §5.5.1: the close sent back carries the code received (it was 1000)."""
    older, _ = make_client(server.url)
    assert older.wait_connected(T)
    newer, _ = make_client(server.url)
    assert newer.wait_connected(T)
    assert older.wait_state(lambda s: s.kind == "stopped", T) is not None
    assert server.wait_for(lambda: len(server.closes_received) == 1)
    assert server.closes_received == [("101", 4009)]


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        (struct.pack("!H", 4001) + b"licence", struct.pack("!H", 4001)),
        (struct.pack("!H", 1001), struct.pack("!H", 1001)),
        (b"", b""),  # no code: an empty close back (1005 is never sent)
    ],
)
def test_close_echo_carries_the_code_received(make_client, sent, echoed):
    replies: queue.Queue[bytes] = queue.Queue()

    def handler(conn: socket.socket) -> None:
        conn.sendall(upgrade_answer(read_http_request(conn)) + server_frame(sent, opcode=0x8))
        replies.put(read_client_frame(conn))

    with socket_server(handler) as url:
        client, _ = make_client(url)
        assert replies.get(timeout=T) == echoed
        client.stop()


@pytest.mark.parametrize("header_login", [False, True])
def test_wrong_password_stops_without_retry(make_client, header_login):
    """Query form: TestServer accepts, then closes 4008 "Invalid password"; header form:
    HTTP 403 (PROTOCOL.md §1). Either way the client stops and says why, no retry."""
    srv = ServerThread(password="secret").start()
    try:
        client, rec = make_client(srv.url, password="wrong", header_login=header_login)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None
        if header_login:
            assert stopped.close.http and stopped.close.code == 403
            assert stopped.text.en == "stopped: wrong password or access denied (HTTP 403)"
        else:
            assert not stopped.close.http and stopped.close.code == 4008
            assert "password" in stopped.text.en
        assert stopped.text.ru.startswith("остановлено: неверный пароль") or \
            "пароль" in stopped.text.ru
        rec.wait_kinds(lambda kinds: "stopped" in kinds)
        assert "retrying" not in rec.kinds()
        with pytest.raises(ConnectorError):
            client.call("102")
    finally:
        srv.stop()


@pytest.mark.parametrize("password", ["секрет+/=", "ab", "~~~", "x"])
def test_right_password_connects(make_client, password):
    """Passwords whose base64 has '=' padding or '+' / '/' log in by the query form too
    (PROTOCOL.md §1: 'ab' and '~~~' were refused while CID was percent-encoded)."""
    srv = ServerThread(password=password).start()
    try:
        client, _ = make_client(srv.url, password=password)
        assert client.wait_connected(T)
    finally:
        srv.stop()


def test_auth_close_4008_stops(make_client):
    srv = ServerThread(password="secret", production_like=True).start()
    try:
        client, rec = make_client(srv.url, password="wrong")
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None
        assert stopped.close.code == 4008
        assert "wrong password" in stopped.text.en and "(code 4008)" in stopped.text.en
        rec.wait_kinds(lambda kinds: "stopped" in kinds)
        assert "retrying" not in rec.kinds()
    finally:
        srv.stop()


def test_licence_close_4001_stops(make_client):
    with raw_server(lambda ws: ws.close(4001, "licence")) as url:
        client, rec = make_client(url)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None
        assert stopped.close.code == 4001
        assert stopped.text.en == "stopped: licence key check failed (code 4001)"
        rec.wait_kinds(lambda kinds: "stopped" in kinds)
        assert "retrying" not in rec.kinds()


def test_a_4009_followed_by_an_instant_hang_up_still_stops(make_client):
    """Production connectors may drop TCP right after the close frame: still no retry."""

    def handler(conn: socket.socket) -> None:
        headers = read_http_request(conn)
        reason = b"User with the same GUID is connected"
        close = server_frame(struct.pack("!H", 4009) + reason, opcode=0x8)
        conn.sendall(upgrade_answer(headers) + close)
        conn.close()

    with socket_server(handler) as url:
        client, rec = make_client(url)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None and stopped.close.code == 4009
        rec.wait_kinds(lambda kinds: "stopped" in kinds)
        assert "retrying" not in rec.kinds()


def test_start_again_after_the_connector_stopped_us(make_client):
    logins: list[str] = []
    second = threading.Event()

    def handler(ws: ServerConnection) -> None:
        logins.append(ws.request.path if ws.request else "")
        if len(logins) == 1:
            ws.close(4007, "too many users")
            return
        second.set()
        for _ in ws:
            pass

    with raw_server(handler) as url:
        client, _ = make_client(url)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and "maximum number of users" in stopped.text.en
        client.start()  # the user's decision, e.g. after freeing a licence
        assert client.wait_connected(T)
        assert second.wait(T) and len(logins) == 2


def test_http_503_is_retried(make_client):
    def handler(conn: socket.socket) -> None:
        read_http_request(conn)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    with socket_server(handler) as url:
        client, _ = make_client(url)
        retrying = client.wait_state(lambda s: s.kind == "retrying", T)
        assert retrying is not None and retrying.close is not None
        assert retrying.close.code == 503 and retrying.close.http
        assert "HTTP 503" in retrying.text.en


def test_no_reconnect_option(make_client):
    with raw_server(lambda ws: ws.close(1011, "boom")) as url:
        client, rec = make_client(url, reconnect=False)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None and stopped.close.code == 1011
        rec.wait_kinds(lambda kinds: "stopped" in kinds)
        assert "retrying" not in rec.kinds()


# --------------------------------------------------------------------------- reconnecting


def test_reconnects_after_the_connector_restarts_on_the_same_port(server, make_client):
    client, rec = make_client(server.url)
    assert client.wait_connected(T)
    server.generate(2, {"From": "1", "To": "101"})
    rec.wait_events(1)

    server.stop()
    retrying = client.wait_state(lambda s: s.kind == "retrying", T)
    assert retrying is not None and retrying.retry_in is not None
    assert retrying.text.en.startswith("retrying in ")
    assert retrying.text.ru.startswith("повтор через ")
    with pytest.raises(ConnectorError):
        client.call("102", timeout=T)  # fails fast while down

    server.start()
    assert client.wait_connected(T)
    [event] = server.generate(2, {"From": "2", "To": "101"})
    assert rec.wait_events(2)[1].call_id == event.call_id
    assert client.call("102").ok
    rec.wait_kinds(lambda kinds: kinds.count("connected") == 2)
    kinds = rec.kinds()
    assert kinds.index("retrying") < len(kinds) - 1 - kinds[::-1].index("connected")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_connection_refused_is_retried_with_growing_delays(refused_port, make_client):
    port = refused_port
    _client, rec = make_client(
        f"ws://127.0.0.1:{port}", backoff=Backoff(base=0.01, cap=0.04, jitter="none")
    )
    with rec.cond:
        assert rec.cond.wait_for(lambda: rec.kinds().count("retrying") >= 4, T)
        delays = [s.retry_in for s in rec.states if s.kind == "retrying"][:4]
        texts = [s.text.en for s in rec.states if s.kind == "retrying"]
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert texts[0] == "retrying in 0.0 s: connection refused"


def test_stop_while_retrying_returns_promptly(refused_port, make_client):
    port = refused_port
    client, _ = make_client(f"ws://127.0.0.1:{port}", backoff=Backoff(base=30, jitter="none"))
    assert client.wait_state(lambda s: s.kind == "retrying", T) is not None
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 1.0
    assert client.state.kind == "stopped" and client.state.text.en == "stopped"
    client.stop()  # idempotent


def test_stop_while_the_handshake_hangs_returns_promptly(make_client):
    accepted = threading.Event()

    def handler(conn: socket.socket) -> None:  # accept, then never answer the upgrade
        accepted.set()
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass

    with socket_server(handler) as url:
        client, _ = make_client(url)
        assert accepted.wait(T)
        started = time.monotonic()
        client.stop()
        assert time.monotonic() - started < 1.0
        assert client.state.kind == "stopped"


def test_stop_from_inside_a_callback(server, make_client):
    client, _ = make_client(server.url, start=False)
    done = threading.Event()

    def on_event(event: Event) -> None:
        client.stop()
        done.set()

    client.subscribe(on_event)
    client.start()
    assert client.wait_connected(T)
    server.generate(2, {"From": "1", "To": "101"})
    assert done.wait(T)
    assert client.state.kind == "stopped"


def test_stop_is_clean_and_restartable(server, make_client):
    client, rec = make_client(server.url)
    assert client.wait_connected(T)
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 2.0
    assert rec.kinds()[-1] == "stopped"
    assert server.wait_for(lambda: any("code = 1000" in x for x in server.log_lines), T)
    client.start()
    assert client.wait_connected(T)


# --------------------------------------------------------------------------- backoff (pure)


def test_backoff_sequence_caps_and_resets_after_a_stable_minute():
    now = [0.0]
    # stable_after given: the default is now 0.5 s (tests/test_faults_connector.py).
    b = Backoff(rand=lambda: 1.0, clock=lambda: now[0], jitter="full", stable_after=60.0)
    assert [b.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]

    b.connected()
    now[0] += 59.9  # dropped before a stable minute: keeps backing off
    assert b.next_delay() == 30
    b.connected()
    now[0] += 60.0  # stayed up a minute: starts again from the base
    assert [b.next_delay() for _ in range(3)] == [0.5, 1, 2]


def test_backoff_jitter_modes():
    full = Backoff(rand=lambda: 0.0, jitter="full")
    assert [full.next_delay() for _ in range(3)] == [0, 0, 0]
    equal = Backoff(rand=lambda: 0.0, jitter="equal")
    assert [equal.next_delay() for _ in range(4)] == [0.25, 0.5, 1, 2]
    half = Backoff(rand=lambda: 0.5, jitter="equal")
    assert [half.next_delay() for _ in range(3)] == [0.375, 0.75, 1.5]
    none = Backoff(rand=lambda: 0.0, jitter="none")
    assert [none.next_delay() for _ in range(2)] == [0.5, 1]
    assert Backoff().next_delay() <= 0.5
    many = Backoff(jitter="none")
    assert max(many.next_delay() for _ in range(5000)) == 30  # no overflow
    with pytest.raises(ValueError):
        Backoff(jitter="bogus")


# --------------------------------------------------------------------------- robustness


def test_garbage_frames_never_kill_the_connection(make_client):
    garbage: list[str | bytes] = [
        "!!! not base64 !!!",
        b64_frame("<Event type="),  # not well-formed
        b64_frame('<Event type="x" callID="1"/>'),  # no numeric type
        "",
        b"\xff\xfe\x00 binary junk",
        b64_frame("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
        base64.b64encode(b"\xc3\x28 bad utf-8").decode(),
    ]
    good = protocol.encode_event(2, "777", {"from": "1", "to": "101", "line": " "})
    unknown = '<Status level="3"/>'

    def handler(ws: ServerConnection) -> None:
        for frame in garbage:
            ws.send(frame)
        ws.send(b64_frame(unknown))
        ws.send(b64_frame(good + "\n\0"))
        for frame in ws:
            for req in requests_of(frame):
                ws.send(b64_frame(protocol.encode_response(0, req.request_id)))

    errors: list[protocol.DecodeError] = []
    with raw_server(handler) as url:
        client, rec = make_client(url, on_decode_error=errors.append)
        others: list[object] = []
        client.on_message(others.append)
        [event] = rec.wait_events(1)
        assert (event.type, event.call_id, event.line) == (2, "777", "")
        assert client.call("102").ok
        assert client.decode_errors == len(garbage) == len(errors)
        assert [getattr(m, "tag", None) for m in others] == ["Status"]
        assert rec.kinds().count("connected") == 1 and client.state.connected


def test_fragmented_messages_are_reassembled(make_client):
    xml = protocol.encode_event(4, "4242", {"from": "1", "to": "101", "record": "x" * 3000})

    def handler(ws: ServerConnection) -> None:
        frame = b64_frame(xml)
        ws.send([frame[i : i + 1000] for i in range(0, len(frame), 1000)])  # fragments
        for _ in ws:
            pass

    with raw_server(handler) as url:
        client, rec = make_client(url)
        [event] = rec.wait_events(1)
        assert event.call_id == "4242" and event.record == "x" * 3000
        assert client.decode_errors == 0


def test_half_a_frame_does_not_hold_up_requests(make_client):
    event = b64_frame(protocol.encode_event(2, "55", {"from": "1", "to": "101"})).encode()
    frame = server_frame(event)

    def handler(conn: socket.socket) -> None:
        conn.sendall(upgrade_answer(read_http_request(conn)) + frame[:7])
        [request] = requests_of(read_client_frame(conn))  # sent while half a frame waits
        answer = b64_frame(protocol.encode_response(0, request.request_id, "ok"))
        conn.sendall(frame[7:] + server_frame(answer.encode()))
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass

    with socket_server(handler) as url:
        client, rec = make_client(url)
        assert client.wait_connected(T)
        assert client.call("102").details == "ok"
        assert rec.wait_events(1)[0].call_id == "55"


def test_a_failing_subscriber_does_not_stop_delivery(server, make_client, caplog):
    client, rec = make_client(server.url, start=False)

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    unsubscribe = client.subscribe(broken)
    client.start()
    assert client.wait_connected(T)
    server.generate(2, {"From": "1", "To": "101"})
    server.generate(2, {"From": "2", "To": "101"})
    assert [e.from_ for e in rec.wait_events(2)] == ["1", "2"]
    assert "subscriber bug" in caplog.text
    unsubscribe()
    unsubscribe()  # idempotent
    assert client.state.connected


def test_server_pings_are_answered(make_client):
    ponged: queue.Queue[bool] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        ponged.put(ws.ping(b"are you there").wait(T))
        for _ in ws:
            pass

    with raw_server(handler) as url:
        _client, _ = make_client(url)
        assert ponged.get(timeout=T) is True


def test_our_pings_keep_a_quiet_but_live_connection(make_client):
    def handler(ws: ServerConnection) -> None:  # never sends a thing, but answers pings
        for _ in ws:
            pass

    with raw_server(handler) as url:
        client, _ = make_client(url, ping_interval=0.05, ping_timeout=0.1)
        assert client.wait_connected(T)
        # Ten ping intervals of silence from the server's side: no drop.
        assert client.wait_state(lambda s: s.kind != "connected", 0.5) is None


def test_a_silent_peer_is_detected_by_our_pings(make_client):
    def handler(conn: socket.socket) -> None:  # a correct upgrade, then total silence
        conn.sendall(upgrade_answer(read_http_request(conn)))
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass

    with socket_server(handler) as url:
        client, _ = make_client(url, ping_interval=0.1, ping_timeout=0.2)
        assert client.wait_connected(T)
        retrying = client.wait_state(lambda s: s.kind == "retrying", T)
        assert retrying is not None and "no answer from the connector" in retrying.text.en


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str, str]:
    cert_path, key_path, fingerprint = tlsutil.self_signed_cert(tmp_path_factory.mktemp("tls"))
    return str(cert_path), str(key_path), fingerprint


@pytest.fixture
def tls_server(cert) -> Iterator[ServerThread]:
    srv = ServerThread(ssl_context=tlsutil.server_context(cert[0], cert[1])).start()
    yield srv
    srv.stop()


def test_wss_with_a_self_signed_certificate_trusted_via_ca_file(tls_server, cert, make_client):
    client, rec = make_client(tls_server.url, tls=TlsOptions(ca_file=cert[0]))
    assert client.wait_connected(T)
    [event] = tls_server.generate(2, {"From": "1", "To": "101"})
    assert rec.wait_events(1)[0].call_id == event.call_id  # raw XML transport over wss
    assert client.call("102").ok


def test_wss_untrusted_certificate_stops_with_a_reason(tls_server, make_client):
    client, rec = make_client(tls_server.url)  # system CAs only
    stopped = client.wait_state(lambda s: s.kind == "stopped", T)
    assert stopped is not None and "not trusted" in stopped.text.en
    rec.wait_kinds(lambda kinds: "stopped" in kinds)
    assert "retrying" not in rec.kinds()
    assert tls_server.clients() == []


def test_wss_with_an_unreadable_ca_file_stops_with_a_reason(tls_server, tmp_path, make_client):
    client, _ = make_client(tls_server.url, tls=TlsOptions(ca_file=str(tmp_path / "none.pem")))
    stopped = client.wait_state(lambda s: s.kind == "stopped", T)
    assert stopped is not None and "cannot set up TLS" in stopped.text.en


def test_wss_with_a_pinned_fingerprint(tls_server, cert, make_client):
    pin = ":".join(cert[2][i : i + 2] for i in range(0, 64, 2)).upper()  # as browsers show it
    client, _ = make_client(tls_server.url, tls=TlsOptions(pin_sha256=pin))
    assert client.wait_connected(T)
    assert client.call("102").ok


def test_wss_with_a_wrong_pin_stops_before_the_login_is_sent(tls_server, make_client):
    client, rec = make_client(tls_server.url, tls=TlsOptions(pin_sha256="ab" * 32))
    stopped = client.wait_state(lambda s: s.kind == "stopped", T)
    assert stopped is not None
    assert "does not match the pinned fingerprint" in stopped.text.en
    assert "не совпадает" in stopped.text.ru and "ab" * 32 in stopped.text.en
    rec.wait_kinds(lambda kinds: "stopped" in kinds)
    assert "retrying" not in rec.kinds()
    assert tls_server.clients() == []  # no upgrade request, so no password, ever reached it


def test_legacy_mode_needs_a_pin(cert):
    with pytest.raises(ValueError) as err:
        TlsOptions(legacy=True)
    assert "pinned" in str(err.value) and "отпечат" in str(err.value)
    with pytest.raises(ValueError):
        TlsOptions(pin_sha256="not-hex")
    ctx = TlsOptions(legacy=True, pin_sha256=cert[2]).ssl_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1 and ctx.verify_mode == ssl.CERT_NONE
    names = {c["name"] for c in ctx.get_ciphers()}
    assert "AES256-SHA" in names and not any(n.startswith("DHE-") for n in names)


def old_connector_context(directory: Path) -> tuple[ssl.SSLContext, str]:
    """Like TestServer -s (PROTOCOL.md §5): TLS 1.0 only, AES256-SHA, an expired
    self-signed 1024-bit RSA certificate. Returns the context and the fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "old.pem", directory / "old.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("AES256-SHA:@SECLEVEL=0")
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, tlsutil.fingerprint_sha256(cert.public_bytes(serialization.Encoding.DER))


def test_legacy_mode_with_a_pin_reaches_an_old_tls_1_0_connector(tmp_path, make_client):
    try:
        server_ctx, pin = old_connector_context(tmp_path)
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.0: {exc}")
    srv = ServerThread(ssl_context=server_ctx).start()
    try:
        modern, _ = make_client(srv.url, tls=TlsOptions(pin_sha256=pin))
        refused = modern.wait_state(lambda s: s.kind in ("retrying", "stopped"), T)
        assert refused is not None and "legacy TLS" in refused.text.en
        legacy, _ = make_client(srv.url, tls=TlsOptions(pin_sha256=pin, legacy=True))
        if not legacy.wait_connected(T):
            pytest.skip(f"TLS 1.0 is disabled in this OpenSSL: {legacy.state.text.en}")
        assert legacy.call("102").ok
    finally:
        srv.stop()
