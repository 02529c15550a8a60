"""The desktop agent with a team server (issue 15, client side): it leaves transfer
requests to the team server, reports its own events there, checks its token at ``run``,
and PZ_TEAM_LAST asks the team through the agent's local API.

Real parts only: our test connector on loopback, real agents with SQLite journals, the
real team API (``pz_excel.team.api.TeamApi``) over HTTPS with a self-signed certificate.
"""

from __future__ import annotations

import pytest

from pz_excel.agent.journal import Journal
from pz_excel.agent.teamlink import PIN_MISMATCH, UNREACHABLE, TeamError, TeamLink
from pz_excel.agent.teamreport import SEQ_KEY
from pz_excel.connector import tls as tlsutil
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.journal_engines import ENGINES, engine_target
from tests.test_agent import make_book, start_agent

OTHER_PIN = "ab" * 32


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ deference


def test_an_agent_with_a_team_server_sends_no_transfer_and_says_why(tmp_path, server):
    # The team server is away: deference does not depend on reaching it.
    link = TeamLink(f"https://127.0.0.1:{closed_port()}", "token", OTHER_PIN)
    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server, team=link)
    try:
        # Ivan Petrov's owner is 101, this agent: without a team server it takes the call.
        server.generate(1, {"From": "73430112233", "CallID": "9101"})
        wait_until(lambda: any(d.call_id == "9101" for d in agent.decisions), 5, "decision")
        # A request on the same connection, answered: any Transfer queued before it is in.
        assert agent.client.call("102").ok
        assert "9101" not in server.transfers
        assert not any("9101" in line and "Transfer" in line for line in server.log_lines)
        with Journal(agent.config.journal) as j:
            decided = [e for e in j.entries(kind="decision") if e["call_id"] == "9101"]
            sent = [e for e in j.entries(kind="response") if e["call_id"] == "9101"]
        assert len(decided) == 1 and not sent
        payload = decided[0]["payload"]
        assert payload["rule"] == "team-server" and payload["to"] == ""
        assert "team server" in payload["reason"] and payload["team"] == link.url
    finally:
        agent.stop()


def test_without_a_team_server_the_agent_still_answers(tmp_path, server):
    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server)
    try:
        server.generate(1, {"From": "73430112233", "CallID": "9102"})
        wait_until(lambda: server.transfers.get("9102") == "101", 5, "transfer taken")
    finally:
        agent.stop()


# ------------------------------------------------------------------ the link's errors


def test_unreachable_team_server_is_one_clear_error():
    link = TeamLink(f"https://127.0.0.1:{closed_port()}", "token", OTHER_PIN, timeout=2.0)
    with pytest.raises(TeamError) as err:
        link.whoami()
    assert err.value.kind == UNREACHABLE
    assert "cannot be reached" in err.value.text.en and "недоступен" in err.value.text.ru


def test_a_certificate_that_is_not_the_pinned_one_is_refused_before_the_token(tmp_path):
    # Any TLS server shows its certificate at the handshake: our test connector over TLS.
    cert, key, real = tlsutil.self_signed_cert(tmp_path / "tls")
    srv = ServerThread(ssl_context=tlsutil.server_context(cert, key)).start()
    try:
        link = TeamLink(f"https://127.0.0.1:{srv.port}", "secret-token", OTHER_PIN)
        with pytest.raises(TeamError) as err:
            link.whoami()
        assert err.value.kind == PIN_MISMATCH
        assert real in err.value.text.en and OTHER_PIN in err.value.text.en
        assert real in err.value.text.ru and OTHER_PIN in err.value.text.ru
        assert not any("secret-token" in line for line in srv.log_lines)
    finally:
        srv.stop()


def test_a_team_server_that_is_away_at_start_does_not_keep_the_agent_from_starting(caplog):
    from pz_excel.cli.team_link_opts import team_link

    link = team_link(f"https://127.0.0.1:{closed_port()}", "token", OTHER_PIN, "101")
    assert isinstance(link, TeamLink)
    assert "starts anyway" in caplog.text and "cannot be reached" in caplog.text


def test_plain_http_to_another_computer_is_refused():
    from pz_excel.i18n import UserError

    with pytest.raises(UserError) as err:
        TeamLink("http://team.example:10190", "token")
    assert "https://" in err.value.text.en


# ------------------------------------------------------------------ with the team API


@pytest.fixture(params=ENGINES)
def team(request, tmp_path):
    """The real team API on loopback over HTTPS (self-signed, made on first start), its
    journal and users in one database: an SQLite file, or PostgreSQL. ``stop``/``start``
    bring it back on the same port with the same certificate."""
    return TeamServer(engine_target(request, tmp_path), tmp_path / "team-cert")


