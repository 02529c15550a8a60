"""``pz-excel call`` refuses what is not a number to dial (issue 12): letters, a formula,
your own extension. The rule is the agent's (``handlers.check_dial`` →
``phones.dial_problem``), so the CLI, the ribbon and PZ_CALL all get it. The CLI runs as a
real process against a real agent on our loopback test connector."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pz_excel.agent.api import ApiClient
from pz_excel.agent.journal import Journal
from pz_excel.books.template import write_template
from pz_excel.crm import phones
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.test_agent import start_agent

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def agent(tmp_path, server):
    a = start_agent(write_template(tmp_path / "crm.xlsx", lang="en"), server)
    yield a
    a.stop()


def cli(*args: str, lang: str = "en") -> subprocess.CompletedProcess:
    env = {**os.environ, "PZ_LANG": lang}  # PZ_EXCEL_HOME: this test's, from conftest
    return subprocess.run(
        [sys.executable, "-m", "pz_excel", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def dialled(server: ServerThread) -> list[str]:
    return [line for line in server.log_lines if "src = 101, dst =" in line]


@pytest.mark.parametrize(
    ("number", "en", "ru"),
    [
        ("abc", "'abc' has no digits", "в «abc» нет цифр"),
        ("=1+1", "'=1+1' looks like a formula", "«=1+1» похоже на формулу"),
        ("101", "101 is your own extension", "101 — ваш собственный добавочный"),
        ("+1+1", "'+1+1' is not a phone number", "«+1+1» — не номер телефона"),
        ("8 343 abc", "'8 343 abc' is not a phone number", "«8 343 abc» — не номер телефона"),
    ],
)
def test_call_refuses_what_is_not_a_number_and_dials_nothing(agent, server, number, en, ru):
    done = cli("call", number)
    assert done.returncode == 2, done.stderr
    assert en in done.stderr and "nothing was dialled" in done.stderr
    assert "Traceback" not in done.stderr and "Calling" not in done.stdout
    assert ru in cli("call", number, lang="ru").stderr
    assert dialled(server) == []  # the connector got no Call request
    with Journal(agent.config.journal) as j:  # nor was one journalled
        assert not any(e["kind"] in ("request", "response") for e in j.entries())
    assert agent.journal.recent_calls(limit=5) == []


def test_pz_call_refused_leaves_no_once_key(agent, server):
    client = ApiClient.discover(phone="101")
    with pytest.raises(Exception) as exc:
        client.post("/call", {"number": "=HYPERLINK(1)", "once_key": "b|S|B2|x"})
    assert "looks like a formula" in str(exc.value)
    assert agent.journal.once_get("b|S|B2|x") is None
    assert dialled(server) == []


@pytest.mark.parametrize("number", ["+7 (343) 011-22-33", "102", "*8"])
def test_valid_numbers_still_dial(agent, server, number):
    done = cli("call", number)
    assert done.returncode == 0, done.stderr
    assert f"Calling {number}" in done.stdout
    wait_until(lambda: any(f"dst = {number}" in x for x in dialled(server)), 5, "Call sent")


@pytest.mark.parametrize(
    "number",
    [
        "+7 (343) 011-22-33",
        "8 343 0112233",
        "102",
        "5550000",
        "*21#",
        "#31#",
        "+7 343 011-22-33 доб. 12",
        "+44 20 7946 0958",
    ],
)
def test_the_rule_allows_what_users_type(number):
    assert phones.dial_problem(number, "101") is None


@pytest.mark.parametrize("number", ["", "  ", "abc", "=A1", "+1+1", "101", "#", "1;2"])
def test_the_rule_refuses(number):
    assert phones.dial_problem(number, "101") is not None
