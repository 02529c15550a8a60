"""The local API: loopback only, token required, discovery file private to the user."""

from __future__ import annotations

import http.client
import json
import os
import stat

import pytest

from pz_excel import paths
from pz_excel.agent.api import AgentUnavailable, ApiClient, ApiError, LocalApi, running_agents
from pz_excel.i18n import Text


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv("PZ_EXCEL_HOME", str(tmp_path))

    def echo(params, body):
        return {"params": params, "body": body}

    def refuse(params, body):
        raise ApiError(409, Text("busy", "занято"))

    def boom(params, body):
        raise RuntimeError("kaput")

    server = LocalApi(
        {
            ("GET", "/echo"): echo,
            ("POST", "/echo"): echo,
            ("GET", "/refuse"): refuse,
            ("GET", "/boom"): boom,
        }
    )
    server.start(
        key="101-test",
        phone="101",
        workbook=str(tmp_path / "b.xlsx"),
        server="ws://127.0.0.1:1/",
        journal=str(tmp_path / "j.sqlite"),
    )
    yield server
    server.stop()


def _raw(api, path="/echo", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=2)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def test_discovery_file_is_private_and_client_round_trips(api):
    info_file = paths.agents_dir() / "101-test.json"
    assert info_file.exists()
    if os.name != "nt":
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
    [found] = running_agents()
    assert found.port == api.port and found.token == api.token
    client = ApiClient.discover(phone="101")
    assert client.get("/echo", number="+7 343")["params"] == {"number": "+7 343"}
    assert client.post("/echo", {"x": "я"})["body"] == {"x": "я"}


def test_missing_token_is_refused(api):
    status, body = _raw(api, headers={"Host": f"127.0.0.1:{api.port}"})
    assert status == 401 and not body["ok"] and "token" in body["error_en"]


def test_wrong_token_is_refused(api):
    status, _ = _raw(api, headers={"Host": f"127.0.0.1:{api.port}", "Authorization": "Bearer nope"})
    assert status == 401


def test_foreign_host_header_is_refused_even_with_the_token(api):
    status, body = _raw(
        api, headers={"Host": "evil.example:80", "Authorization": f"Bearer {api.token}"}
    )
    assert status == 403 and "local" in body["error_en"]


def test_handler_errors_become_json_not_tracebacks(api):
    headers = {"Host": f"127.0.0.1:{api.port}", "Authorization": f"Bearer {api.token}"}
    assert _raw(api, "/refuse", headers)[0] == 409
    status, body = _raw(api, "/boom", headers)
    assert status == 500 and "kaput" in body["error_en"]
    assert _raw(api, "/nowhere", headers)[0] == 404


def test_no_agent_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PZ_EXCEL_HOME", str(tmp_path))
    with pytest.raises(AgentUnavailable) as exc:
        ApiClient.discover()
    assert "pz-excel run" in exc.value.text.en and "агент" in exc.value.text.ru


def test_discovery_file_removed_on_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("PZ_EXCEL_HOME", str(tmp_path))
    server = LocalApi({})
    server.start(key="k", phone="1", workbook="w", server="s", journal="j")
    assert running_agents()
    server.stop()
    assert not running_agents()
