"""Reading a connector's certificate fingerprint to pin it (issue 13: the legacy mode needs a
pin, and there was no way to get one)."""

from __future__ import annotations

import pytest

from pz_excel.connector import tls as tlsutil
from pz_excel.connector.certinfo import fetch_cert
from pz_excel.i18n import UserError
from pz_excel.tools.testserver import ServerThread


def test_fingerprint_of_a_modern_connector(tmp_path) -> None:
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key)) as srv:
        info = fetch_cert(srv.url)
        assert info.fingerprint == fingerprint
        assert info.tls_version == "TLSv1.3" and not info.legacy
        # host:port without scheme is taken as wss
        assert fetch_cert(f"127.0.0.1:{srv.port}").fingerprint == fingerprint


def test_fingerprint_of_a_tls_1_0_connector_says_legacy(tmp_path) -> None:
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path, rsa=True)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key, legacy=True)) as srv:
        info = fetch_cert(srv.url)
        assert (info.fingerprint, info.tls_version, info.cipher) == (
            fingerprint, "TLSv1", "AES256-SHA")
        assert info.legacy


def test_plain_ws_and_no_connector_are_one_clear_line() -> None:
    with ServerThread() as srv:
        with pytest.raises(UserError) as err:
            fetch_cert(srv.url)
        assert "ws://" in err.value.text.en and "wss://" in err.value.text.ru
        port = srv.port
    with pytest.raises(UserError) as err:
        fetch_cert(f"wss://127.0.0.1:{port}", timeout=2)
    assert err.value.text.en.startswith("cannot read the certificate of 127.0.0.1:")


def test_diag_show_cert_prints_the_pin_and_the_way_to_use_it(tmp_path, capsys) -> None:
    from pz_excel.cli import main as cli

    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path, rsa=True)
    with ServerThread(ssl_context=tlsutil.server_context(cert, key, legacy=True)) as srv:
        assert cli.main(["diag", "--show-cert", srv.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == fingerprint
    assert f"pz-excel run --pin-sha256 {fingerprint} --legacy-tls" in out[1]
    assert cli.main(["diag", "--show-cert"]) == 2
    assert "--show-cert needs the URL" in capsys.readouterr().err
