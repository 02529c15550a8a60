"""``pz-excel diag`` against the test connector, on real loopback sockets.

The command → request mapping is checked against the vendor's Diagnostic capture byte
for byte; the console itself runs in-process through ``pz_excel.cli.main`` while raw
websocket-client connections watch what the connector emits.
"""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import websocket
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as sync_serve

from pz_excel.cli import main as cli
from pz_excel.connector import tls as tlsutil
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, Event
from pz_excel.tools import diag, diag_commands
from pz_excel.tools.testserver import ServerThread
from tests import captures

TIMEOUT = 5.0

# The console lines behind the capture's requests 0…12 (RequestID = position). Requests 5
# and 6 carry what the vendor's console adds to a line that gives no line and no CallID:
# <Line> </Line> and a CallID of its own, (Unix second << 18) | its counter (1, 2).
CAPTURE_COMMANDS = [
    "Clients",
    "Call 101 555",
    "Transfer 101 555",
    "generate incoming 73430112233 2 info",
    "generate transfer 73430112233 101 2 js 1000 info",
    "generate transans 73430112233 101",
    "generate outcoming 101 223322",
    "generate outans 101 223322 js 2000",
    "generate history 73430112233 101 1385035625 1385035630 5 in http://x/r.mp3 2 3000",
    "sms 101 9004445566 js 77 0j/rgnc40llqtdgc",
    "Version",
    "Simulation on",
    "Simulation off",
]


def test_commands_reproduce_the_capture_frames_byte_for_byte() -> None:
    lines = captures.lines(captures.DIAGNOSTIC)
    sent = [x for x in lines if x.get("who") == "client" and x.get("op") == 1]
    assert len(sent) == len(CAPTURE_COMMANDS)
    now = [0.0]
    call_ids = diag.CallIds(clock=lambda: now[0])  # a fresh console, as the capture's
    for rid, (line, x) in enumerate(zip(CAPTURE_COMMANDS, sent, strict=True)):
        now[0] = x["t"]  # the second the vendor's console sent it
        action = diag.parse_command(line, call_ids)
        assert action is not None and action.build is not None
        assert protocol.encode_frame(action.build(rid)) == x["frame"], line


def test_explicit_blank_line_and_call_id_give_the_same_frame() -> None:
    auto = diag.parse_command("generate transans 73430112233 101", diag.CallIds(lambda: 1795452817))
    given = diag.parse_command('generate transans 73430112233 101 " " * 470667183259649')
    assert auto is not None and auto.build is not None
    assert given is not None and given.build is not None
    assert auto.build(5) == given.build(5)


def field(xml: str, name: str) -> str | None:
    found = re.search(f"<{name}>(.*?)</{name}>", xml)
    return None if found is None else found.group(1)


def test_the_vendor_consoles_lines_make_the_events_the_server_sent() -> None:
    """The session capture logs each line typed into the vendor's console, then the event
    TestServer sent for it. Our console, given the line at the same second, sends what
    the event shows: the console's own call ID (second << 18 | counter 1…7; none for
    incoming, whose ID the server picks), line " " and record " " when not given
    (PROTOCOL.md §4) — where leaving them out would make the server send line=""."""
    now = [0.0]
    call_ids = diag.CallIds(clock=lambda: now[0])
    request: str | None = None
    checked = 0
    for x in captures.lines(captures.TESTSERVER):
        if x.get("dir") == "diag":
            now[0] = x["t"]
            action = diag.parse_command(x["cmd"], call_ids)
            assert action is not None and action.build is not None
            request = action.build(0)
            continue
        if request is None or x.get("dir") != "recv":
            continue
        events = [m for m in protocol.decode_frame(x["decoded"]) if isinstance(m, Event)]
        if not events:
            continue
        [event] = events
        sent_id = field(request, "CallID")
        if event.type == 1:
            assert sent_id is None  # the server's pick
        else:
            assert sent_id == event.call_id, (x, request)
        for attr, name in (("line", "Line"), ("record", "Record")):
            if attr in event.attrs:
                assert field(request, name) == event.attrs[attr], (attr, x, request)
        request = None
        checked += 1
    assert checked == 11


