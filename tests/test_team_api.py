"""The team API (pz_excel/team/api.py): real HTTPS over loopback, the certificate trusted
as a CA file or by its pinned fingerprint, a real journal, users on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import ssl
from datetime import datetime

import pytest

from pz_excel.agent import teamlink as tl
from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal
from pz_excel.connector import tls as tlsutil
from pz_excel.connector.trust import TlsOptions
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import UserError
from pz_excel.team import tlscert
from pz_excel.team.api import TeamApi
from pz_excel.team.users import Users

CLIENT = "+7 343 011-22-33"


class Team:
    """A team API on a free port with two managers (101, 102) and what it was asked."""

    def __init__(self, tmp_path, users_target: str, journal_target: object = None) -> None:
        self.journal = Journal(journal_target or tmp_path / "team.sqlite")
        self.users = Users(users_target)
        self.tokens = {ext: self.users.add(ext, f"M{ext}") for ext in ("101", "102")}
        self.role = tl.ROLE_LEADER
        self.dialled: list[tuple[str, str]] = []
        lookup = {"73430112233": ("ООО Ромашка", "Анна")}
        self.api = TeamApi(
            self.journal, users=self.users, port=0, cert_folder=tmp_path / "tls",
            role=lambda: self.role, dial=self._dial,
            leader_address=lambda: "https://leader.office:10190",
            mapper=CallMapper(lookup=lambda phone: lookup.get(phone.strip("+").replace(
                " ", "").replace("-", ""))),
            status=lambda: {tl.F_CONNECTOR: "connected"},
        ).start()

    def _dial(self, extension: str, number: str) -> dict:
        self.dialled.append((extension, number))
        return {"code": 0}

    def ask(self, method: str, path: str, body: object = None, *, ext: str | None = "101",
            token: str | None = None) -> tuple[int, dict]:
        ctx = ssl.create_default_context(cafile=str(self.api.cert.cert))  # type: ignore[union-attr]
        conn = http.client.HTTPSConnection("127.0.0.1", self.api.port, context=ctx, timeout=10)
        headers = {"Content-Type": "application/json"}
        token = token if token is not None else (self.tokens[ext] if ext else "")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode("utf-8"))
        finally:
            conn.close()

    def close(self) -> None:
        self.api.stop()
        self.users.close()
        self.journal.close()


@pytest.fixture
def team(tmp_path):
    t = Team(tmp_path, str(tmp_path / "team.sqlite"))
    yield t
    t.close()


def event(etype: int, call_id: str, **attrs: str) -> dict:
    return {tl.F_TYPE: etype, tl.F_CALL_ID: call_id, tl.F_ATTRS: attrs}


def test_token_required(team):
    for token in ("", "wrong"):
        status, body = team.ask("GET", tl.PATH_WHOAMI, ext=None, token=token)
        assert status == 401
        assert body["error"]["en"].startswith("missing or wrong team token")
        assert "токен" in body["error"]["ru"]
    status, body = team.ask("GET", tl.PATH_WHOAMI, ext="102")
    assert status == 200
    assert (body["extension"], body["name"], body["role"]) == ("102", "M102", "manager")


def test_revoked_token_is_refused_at_once(team):
    assert team.ask("GET", tl.PATH_WHOAMI)[0] == 200
    team.users.remove("101")
    assert team.ask("GET", tl.PATH_WHOAMI)[0] == 401


def test_pinned_fingerprint_matches_what_the_server_presents(team):
    ctx = TlsOptions(pin_sha256=team.api.fingerprint).ssl_context()
    conn = http.client.HTTPSConnection("127.0.0.1", team.api.port, context=ctx, timeout=10)
    conn.connect()
    der = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    conn.close()
    assert tlsutil.fingerprint_sha256(der) == team.api.fingerprint
    assert team.api.url == f"https://127.0.0.1:{team.api.port}"


def test_plain_http_is_not_served(team):
    conn = http.client.HTTPConnection("127.0.0.1", team.api.port, timeout=10)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", tl.PATH_WHOAMI)
        conn.getresponse().read()
    conn.close()
    assert team.ask("GET", tl.PATH_WHOAMI)[0] == 200  # a failed handshake harms nobody


def test_dial_from_the_tokens_extension_only_and_audited(team):
    status, body = team.ask("POST", tl.PATH_DIAL, {"number": CLIENT, "from": "102",
                                                   "extension": "102"})
    assert status == 200, body
    assert team.dialled == [("101", CLIENT)]  # never the body's 102
    assert body["extension"] == "101"
    audit = team.users.audit_log(action="dial")
    assert [(a.extension, a.number, a.result) for a in audit] == [("101", CLIENT, "ok")]


def test_dial_refuses_a_bad_number_and_audits_it(team):
    status, body = team.ask("POST", tl.PATH_DIAL, {"number": "=HYPERLINK(1)"})
    assert status == 400 and "formula" in body["error"]["en"] and "формул" in body["error"]["ru"]
    status, body = team.ask("POST", tl.PATH_DIAL, {"number": "101"})  # oneself
    assert status == 400
    assert team.dialled == []
    assert [a.result for a in team.users.audit_log(action="dial")] == ["refused", "refused"]


def test_standby_dial_is_503_naming_the_leader(team):
    team.role = tl.ROLE_STANDBY
    status, body = team.ask("POST", tl.PATH_DIAL, {"number": CLIENT})
    assert status == 503
    assert body[tl.F_LEADER] == "https://leader.office:10190"
    assert "leader.office" in body["error"]["en"] and "резервный" in body["error"]["ru"]
    assert team.dialled == []
    assert team.users.audit_log(action="dial")[0].result == "standby"
    status, body = team.ask("GET", tl.PATH_STATUS)
    assert status == 200 and body["role"] == "standby" and body["connector"] == "connected"


def test_events_merge_per_call_id_and_twice_is_once(team):
    report = {"events": [
        event(2, "c1", **{"from": CLIENT, "to": "101"}),
        event(32, "c1", **{"from": CLIENT, "to": "101"}),
        event(4, "c1", **{"from": CLIENT, "to": "101", "direction": "0", "duration": "42",
                          "start": "1767250800", "end": "1767250842"}),
    ]}
    status, body = team.ask("POST", tl.PATH_EVENTS, report)
    assert status == 200, body
    assert (body["accepted"], body["refused"], body["changed"]) == (3, 0, 3)
    row = team.journal.get_call("c1")
    assert row is not None and (row.status, row.duration, row.extension) == (
        "completed", 42, "101")
    assert (row.contact, row.owner) == ("ООО Ромашка", "Анна")  # the mapper's lookup
    version = team.journal.dirty_calls()[0][1]

    status, body = team.ask("POST", tl.PATH_EVENTS, report)  # the agent reports again
    assert status == 200 and (body["accepted"], body["changed"]) == (3, 0)
    assert team.journal.get_call("c1") == row
    assert team.journal.dirty_calls() == [(row, version)]  # not even a new version
    assert team.journal.recent_calls(limit=10) == [row]  # one row: merged per call ID


def test_events_of_another_extension_are_refused(team):
    mine = event(2, "c2", **{"from": CLIENT, "to": "101"})
    theirs = event(2, "c3", **{"from": CLIENT, "to": "102"})
    status, body = team.ask("POST", tl.PATH_EVENTS, {"events": [mine, theirs]})
    assert status == 200
    assert (body["accepted"], body["refused"]) == (1, 1)
    assert [r["status"] for r in body["results"]] == [200, 403]
    assert team.journal.get_call("c3") is None
    assert team.users.audit_log(action="events")[0].result == "refused 1"

    status, body = team.ask("POST", tl.PATH_EVENTS, {"events": [theirs]})
    assert status == 403 and "102" not in body["error"]["en"] and "101" in body["error"]["en"]
    status, body = team.ask("POST", tl.PATH_EVENTS, {"events": [{"type": "x"}]})
    assert status == 400
    status, body = team.ask("POST", tl.PATH_EVENTS, {"nothing": 1})
    assert status == 400


def test_last_call_is_the_teams_any_managers(team):
    status, body = team.ask("GET", tl.PATH_LAST_CALL + "?number=83430112233")
    assert status == 200 and body == {"ok": True, "call": None}
    team.journal.upsert_call(CallRow("old", "incoming", "completed", CLIENT, extension="101",
                                     start=datetime(2026, 1, 5, 10, 0)))
    team.journal.upsert_call(CallRow("new", "outgoing", "completed", CLIENT, extension="102",
                                     start=datetime(2026, 1, 6, 9, 30), duration=15))
    status, body = team.ask("GET", tl.PATH_LAST_CALL + "?number=83430112233", ext="101")
    assert status == 200
    assert body["call"]["call_id"] == "new" and body["call"]["extension"] == "102"
    assert body["call"]["start"] == "2026-01-06 09:30:00"
    assert team.ask("GET", tl.PATH_LAST_CALL + "?number=abc")[0] == 400


def test_calls_are_the_callers_own(team):
    for i, ext in enumerate(("101", "102", "101", "101")):
        team.journal.upsert_call(CallRow(f"k{i}", "incoming", "completed", CLIENT,
                                         extension=ext, start=datetime(2026, 1, 5 + i, 12)))
    status, body = team.ask("GET", tl.PATH_CALLS, ext="101")
    assert status == 200 and [c["call_id"] for c in body["calls"]] == ["k3", "k2", "k0"]
    status, body = team.ask("GET", tl.PATH_CALLS + "?since=2026-01-06&until=2026-01-08&limit=5")
    assert [c["call_id"] for c in body["calls"]] == ["k2"]
    status, body = team.ask("GET", tl.PATH_CALLS + "?limit=1", ext="102")
    assert [c["call_id"] for c in body["calls"]] == ["k1"]
    assert team.ask("GET", tl.PATH_CALLS + "?since=yesterday")[0] == 400
    assert team.ask("GET", tl.PATH_CALLS + "?limit=0")[0] == 400


def test_the_whole_team_on_postgresql(tmp_path, pg_dsn):
    t = Team(tmp_path, pg_dsn, pg_dsn)  # journal, users and audit in one PostgreSQL database
    try:
        status, _ = t.ask("POST", tl.PATH_DIAL, {"number": CLIENT}, ext="102")
        assert status == 200 and t.dialled == [("102", CLIENT)]
        with Users(pg_dsn) as other:  # what a standby reading the same database sees
            assert [(a.extension, a.result) for a in other.audit_log(action="dial")] == [
                ("102", "ok")]
        assert t.ask("GET", tl.PATH_WHOAMI, token="nope")[0] == 401

        report = {"events": [event(8, "p1", **{"from": "102", "to": CLIENT}),
                             event(4, "p1", **{"from": "102", "to": CLIENT, "direction": "1",
                                               "duration": "7", "start": "1767250800"})]}
        for _ in range(2):
            status, body = t.ask("POST", tl.PATH_EVENTS, report, ext="102")
            assert status == 200 and body["accepted"] == 2
        assert body["changed"] == 0  # the second report changed nothing
        assert [r.call_id for r in t.journal.recent_calls(limit=5)] == ["p1"]
        status, body = t.ask("GET", tl.PATH_LAST_CALL + "?number=83430112233", ext="101")
        assert body["call"]["call_id"] == "p1" and body["call"]["duration"] == 7
        status, body = t.ask("GET", tl.PATH_CALLS, ext="102")
        assert [c["call_id"] for c in body["calls"]] == ["p1"]
        assert t.ask("GET", tl.PATH_CALLS, ext="101")[1]["calls"] == []
    finally:
        t.close()


def test_certificate_is_made_once_and_reused(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    users = Users(tmp_path / "j.sqlite")
    token = users.add("101")
    first = TeamApi(journal, users=users, port=0).start()  # the team folder of the home
    try:
        fingerprint, cert = first.fingerprint, first.cert
    finally:
        first.stop()
    assert cert is not None and cert.made and cert.cert.parent == tlscert.team_dir()
    second = TeamApi(journal, users=users, port=0).start()
    try:
        assert second.fingerprint == fingerprint and not second.cert.made  # type: ignore[union-attr]
        ctx = TlsOptions(pin_sha256=fingerprint).ssl_context()
        conn = http.client.HTTPSConnection("127.0.0.1", second.port, context=ctx, timeout=10)
        conn.request("GET", tl.PATH_WHOAMI, headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status == 200
        assert tlsutil.fingerprint_sha256(
            conn.sock.getpeercert(binary_form=True)) == fingerprint  # type: ignore[union-attr]
        conn.close()
    finally:
        second.stop()
        users.close()
        journal.close()


def test_admins_own_certificate(tmp_path):
    cert, key, fingerprint = tlsutil.self_signed_cert(tmp_path / "own", "team.office")
    found = tlscert.load(cert, key)
    assert found.fingerprint == fingerprint and not found.made
    with pytest.raises(UserError):
        tlscert.load(cert, None)
    with pytest.raises(UserError):
        tlscert.load(cert, tmp_path / "missing.pem")


def test_busy_port_is_a_clear_error(team, tmp_path):
    other = TeamApi(team.journal, users=team.users, port=team.api.port,
                    cert_folder=tmp_path / "tls")
    with pytest.raises(UserError) as err:
        other.start()
    assert str(team.api.port) in err.value.text.en and "--listen" in err.value.text.ru
    other.stop()


def test_a_late_report_of_a_ringing_call_is_not_a_new_call(team):
    done = CallRow("c9", "incoming", "completed", CLIENT, extension="101",
                   start=datetime(2026, 1, 1, 10, 0), end=datetime(2026, 1, 1, 10, 5),
                   duration=300)
    team.journal.upsert_call(done)
    ringing = event(2, "c9", **{"from": CLIENT, "to": "101"})  # queued by an offline agent
    status, body = team.ask("POST", tl.PATH_EVENTS, {"events": [ringing]})
    assert status == 200 and body["accepted"] == 1
    assert [r.call_id for r in team.journal.recent_calls(limit=5)] == ["c9"]  # no "c9 #2"
    row = team.journal.get_call("c9")
    assert row is not None and (row.status, row.start, row.duration) == (
        "completed", done.start, 300)


def test_a_silent_client_does_not_hold_up_the_others(team):
    import socket
    from concurrent.futures import ThreadPoolExecutor

    silent = socket.create_connection(("127.0.0.1", team.api.port))  # no TLS hello ever
    try:
        with ThreadPoolExecutor(8) as pool:  # the handshake runs in workers, not in accept
            statuses = list(pool.map(lambda ext: team.ask("GET", tl.PATH_WHOAMI, ext=ext)[0],
                                     ["101", "102"] * 8))
        assert statuses == [200] * 16
    finally:
        silent.close()
