"""Fault suite, the connector side (docs/reliability.md): what an attack on the agent found.

1. A connector message over 64 KiB was dropped with every event in it (3,000 events, 628 KB,
   gave one row). Frames up to ``protocol.MAX_FRAME_BYTES`` (16 MiB) are now decoded whole,
   safely (no DTD, no entities, bounded depth, linear time); what cannot be decoded whole
   reaches the caller as a ``DecodeError`` that keeps the whole raw frame.
2. Reconnects slowed to ~30 s on a flapping connector (the backoff reset only after 60 s
   up). Now a refused connect is retried quickly (0.25 s → 1 s), a logged-in connection's
   drop promptly, while accept-and-drop backs off and attempts are capped per minute.

Real sockets on loopback, our test connector (``ServerThread``) or a bare socket server
where a connector must misbehave; every wait is on a condition with a timeout. The only
fixed waits are the scenario's own durations (a connector down 0.3–1 s, up 1–3 s; a
10-second observation window), never a guess at when something will have happened.
"""

from __future__ import annotations

import math
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.client import CONNECTED, Backoff, ConnectorClient, TlsOptions
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, DecodeError, Event
from pz_excel.tools.testserver import ServerThread
from pz_excel.tools.testserver_events import build_event
from tests.test_connector import Recorder, read_http_request, socket_server, upgrade_answer

pytestmark = pytest.mark.fault

T = 10.0  # ceiling of every wait; passing waits take milliseconds


@pytest.fixture
def clients() -> Iterator[Callable[..., tuple[ConnectorClient, Recorder]]]:
    """Make started clients (each with a Recorder), always stopped at teardown."""
    made: list[ConnectorClient] = []

    def make(url: str, phone: str = "101", **kw: object) -> tuple[ConnectorClient, Recorder]:
        client = ConnectorClient(ConnectSettings(url, phone), **kw)  # type: ignore[arg-type]
        rec = Recorder(client)
        made.append(client)
        client.start()
        return client, rec

    yield make
    for client in made:
        client.stop()


def history_events(n: int, to: str = "101") -> list[Event]:
    """``n`` completed calls as the test connector builds them (``build_event``, the
    codec's own encoding), with the attributes of real history events."""
    events = []
    for i in range(n):
        fields = {
            "From": f"7343{i:07d}",
            "To": to,
            "CallID": str(470667154161667 + i),
            "Direction": "0",
            "Start": str(1_700_000_000 + 60 * i),
            "End": str(1_700_000_045 + 60 * i),
            "Line": "sip-trunk-1",
            "Record": f"https://pbx.example.ru/records/2024/01/15/{470667154161667 + i}.mp3",
            "System": "asterisk",
        }
        events.append(build_event(4, fields)[0])
    return events


def message_of(events: list[Event], transport=protocol.Transport.BASE64) -> str:
    """One connector message holding all ``events`` (PROTOCOL.md: several are allowed)."""
    return protocol.encode_frame("".join(e.to_xml() for e in events) + "\n", transport)


def key(e: Event) -> tuple[int, str, dict[str, str]]:
    return (e.type, e.call_id, dict(e.attrs))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank


# --------------------------------------------------------------------------- 1. the codec


def test_a_3000_event_message_decodes_whole_in_order_and_fast():
    events = history_events(3000)
    frame = message_of(events)
    assert len(frame) > 600_000  # the size that was lost (the old limit was 64 KiB)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        messages = protocol.decode_frame(frame)
        timings.append(time.perf_counter() - started)
    assert [key(m) for m in messages] == [key(e) for e in events]  # all, in order, exact
    print(f"\ndecode of a 3,000-event frame ({len(frame):,} bytes): {min(timings) * 1000:.1f} ms")
    assert min(timings) < 0.5  # ~20 ms here; linear in the frame

    raw = message_of(events, protocol.Transport.RAW)  # wss://: raw XML, same result
    assert [key(m) for m in protocol.decode_frame(raw)] == [key(e) for e in events]