def test_the_capture_login_is_the_header_form() -> None:
    """Our settings give the header set the vendor's console sent (less its BuildTime)."""
    settings = ConnectSettings(
        "ws://localhost:10170", "", "", diag.DIAG_CLIENT_TYPE, "diagp", diag.DIAG_MASK
    )
    request = captures.lines(captures.DIAGNOSTIC)[0]["http"].split("\r\n")[1:]
    sent = dict(h.split(": ", 1) if ": " in h else (h[:-1], "") for h in request)
    for name, value in protocol.connect_headers(settings).items():
        assert sent[name] == value


def test_commands_are_case_insensitive_arguments_are_not() -> None:
    sms = diag.parse_command("SMS 101 9004445566 js 77 0J/RgNC40LLQtdGC")
    assert sms is not None and sms.build is not None
    assert "<Smstext>0J/RgNC40LLQtdGC</Smstext>" in sms.build(0)
    gen = diag.parse_command("GENERATE Incoming 73430112233")
    assert gen is not None and gen.build is not None
    assert gen.build(3) == (
        "<Request><ProtocolVersion>2</ProtocolVersion><Method>Generate</Method>"
        "<RequestID>3</RequestID><Data><Event>1</Event><From>73430112233</From>"
        "<Line> </Line><ClientGUID>*</ClientGUID></Data></Request>"
    )
    history = diag.parse_command("generate history 1 2 10 15 5 OUT")
    assert history is not None and history.build is not None
    assert (
        "<Record> </Record><Direction>1</Direction><Line> </Line><ClientGUID>*</ClientGUID>"
        in history.build(0)
    )
    status = diag.parse_command("generate smsstatus 101 1")
    assert status is not None and status.build is not None
    assert "<Event>256</Event><To>101</To><Result>1</Result>" in status.build(0)
    for line, kind in (
        ("events", "events"),
        ("Events ON", "events"),  # a toggle whatever follows, as the vendor's
        ("events off", "events"),
        ("help", "help"),
        ("EXIT", "quit"),
    ):
        action = diag.parse_command(line)
        assert action is not None and action.kind == kind
    assert diag.parse_command("   ") is None and diag.parse_command("# note") is None


@pytest.mark.parametrize(
    "line",
    [
        "call 101",
        "call 1 2 3",
        "transfer",
        "generate",
        "generate nope 1",
        "generate incoming",
        "generate history 1 2 x 15 5 in",
        "generate history 1 2 10 15 5 sideways",
        "sms 101 900 js 77",
        "simulation maybe",
        'call "101 555',
        "connect",
        "connect 127.0.0.1:10150",
        "connect 127.0.0.1:10150 diag extra",
        "connect 127.0.0.1:10150 diag proxy",
        "connect 127.0.0.1:99999 diag",
        "connect http://127.0.0.1:10150 diag",
        "connect ws://127.0.0.1:10150 diag ssl",
        "connectex 127.0.0.1:10150 diag",
        "connectex 127.0.0.1:10150 diag excel 101 more",
        "connectmask 127.0.0.1:10150 diag many",
        "connectmask 127.0.0.1:10150 diag -1",
        "frobnicate",
        "clients now",
    ],
)
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(diag.CommandError) as exc:
        diag.parse_command(line)
    assert exc.value.text.en and exc.value.text.ru


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (
            "Connect 127.0.0.1:10170 diagp",
            diag.ConnectTarget("ws://127.0.0.1:10170/", "diagp", "Diagnostic", "", 65535),
        ),
        (
            "connect pbx diag SSL",
            diag.ConnectTarget("wss://pbx:10150/", "diag", "Diagnostic", "", 65535),
        ),
        (
            "connectex 127.0.0.1:10150 crm excel 101",
            diag.ConnectTarget("ws://127.0.0.1:10150/", "crm", "excel", "101", 65535),
        ),
        (
            "ConnectEx 127.0.0.1:10150 crm Access ssl",
            diag.ConnectTarget("wss://127.0.0.1:10150/", "crm", "Access", "", 65535),
        ),
        (
            "connectmask 127.0.0.1:10150 team 127",
            diag.ConnectTarget("ws://127.0.0.1:10150/", "team", "Diagnostic", "", 127),
        ),
        (
            "connectmask ws://127.0.0.1:10150 me 0 excel 102",
            diag.ConnectTarget("ws://127.0.0.1:10150/", "me", "excel", "102", 0),
        ),
    ],
)
def test_connect_lines(line: str, target: diag.ConnectTarget) -> None:
    action = diag.parse_command(line)
    assert action is not None and action.kind == "connect" and action.target == target
    settings = target.settings("secret")
    headers = protocol.connect_headers(settings)  # the native login, as the vendor's console
    assert headers["ClientGUID"] == target.guid and headers["ClientType"] == target.client_type
    assert headers["BroadcastEventsMask"] == str(target.mask)
    assert headers["PhoneNumber"] == target.phone and headers["ClientID"] == "c2VjcmV0"