class TeamServer:
    def __init__(self, target, cert_folder):
        from pz_excel.team.users import Users

        self.target, self.cert_folder = target, cert_folder
        self.journal = Journal(target)
        self.users = Users(target)
        self.tokens = {ext: self.users.add(ext, name) for ext, name in
                       (("101", "Anna Smirnova"), ("102", "Boris Ivanov"))}
        self.port = 0
        self.api = None
        self.start()

    def start(self):
        from pz_excel.team.api import TeamApi

        self.api = TeamApi(self.journal, users=self.users, host="127.0.0.1", port=self.port,
                           cert_folder=self.cert_folder).start()
        self.port = self.api.port
        return self

    def stop(self):
        if self.api is not None:
            self.api.stop()
            self.api = None

    def close(self):
        self.stop()
        self.users.close()
        self.journal.close()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def pin(self):
        return self.api.fingerprint

    def link(self, ext="101", **kw):
        return TeamLink(self.url, self.tokens[ext], self.pin, **kw)

    def events_of(self, call_id):
        return [e for e in self.journal.entries(kind="event") if e["call_id"] == call_id]


@pytest.fixture
def team_server(team):
    yield team
    team.close()


def ring_and_end(server, call_id, caller="73430112233", ext="101", duration=35):
    """A real call's events from the connector: it rings at ``ext``, then is completed."""
    import time

    now = int(time.time())
    server.generate(2, {"From": caller, "To": ext, "CallID": call_id})
    server.generate(4, {"From": caller, "To": ext, "CallID": call_id, "Direction": "0",
                        "Start": str(now - duration), "End": str(now),
                        "Duration": str(duration)})


def test_the_agent_reports_its_calls_once_and_loses_nothing_while_the_team_is_away(
        tmp_path, server, team_server):
    book = make_book(tmp_path / "crm.xlsx")
    agent = start_agent(book, server, team=team_server.link())
    journal_path = agent.config.journal
    try:
        ring_and_end(server, "8001")
        wait_until(lambda: len(team_server.events_of("8001")) == 2, 10, "8001 reported")
        row = team_server.journal.get_call("8001")
        assert row is not None and row.extension == "101" and row.duration == 35
        # A second run of the reporter has nothing to send: it all went, once.
        reporter = agent.reporter
        wait_until(lambda: reporter.reported_seq >= max(
            e["seq"] for e in agent.journal.entries(kind="event")), 5, "seq kept")
        assert reporter.run_once() == 0
        assert len(team_server.events_of("8001")) == 2

        # The team server goes away; calls go on, and the agent is stopped meanwhile.
        team_server.stop()
        ring_and_end(server, "8002", caller="79125554433")
        wait_until(lambda: agent.journal.get_call("8002") is not None
                   and agent.journal.get_call("8002").duration == 35, 10, "8002 in journal")
        reporter.wake()
        wait_until(lambda: reporter.problem is not None, 10, "reporting waits")
        assert "cannot be reached" in reporter.problem.en
        assert agent.status()["team"]["problem_en"]
    finally:
        agent.stop()
    assert team_server.events_of("8002") == []

    # Back: the restarted agent sends what waited, and nothing that was accepted before.
    team_server.start()
    agent = start_agent(book, server, team=team_server.link(), journal=journal_path)
    try:
        wait_until(lambda: len(team_server.events_of("8002")) == 2, 10, "8002 reported")
        assert len(team_server.events_of("8001")) == 2
        assert team_server.journal.get_call("8002").duration == 35
        status = agent.status()["team"]
        assert status["url"] == team_server.url and status["reported_seq"] > 0
        assert int(agent.journal.once_get(SEQ_KEY)) == status["reported_seq"]
    finally:
        agent.stop()


def test_transfer_requests_are_not_reported(tmp_path, server, team_server):
    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server, team=team_server.link())
    try:
        server.generate(1, {"From": "73430112233", "CallID": "8101"})
        ring_and_end(server, "8102")
        wait_until(lambda: len(team_server.events_of("8102")) == 2, 10, "8102 reported")
        wait_until(lambda: agent.reporter.run_once() == 0, 5, "all sent")
        assert team_server.events_of("8101") == []
    finally:
        agent.stop()


def test_a_wrong_pin_is_refused_naming_both_fingerprints(team_server):
    link = TeamLink(team_server.url, team_server.tokens["101"], OTHER_PIN)
    with pytest.raises(TeamError) as err:
        link.whoami()
    assert err.value.kind == PIN_MISMATCH
    for text in (err.value.text.en, err.value.text.ru):
        assert team_server.pin in text and OTHER_PIN in text