def test_frames_over_16_mib_give_a_decode_error_that_keeps_the_whole_frame():
    limit = protocol.MAX_FRAME_BYTES
    assert limit == 16 * 1024 * 1024
    huge = "A" * (17 * 1024 * 1024)
    for frame in (huge, huge.encode("ascii")):
        started = time.perf_counter()
        [err] = protocol.decode_frame(frame)
        assert time.perf_counter() - started < 1.0
        assert isinstance(err, DecodeError) and "larger than" in err.reason
        assert err.raw == huge  # the whole frame, for the journal
        assert len(err.excerpt) <= 81  # the short one, for log lines
        assert len(repr(err)) < 400  # never megabytes in a log line

    # Counted in bytes, not characters: 9 M Cyrillic letters are 18 MB of UTF-8.
    cyrillic = '<Event type="2" callID="1" from="' + "я" * (9 * 1024 * 1024) + '"/>'
    [err] = protocol.decode_frame(cyrillic)
    assert isinstance(err, DecodeError) and "larger than" in err.reason

    # Just under the limit is decoded: one event with a ~12 MiB attribute, base64-encoded.
    padding = "x" * (limit * 3 // 4 - 200)
    frame = protocol.encode_frame(f'<Event type="4" callID="9" record="{padding}"/>')
    assert len(frame) <= limit
    [event] = protocol.decode_frame(frame)
    assert isinstance(event, Event) and event.record == padding


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n > 1 else "&lol;" * 10}">\n'
        for n in range(1, 10)
    )
    + ']>\n<Event type="2" callID="&lol9;"/>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<Event type="1" callID="&e;"/>'
)
PARAMETER_ENTITY = '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><x/>'
UNDECLARED_ENTITY = '<Event type="2" callID="&lol9;"/>'  # no DTD: nothing to expand


@pytest.mark.parametrize(
    "xml",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, UNDECLARED_ENTITY],
    ids=["billion-laughs", "external-entity", "parameter-entity", "undeclared-entity"],
)
def test_xml_bombs_are_decode_errors_without_expansion(xml):
    for frame in (xml, protocol.encode_frame(xml)):
        started = time.perf_counter()
        messages = protocol.decode_frame(frame)
        assert time.perf_counter() - started < 0.5
        [err] = messages
        assert isinstance(err, DecodeError), err
        assert err.raw == frame
        assert "lollol" not in err.reason and "root:" not in err.reason


def test_the_parser_refuses_a_dtd_even_past_the_quick_check():
    """The substring check is the first line; the parser itself is the second (a DTD
    inside the frame's wrapper element is not well-formed, and defusedxml forbids one)."""
    for xml in (BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY):
        with pytest.raises((ParseError, DefusedXmlException)):
            protocol.parse_tree(xml.split("?>", 1)[-1])


@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_deep_nesting_is_a_decode_error_not_a_recursion_error(depth):
    shapes = {
        "bare": "<a>" * depth + "</a>" * depth,
        "events": "<Events>"
        + "<a>" * depth
        + '<Event type="2" callID="1"/>'
        + "</a>" * depth
        + "</Events>",
        "response": "<Response><Code>0</Code><RequestID>1</RequestID><Data>"
        + "<a>" * depth
        + "</a>" * depth
        + "</Data></Response>",
    }
    for name, xml in shapes.items():
        for frame in (xml, protocol.encode_frame(xml)):
            assert len(frame) <= protocol.MAX_FRAME_BYTES
            started = time.perf_counter()
            [err] = protocol.decode_frame(frame)
            assert time.perf_counter() - started < 1.0, name
            assert isinstance(err, DecodeError), name
            assert "nested deeper" in err.reason, (name, err.reason)
            assert err.raw == frame


def test_nesting_up_to_the_limit_is_decoded():
    limit = protocol.MAX_XML_DEPTH
    [unknown] = protocol.decode_frame("<a>" * limit + "</a>" * limit)
    assert isinstance(unknown, protocol.Unknown) and unknown.xml.count("<a") == limit
    [err] = protocol.decode_frame("<a>" * (limit + 1) + "</a>" * (limit + 1))
    assert isinstance(err, DecodeError)


def test_a_partly_undecodable_message_keeps_its_events_and_the_whole_frame():
    good = history_events(2)
    xml = good[0].to_xml() + '<Event type="x" callID="5"/>' + good[1].to_xml()
    frame = protocol.encode_frame(xml)
    first, err, second = protocol.decode_frame(frame)
    assert [key(first), key(second)] == [key(e) for e in good]
    assert isinstance(err, DecodeError) and "numeric type" in err.reason
    assert err.raw == frame