def test_help_lists_the_connect_commands() -> None:
    for syntax in diag_commands.CONNECT_SYNTAX.values():
        assert syntax in diag.HELP
    assert "ConnectEx" in diag.HELP_RU and "пароль" in diag.HELP_RU


def test_describe_event_in_words() -> None:
    event = protocol.decode_frame(
        '<Event type="4" callID="3000" direction="1" duration="5" end="1385035630" '
        'from="101" line=" " missed="1" missedFinal="1" record=" " start="1385035625" '
        'to="223322" extra="x"/>'
    )[0]
    assert isinstance(event, Event)
    text = diag.describe_event(event)
    for part in ("completed call", "from 101", "to 223322", "outgoing", "duration 5 s"):
        assert part in text
    assert "callID 3000" in text and "extra='x'" in text and "(missed, last)" in text
    sms = Event(128, "77", {"from": "101", "to": "900", "smstext": "0J/RgNC40LLQtdGC"})
    assert "'Привет'" in diag.describe_event(sms)


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def server() -> Iterator[ServerThread]:
    srv = ServerThread(simulate_delay=0.01).start()
    yield srv
    srv.stop()


class Watcher:
    """A raw client (extension ``phone``) collecting events."""

    def __init__(self, server: ServerThread, phone: str):
        settings = ConnectSettings(server.url, phone)
        self.ws = websocket.create_connection(protocol.connect_url(settings), timeout=TIMEOUT)
        assert server.wait_for(lambda: any(c["GUID"] == phone for c in server.clients()))

    def next_event(self) -> Event:
        while True:
            for msg in protocol.decode_frame(self.ws.recv()):
                if isinstance(msg, Event):
                    return msg

    def close(self) -> None:
        self.ws.close(timeout=1)


@pytest.fixture
def watch(server: ServerThread) -> Iterator[Callable[[str], Watcher]]:
    opened: list[Watcher] = []

    def open_watcher(phone: str) -> Watcher:
        opened.append(Watcher(server, phone))
        return opened[-1]

    yield open_watcher
    for w in opened:
        w.close()


def run_diag(*args: str) -> int:
    return cli.main(["diag", *args])


