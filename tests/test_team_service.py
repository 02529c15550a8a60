"""``team run`` as a whole (pz_excel/team/service.py): the team API beside the team server,
on the leader and on a standby, over real HTTPS, our test connector and a real database."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from pz_excel.agent import teamlink as tl
from pz_excel.i18n import UserError
from pz_excel.team.config import TeamConfig
from pz_excel.team.leader import GRACE
from pz_excel.team.server import LEADER, STANDBY
from pz_excel.team.service import TeamService, parse_listen
from pz_excel.team.users import Users
from tests.conftest import wait_until
from tests.test_team_server import contacts  # noqa: F401 - the shared CRM book fixture


def ask(service: TeamService, method: str, path: str, token: str, body: object = None
        ) -> tuple[int, dict]:
    api = service.api
    assert api is not None and api.cert is not None
    ctx = ssl.create_default_context(cafile=str(api.cert.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=15)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode("utf-8"))
    finally:
        conn.close()


def _service(tmp_path, server, contacts, db, name: str) -> TeamService:  # noqa: F811
    cfg = TeamConfig(server=server.url, db=db, contacts=contacts,
                     team_book=tmp_path / "team" / "team.xlsx", save_interval=0.1, lang="en")
    return TeamService(cfg, listen="127.0.0.1:0").start()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_leader_dials_as_the_manager_and_a_standby_names_the_leader(
        tmp_path, server, contacts, backend, request):  # noqa: F811
    db = (str(tmp_path / "team.sqlite") if backend == "sqlite"
          else request.getfixturevalue("pg_dsn"))
    first = _service(tmp_path, server, contacts, db, "a")
    second = None
    try:
        wait_until(lambda: first.server.role == LEADER, GRACE + 8, "the first server leads")
        client = first.server.leader_client()
        assert client is not None and client.wait_connected(10)
        users = Users(db)
        token = users.add("101", "Anna")
        status, body = ask(first, "GET", tl.PATH_STATUS, token)
        assert status == 200 and body["role"] == LEADER

        # the manager asks to dial with someone else's extension in the body: From is 101
        status, body = ask(first, "POST", tl.PATH_DIAL, token,
                           {"number": "+7 912 000-00-01", "extension": "102"})
        assert status == 200, body
        wait_until(lambda: any("Call event from CRM: src = 101" in line
                               for line in server.log_lines), 5, "the Call from 101")

        # a second team server on the same database: a standby with its own API
        second = _service(tmp_path, server, contacts, db, "b")
        wait_until(lambda: second.server.role == STANDBY, 10, "the second waits")
        status, body = ask(second, "POST", tl.PATH_DIAL, token, {"number": "+7 912 000-00-02"})
        assert status == 503
        assert body[tl.F_LEADER] == first.api.url
        status, body = ask(second, "GET", tl.PATH_STATUS, token)
        assert status == 200 and body["role"] == STANDBY
        logins = [c for c in server.clients() if c["GUID"] == "pz-team"]
        assert len(logins) == 1  # only the leader is connected
        audit = users.db.execute(
            "SELECT extension, result FROM team_audit WHERE action = 'dial' ORDER BY id"
        ).fetchall()
        assert [tuple(r) for r in audit] == [("101", "ok"), ("101", "standby")]
        users.close()
    finally:
        if second is not None:
            second.stop()
        first.stop()


@pytest.mark.parametrize("text", ["10190", "host:", ":10190", "h:99999", "h:x"])
def test_listen_must_be_host_and_port(text):
    with pytest.raises(UserError) as err:
        parse_listen(text)
    assert "HOST:PORT" in err.value.text.en and "ХОСТ:ПОРТ" in err.value.text.ru


def test_listen_forms():
    assert parse_listen("0.0.0.0:10190") == ("0.0.0.0", 10190)
    assert parse_listen("[::1]:8443") == ("::1", 8443)
