"""A connector that speaks only TLS 1.0 (as the vendor's ``TestServer -s``, PROTOCOL.md §5)
against our client with default settings: one attempt, then a final state that says what
is wrong and how to turn on the legacy mode — never a retry loop.

The connector here is a bare TLS listener on loopback (Python's ``ssl``, TLS 1.0 only,
security level 0) that counts the connections it accepts: a handshake that can never
succeed must be tried once.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pz_excel.cli import main as cli
from pz_excel.connector import tls as tlsutil
from pz_excel.connector.client import Backoff, ConnectionState, ConnectorClient
from pz_excel.connector.outcomes import TLS_HANDSHAKE_FAILED
from pz_excel.protocol.codec import ConnectSettings

T = 5.0


def tls10(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.0 only, every cipher at security level 0 (what old connectors offer)."""
    with warnings.catch_warnings():  # TLSv1 is deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class Tls10Connector:
    """Accepts TCP connections, counts them, and runs a TLS 1.0-only server handshake."""

    def __init__(self, directory: Path):
        cert, key, _ = tlsutil.self_signed_cert(directory)
        self.ctx = tls10(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        self.ctx.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.attempts = 0
        self.results: list[str] = []  # the TLS version agreed, or the server's error
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.cond:
                self.attempts += 1
                self.cond.notify_all()
            conn.settimeout(T)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    result = str(tls.version())
            except (OSError, ssl.SSLError) as exc:
                result = f"error: {exc}"
            finally:
                conn.close()
            with self.cond:
                self.results.append(result)
                self.cond.notify_all()

    def wait_attempts(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.attempts >= n, timeout)

    def wait_results(self, n: int) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.results) >= n, T), self.results
            return list(self.results)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() (close alone does not)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(T)


@pytest.fixture
def connector(tmp_path) -> Iterator[Tls10Connector]:
    try:
        server = Tls10Connector(tmp_path)
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.0 at security level 0: {exc}")
    try:
        # The listener must really speak TLS 1.0, or the test proves nothing: one
        # handshake by a TLS 1.0 client first (not counted below).
        probe = tls10(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        try:
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=T) as raw,
                probe.wrap_socket(raw) as tls,
            ):
                assert tls.version() == "TLSv1"
        except (OSError, ssl.SSLError) as exc:
            pytest.skip(f"TLS 1.0 is disabled in this OpenSSL: {exc}")
        assert server.wait_results(1) == ["TLSv1"]
        with server.cond:
            server.attempts = 0
            server.results.clear()
        yield server
    finally:
        server.close()


def test_a_tls_1_0_connector_is_tried_once_and_the_way_out_is_said(connector):
    states: list[ConnectionState] = []
    client = ConnectorClient(
        ConnectSettings(f"wss://127.0.0.1:{connector.port}", "101"),  # default TLS settings
        backoff=Backoff(base=0.05, cap=0.1, jitter="none"),  # a retry would come at once
    )
    client.on_state(states.append)
    client.start()
    try:
        stopped = client.wait_state(lambda s: s.kind == "stopped", T)
        assert stopped is not None and stopped.close is not None
        assert stopped.close.code == TLS_HANDSHAKE_FAILED and not stopped.close.retry
        en, ru = stopped.text.en, stopped.text.ru
        assert en.startswith("stopped: TLS handshake failed (")
        assert "TLS 1.0" in en and "retrying will not help" in en
        assert "pz-excel run --legacy-tls --pin-sha256" in en
        assert "повторные попытки не помогут" in ru and "--legacy-tls --pin-sha256" in ru
        assert "устаревшего TLS" in ru
        # One attempt reached the connector, and no second one comes.
        assert connector.attempts == 1
        assert not connector.wait_attempts(2, timeout=1.0)
        assert connector.wait_results(1)[0].startswith("error:")  # refused by the version
        assert client.state.kind == "stopped"
        assert [s.kind for s in states].count("retrying") == 0
    finally:
        client.stop()


def test_the_diagnostic_console_says_it_in_one_line(connector, capsys):
    url = f"wss://127.0.0.1:{connector.port}"
    assert cli.main(["diag", url, "-c", "version"]) == 2
    err = capsys.readouterr().err
    assert f"cannot connect to {url}/: TLS handshake failed" in err
    assert "--legacy-tls" in err and "Traceback" not in err
    assert connector.attempts == 1