def test_generated_events_reach_the_clients(server, watch, capsys) -> None:
    w101, w102 = watch("101"), watch("102")
    code = run_diag(
        server.url,
        "-c",
        "generate incoming 73430112233 2 info",
        "-c",
        'generate transfer 223322 102 " " * 1000',
        "-c",
        "call 101 +7(343)0112233",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines() == ["OK", "OK", "OK"]
    first = w101.next_event()
    assert (first.type, first.from_, first.line, first.system) == (1, "73430112233", "2", "info")
    assert w102.next_event().type == 1
    ring = w102.next_event()
    assert (ring.type, ring.call_id, ring.to, ring.attrs["line"]) == (2, "1000", "102", " ")
    assert "Call event from CRM: src = 101, dst = +7(343)0112233" in server.log_lines
    gone = {"GUID": "diag", "type": "Diagnostic", "Connected": "0"}
    assert server.wait_for(lambda: any(gone.items() <= c.items() for c in server.clients()))
    assert any("GUID = diag" in x and "login = header" in x for x in server.log_lines)


def test_clients_and_version_are_printed(server, watch, capsys) -> None:
    watch("101")
    assert run_diag(server.url, "-c", "clients", "-c", "VERSION", "--guid", "mydiag") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["#", "type", "ip", "GUID", "state", "ext"]
    assert out[1].split() == ["0", "excel", "127.0.0.1", "101", "connected", "101"]
    assert out[2].split() == ["1", "Diagnostic", "127.0.0.1", "mydiag", "connected"]
    assert out[3] == server.version


def test_events_are_printed_with_missed_history(server, capsys) -> None:
    server.generate(4, {"From": "7343", "To": "101", "Direction": "0", "CallID": "55"})
    code = run_diag(server.url, "--events", "-c", "simulation on", "-c", "call 101 555")
    assert code == 0
    out = capsys.readouterr().out
    assert "completed call [4]" in out and "callID 55" in out and "(missed, last)" in out
    # Without --events nothing but the answers is printed.
    assert run_diag(server.url, "-c", "generate outcoming 101 223322") == 0
    assert capsys.readouterr().out.splitlines() == ["OK"]


def test_a_failing_command_gives_a_non_zero_exit(server, capsys) -> None:
    assert run_diag(server.url, "-c", "clients", "-c", "generate sideways 1") == 1
    captured = capsys.readouterr()
    assert "unknown Generate kind" in captured.err
    assert captured.out == ""  # checked before anything ran
    assert not any("GUID = diag" in x for x in server.log_lines)


def test_cannot_connect_is_one_clear_line(capsys) -> None:
    with ServerThread(password="secret") as srv:
        assert run_diag(srv.url, "-c", "clients") == 2
        assert "HTTP 403" in capsys.readouterr().err
        assert run_diag(srv.url, "--password", "secret", "-c", "clients") == 0
    # The server is gone now: the port refuses.
    assert run_diag(srv.url, "--timeout", "2", "-c", "clients") == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err


def test_password_from_the_environment(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PZ_PASSWORD", "secret")
    with ServerThread(password="secret") as srv:
        assert run_diag(srv.url, "-c", "version") == 0


class Stub:
    """A stand-in connector that answers every request with ``answer(request)`` (or not)."""

    def __init__(self, answer: Callable[[protocol.Request], str | None]):
        self.answer = answer
        self.server = sync_serve(self.handler, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/"

    def handler(self, ws: ServerConnection) -> None:
        for frame in ws:
            for msg in protocol.decode_frame(frame):
                if isinstance(msg, protocol.Request):
                    reply = self.answer(msg)
                    if reply is not None:
                        ws.send(protocol.encode_frame(reply))

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(TIMEOUT)


def test_an_error_code_fails_the_command(capsys) -> None:
    stub = Stub(lambda req: protocol.encode_response(2, req.request_id, "Bad request"))
    try:
        assert run_diag(stub.url, "-c", "version") == 1
    finally:
        stub.close()
    captured = capsys.readouterr()
    assert "code 2: Bad request" in captured.out
    assert "Command failed: version" in captured.err


def test_no_answer_fails_the_command(capsys) -> None:
    stub = Stub(lambda req: None)
    try:
        assert run_diag(stub.url, "--timeout", "0.3", "-c", "clients") == 1
    finally:
        stub.close()
    assert "no answer from the connector within 0.3 s" in capsys.readouterr().out


def test_wait_ends_early_when_the_connector_drops_us(server, capsys) -> None:
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(run_diag(server.url, "--wait", "30")))
    runner.start()
    assert server.wait_for(lambda: any(c["Connected"] == "1" for c in server.clients()))
    intruder = websocket.create_connection(
        server.url, header={"ClientGUID": "diag", "ClientType": "Diagnostic"}, timeout=TIMEOUT
    )
    runner.join(TIMEOUT)
    intruder.close(timeout=1)
    assert not runner.is_alive() and codes == [1]
    assert "same user (GUID) connected elsewhere" in capsys.readouterr().err


def test_wss_with_a_pinned_certificate(tmp_path, capsys) -> None:
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key)) as srv:
        assert run_diag(srv.url, "--pin", fingerprint, "-c", "version") == 0
        assert run_diag(srv.url, "--ca-file", str(cert), "-c", "version") == 0
        assert capsys.readouterr().out.splitlines() == [srv.version, srv.version]
        assert run_diag(srv.url, "-c", "version") == 2  # not trusted by default
        assert "not trusted" in capsys.readouterr().err


