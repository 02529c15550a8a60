"""Fault suite, the local API side: hostile or clumsy local clients. Loopback only, the real
``LocalApi`` with small routes of our own, bounded in count and time."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest

from pz_excel.agent import api as api_mod
from pz_excel.agent.api import LocalApi
from tests.conftest import wait_until

pytestmark = pytest.mark.fault


def _status(params, body):
    return {"state": "connected"}


def _echo(params, body):
    return {"params": params, "body": body}


def _calls_like_the_agent(params, body):  # agent.api_calls parses limit exactly so
    return {"limit": max(1, min(int(params.get("limit") or 50), 1000))}


def _stats_like_the_agent(params, body):  # agent.api_stats parses days exactly so
    days = params.get("days")
    since = datetime.now() - timedelta(days=float(days)) if days else None
    return {"since": since}


def _with_int_param(params, body):
    return {"limit": api_mod.int_param(params, "limit", 50, 1, 1000)}


def _with_float_param(params, body):
    return {"days": api_mod.float_param(params, "days", None, 0, 36500)}


ROUTES = {
    ("GET", "/status"): _status,
    ("GET", "/echo"): _echo,
    ("POST", "/echo"): _echo,
    ("GET", "/calls"): _calls_like_the_agent,
    ("GET", "/stats"): _stats_like_the_agent,
    ("GET", "/int"): _with_int_param,
    ("GET", "/float"): _with_float_param,
}


def _start(routes=None, **kwargs) -> LocalApi:
    server = LocalApi(routes or ROUTES, **kwargs)
    server.start(
        key="101-faults",
        phone="101",
        workbook="b.xlsx",
        server="ws://127.0.0.1:1/",
        journal="j.sqlite",
    )
    return server


@pytest.fixture
def api():
    server = _start()
    yield server
    server.stop()


def _auth(api, scheme="Bearer"):
    return {"Host": f"127.0.0.1:{api.port}", "Authorization": f"{scheme} {api.token}"}


def _get(api, path, headers=None, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=_auth(api) if headers is None else headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _raw(api, data: bytes, timeout=2.0):
    """Send raw bytes on a fresh connection, keep it open, parse the reply that comes."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=timeout)
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        sock.close()


def _all_connections_closed(api) -> bool:
    """The server has finished with every connection (it counts them; a server that does
    not is done when its per-connection threads are)."""
    if hasattr(api, "connections"):
        return api.connections == 0
    return not any("process_request_thread" in t.name for t in threading.enumerate())


