"""Our test connector is no kinder than the vendor's TestServer 1.1.2 (issue 13).

Each test encodes one behaviour observed on TestServer 1.1.2, as written down in
``shared/protocol/PROTOCOL.md`` (section cited) or seen in its captures; what production
connectors do beyond it is checked only with ``production_like`` (tests/test_testserver.py).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.client import ConnectorClient, TlsOptions
from pz_excel.protocol import codec as protocol
from pz_excel.protocol.codec import ConnectSettings, Event, Response
from pz_excel.tools.testserver import PING_PAYLOAD, SERVER_HEADER, ServerThread

T = 5.0


class Client:
    """A bare client that reads every frame as it comes (events, responses, pings)."""

    def __init__(
        self,
        server: ServerThread,
        phone: str,
        *,
        guid: str = "",
        mask: int = 0,
        sslopt: dict | None = None,
    ):
        self.settings = ConnectSettings(server.url, phone, "", "excel", guid, mask)
        self.ws = websocket.create_connection(
            protocol.connect_url(self.settings), timeout=T, sslopt=sslopt
        )
        self.raw = self.settings.transport is protocol.Transport.RAW
        self.frames: list[str] = []

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send(self, xml: str) -> None:
        self.ws.send(protocol.encode_frame(xml, self.settings.transport))

    def response(self) -> tuple[Response, list[Event]]:
        """Read until a response; return it and the events read before it."""
        events: list[Event] = []
        while True:
            frame = self.ws.recv()
            self.frames.append(frame)
            for msg in protocol.decode_frame(frame):
                if isinstance(msg, Response):
                    return msg, events
                if isinstance(msg, Event):
                    events.append(msg)

    def events_until_sync(self) -> list[Event]:
        self.send(protocol.get_version_request(99))
        return self.response()[1]

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - teardown
            pass


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread() as srv:
        yield srv


def code_of(client: Client, xml: str) -> int:
    client.send(xml)
    return client.response()[0].code


# --------------------------------------------------------------------- §3: Code 2 cases


def test_code_2_for_the_requests_testserver_refuses(server: ServerThread) -> None:
    """PROTOCOL.md §3: Code 2 for a Call without To or with empty Data, a request without
    RequestID, a Generate of a type it does not know (256); a Transfer of an unknown call
    ID gets 0."""
    c = Client(server, "101")
    request = (
        "<Request><ProtocolVersion>1</ProtocolVersion><Method>{m}</Method>{rid}{data}</Request>"
    )
    rid = "<RequestID>0</RequestID>"
    assert code_of(c, request.format(m="Call", rid=rid, data="<Data><From>101</From></Data>")) == 2
    assert code_of(c, request.format(m="Call", rid=rid, data="<Data></Data>")) == 2
    assert code_of(c, request.format(m="Call", rid=rid, data="<Data/>")) == 2
    no_rid = request.format(m="Call", rid="", data="<Data><From>101</From><To>5</To></Data>")
    assert code_of(c, no_rid) == 2
    assert "Call event from CRM: src = 101, dst = 5" not in server.log_lines
    assert code_of(c, protocol.generate_request(256, {"To": "101", "Result": "1"}, 0)) == 2
    for etype in (1, 2, 4, 8, 16, 32, 128):
        assert code_of(c, protocol.generate_request(etype, {"From": "1", "To": "101"}, 0)) == 0
    assert code_of(c, protocol.call_request("101", "555", 0)) == 0
    assert code_of(c, protocol.transfer_request("999", "101", 0)) == 0
    c.close()


def test_raw_xml_over_ws_gets_code_2(server: ServerThread) -> None:
    """PROTOCOL.md §3: raw, non-base64 XML sent over ws:// is answered with Code 2."""
    c = Client(server, "101")
    c.send_text(protocol.call_request("101", "555", 7))
    response, _ = c.response()
    assert (response.code, response.request_id) == (2, "7")
    assert not any(x.startswith("Call event from CRM") for x in server.log_lines)
    c.close()


@pytest.fixture
def wss_server(tmp_path: Path) -> Iterator[ServerThread]:
    cert, key, _ = tlsutil.self_signed_cert(tmp_path)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key)) as srv:
        yield srv


NO_VERIFY = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}


def test_over_wss_base64_gets_code_2_and_events_end_with_nul(wss_server: ServerThread) -> None:
    """PROTOCOL.md §2: over wss:// frames are raw XML, TestServer 1.1.2 ends every event
    with \\0 there, and answers a base64 request with Code 2."""
    c = Client(wss_server, "101", sslopt=NO_VERIFY)
    c.send_text(protocol.encode_frame(protocol.call_request("101", "555", 3)))  # base64
    response, _ = c.response()
    assert (response.code, response.request_id) == (2, "3")
    wss_server.generate(2, {"From": "73430112233", "To": "101", "CallID": "1000"})
    events = c.events_until_sync()
    assert [e.call_id for e in events] == ["1000"]
    event_frames = [f for f in c.frames if f.startswith("<Event")]
    response_frames = [f for f in c.frames if f.startswith("<Response")]
    assert event_frames == [
        '<Event type="2" callID="1000" from="73430112233" line=" " to="101"/>\0'
    ]
    assert response_frames and all(f.endswith("</Response>\n") for f in response_frames)
    c.close()


# --------------------------------------------------------------------- §1: broadcast mask