def test_the_link_speaks_the_team_api(team_server):
    from pz_excel.agent.teamlink import FORBIDDEN, TOKEN_REFUSED

    link = team_server.link("102")
    assert link.whoami()["extension"] == "102"
    assert link.last_call("73430112233") is None
    accepted = link.report([{"type": 2, "callID": "8201",
                             "attrs": {"from": "73430112233", "to": "102"}}])
    assert accepted["accepted"] == 1
    assert link.last_call("73430112233")["extension"] == "102"
    assert link.whoami()["extension"] == "102"  # the same kept-alive connection again
    with pytest.raises(TeamError) as err:  # 103's events are not 102's to report
        link.report([{"type": 2, "callID": "8202", "attrs": {"from": "7343", "to": "103"}}])
    assert err.value.kind == FORBIDDEN and err.value.status == 403
    with pytest.raises(TeamError) as err:
        TeamLink(team_server.url, "not-a-token", team_server.pin).whoami()
    assert err.value.kind == TOKEN_REFUSED and "refused the token" in err.value.text.en


def test_run_refuses_a_wrong_token_or_another_extensions_before_connecting(
        tmp_path, server, team_server, capsys):
    from pz_excel.cli import main as cli

    book = make_book(tmp_path / "crm.xlsx")
    base = ["run", "-w", str(book), "-s", server.url, "-p", "101",
            "--team", team_server.url, "--team-pin", team_server.pin]
    assert cli.main([*base, "--team-token", "wrong"]) == 2
    err = capsys.readouterr().err
    assert "refused the token" in err and err.count("\n") == 1
    assert cli.main([*base, "--team-token", team_server.tokens["102"]]) == 2
    err = capsys.readouterr().err
    assert "extension 102" in err and "extension 101" in err
    assert cli.main([*base[:-2], "--team-pin", OTHER_PIN, "--team-token", "x"]) == 2
    assert team_server.pin in capsys.readouterr().err
    assert cli.main(["run", "-w", str(book), "-s", server.url, "-p", "101",
                     "--team-token", "x"]) == 2
    assert "need --team URL" in capsys.readouterr().err
    assert server.clients() == []  # none of them ever logged in to the connector


def test_the_token_comes_from_the_environment_or_the_keyring(team_server, monkeypatch,
                                                             tmp_path):
    import keyring

    from pz_excel.cli.team_link_opts import TOKEN_ENV, keyring_user, team_link
    from pz_excel.connector.credentials import SERVICE
    from pz_excel.i18n import UserError
    from tests.test_password_cmd import FileKeyring

    monkeypatch.setenv(TOKEN_ENV, team_server.tokens["101"])
    assert team_link(team_server.url, None, team_server.pin, "101").whoami()["name"]
    monkeypatch.delenv(TOKEN_ENV)
    monkeypatch.setenv("PZ_TEST_KEYRING", str(tmp_path / "keyring.json"))
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    try:
        with pytest.raises(UserError) as err:
            team_link(team_server.url, None, team_server.pin, "101")
        assert TOKEN_ENV in err.value.text.en
        keyring.set_password(SERVICE, keyring_user(team_server.url, "101"),
                             team_server.tokens["101"])
        link = team_link(team_server.url, None, team_server.pin, "101")
        assert link.whoami()["extension"] == "101"
    finally:
        keyring.set_keyring(before)


def test_pz_team_last_shows_a_colleagues_last_call_through_the_agent(
        tmp_path, server, team_server):
    from pz_excel.excel import udf_logic

    # Boris (102) talked with Olga; Anna's (101) agent is asked in her workbook.
    ring_and_end_via = team_server.link("102")
    ring_and_end_via.report([
        {"type": 2, "callID": "8301", "attrs": {"from": "79125554433", "to": "102"}},
        {"type": 32, "callID": "8301", "attrs": {"from": "79125554433", "to": "102"}},
    ])
    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server, team=team_server.link())
    try:
        link = udf_logic.AgentLink()
        text = wait_until(lambda: (lambda t: t if "102" in t else None)(
            udf_logic.pz_team_last("8 912 555 44 33", link=link)), 15, "team answer")
        assert "incoming" in text and "answered" in text
        assert udf_logic.pz_team_last("+7 999 000 11 22", link=link) == ""
    finally:
        agent.stop()