# --------------------------------------------------------------------------- 1. the client


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    cert_path, key_path, _fp = tlsutil.self_signed_cert(tmp_path_factory.mktemp("tls"))
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_a_client_delivers_all_3000_events_of_one_message(scheme, cert, clients):
    tls = tlsutil.server_context(*cert) if scheme == "wss" else None
    with ServerThread(ssl_context=tls) as srv:
        opts = {"tls": TlsOptions(ca_file=cert[0])} if tls else {}
        client, rec = clients(srv.url, **opts)
        assert client.wait_connected(T)
        events = history_events(3000)
        transport = protocol.Transport.for_url(srv.url)
        srv.generate(2, {"From": "1", "To": "101", "CallID": "1"})  # one before
        assert srv.send_raw(message_of(events, transport)) == 1
        [after] = srv.generate(2, {"From": "2", "To": "101", "CallID": "2"})  # one after
        got = rec.wait_events(3002, T)
        assert [key(e) for e in got[1:3001]] == [key(e) for e in events]
        assert got[0].call_id == "1" and got[-1].call_id == after.call_id
        assert client.decode_errors == 0  # nothing skipped
        assert rec.kinds().count("connected") == 1  # on one connection


def test_a_client_reads_a_16_mib_frame_and_keeps_a_17_mib_one_as_a_decode_error(clients):
    errors: list[DecodeError] = []
    got_error = threading.Event()

    def on_error(err: DecodeError) -> None:
        errors.append(err)
        got_error.set()

    with ServerThread() as srv:
        client, rec = clients(srv.url, on_decode_error=on_error)
        assert client.wait_connected(T)
        padding = "x" * (protocol.MAX_FRAME_BYTES * 3 // 4 - 200)
        big = protocol.encode_frame(f'<Event type="2" callID="7" to="101" record="{padding}"/>')
        too_big = "B" * (17 * 1024 * 1024)
        assert len(big) <= protocol.MAX_FRAME_BYTES < len(too_big)
        srv.send_raw(big)
        srv.send_raw(too_big)
        [after] = srv.generate(2, {"From": "3", "To": "101"})
        got = rec.wait_events(2, T)
        assert got[0].call_id == "7" and got[0].record == padding
        assert got[1].call_id == after.call_id  # the connection lived on
        assert got_error.wait(T)
        [err] = errors
        assert "larger than" in err.reason and err.raw == too_big
        assert client.decode_errors == 1 and rec.kinds().count("connected") == 1


def test_a_peer_announcing_a_frame_over_the_hard_limit_is_dropped_unread(clients):
    """websocket-client reads whatever length a header announces; ours refuses first."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(upgrade_answer(read_http_request(conn)))
        try:
            conn.sendall(bytes([0x81, 127]) + struct.pack("!Q", 1 << 40) + b"x" * 65536)
            while conn.recv(4096):
                pass
        except OSError:
            pass

    with socket_server(handler) as url:
        client, _ = clients(url, reconnect=False)
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and "over the" in stopped.text.en, stopped


# --------------------------------------------------------------------------- 2. reconnecting


def test_reconnects_within_2_s_of_a_flapping_connector(clients):
    """20 restarts on one port, each down 0.3–1 s and up 1–3 s; the real default backoff."""
    rng = random.Random(1701)
    srv = ServerThread().start()
    try:
        client, rec = clients(srv.url, backoff=Backoff())
        assert client.wait_connected(T)
        latencies: list[float] = []
        for _ in range(20):
            srv.stop()
            assert client.wait_state(lambda s: s.kind != CONNECTED, T) is not None
            time.sleep(rng.uniform(0.3, 1.0))  # the scenario: the connector is down this long
            srv.start()
            listening = time.time()  # ConnectionState.since is time.time() too
            state = client.wait_state(
                lambda s, t0=listening: s.kind == CONNECTED and s.since >= t0, T
            )
            assert state is not None, f"not back within {T} s: {client.state.text.en}"
            latencies.append(state.since - listening)
            up = rng.uniform(1.0, 3.0)  # the scenario: the connector stays up this long
            time.sleep(max(0.0, listening + up - time.time()))
        [event] = srv.generate(2, {"From": "9", "To": "101"})
        assert rec.wait_events(1, T)[-1].call_id == event.call_id  # and it works
    finally:
        srv.stop()
    print(
        f"\nreconnect after 20 restarts: p95 {p95(latencies):.2f} s, "
        f"max {max(latencies):.2f} s, median {sorted(latencies)[10]:.2f} s"
    )
    assert len(latencies) == 20
    assert p95(latencies) < 2.0, latencies


def test_a_connector_that_accepts_and_drops_is_not_hammered(clients):
    """Two ways to drop at login, watched together for 10 s with the default backoff:
    TCP accepted then closed at once; the upgrade answered then closed at once."""
    accepts: dict[str, list[float]] = {"tcp": [], "upgrade": []}

    def tcp_drop(conn: socket.socket) -> None:
        accepts["tcp"].append(time.monotonic())
        conn.close()

    def upgrade_drop(conn: socket.socket) -> None:
        accepts["upgrade"].append(time.monotonic())
        try:
            conn.sendall(upgrade_answer(read_http_request(conn)))
            conn.sendall(bytes([0x88, 2]) + struct.pack("!H", 1000))  # close 1000, no login
        except OSError:
            pass
        conn.close()

    with socket_server(tcp_drop) as tcp_url, socket_server(upgrade_drop) as upgrade_url:
        started = time.monotonic()
        tcp_client, _ = clients(tcp_url, backoff=Backoff())
        upgrade_client, _ = clients(upgrade_url, backoff=Backoff())
        threading.Event().wait(10.0)  # the scenario: a 10-second observation window
        tcp_client.stop()
        upgrade_client.stop()
    counts = {k: sum(1 for t in v if t - started <= 10.0) for k, v in accepts.items()}
    print(f"\nattempts in 10 s against accept-and-drop: {counts}")
    assert 3 <= counts["tcp"] <= 12, counts
    assert 3 <= counts["upgrade"] <= 12, counts


# --------------------------------------------------------------------------- 2. the backoff


def test_backoff_lanes_refused_fast_failures_growing_login_resets():
    now = [0.0]
    b = Backoff(jitter="none", clock=lambda: now[0])
    assert [b.next_delay(refused=True) for _ in range(5)] == [0.25, 0.5, 1, 1, 1]
    b.reached()  # accepted: the refused lane starts again, the failure lane grows
    assert [b.next_delay() for _ in range(4)] == [0.5, 1, 2, 4]
    assert b.next_delay(refused=True) == 0.25

    b.connected()
    now[0] += 0.1  # dropped at login: still a failure
    assert b.next_delay() == 8
    b.connected()
    now[0] += b.stable_after  # logged in: its drop is retried promptly, both lanes reset
    assert b.next_delay() == 0.5
    assert b.next_delay(refused=True) == 0.25

    # Refused connects stay fast however slow the failure lane is set (never above it).
    slow = Backoff(base=30, cap=300, jitter="none")
    assert [slow.next_delay(refused=True) for _ in range(4)] == [0.25, 0.5, 1, 1]
    tiny = Backoff(base=0.01, cap=0.04, jitter="none")
    assert [tiny.next_delay(refused=True) for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    # Jitter applies to both lanes.
    equal = Backoff(rand=lambda: 0.0)
    assert [equal.next_delay(refused=True) for _ in range(3)] == [0.125, 0.25, 0.5]


def test_backoff_caps_attempts_that_reach_the_connector_per_rolling_minute():
    now = [0.0]
    b = Backoff(base=0.01, cap=0.01, jitter="none", clock=lambda: now[0], stable_after=0.0)
    attempts: list[float] = []
    while now[0] < 180.0:  # a connector that logs us in and drops at once, for 3 minutes
        attempts.append(now[0])
        b.reached()
        b.connected()
        now[0] += b.next_delay()
    # (1e-9: the clock here is a float sum of delays; one ulp is no extra attempt)
    windows = [sum(1 for t in attempts if s <= t < s + 60.0 - 1e-9) for s in attempts]
    assert max(windows) == b.max_per_minute == 30
    assert 85 <= len(attempts) <= 91  # 30 a minute, not 100 a second

    # Refused connects are not counted: they cost the connector nothing.
    r = Backoff(jitter="none", clock=lambda: now[0])
    for _ in range(100):
        assert r.next_delay(refused=True) <= 1.0
    assert Backoff(max_per_minute=None).max_per_minute is None