@pytest.mark.parametrize(
    ("mask", "expected"),
    [(0, [1]), (4, [4]), (127, [2, 4, 8, 1])],
)
def test_broadcast_events_mask_as_observed(server: ServerThread, mask: int, expected) -> None:
    """PROTOCOL.md §1: a client GID=team with no PhoneNumber, while 101 is connected; the
    console generates a ring (2), a completed call (4), an outgoing call (8) for 101 and a
    transfer request (1)."""
    ext = Client(server, "101")
    team = Client(server, "", guid="team", mask=mask)
    server.generate(2, {"From": "73430112233", "To": "101"})
    server.generate(4, {"From": "73430112233", "To": "101", "Direction": "0"})
    server.generate(8, {"From": "101", "To": "223322"})
    server.generate(1, {"From": "73430112233"})
    assert [e.type for e in team.events_until_sync()] == expected
    assert [e.type for e in ext.events_until_sync()] == [2, 4, 8, 1]
    team.close()
    ext.close()


# --------------------------------------------------------------------- §1: pings


def test_one_ping_timer_for_all_clients_with_the_vendors_payload() -> None:
    """PROTOCOL.md §1: TestServer 1.1.2 pings every client at once (about every 31 s); its
    payload is ``server ping string``."""
    with ServerThread(ping_interval=0.3) as srv:
        clients = [Client(srv, ext) for ext in ("101", "102", "103")]
        pings: dict[str, tuple[float, bytes]] = {}
        lock = threading.Lock()

        def first_ping(ext: str, c: Client) -> None:
            while True:
                opcode, frame = c.ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_PING:
                    with lock:
                        pings[ext] = (time.monotonic(), frame.data)
                    return

        threads = [threading.Thread(target=first_ping, args=(c.settings.phone, c)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T)
        assert sorted(pings) == ["101", "102", "103"]
        assert {data for _, data in pings.values()} == {PING_PAYLOAD} == {b"server ping string"}
        times = [when for when, _ in pings.values()]
        assert max(times) - min(times) < 0.15  # one timer: together, not per connection
        for c in clients:
            c.close()


def test_the_default_ping_interval_is_the_vendors() -> None:
    assert ServerThread().ping_interval == 31.0


# --------------------------------------------------------------------- identity


def test_server_header_and_version_text(server: ServerThread) -> None:
    """The diagnostic capture: ``Server: WebSocket++/0.2.0dev`` in the upgrade response,
    ``<Version>Test Server v1.1.2</Version>`` to GetVersion."""
    c = Client(server, "101")
    assert c.ws.getheaders().get("server") == SERVER_HEADER == "WebSocket++/0.2.0dev"
    c.send(protocol.get_version_request(0))
    assert c.response()[0].version == "Test Server v1.1.2"
    c.close()


def test_server_picked_call_ids_count_up_in_the_vendors_form(server: ServerThread) -> None:
    """Captures: a call ID the server picks is ``(unix second << 18) | n``, ``n`` counting
    up (470667155996673 and 470667156520962 are n = 1 and 2; a later one n = 3)."""
    before = int(time.time())
    ids = [int(server.generate(1, {"From": "7343"})[0].call_id) for _ in range(3)]
    after = int(time.time())
    assert [i & 0x3FFFF for i in ids] == [1, 2, 3]
    assert all(before <= i >> 18 <= after for i in ids)
    # A given CallID is kept as given.
    assert server.generate(2, {"From": "1", "To": "101", "CallID": "1000"})[0].call_id == "1000"


# --------------------------------------------------------------------- §5: legacy TLS


def test_legacy_tls_server_speaks_tls_1_0_and_only_a_legacy_client_gets_in(
    tmp_path: Path,
) -> None:
    """PROTOCOL.md §5: ``TestServer -s`` serves TLS 1.0 only (AES256-SHA was negotiated);
    the vendor's Diagnostic offers at most TLS 1.0, so the stand-in has an explicit legacy
    mode. A default client refuses it; a client in its own legacy mode with the pin
    connects over TLS 1.0."""
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path, rsa=True)
    context = tlsutil.server_context(cert, key, legacy=True)
    with ServerThread(ssl_context=context) as srv:
        settings = ConnectSettings(srv.url, "101")
        legacy = ConnectorClient(settings, tls=TlsOptions(pin_sha256=fingerprint, legacy=True))
        legacy.start()
        try:
            assert legacy.wait_connected(T)
            assert srv.wait_for(lambda: any(x.endswith("tls = TLSv1") for x in srv.log_lines), T)
        finally:
            legacy.stop()
        modern = ConnectorClient(settings, tls=TlsOptions(pin_sha256=fingerprint))
        modern.start()
        try:
            # asyncio's TLS drops the socket without an alert, so the client sees a closed
            # handshake (retried, as a restarting connector looks the same) and names the way.
            refused = modern.wait_state(lambda s: s.kind in ("stopped", "retrying"), T)
            assert refused is not None and "legacy TLS mode" in refused.text.en
            assert not modern.wait_connected(0.5)
        finally:
            modern.stop()


# --------------------------------------------------------------------- the console command


def test_cli_has_one_production_like_switch_and_a_legacy_tls_mode() -> None:
    from click.testing import CliRunner

    from pz_excel.cli import main as cli

    runner = CliRunner()
    help_text = runner.invoke(cli.cli, ["testserver", "--help"]).output
    assert "--production-like" in help_text and "--legacy-tls" in help_text
    assert "--ping-interval" in help_text
    for gone in ("--auth-close", "--simulate"):
        result = runner.invoke(cli.cli, ["testserver", gone])
        assert result.exit_code == 2 and "No such option" in result.output