def test_pz_team_last_without_a_team_server_says_so(tmp_path, server):
    from pz_excel.excel import udf_logic

    agent = start_agent(make_book(tmp_path / "crm.xlsx"), server)
    try:
        text = udf_logic.pz_team_last("8 912 555 44 33", link=udf_logic.AgentLink(timeout=2))
        assert text == "no team server: start the agent with --team URL --team-token TOKEN"
        assert agent.status()["team"] is None
    finally:
        agent.stop()


def test_status_names_the_team_server_in_both_languages():
    from pz_excel.agent.status_text import status_lines

    st = {"state": "connected", "team": {"url": "https://team:10190", "reported_seq": 12,
                                         "problem_en": None, "problem_ru": None}}
    assert ("Team server", "https://team:10190 (routing left to it; reported up to #12)") \
        in status_lines(st, "en")
    assert ("Командный сервер",
            "https://team:10190 (переводы распределяет он; передано до №12)") \
        in status_lines(st, "ru")
    assert not any(k == "Team server" for k, _ in status_lines({"state": "connected"}, "en"))


def test_a_standby_is_followed_to_the_leader_once(tmp_path, server, team_server):
    """A standby answers a dial with 503 naming the leader: the link asks the leader (the
    same certificate: one pin), which dials through its real connector connection."""
    from pz_excel.connector.client import ConnectorClient
    from pz_excel.protocol.login import ConnectSettings
    from pz_excel.team.api import TeamApi

    leader_conn = ConnectorClient(ConnectSettings(server=server.url, phone="101"))
    leader_conn.start()
    leader = TeamApi(team_server.journal, users=team_server.users, port=0,
                     cert_folder=team_server.cert_folder,
                     dial=lambda ext, number: leader_conn.call(number)).start()
    standby = TeamApi(team_server.journal, users=team_server.users, port=0,
                      cert_folder=team_server.cert_folder, role=lambda: "standby",
                      leader_address=lambda: f"https://127.0.0.1:{leader.port}").start()
    try:
        wait_until(lambda: leader_conn.state.kind == "connected", 10, "leader connected")
        link = TeamLink(f"https://127.0.0.1:{standby.port}", team_server.tokens["101"],
                        team_server.pin)
        assert link.dial("102")["code"] == 0
        assert link.where == f"https://127.0.0.1:{leader.port}"  # asked there from now on
        wait_until(lambda: any("src = 101, dst = 102" in line for line in server.log_lines),
                   5, "the leader dialled")
    finally:
        standby.stop()
        leader.stop()
        leader_conn.stop()


def test_team_answers_for_worksheets_are_remembered_briefly(team_server):
    """Excel asks per cell on every recalculation: an answer is kept a few seconds, and a
    team server that failed is not asked again for a while (one wait, not one per cell)."""
    from pz_excel.agent.teamlink import LastCallCache

    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    clock = Clock()
    link = team_server.link("102")
    link.report([{"type": 2, "callID": "8401", "attrs": {"from": "79125554433", "to": "102"}}])
    cache = LastCallCache(team_server.link(), timeout=2.0, clock=clock)
    assert cache.get("79125554433")["call_id"] == "8401"
    team_server.stop()
    assert cache.get("79125554433")["call_id"] == "8401"  # remembered
    clock.now += 6
    with pytest.raises(TeamError) as err:
        cache.get("79125554433")
    assert err.value.kind == UNREACHABLE
    team_server.start()
    with pytest.raises(TeamError):  # the failure is remembered: not asked again yet
        cache.get("79125554433")
    clock.now += 6
    assert cache.get("79125554433")["call_id"] == "8401"


def test_two_addresses_the_one_that_answers_is_used_and_a_dial_is_never_sent_twice(
        team_server):
    """An office with two team servers gives both: one that cannot be reached hands over
    to the next (a refused connection sent nothing, so even a dial may go to the next)."""
    dead = f"https://127.0.0.1:{closed_port()}"
    link = TeamLink(f"{dead}, {team_server.url}", team_server.tokens["101"], team_server.pin)
    assert link.url == f"{dead},{team_server.url}"
    assert link.whoami()["extension"] == "101"
    assert link.where == team_server.url  # and it stays there
    with pytest.raises(TeamError) as err:  # no dial callback here: the API says so
        link.dial("+7 912 000-00-01")
    assert err.value.kind != "unreachable"
    audit = team_server.users.db.execute(
        "SELECT count(*) FROM team_audit WHERE action = 'dial'").fetchone()[0]
    assert audit == 1  # asked once, of the server that answers
    only_dead = TeamLink(f"{dead},https://127.0.0.1:{closed_port()}",
                         team_server.tokens["101"], team_server.pin)
    with pytest.raises(TeamError) as err:
        only_dead.whoami()
    assert err.value.kind == "unreachable"
