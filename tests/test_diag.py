"""``pz-excel diag`` against the test connector, on real loopback sockets.

The command → request mapping is checked against the vendor's Diagnostic capture byte
for byte; the console itself runs in-process through ``pz_excel.cli.main`` while raw
websocket-client connections watch what the connector emits.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator

import pytest
import websocket
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as sync_serve

from pz_excel.cli import main as cli
from pz_excel.connector import tls as tlsutil
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, Event
from pz_excel.tools import diag
from pz_excel.tools.testserver import ServerThread
from tests import captures

TIMEOUT = 5.0

# The console lines behind the capture's requests 0…12 (RequestID = position).
CAPTURE_COMMANDS = [
    "Clients",
    "Call 101 555",
    "Transfer 101 555",
    "generate incoming 73430112233 2 info",
    "generate transfer 73430112233 101 2 js 1000 info",
    'generate transans 73430112233 101 " " * 470667183259649',
    "generate outcoming 101 223322 * 470667183783938",
    "generate outans 101 223322 js 2000",
    "generate history 73430112233 101 1385035625 1385035630 5 in http://x/r.mp3 2 3000",
    "sms 101 9004445566 js 77 0j/rgnc40llqtdgc",
    "Version",
    "Simulation on",
    "Simulation off",
]


def test_commands_reproduce_the_capture_frames_byte_for_byte() -> None:
    lines = captures.lines(captures.DIAGNOSTIC)
    frames = [x["frame"] for x in lines if x.get("who") == "client" and x.get("op") == 1]
    assert len(frames) == len(CAPTURE_COMMANDS)
    for rid, (line, frame) in enumerate(zip(CAPTURE_COMMANDS, frames, strict=True)):
        action = diag.parse_command(line)
        assert action is not None and action.build is not None
        assert protocol.encode_frame(action.build(rid)) == frame, line


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
        "<ClientGUID>*</ClientGUID></Data></Request>"
    )
    history = diag.parse_command("generate history 1 2 10 15 5 OUT")
    assert history is not None and history.build is not None
    assert "<Direction>1</Direction><ClientGUID>*</ClientGUID>" in history.build(0)
    status = diag.parse_command("generate smsstatus 101 1")
    assert status is not None and status.build is not None
    assert "<Event>256</Event><To>101</To><Result>1</Result>" in status.build(0)
    for line, kind, events in (
        ("events", "events", None),
        ("Events ON", "events", True),
        ("help", "help", None),
        ("EXIT", "quit", None),
    ):
        action = diag.parse_command(line)
        assert action is not None and (action.kind, action.events) == (kind, events)
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
        "events perhaps",
        'call "101 555',
        "connect 127.0.0.1:10150 diag",
        "frobnicate",
        "clients now",
    ],
)
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(diag.CommandError) as exc:
        diag.parse_command(line)
    assert exc.value.text.en and exc.value.text.ru


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
