"""One agent per connector address and client GUID on this computer (issue 12).

The connector keeps one connection per GUID (PROTOCOL.md §1): a second workbook with the
same extension used to start, and the connector then dropped the first agent with 4009.
Now the second start is refused before it connects, naming the first.
"""

from __future__ import annotations

import pytest

from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.i18n import UserError
from pz_excel.tools.testserver import ServerThread
from tests.test_agent import make_book, start_agent


def test_a_second_book_with_the_same_guid_is_refused_naming_the_first(tmp_path, server):
    first_book = make_book(tmp_path / "first.xlsx")
    second_book = make_book(tmp_path / "second.xlsx")
    first = start_agent(first_book, server, phone="101")
    try:
        cfg = AgentConfig(workbook=second_book, server=server.url, phone="101", lang="en")
        with pytest.raises(UserError) as err:
            Agent(cfg).start()
        text = err.value.text
        assert "client GUID 101" in text.en and str(first_book) in text.en
        assert "4009" in text.en and "--guid" in text.en
        assert "GUID клиента 101" in text.ru and str(first_book) in text.ru
        # The first one was not disturbed: still connected, nothing closed by the connector.
        assert first.client.state.kind == "connected"
        assert all(code != 4009 for _, code in server.closes_received)
        assert server.clients()[0]["Connected"] == "1" and len(server.clients()) == 1
    finally:
        first.stop()
    # Once the first is gone, the second starts.
    second = start_agent(second_book, server, phone="101")
    second.stop()


def test_another_guid_or_another_connector_is_no_conflict(tmp_path, server):
    first = start_agent(make_book(tmp_path / "a.xlsx"), server, phone="101")
    try:
        own_guid = start_agent(make_book(tmp_path / "b.xlsx"), server, phone="101", guid="xl-2")
        own_guid.stop()
        with ServerThread() as other_server:
            elsewhere = start_agent(make_book(tmp_path / "c.xlsx"), other_server, phone="101")
            elsewhere.stop()
    finally:
        first.stop()


def test_run_exits_2_with_one_line(tmp_path, server, capsys):
    from pz_excel.cli import main as cli

    first = start_agent(make_book(tmp_path / "first.xlsx"), server, phone="101")
    try:
        second = make_book(tmp_path / "second.xlsx")
        code = cli.main(["run", "-w", str(second), "-s", server.url, "-p", "101"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("pz-excel: another agent is already connected to ")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    finally:
        first.stop()
