"""An empty Contacts sheet is said aloud: a new workbook starts with no contacts, and then
every caller is declined (no smart transfer). The agent warns in its log, and
``pz-excel status`` (text and --json) shows it until Contacts has rows. Real agents on our
loopback test connector, real workbooks, the CLI's real entry point."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.template import write_template
from pz_excel.cli.main import main
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until

DECLINED = "every caller will be declined"
ONE = [("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash")]


def start_agent(book: Path, server: ServerThread, **kw) -> Agent:
    cfg = AgentConfig(
        workbook=book, server=server.url, phone="101", save_interval=0.1, lang="en", **kw
    )
    agent = Agent(cfg).start()
    wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
    return agent


def status(capsys, book: Path, *extra: str) -> str:
    capsys.readouterr()  # what came before is not this command's
    assert main(["status", "-w", str(book), *extra]) == 0
    return capsys.readouterr().out


def test_empty_template_warns_in_the_log_and_in_status(tmp_path, server, caplog, capsys):
    book = write_template(tmp_path / "crm.xlsx")
    caplog.set_level(logging.INFO, logger="pz_excel")
    agent = start_agent(book, server)
    try:
        warned = [r for r in caplog.records if DECLINED in r.getMessage()]
        assert [r.levelno for r in warned] == [logging.WARNING]
        assert "until Contacts has rows" in warned[0].getMessage()
        st = json.loads(status(capsys, book, "--json"))
        assert st["contacts"] == 0 and DECLINED in st["warnings"][0]
        text = status(capsys, book)
        assert any(line.startswith("Warning") and DECLINED in line for line in text.splitlines())

        # Contacts filled while the agent runs: the warning goes away by itself.
        write_template(book, contacts=ONE, force=True)
        wait_until(lambda: len(agent.index) == 1, 10, "contacts reloaded")
        st = json.loads(status(capsys, book, "--json"))
        assert st["warnings"] == [] and "Warning" not in status(capsys, book)
    finally:
        agent.stop()


def test_one_contact_no_warning(tmp_path, server, caplog, capsys):
    book = write_template(tmp_path / "crm.xlsx", contacts=ONE)
    caplog.set_level(logging.INFO, logger="pz_excel")
    agent = start_agent(book, server)
    try:
        assert not [r for r in caplog.records if "no usable rows" in r.getMessage()]
        assert any("contacts loaded: 1" in r.getMessage() for r in caplog.records)
        assert json.loads(status(capsys, book, "--json"))["warnings"] == []
    finally:
        agent.stop()


def test_rows_without_a_phone_are_no_contacts_and_the_fallback_is_named(
    tmp_path, server, caplog, capsys, monkeypatch
):
    book = write_template(tmp_path / "crm.xlsx", contacts=[("Nobody", "", "101")], lang="ru")
    caplog.set_level(logging.INFO, logger="pz_excel")
    agent = start_agent(book, server, fallback="103")
    try:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("fallback extension 103" in m and "no smart transfer" in m for m in warned)
        monkeypatch.setenv("PZ_LANG", "ru")
        text = status(capsys, book)
        assert any(
            line.startswith("Внимание") and "добавочный по умолчанию 103" in line
            for line in text.splitlines()
        )
    finally:
        agent.stop()
