"""The test connector against raw WebSocket clients (websocket-client), on real sockets.

These tests don't use our connector client, so a bug there can't hide one here. Where a
test must show that a client did NOT get an event, it makes a round trip on that client
afterwards: the server queues frames per connection in order, so once the response is
in, anything the client was sent before would have arrived.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
import websocket

from pz_excel.cli import main as cli
from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import UserError
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, Event, Response
from pz_excel.tools.testserver import DUPLICATE_REASON, ServerThread
from pz_excel.tools.testserver_events import CallIds, belongs, build_event
from tests import captures

TIMEOUT = 5.0


class Raw:
    """A bare protocol client: one socket, requests numbered from 0, events collected."""

    def __init__(
        self,
        server: ServerThread,
        phone: str,
        *,
        guid: str = "",
        password: str = "",
        mask: int = 0,
        client_type: str = "excel",
        header: bool = False,
        sslopt: dict | None = None,
    ):
        self.settings = ConnectSettings(server.url, phone, password, client_type, guid, mask)
        self.transport = self.settings.transport
        if header:
            self.ws = websocket.create_connection(
                server.url,
                header=protocol.connect_headers(self.settings),
                timeout=TIMEOUT,
                sslopt=sslopt,
            )
        else:
            self.ws = websocket.create_connection(
                protocol.connect_url(self.settings), timeout=TIMEOUT, sslopt=sslopt
            )
        self.events: list[Event] = []
        self.frames: list[str] = []  # every text frame as received
        self.next_id = 0

    def send(self, xml: str) -> None:
        self.ws.send(protocol.encode_frame(xml, self.transport))

    def recv(self) -> list[protocol.Message]:
        frame = self.ws.recv()
        self.frames.append(frame)
        return protocol.decode_frame(frame)

    def request(self, build: Callable[[int], str]) -> Response:
        """Send ``build(request_id)``; collect events until the matching response."""
        rid = self.next_id
        self.next_id += 1
        self.send(build(rid))
        while True:
            for msg in self.recv():
                if isinstance(msg, Event):
                    self.events.append(msg)
                elif isinstance(msg, Response) and msg.request_id == str(rid):
                    return msg

    def sync(self) -> list[Event]:
        """Round trip: every event sent to us before now is in ``events`` afterwards."""
        self.request(lambda rid: protocol.get_version_request(rid))
        return self.events

    def next_event(self) -> Event:
        while not self.events:
            for msg in self.recv():
                if isinstance(msg, Event):
                    self.events.append(msg)
        return self.events.pop(0)

    def wait_close(self) -> tuple[int, str]:
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                # websocket-client answered the close but keeps the socket: drop it now.
                self.ws.shutdown()
                data = frame.data
                return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8")

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - teardown of an already dead socket
            pass


@pytest.fixture
def server() -> Iterator[ServerThread]:
    srv = ServerThread(simulate_delay=0.01).start()
    yield srv
    srv.stop()


@pytest.fixture
def connect(server: ServerThread) -> Iterator[Callable[..., Raw]]:
    opened: list[Raw] = []

    def open_client(phone: str, srv: ServerThread | None = None, **kw: object) -> Raw:
        client = Raw(srv or server, phone, **kw)  # type: ignore[arg-type]
        opened.append(client)
        return client

    yield open_client
    for client in opened:  # before the server stops: closes are then instant
        client.close()


def _types(events: list[Event]) -> list[int]:
    return [e.type for e in events]


# --------------------------------------------------------------------------- logins


def test_both_login_forms(server: ServerThread, connect) -> None:
    js = connect("101")
    diag = connect("", guid="diag", client_type="Diagnostic", mask=65535, header=True)
    assert server.wait_for(lambda: sum(c["Connected"] == "1" for c in server.clients()) == 2)
    rows = {c["GUID"]: c for c in diag.request(protocol.get_clients_request).clients}
    assert rows["101"] == {
        "id": "0",
        "ip": "127.0.0.1",
        "type": "excel",
        "GUID": "101",
        "Connected": "1",
        "PhoneNumber": "101",
    }
    assert rows["diag"]["type"] == "Diagnostic" and rows["diag"]["PhoneNumber"] == ""
    assert any("login = query" in x and "GUID = 101" in x for x in server.log_lines)
    assert any("login = header" in x and "GUID = diag" in x for x in server.log_lines)
    assert js.request(protocol.get_version_request).ok


def test_wrong_password_is_answered_as_testserver_answers_it() -> None:
    """PROTOCOL.md §1, as TestServer 1.1.2 started with -c PASSWORD answers it: the query
    form with a wrong CID is accepted (101), then closed 4008 "Invalid password"; the query
    form with no CID at all, and the header form with a wrong ClientID: HTTP 403."""
    with ServerThread(password="secret") as srv:
        client = Raw(srv, "101", password="wrong")
        assert client.wait_close() == (4008, "Invalid password")
        client.close()
        no_cid = protocol.connect_url(ConnectSettings(srv.url, "101")).replace("CID=&", "")
        assert "CID" not in no_cid
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(no_cid, timeout=TIMEOUT)
        assert exc.value.status_code == 403
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            Raw(srv, "", guid="diag", password="wrong", header=True)
        assert exc.value.status_code == 403
        ok = Raw(srv, "101", password="secret")
        assert ok.request(protocol.get_version_request).ok
        ok.close()
        assert any(x.startswith("Authorization failed: GUID = 101") for x in srv.log_lines)
        # only the right login became a known client (and it has gone now)
        assert srv.wait_for(lambda: [c["Connected"] for c in srv.clients()] == ["0"], 5)


def test_a_login_with_no_parameters_is_a_403() -> None:
    with ServerThread() as srv:
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(srv.url, timeout=TIMEOUT)
        assert exc.value.status_code == 403


def test_wrong_password_production_like_gives_4008() -> None:
    with ServerThread(password="secret", production_like=True) as srv:
        client = Raw(srv, "101", password="nope")
        assert client.wait_close()[0] == 4008
        client.close()
        assert srv.clients() == []  # a refused login is no known client


def test_second_login_with_same_guid_closes_the_older_with_4009(server, connect) -> None:
    older = connect("101")
    newer = connect("101", header=True)
    assert older.wait_close() == (4009, DUPLICATE_REASON)
    assert newer.request(protocol.get_version_request).ok
    rows = server.clients()
    assert len(rows) == 1 and rows[0]["Connected"] == "1"
    server.generate(2, {"From": "7343", "To": "101"})
    assert newer.next_event().type == 2


# --------------------------------------------------------------------------- routing

ROUTING = [
    (1, {"From": "73430112233"}, {"101", "102", "103"}),
    (2, {"From": "73430112233", "To": "101"}, {"101"}),
    (32, {"From": "73430112233", "To": "102"}, {"102"}),
    (8, {"From": "101", "To": "223322"}, {"101"}),
    (16, {"From": "102", "To": "223322"}, {"102"}),
    (4, {"From": "73430112233", "To": "102", "Direction": "0", "Duration": "5"}, {"102"}),
    (4, {"From": "101", "To": "223322", "Direction": "1", "Duration": "10"}, {"101"}),
    (128, {"From": "101", "To": "9004445566", "Smstext": "0J/RgNC40LLQtdGC"}, {"101"}),
    (256, {"To": "102", "Result": "1"}, {"102"}),
]


@pytest.mark.parametrize(("etype", "fields", "expected"), ROUTING)
def test_routing(server, connect, etype: int, fields: dict, expected: set[str]) -> None:
    clients = {"101": connect("101"), "102": connect("102"), "103": connect("103")}
    diag = connect("", guid="diag", client_type="Diagnostic", mask=65535, header=True)
    (sent,) = server.generate(etype, fields)
    got = {ext for ext, c in clients.items() if c.sync()}
    assert got == expected
    for ext in expected:
        assert clients[ext].events == [sent]
    assert diag.sync() == [sent]  # the broadcast mask gets everything


def test_client_guid_is_a_recipient_only_when_production_like(server, connect) -> None:
    # PROTOCOL.md / issue 13: TestServer 1.1.2 sent `generate outans … GUID` to the `from`
    # extension only; production connectors (production_like) also reach that GUID.
    a, b = connect("101"), connect("102", guid="js")
    server.generate(16, {"From": "101", "To": "223322", "ClientGUID": "js", "CallID": "2000"})
    assert [e.call_id for e in a.sync()] == ["2000"]
    assert b.sync() == []
    with ServerThread(production_like=True) as prod:
        a2, b2 = connect("101", prod), connect("102", prod, guid="js")
        prod.generate(2, {"From": "223322", "To": "101", "ClientGUID": "js", "CallID": "1000"})
        assert [e.call_id for e in a2.sync()] == ["1000"]
        assert [e.call_id for e in b2.sync()] == ["1000"]
        prod.generate(2, {"From": "223322", "To": "101", "ClientGUID": "*"})
        assert len(a2.sync()) == 2 and len(b2.sync()) == 1
        a2.close()
        b2.close()


def test_event_attributes_as_in_the_captures() -> None:
    def keys(etype: int, fields: dict) -> list[str]:
        event, _ = build_event(etype, fields, CallIds().next)
        assert re.fullmatch(r"\d{15}", event.call_id) or "CallID" in fields
        return [k for k in event.attrs if k not in ("type", "callID")]

    assert keys(1, {"From": "1"}) == ["from", "line"]
    assert keys(1, {"From": "1", "System": "info"}) == ["from", "line", "system"]
    assert keys(2, {"From": "1", "To": "2"}) == ["from", "line", "to"]
    assert keys(32, {"From": "1", "To": "2", "System": "x"}) == ["from", "line", "to", "system"]
    assert keys(8, {"From": "1", "To": "2"}) == ["from", "to"]
    assert keys(16, {"From": "1", "To": "2"}) == ["from", "to"]
    assert sorted(keys(4, {"From": "1", "To": "2"})) == [
        "direction",
        "duration",
        "end",
        "from",
        "line",
        "record",
        "start",
        "to",
    ]
    assert keys(128, {"From": "1", "To": "2", "Smstext": "eA=="}) == ["from", "smstext", "to"]
    assert sorted(keys(256, {"To": "2", "Result": "1"})) == ["result", "to"]
    # Absent Line / Record are " "; every event without CallID gets a fresh one.
    event, _ = build_event(4, {"From": "1", "To": "2"}, CallIds().next)
    assert event.attrs["line"] == " " and event.attrs["record"] == " "
    call_ids = CallIds()
    ids = {build_event(1, {"From": "1"}, call_ids.next)[0].call_id for _ in range(20)}
    assert len(ids) == 20
    # Outgoing history belongs to "from", incoming to "to".
    out, _ = build_event(4, {"From": "101", "To": "223322", "Direction": "1"}, CallIds().next)
    assert belongs(out, "101") and not belongs(out, "223322")


def test_server_frames_reproduce_the_testserver_capture(server, connect) -> None:
    """Events with the capture's fields and callIDs come out as the capture's frames."""
    recv = {
        json_line["decoded"]: json_line["frame"]
        for json_line in captures.lines(captures.TESTSERVER)
        if json_line.get("dir") == "recv" and "Event" in json_line.get("decoded", "")
    }
    c101, c102 = connect("101"), connect("102")
    server.generate(32, {"From": "73430112233", "To": "101", "CallID": "470667153637378"})
    server.generate(
        4,
        {
            "From": "101",
            "To": "223322",
            "Start": "1385035625",
            "End": "1385035635",
            "Duration": "10",
            "Direction": "1",
            "Record": "ftp://recordings/somecall.mp3",
            "CallID": "470667155472390",
        },
    )
    server.generate(
        2, {"From": "223322", "To": "102", "Line": "2", "ClientGUID": "js", "CallID": "1000"}
    )
    server.generate(
        128,
        {
            "From": "101",
            "To": "9004445566",
            "Smstext": "0j/rgnc40llqtdgc",
            "ClientGUID": "js",
            "CallID": "77",
        },
    )
    c101.sync()
    c102.sync()
    frames = [f for f in c101.frames + c102.frames if "Event" in _xml(f)]
    assert len(frames) == 4
    for frame in frames:
        assert recv[_xml(frame)] == frame


def _xml(frame: str) -> str:
    return base64.b64decode(frame).decode("utf-8")


def test_diagnostic_session_reproduces_the_capture_byte_for_byte(connect) -> None:
    """The whole Diagnostic capture: missed-history replay, GetClients, every request."""
    lines = captures.lines(captures.DIAGNOSTIC)
    with ServerThread(version="Test Server v1.1.2") as srv:
        diag = connect("", srv, guid="diag", client_type="Diagnostic", mask=65535, header=True)
        c101, c102 = connect("101", srv), connect("102", srv)
        assert srv.wait_for(lambda: len(srv.clients()) == 3)
        c101.close()
        c102.close()
        assert srv.wait_for(lambda: [c["Connected"] for c in srv.clients()] == ["1", "0", "0"])
        # The testserver capture's three history events, with their callIDs.
        history = [
            ("73430112233", "101", "1385035630", "5", "0", "http://example.test/rec.mp3"),
            ("101", "223322", "1385035635", "10", "1", "ftp://recordings/somecall.mp3"),
            ("223322", "102", "1385035630", "5", "0", None),
        ]
        ids = ["470667154161667", "470667155472390", "470667157569543"]
        for (src, dst, end, dur, direction, rec), call_id in zip(history, ids, strict=True):
            fields = {"From": src, "To": dst, "Start": "1385035625", "End": end}
            fields |= {"Duration": dur, "Direction": direction, "CallID": call_id}
            if rec:
                fields["Record"] = rec
            srv.generate(4, fields)
        assert len(diag.sync()) == 3  # the live Diagnostic got them as they happened
        # A fresh Diagnostic login ("diagp") gets all three, missed, the last missedFinal.
        diagp = connect("", srv, guid="diagp", client_type="Diagnostic", mask=65535, header=True)
        server_frames = [x["frame"] for x in lines if x.get("who") == "server" and x.get("op") == 1]
        client_frames = [x["frame"] for x in lines if x.get("who") == "client" and x.get("op") == 1]
        for expected in server_frames[:3]:
            assert diagp.ws.recv() == expected
        # Every request of the capture; the answers byte for byte (the one event without a
        # CallID in its request gets a random id: compared with the id put back).
        got: list[str] = []
        for frame in client_frames:
            diagp.ws.send(frame)
            while True:
                got.append(diagp.ws.recv())
                if "Response" in _xml(got[-1]):
                    break
        assert len(got) == len(server_frames) - 3
        for mine, theirs in zip(got, server_frames[3:], strict=True):
            if mine != theirs:
                random_id = re.search(r'callID="(\d+)"', _xml(mine))
                assert random_id, (_xml(mine), _xml(theirs))
                fixed = _xml(mine).replace(random_id.group(1), "470667182735363")
                assert fixed == _xml(theirs)
        assert any("Call event from CRM: src = 101, dst = 555" == x for x in srv.log_lines)
        diag.close()
        diagp.close()


# --------------------------------------------------------------------------- history replay


def test_missed_history_is_replayed_once(server, connect) -> None:
    server.generate(4, {"From": "7343", "To": "101", "Direction": "0", "CallID": "1"})
    server.generate(4, {"From": "101", "To": "555", "Direction": "1", "CallID": "2"})
    server.generate(4, {"From": "7343", "To": "102", "Direction": "0", "CallID": "3"})
    first = connect("101")
    replay = [first.next_event(), first.next_event()]
    assert [e.call_id for e in replay] == ["1", "2"]
    assert [(e.missed, e.missed_final) for e in replay] == [(True, False), (True, True)]
    assert first.sync() == []  # not the other extension's call
    # Delivered live now: not replayed at the next login.
    server.generate(4, {"From": "7343", "To": "101", "Direction": "0", "CallID": "4"})
    live = first.next_event()
    assert live.call_id == "4" and not live.missed
    first.close()
    assert server.wait_for(lambda: server.clients()[0]["Connected"] == "0")
    again = connect("101")
    assert again.sync() == []
    # Missed while away: only that one comes, and it is the final one.
    again.close()
    assert server.wait_for(lambda: server.clients()[0]["Connected"] == "0")
    server.generate(4, {"From": "7343", "To": "101", "Direction": "0", "CallID": "5"})
    third = connect("101")
    event = third.next_event()
    assert (event.call_id, event.missed, event.missed_final) == ("5", True, True)
    assert third.sync() == []


# --------------------------------------------------------------------------- transfers


def test_transfer_first_non_empty_answer_wins(server, connect) -> None:
    a, b, c = connect("101"), connect("102"), connect("103")
    (req,) = server.generate(1, {"From": "73430112233", "Line": "3", "System": "info"})
    for client in (a, b, c):
        assert client.next_event() == req
    call_id = req.call_id
    assert b.request(lambda rid: protocol.transfer_request(call_id, "", rid)).ok
    assert c.request(lambda rid: protocol.transfer_request(call_id, "103", rid)).ok
    assert a.request(lambda rid: protocol.transfer_request(call_id, "101", rid)).ok  # late
    assert server.transfers[call_id] == "103"
    # TestServer 1.1.2 sends no type-2 ring after a taken transfer (issue 13).
    assert a.sync() == [] and b.sync() == [] and c.sync() == []
    assert f"Transfer event from CRM: callID = {call_id}, dst = 103" in server.log_lines
    assert f"Transfer event from CRM: callID = {call_id}, dst = 101" not in server.log_lines


def test_transfer_race_of_three_clients(server, connect) -> None:
    clients = {ext: connect(ext) for ext in ("101", "102", "103")}
    (req,) = server.generate(1, {"From": "73430112233"})
    for client in clients.values():
        assert client.next_event().call_id == req.call_id
    start = threading.Barrier(3)
    codes: dict[str, int] = {}

    def answer(ext: str) -> None:
        start.wait()
        dst = "" if ext == "102" else ext
        codes[ext] = (
            clients[ext].request(lambda rid: protocol.transfer_request(req.call_id, dst, rid)).code
        )

    threads = [threading.Thread(target=answer, args=(ext,)) for ext in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert codes == {"101": 0, "102": 0, "103": 0}
    winner = server.transfers[req.call_id]
    assert winner in ("101", "103")
    wins = [x for x in server.log_lines if x.startswith("Transfer event from CRM")]
    assert wins == [f"Transfer event from CRM: callID = {req.call_id}, dst = {winner}"]
    for client in clients.values():
        assert client.sync() == []


def test_a_taken_transfer_rings_only_when_production_like(connect) -> None:
    with ServerThread(production_like=True) as srv:
        a, c = connect("101", srv), connect("103", srv)
        (req,) = srv.generate(1, {"From": "73430112233", "Line": "3", "System": "info"})
        assert a.next_event() == req and c.next_event() == req
        assert c.request(lambda rid: protocol.transfer_request(req.call_id, "103", rid)).ok
        ring = c.next_event()
        assert (ring.type, ring.call_id, ring.from_, ring.line, ring.to) == (
            2,
            req.call_id,
            "73430112233",
            "3",
            "103",
        )
        assert a.sync() == []
        a.close()
        c.close()


def test_transfer_declined_by_all_and_unknown_call(server, connect) -> None:
    a, b = connect("101"), connect("102")
    (req,) = server.generate(1, {"From": "7343"})
    for client in (a, b):
        client.next_event()
        assert client.request(lambda rid: protocol.transfer_request(req.call_id, "", rid)).ok
    assert server.wait_for(lambda: any("nobody took the call" in x for x in server.log_lines))
    assert req.call_id not in server.transfers
    # As the Diagnostic "Transfer 101 555" command: an unknown callID, still Code 0.
    assert a.request(lambda rid: protocol.transfer_request("999", "555", rid)).code == 0
    assert any(
        x.startswith("Transfer event from CRM: callID = 999, dst = 555") for x in server.log_lines
    )


# --------------------------------------------------------------------------- calls, simulation


def test_call_is_logged_unescaped(server, connect) -> None:
    client = connect("101")
    for dst in ("+7 (343) 0112233", "8&9 <x>", "Иван"):
        assert client.request(lambda rid, d=dst: protocol.call_request("101", d, rid)).ok
        assert f"Call event from CRM: src = 101, dst = {dst}" in server.log_lines
    assert client.sync() == []  # simulation is off: no events


def test_simulation_on_plays_nothing_as_testserver(server, connect) -> None:
    client = connect("101")
    assert client.request(lambda rid: protocol.simulation_request(True, rid)).ok
    assert server.simulation
    assert client.request(lambda rid: protocol.call_request("101", "555", rid)).ok
    assert client.sync() == []  # TestServer 1.1.2 produced no events (issue 13)


def test_simulated_call_plays_8_16_4(connect) -> None:
    server = ServerThread(production_like=True, simulate_delay=0.01).start()
    client = connect("101", server)
    other = connect("102", server)
    assert client.request(lambda rid: protocol.simulation_request(True, rid)).ok
    assert server.simulation
    assert client.request(lambda rid: protocol.call_request("101", "555", rid)).ok
    events = [client.next_event() for _ in range(3)]
    assert _types(events) == [8, 16, 4]
    assert len({e.call_id for e in events}) == 1
    assert all((e.from_, e.to) == ("101", "555") for e in events)
    assert events[2].direction == 1 and events[2].duration and events[2].duration > 0
    assert other.sync() == []
    assert client.request(lambda rid: protocol.simulation_request(False, rid)).ok
    assert not server.simulation
    client.close()
    other.close()
    server.stop()


def test_simulated_transfer_plays_2_32_4() -> None:
    with ServerThread(production_like=True, simulate=True, simulate_delay=0.01) as srv:
        client = Raw(srv, "101")
        (req,) = srv.generate(1, {"From": "73430112233", "Line": "2"})
        assert client.next_event().type == 1
        assert client.request(lambda rid: protocol.transfer_request(req.call_id, "101", rid)).ok
        events = [client.next_event() for _ in range(3)]
        assert _types(events) == [2, 32, 4]
        assert {e.call_id for e in events} == {req.call_id}
        assert events[2].direction == 0 and events[2].to == "101" and events[2].line == "2"
        client.close()


# --------------------------------------------------------------------------- requests


def test_requests_get_one_response_with_their_request_id(server, connect) -> None:
    client = connect("101")
    client.next_id = 42
    version = client.request(protocol.get_version_request)
    assert (version.code, version.request_id, version.version) == (0, "42", server.version)
    clients = client.request(protocol.get_clients_request)
    assert clients.request_id == "43" and clients.clients[0]["GUID"] == "101"
    sim = client.request(lambda rid: protocol.simulation_request(False, rid))
    assert (sim.code, sim.data) == (0, "")
    bogus = client.request(lambda rid: protocol.encode_request("Bogus", rid))
    assert (bogus.code, bogus.request_id) == (2, "45")
    bad = client.request(lambda rid: protocol.encode_request("Generate", rid, [("Event", "x")]))
    assert bad.code == 2
    gen = client.request(lambda rid: protocol.generate_request(2, {"From": "1", "To": "101"}, rid))
    assert gen.ok and _types(client.events) == [2]  # the event first, then the response


def test_bogus_method_answer_matches_the_capture(server, connect) -> None:
    lines = captures.lines(captures.TESTSERVER)
    bogus = next(x for x in lines if "Bogus" in x.get("decoded", ""))
    code2 = next(x for x in lines if "<Code>2</Code>" in x.get("decoded", ""))
    client = connect("102")
    client.ws.send(bogus["frame"])
    assert client.ws.recv() == code2["frame"]


def test_garbage_is_ignored_and_the_connection_still_works(server, connect) -> None:
    lines = captures.lines(captures.TESTSERVER)
    garbage = next(x["frame"] for x in lines if x.get("dir") == "send" and "decoded" not in x)
    client = connect("102")
    for frame in (garbage, "!!!", base64.b64encode(b"<Request><Method>").decode()):
        client.ws.send(frame)
    response = client.request(protocol.get_version_request)
    assert response.ok and response.request_id == "0"
    assert client.frames and len(client.frames) == 1  # nothing answered the garbage
    assert sum("Request can't be decoded" in x for x in server.log_lines) == 3


def test_generate_api_and_clients(server, connect) -> None:
    client = connect("101")
    events = server.generate(8, {"From": "101", "To": "555", "CallID": "42"})
    assert events == [client.next_event()]
    assert events[0].to_xml() == '<Event type="8" callID="42" from="101" to="555"/>'
    client.close()
    assert server.wait_for(lambda: server.clients()[0]["Connected"] == "0")
    again = connect("102")
    assert again.request(protocol.get_clients_request).clients[0]["Connected"] == "0"
    assert [c["id"] for c in server.clients()] == ["0", "1"]


def test_log_file_is_appended_with_timestamps(tmp_path) -> None:
    log = tmp_path / "logs" / "testserver.log"
    with ServerThread(log_path=log) as srv:
        srv.generate(1, {"From": "7343", "CallID": "5"})
    with ServerThread(log_path=log) as srv:
        pass
    text = log.read_text(encoding="utf-8").splitlines()
    assert sum("Server started" in x for x in text) == 2
    assert any(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} Event sent: type = 1", x) for x in text
    )


# --------------------------------------------------------------------------- TLS, restart, port


def test_wss_with_a_self_signed_certificate(tmp_path) -> None:
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key)) as srv:
        assert srv.url.startswith("wss://127.0.0.1:")
        client = Raw(srv, "101", sslopt={"ca_certs": str(cert)})
        der = client.ws.sock.getpeercert(binary_form=True)
        assert tlsutil.fingerprint_sha256(der) == fingerprint
        srv.generate(2, {"From": "7343", "To": "101", "CallID": "9"})
        assert client.next_event().call_id == "9"
        assert client.frames[-1].startswith("<Event ")  # raw XML over wss, not base64
        assert client.request(protocol.get_version_request).ok
        client.close()
        with pytest.raises(ssl.SSLError):  # and a client that doesn't trust it is refused
            Raw(srv, "102", sslopt={"cert_reqs": ssl.CERT_REQUIRED})


def test_restart_on_the_same_port(server, connect) -> None:
    client = connect("101")
    port = server.port
    assert port != 0
    stopping = threading.Thread(target=server.stop)
    stopping.start()  # the client reads meanwhile, so the close handshake completes at once
    assert client.wait_close()[0] == 1001
    stopping.join(TIMEOUT)
    assert not server.running
    server.start()
    assert server.port == port and server.url == f"ws://127.0.0.1:{port}/"
    again = connect("101")
    assert again.request(protocol.get_version_request).ok
    assert server.clients()[0]["Connected"] == "1"


def test_port_in_use_is_one_clear_error(server, capsys) -> None:
    with pytest.raises(UserError) as exc:
        ServerThread(port=server.port).start()
    assert f"port {server.port}" in exc.value.text.en and "порт" in exc.value.text.ru
    assert cli.main(["testserver", "--port", str(server.port)]) == 2
    err = capsys.readouterr().err
    assert "already in use" in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX here")
def test_cli_runs_and_stops_on_ctrl_c(tmp_path) -> None:
    port = _free_port()
    log = tmp_path / "ts.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "pz_excel", "testserver", "--port", str(port)]
    cmd += ["--self-signed", "--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("SHA-256" in x for x in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        assert any(f"wss://127.0.0.1:{port}/" in x for x in lines)
        fingerprint = lines[-1].split()[-1]
        ws = websocket.create_connection(
            f"wss://127.0.0.1:{port}/?GID=101&PhoneNumber=101&CID=",
            timeout=TIMEOUT,
            sslopt={"cert_reqs": ssl.CERT_NONE},
        )
        der = ws.sock.getpeercert(binary_form=True)
        assert tlsutil.fingerprint_sha256(der) == fingerprint
        ws.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in out
    assert "Client connected: GUID = 101" in log.read_text(encoding="utf-8")


def test_calls_while_stopped_are_replayed_after_a_restart(server, connect) -> None:
    server.stop()
    (event,) = server.generate(4, {"From": "7343", "To": "101", "Direction": "0"})
    server.start()
    client = connect("101")
    replayed = client.next_event()
    assert (replayed.call_id, replayed.missed, replayed.missed_final) == (
        event.call_id,
        True,
        True,
    )


def test_the_server_pings() -> None:
    with ServerThread(ping_interval=0.05) as srv:
        client = Raw(srv, "101")
        opcode, _frame = client.ws.recv_data_frame(True)  # answered with a pong inside
        assert opcode == websocket.ABNF.OPCODE_PING
        assert client.request(protocol.get_version_request).ok  # still alive after pongs
        client.close()