def test_interactive_session(server, watch, monkeypatch, capsys) -> None:
    w101 = watch("101")
    script = "help\nEvents\ngenerate transans 7343 101\n\nbogus\nclients\nquit\nversion\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    assert run_diag(server.url) == 0
    out = capsys.readouterr().out
    assert "Generate history <from> <to> <start>" in out
    assert "events on" in out and "unknown command 'bogus'" in out
    assert "[events off]> " in out and "[events on]> " in out
    assert server.version not in out  # nothing runs after quit
    assert w101.next_event().type == 32


def test_interactive_end_of_input_quits(server, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("version\n"))
    assert run_diag(server.url) == 0
    assert server.version in capsys.readouterr().out


# --------------------------------------------------------------------------- vendor parity


def test_line_and_record_not_given_arrive_blank(server, watch, capsys) -> None:
    """The server emits line=" " / record=" " as for the vendor's console (PROTOCOL.md §4),
    not line="" (what a Generate without <Line> gets), and a call ID the console made."""
    w102 = watch("102")
    code = run_diag(
        server.url,
        "-c",
        "generate transfer 223322 102",
        "-c",
        "generate history 223322 102 1385035625 1385035630 5 in",
    )
    assert code == 0, capsys.readouterr()
    ring, history = w102.next_event(), w102.next_event()
    assert (ring.type, ring.attrs["line"]) == (2, " ")
    assert (history.type, history.attrs["line"], history.attrs["record"]) == (4, " ", " ")
    assert int(history.call_id) & 0x3FFFF == (int(ring.call_id) & 0x3FFFF) + 1  # one counter


def test_connect_from_the_console_asks_the_password_and_never_shows_it(monkeypatch, capsys) -> None:
    with ServerThread(password="s3cr3t-pw") as srv:
        port = srv.url.rsplit(":", 1)[1].strip("/")
        script = (
            "clients\n"  # not connected yet
            f"connect 127.0.0.1:{port} mydiag\nwrong-pw\n"  # refused (PROTOCOL.md §1: 403)
            f"connect 127.0.0.1:{port} mydiag\ns3cr3t-pw\n"
            "clients\nquit\n"
        )
        monkeypatch.setattr("sys.stdin", io.StringIO(script))
        assert run_diag() == 0
        out, err = capsys.readouterr()
        assert "s3cr3t-pw" not in out + err and "wrong-pw" not in out + err
        assert err.count("Password: ") == 2
        assert "Error: not connected: Connect <host>:<port> <client guid> first" in out
        assert f"cannot connect to ws://127.0.0.1:{port}/" in out and "HTTP 403" in out
        assert f"Connected to ws://127.0.0.1:{port}/" in out
        row = next(x for x in out.splitlines() if "mydiag" in x)
        assert row.split()[1:5] == ["Diagnostic", "127.0.0.1", "mydiag", "connected"]
        assert any("GUID = mydiag" in x and "login = header" in x for x in srv.log_lines)