def _reset(sock: socket.socket) -> None:
    """Close with an RST, like a client that crashes or is killed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------- 1. a burst of requests


# The 200 clients run in a child process, as Excel's UDF calls do: in this process their
# own Python work would share the GIL with the server's and inflate the figure.
BURST = r"""
import json, socket, sys, threading, time
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = (f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()
barrier = threading.Barrier(n)
results = [None] * n

def one(i):
    barrier.wait(timeout=20)
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                head = data.partition(b"\r\n\r\n")[0].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if (
                    b"content-length:" in head) else 1 << 30
        results[i] = [data[9:12].decode("latin-1"), time.perf_counter() - start]
    except Exception as exc:
        results[i] = [repr(exc), None]

threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def test_200_concurrent_requests_are_all_answered_quickly(api):
    n = 200
    done = subprocess.run(
        [sys.executable, "-c", BURST, str(api.port), api.token, str(n)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    failed = [status for status, _ in results if status != "200"]
    assert not failed, f"{len(failed)} of {n} not answered 200 OK: {failed[:5]}"
    latencies = sorted(seconds * 1000 for _, seconds in results)
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * n) - 1]
    print(
        f"\n{n} concurrent requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    assert p99 < 500, f"p99 {p99:.0f} ms (p50 {p50:.0f} ms): requests queue up"


# ---------------------------------------------------------------- 2. early hang-ups


def test_clients_hanging_up_early_leave_no_tracebacks(api, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    port = api.port
    request = (
        f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {api.token}\r\n\r\n"
    ).encode()
    post_head = (
        f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {api.token}\r\nContent-Length: 100\r\n\r\n"
    ).encode()

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=2)

    kinds = [
        lambda s: s.close(),  # connect, say nothing, go
        lambda s: (s.sendall(request[:20]), s.close()),  # half a request line
        lambda s: (s.sendall(request[:20]), _reset(s)),
        lambda s: (s.sendall(request), s.close()),  # full request, never read the reply
        lambda s: (s.sendall(request), _reset(s)),
        lambda s: (s.sendall(post_head + b'{"x": 1'), _reset(s)),  # body cut short
        lambda s: (s.sendall(post_head + b'{"x": 1'), s.close()),
    ]
    for i in range(100):
        kinds[i % len(kinds)](connect())
    wait_until(lambda: _all_connections_closed(api), timeout=10, what="the server to finish")
    assert _get(api, "/status")[0] == 200  # and it still serves

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:3]
    assert "Traceback" not in caplog.text
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err[:2000]


# ---------------------------------------------------------------- 3. fd exhaustion


@pytest.fixture
def many_fds():
    """Room for 2,000 client sockets plus the server's bounded share in this process."""
    resource = pytest.importorskip("resource", reason="RLIMIT_NOFILE is POSIX-only")
    need = 8192
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}: cannot hold 2,000 sockets")
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError) as exc:
            pytest.skip(f"cannot raise RLIMIT_NOFILE to {need}: {exc}")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_2000_half_open_connections_do_not_starve_status(api, many_fds):
    baseline = threading.active_count()
    held: list[socket.socket] = []
    partial = f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nAuthor".encode()
    started = time.monotonic()
    try:
        for i in range(2000):
            if time.monotonic() - started > 10:
                pytest.fail(f"only {len(held)} connections were accepted in 10 s")
            try:
                sock = socket.create_connection(("127.0.0.1", api.port), timeout=2)
            except TimeoutError:
                pytest.fail(f"connection {len(held) + 1} was not accepted in 2 s")
            held.append(sock)
            if i % 2:
                sock.sendall(partial)
        opened = time.monotonic() - started

        asked = time.monotonic()
        status, body = _get(api, "/status", timeout=1.0)
        answered = time.monotonic() - asked
        threads = threading.active_count() - baseline
        print(
            f"\n2,000 half-open connections opened in {opened:.2f} s; /status answered in "
            f"{answered * 1000:.1f} ms; server threads {threads}; total "
            f"{time.monotonic() - started:.2f} s"
        )
        assert status == 200 and body["state"] == "connected"
        assert answered < 1.0
        # at most one worker per live (256) or dropped-but-not-yet-closed (256) connection,
        # one spare, and the thread that starts workers
        assert threads <= 2 * 256 + 2, f"{threads} server threads for 2,000 idle sockets"
        if hasattr(api, "connections"):
            assert api.connections <= 2 * 256
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _all_connections_closed(api), timeout=10, what="the server to finish")


