"""``pz-excel run`` on a first start against a connector it cannot reach (issue 12): it
keeps retrying (a PBX restarts), but says once, on the first failed attempt, what is wrong
and what to check; never on every retry, never after the connector was reached once. And
a final state (a TLS mismatch) is said once, not twice.

The agent runs as the user starts it, a ``python -m pz_excel run`` process: its stderr is
read line by line and waited on with timeouts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pz_excel.tools.testserver import ServerThread
from tests.test_connector_tls_mismatch import connector  # noqa: F401 - a fixture
from tests.test_guid_lock import make_book

REPO = Path(__file__).resolve().parents[1]
T = 20.0
HINT = "cannot reach the connector at"


class RunProcess:
    """``pz-excel run`` in a child process; its stderr lines, as they come."""

    def __init__(self, *args: str, lang: str = "en"):
        env = dict(os.environ, PZ_LANG=lang, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pz_excel", "run", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def count(self, needle: str) -> int:
        with self.cond:
            return sum(needle in line for line in self.lines)

    def wait_count(self, needle: str, n: int, timeout: float = T) -> None:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(needle in line for line in self.lines) >= n, timeout
            )
            assert ok, f"waited for {n} x {needle!r}; got:\n" + "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # run stops cleanly on SIGTERM
        try:
            code = self.proc.wait(T)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(T)
        self.reader.join(T)
        return code


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def book(tmp_path):
    return make_book(tmp_path / "crm.xlsx")


def test_refused_on_first_start_is_said_once_and_retrying_goes_on(book):
    port = closed_port()
    run = RunProcess("-w", str(book), "-s", f"ws://127.0.0.1:{port}", "-p", "101")
    try:
        run.wait_count(HINT, 1)
        seen = run.count("retrying in")
        run.wait_count("retrying in", seen + 4)  # it goes on retrying...
        assert run.count(HINT) == 1  # ...without saying it again
        hint = next(line for line in run.lines if HINT in line)
        assert "warning:" in hint and "connection refused" in hint
        assert f"port {port}" in hint and "connector is running" in hint
        assert "Settings sheet or --server" in hint and "Still retrying" in hint
    finally:
        assert run.stop() == 0


def test_an_unresolvable_name_is_said_once_in_russian(book):
    port = closed_port()
    run = RunProcess(
        "-w", str(book), "-s", f"ws://nonexistent.invalid:{port}", "-p", "101", lang="ru"
    )
    try:
        needle = "не удаётся связаться с коннектором"
        run.wait_count(needle, 1)
        seen = run.count("повтор через")
        run.wait_count("повтор через", seen + 2)
        assert run.count(needle) == 1
        hint = next(line for line in run.lines if needle in line)
        assert "nonexistent.invalid" in hint and "DNS" in hint and "IP-адрес" in hint
        assert "Попытки продолжаются" in hint
    finally:
        run.stop()


def test_not_said_once_the_connector_was_reached(book):
    server = ServerThread()
    server.start()
    run = RunProcess("-w", str(book), "-s", server.url, "-p", "101")
    try:
        run.wait_count("connected to", 1)
        server.stop()  # a PBX restart: refused from now on
        run.wait_count("connection refused", 4)
        assert run.count(HINT) == 0
    finally:
        run.stop()
        server.stop()


def test_a_tls_mismatch_is_said_once(book, connector):  # noqa: F811 - the fixture
    run = RunProcess("-w", str(book), "-s", f"wss://127.0.0.1:{connector.port}", "-p", "101")
    code = run.stop() if run.proc.wait(T) is None else run.proc.returncode
    run.reader.join(T)
    assert code == 2
    tls_lines = [line for line in run.lines if "TLS handshake failed" in line]
    assert len(tls_lines) == 1, run.lines
    assert tls_lines[0].startswith("pz-excel: ") and "--legacy-tls --pin-sha256" in tls_lines[0]
    assert run.count(HINT) == 0  # reached (the handshake failed): no "cannot reach"


def test_diag_says_what_to_check_with_the_same_rule(capsys):
    from pz_excel.cli import main as cli

    port = closed_port()
    assert cli.main(["diag", f"ws://127.0.0.1:{port}", "-c", "version", "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert f"cannot connect to ws://127.0.0.1:{port}/: connection refused;" in err
    assert f"nothing accepts connections on port {port} of 127.0.0.1" in err
    assert len(err.strip().splitlines()) == 1
