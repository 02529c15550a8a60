"""Which running agent a command or a button talks to: decided once
(``pz_excel.agent.api.choose_agent``, paths compared by ``books.identity.same_workbook``),
never a guess. Real agents on our loopback test connector; the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pz_excel.agent.api import ApiClient
from pz_excel.agent.discovery import (
    AgentChoiceNeeded,
    AgentInfo,
    AgentUnavailable,
    NoAgentForWorkbook,
    choose_agent,
)
from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.identity import same_workbook
from pz_excel.books.template import write_template
from pz_excel.excel import agent_process
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]


def run_agent(book: Path, server: ServerThread, phone: str) -> Agent:
    write_template(book, lang="en")
    cfg = AgentConfig(workbook=book, server=server.url, phone=phone, save_interval=0.1, lang="en")
    agent = Agent(cfg).start()
    wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
    return agent


@pytest.fixture
def crm(tmp_path, server):
    agent = run_agent(tmp_path / "crm.xlsx", server, "101")
    yield agent
    agent.stop()


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


def test_status_of_a_workbook_without_an_agent_names_the_running_ones(crm, tmp_path):
    missing = "/tmp/nonexistent.xlsx"
    done = cli("status", "-w", missing)
    assert done.returncode != 0
    assert f"no pz-excel agent is running for {missing}" in done.stderr
    assert str(tmp_path / "crm.xlsx") in done.stderr  # the workbook an agent runs for
    assert "Extension" not in done.stdout and "101" not in done.stdout  # not its status
    ru = cli("status", "-w", missing, lang="ru")
    assert ru.returncode != 0 and "агент pz-excel не запущен" in ru.stderr
    call = cli("call", "102", "-w", missing)
    assert call.returncode != 0 and "no pz-excel agent is running for" in call.stderr
    assert "Calling" not in call.stdout


def test_one_agent_and_no_workbook_uses_it(crm, tmp_path):
    done = cli("status")
    assert done.returncode == 0, done.stderr
    assert "101" in done.stdout and str(tmp_path / "crm.xlsx") in done.stdout
    same = cli("status", "-w", str(tmp_path / "sub" / ".." / "crm.xlsx"))
    assert same.returncode == 0 and "101" in same.stdout  # the same file, spelled otherwise


def test_several_agents_and_no_workbook_asks_to_choose(crm, tmp_path, server):
    other = run_agent(tmp_path / "second.xlsx", server, "102")
    try:
        done = cli("status")
        assert done.returncode != 0 and "choose the workbook with -w" in done.stderr
        assert "crm.xlsx" in done.stderr and "second.xlsx" in done.stderr
        chosen = cli("status", "-w", str(tmp_path / "second.xlsx"))
        assert chosen.returncode == 0 and "102" in chosen.stdout
    finally:
        other.stop()


def test_the_ribbon_never_takes_another_workbooks_agent(crm, tmp_path):
    assert agent_process.agent_for(tmp_path / "crm.xlsx") is not None
    assert agent_process.agent_for(tmp_path / "other.xlsx") is None
    with pytest.raises(NoAgentForWorkbook):
        ApiClient.discover(workbook=tmp_path / "other.xlsx")


def info(workbook: str, phone: str = "101") -> AgentInfo:
    fields = {"pid": 1, "port": 1, "token": "t", "server": "s", "journal": "j", "key": "k"}
    return AgentInfo(phone=phone, workbook=workbook, started=0.0, **fields)


def test_choose_agent_rules(tmp_path):
    a, b = info(str(tmp_path / "a.xlsx")), info(str(tmp_path / "b.xlsx"), "102")
    with pytest.raises(AgentUnavailable) as none:
        choose_agent([])
    assert "pz-excel run" in none.value.text.en
    assert choose_agent([a]) is a
    assert choose_agent([a, b], workbook=tmp_path / "b.xlsx") is b
    assert choose_agent([a, b], phone="102") is b
    with pytest.raises(AgentChoiceNeeded) as several:
        choose_agent([a, b])
    assert "-w" in several.value.text.en and "-w" in several.value.text.ru
    with pytest.raises(NoAgentForWorkbook) as missing:
        choose_agent([a], workbook=tmp_path / "c.xlsx")
    assert str(tmp_path / "a.xlsx") in missing.value.text.ru


def test_same_workbook(tmp_path, monkeypatch):
    book = tmp_path / "crm.xlsx"
    book.write_bytes(b"")
    (tmp_path / "link.xlsx").symlink_to(book)
    monkeypatch.chdir(tmp_path)
    assert same_workbook(book, "crm.xlsx")
    assert same_workbook(book, tmp_path / "x" / ".." / "crm.xlsx")
    assert same_workbook(book, tmp_path / "link.xlsx")
    assert not same_workbook(book, tmp_path / "other.xlsx")
    assert not same_workbook(
        "https://d.docs.live.net/1/crm.xlsx", "https://d.docs.live.net/1/crm.xlsx"
    )
    assert not same_workbook("", "")