def test_connectex_logs_in_as_that_client_type_and_extension(server, capsys) -> None:
    port = server.url.rsplit(":", 1)[1].strip("/")
    line = f"connectex 127.0.0.1:{port} crm excel 101"
    assert run_diag("--password", "", "-c", line, "-c", "clients") == 0
    rows = [x.split() for x in capsys.readouterr().out.splitlines()]
    assert ["0", "excel", "127.0.0.1", "crm", "connected", "101"] in rows


def test_connectmask_sets_the_broadcast_mask(server, capsys) -> None:
    """Mask 0 as extension 102: a ring for 101 does not come (PROTOCOL.md §1: a normal
    client); Connect's 65535 receives it."""
    port = server.url.rsplit(":", 1)[1].strip("/")
    rings = ["-c", "generate transfer 7343 101 2 * 5001"]
    rings += ["-c", "generate transfer 7343 102 2 * 5002"]
    masked = f"connectmask 127.0.0.1:{port} me 0 excel 102"
    assert run_diag("--events", "--password", "", "-c", masked, *rings) == 0
    out = capsys.readouterr().out
    assert "callID 5002" in out and "callID 5001" not in out
    assert run_diag("--events", "--password", "", "-c", f"connect 127.0.0.1:{port} me", *rings) == 0
    out = capsys.readouterr().out
    assert "callID 5002" in out and "callID 5001" in out


def test_connect_replaces_the_open_connection(server, capsys) -> None:
    port = server.url.rsplit(":", 1)[1].strip("/")
    line = f"connect 127.0.0.1:{port} second"
    assert run_diag(server.url, "--password", "", "-c", line, "-c", "clients") == 0
    out = capsys.readouterr()
    assert "Connection ended" not in out.err  # closed by us, not lost
    state = {x.split()[3]: x.split()[4] for x in out.out.splitlines()[2:]}
    assert state == {"diag": "offline", "second": "connected"}


def test_events_toggles_as_the_vendors(server, watch, monkeypatch, capsys) -> None:
    """The vendor's Events takes no argument: "events on" toggles too."""
    w101 = watch("101")
    script = "events on\nevents on\nevents\nquit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    assert run_diag(server.url) == 0
    out = capsys.readouterr().out
    prompts = re.findall(r"\[events (?:on|off)\]> ", out)
    assert prompts == ["[events off]> ", "[events on]> ", "[events off]> ", "[events on]> "]
    w101.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX pseudo-terminal")
def test_the_password_typed_at_a_terminal_is_not_echoed(tmp_path) -> None:
    """On a real (pseudo-)terminal: Connect asks, the typed password never shows."""
    import pty
    import select

    with ServerThread(password="pty-s3cret") as srv:
        port = srv.url.rsplit(":", 1)[1].strip("/")
        env = dict(os.environ, PZ_LANG="en", PZ_EXCEL_HOME=str(tmp_path), TERM="dumb")
        env.pop("PZ_PASSWORD", None)
        pid, master = pty.fork()
        if pid == 0:  # the child: the console on the terminal
            os.execve(sys.executable, [sys.executable, "-m", "pz_excel", "diag"], env)
        seen = b""

        def read_until(marker: bytes) -> None:
            nonlocal seen
            deadline = time.monotonic() + 20
            while marker not in seen:
                left = deadline - time.monotonic()
                assert left > 0, seen
                if select.select([master], [], [], left)[0]:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # the child ended
                        break
                    seen += chunk
            assert marker in seen, seen

        try:
            read_until(b"[events off]> ")
            os.write(master, f"connect 127.0.0.1:{port} ttydiag\n".encode())
            read_until(b"Password: ")
            os.write(master, b"pty-s3cret\n")
            read_until(b"Connected to ")
            os.write(master, b"quit\n")
            assert os.waitpid(pid, 0)[1] == 0
            pid = 0
        finally:
            if pid:  # failed half-way: end the console this test started
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(master)
        assert b"pty-s3cret" not in seen
        assert any("GUID = ttydiag" in x for x in srv.log_lines)