def test_silent_clients_are_dropped_after_the_idle_timeout(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    server = _start(idle_timeout=0.3)
    head = (
        f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    try:
        for stalled in (b"GET /status HTTP/1.1\r\n", head + b'{"x": '):  # then nothing more
            with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
                sock.sendall(stalled)
                started = time.monotonic()
                assert sock.recv(1024) == b""  # the server closed it
                assert time.monotonic() - started < 2.5
        wait_until(lambda: server.connections == 0, timeout=5, what="the server to finish")
    finally:
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_beyond_the_cap_with_every_slot_busy_a_connection_is_closed_at_once():
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(params, body):
        entered.release()
        release.wait(10)
        return {}

    server = _start({("GET", "/slow"): slow, ("GET", "/status"): _status}, max_connections=4)
    conns = []
    try:
        for _ in range(4):  # four requests being served take every slot
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/slow", headers=_auth(server))
            conns.append(conn)
        for _ in range(4):
            assert entered.acquire(timeout=5)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        with extra:
            started = time.monotonic()
            try:
                assert extra.recv(1024) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 1.0
        assert server.connections <= 4
        release.set()
        for conn in conns:
            assert conn.getresponse().status == 200
            conn.close()
        assert _get(server, "/status")[0] == 200  # slots free again
    finally:
        release.set()
        for conn in conns:
            conn.close()
        server.stop()


# ---------------------------------------------------------------- 4. bad input


@pytest.mark.parametrize(
    "path",
    [
        "/calls?limit=abc",
        "/stats?days=nan",
        "/stats?days=inf",
        "/stats?days=1e300",
        "/stats?days=x",
        "/int?limit=abc",
        "/int?limit=5000",
        "/int?limit=0",
        "/int?limit=1.5",
        "/float?days=nan",
        "/float?days=-inf",
        "/float?days=-1",
        "/float?days=1e9",
        "/float?days=abc",
    ],
)
def test_bad_numbers_are_400_not_500(api, path):
    status, body = _get(api, path)
    assert status == 400, (status, body)
    assert not body["ok"] and body["error_en"] and body["error_ru"]
    assert body["error_en"] != body["error_ru"]


def test_number_helpers_accept_good_values(api):
    assert _get(api, "/int?limit=7")[1]["limit"] == 7
    assert _get(api, "/int?limit=")[1]["limit"] == 50
    assert _get(api, "/int")[1]["limit"] == 50
    assert _get(api, "/float?days=2.5")[1]["days"] == 2.5
    assert _get(api, "/float")[1]["days"] is None
    assert _get(api, "/calls?limit=20")[1]["limit"] == 20
    assert _get(api, "/stats?days=1")[0] == 200
    with pytest.raises(api_mod.ApiError) as exc:
        api_mod.int_param({"n": "x"}, "n", 1, 0, 9)
    assert exc.value.status == 400 and "n" in exc.value.text.en and exc.value.text.ru


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_auth_scheme_is_case_insensitive(api, scheme):
    assert _get(api, "/status", headers=_auth(api, scheme))[0] == 200


@pytest.mark.parametrize("value", ["Basic {t}", "Bearer{t}", "Bearer", "{t}", "Bearer x{t}"])
def test_other_authorization_values_are_still_refused(api, value):
    headers = {"Host": f"127.0.0.1:{api.port}", "Authorization": value.format(t=api.token)}
    assert _get(api, "/status", headers=headers)[0] == 401


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        ("-1", 400),
        ("abc", 400),
        ("1_0", 400),
        ("+5", 400),
        (" ", 400),
        ("0x10", 400),
        ("99999999999999999999999", 400),
        (str(api_mod.MAX_BODY + 1), 413),
        ("5\r\nContent-Length: 6", 400),
    ],
)
def test_bad_content_length_is_refused_at_once(api, length, expected):
    head = (
        f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
        f"Authorization: Bearer {api.token}\r\nContent-Length: {length}\r\n\r\n"
    )
    started = time.monotonic()
    status, body = _raw(api, head.encode() + b'{"a": 1}', timeout=2.0)  # connection kept open
    assert status == expected and not body["ok"] and body["error_ru"]
    assert time.monotonic() - started < 1.0
    assert _get(api, "/status")[0] == 200


def test_a_chunked_body_is_refused_at_once(api):
    head = (
        f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
        f"Authorization: Bearer {api.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, body = _raw(api, head.encode() + b'8\r\n{"a": 1}\r\n0\r\n\r\n')
    assert status == 411 and not body["ok"] and body["error_ru"]


def test_a_good_body_still_round_trips(api):
    payload = json.dumps({"number": "+7 343"}).encode()
    head = (
        f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
        f"Authorization: bearer {api.token}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    status, body = _raw(api, head.encode() + payload)
    assert status == 200 and body["body"] == {"number": "+7 343"}
