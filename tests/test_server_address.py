"""One rule for a connector address (issue 12): ``normalize_server_url`` refuses a
malformed one, with what is wrong and how to write it, in both languages; ``run`` (its
``--server`` and the Settings sheet), ``diag`` (its URL and Connect) and the Settings
dialog refuse it before anything connects. ``ws//127.0.0.1:22417`` used to become
``ws://ws:10150//127.0.0.1:22417``: an agent retrying forever a host named "ws"."""

from __future__ import annotations

import socket
import threading

import click
import pytest

from pz_excel.cli import main as cli
from pz_excel.excel.settings_dialog import validate_settings
from pz_excel.protocol.login import ProtocolError, normalize_server_url
from pz_excel.tools.diag_commands import CommandError, parse_command
from tests.test_agent import write_template
from tests.test_guid_lock import make_book

KEPT = {
    "pbx": "ws://pbx:10150/",
    "PBX.office:2000": "ws://pbx.office:2000/",
    "ws://pbx": "ws://pbx:10150/",
    "wss://Pbx.Office:443/ws": "wss://pbx.office:443/ws",
    "127.0.0.1": "ws://127.0.0.1:10150/",
    "[::1]:22417": "ws://[::1]:22417/",
    "ws://[fe80::1]/x": "ws://[fe80::1]:10150/x",
    "ws:10150": "ws://ws:10150/",  # a host named "ws" and a port, not a mistyped scheme
    " pbx_1.local ": "ws://pbx_1.local:10150/",
}

REFUSED = {
    "ws//127.0.0.1:22417": "scheme",
    "wss//127.0.0.1:22417": "scheme",
    "ws:/pbx": "scheme",
    "ws:pbx": "scheme",
    "http://pbx:10150": "http://",
    "ws://pbx//x": "//",
    "ws://pbx:0": "port",
    "pbx:65536": "port",
    "pbx:": "port",
    "pbx:abc": "port",
    "pb x": "spaces",
    "ws://user:secret@pbx": "user name",
    "999.1.1.1": "IPv4",
    "pbx..office": "host name",
    "pbx!": "host name",
    "::1": "brackets",
    "[::zz]": "IPv6",
    "ws://": "no host",
    "": "empty",
}


@pytest.mark.parametrize(("given", "expected"), KEPT.items())
def test_good_addresses_are_kept(given, expected):
    assert normalize_server_url(given) == expected


@pytest.mark.parametrize(("given", "what"), REFUSED.items())
def test_malformed_addresses_are_refused_saying_what_and_how(given, what):
    with pytest.raises(ProtocolError) as err:
        normalize_server_url(given)
    text = err.value.text
    assert what in text.en
    assert "ws://host:10150" in text.en and "ws://хост:10150" in text.ru
    assert "адрес коннектора" in text.ru and text.ru != text.en
    assert isinstance(err.value, ValueError)  # callers that catch ValueError still do


def test_the_message_is_in_the_users_language(monkeypatch):
    monkeypatch.setenv("PZ_LANG", "ru")
    with pytest.raises(ProtocolError) as err:
        normalize_server_url("ws//pbx")
    assert str(err.value).startswith("адрес коннектора «ws//pbx» указан неверно")


class CountingListener:
    """A loopback port that counts the connections it accepts: nothing may arrive."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = CountingListener()
    yield lst
    lst.close()


def test_run_refuses_a_mistyped_server_option_before_connecting(tmp_path, listener, capsys):
    book = make_book(tmp_path / "crm.xlsx")
    code = cli.main(["run", "-w", str(book), "-s", f"ws//127.0.0.1:{listener.port}", "-p", "101"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Agent running" not in out and len(err.strip().splitlines()) == 1
    assert "the scheme must be ws:// or wss://" in err and "(from --server)" in err
    assert "Traceback" not in err
    assert listener.accepted == 0


def test_run_refuses_a_mistyped_settings_sheet_server(tmp_path, listener, capsys, monkeypatch):
    book = write_template(
        tmp_path / "crm.xlsx",
        lang="en",
        settings={"server": f"wss//127.0.0.1:{listener.port}", "phone": "101"},
    )
    code = cli.main(["run", "-w", str(book)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the scheme must be ws:// or wss://" in err and "Settings sheet of crm.xlsx" in err
    monkeypatch.setenv("PZ_LANG", "ru")
    assert cli.main(["run", "-w", str(book)]) == 2
    err = capsys.readouterr().err
    assert "схема должна быть ws:// или wss://" in err and "лист «Настройки» книги" in err
    assert listener.accepted == 0


def test_diag_refuses_a_mistyped_url_and_connect(listener, capsys):
    assert cli.main(["diag", f"ws//127.0.0.1:{listener.port}", "-c", "version"]) == 2
    err = capsys.readouterr().err
    assert "the scheme must be ws:// or wss://" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(CommandError) as bad:
        parse_command(f"connect ws//127.0.0.1:{listener.port} me")
    assert "the scheme must be ws:// or wss://" in bad.value.text.en
    with pytest.raises(CommandError):
        parse_command(f"connect 127.0.0.1:{listener.port}//x me")
    # The vendor's form still works, ssl included.
    target = parse_command(f"connect 127.0.0.1:{listener.port} me ssl").target
    assert target is not None and target.server == f"wss://127.0.0.1:{listener.port}/"
    assert listener.accepted == 0


def test_the_settings_dialog_uses_the_same_rule():
    problems = validate_settings({"server": "ws//pbx:10150", "phone": "101"})
    assert len(problems) == 1
    assert "the scheme must be ws:// or wss://" in problems[0].en
    assert "схема должна быть ws:// или wss://" in problems[0].ru
    assert validate_settings({"server": "ws://pbx:10150", "phone": "101"}) == []


# ------------------------------------------------------------------ run and diag agree


def _commands():
    from pz_excel.cli.agent_cmd import run_command
    from pz_excel.tools.diag import command as diag_command

    return {"run": run_command, "diag": diag_command}


@pytest.mark.parametrize("name", ["run", "diag"])
def test_run_and_diag_take_the_same_tls_option_names(name, tmp_path):
    from pz_excel.connector.outcomes import LEGACY_HINT
    from pz_excel.connector.tls_cli import chosen_pin

    cmd = _commands()[name]
    ca = tmp_path / "ca.pem"
    ca.write_text("not read while parsing", "utf-8")
    base = ["-w", str(tmp_path / "b.xlsx")] if name == "run" else []
    for pin_option in ("--pin-sha256", "--pin"):  # --pin: diag's old name, kept hidden
        args = [*base, pin_option, "AB:CD", "--legacy-tls", "--ca-file", str(ca)]
        params = cmd.make_context(name, args).params
        assert chosen_pin(params["pin_sha256"], params["pin_alias"]) == "AB:CD"
        assert params["legacy_tls"] is True and params["ca_file"] == str(ca)
    with pytest.raises(click.BadParameter) as err:
        cmd.make_context(name, [*base, "--ca-file", str(tmp_path / "missing.pem")])
    assert "does not exist" in str(err.value.format_message())
    with pytest.raises(click.BadParameter):
        cmd.make_context(name, [*base, "--ca-file", str(tmp_path)])  # a folder
    text = cmd.get_help(click.Context(cmd, info_name=name))
    assert "--pin-sha256" in text and "--pin " not in text and "--legacy-tls" in text
    # What the TLS mismatch message advises, both commands accept.
    assert "--legacy-tls --pin-sha256" in LEGACY_HINT.en and "pz-excel diag" in LEGACY_HINT.en
