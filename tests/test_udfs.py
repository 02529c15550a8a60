"""Worksheet functions: real loopback API, no Excel.

The agent's side is a ``LocalApi`` serving canned-but-realistic answers (a stand-in for
the agent, same server code, same token checks); the UDF logic and the real ``ApiClient``
run unchanged against it.
"""

from __future__ import annotations

import ast
import threading
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from pz_excel.agent.api import ApiClient, ApiError, LocalApi
from pz_excel.crm import phones
from pz_excel.excel import udf_logic
from pz_excel.excel.udf_logic import AgentLink, CallerCell, cell_text, once_key
from pz_excel.i18n import Text
from tests.conftest import wait_until

UDF_FILE = Path(__file__).resolve().parents[1] / "udfs" / "pz_udfs.py"
RAW = "+7 (343) 011-22-33"


class Clock:
    """A hand-moved clock for the link's caches (no sleeping in tests)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class AgentStandIn:
    """The agent's API contract with canned data, served by the real LocalApi."""

    def __init__(self, workbook: Path):
        self.workbook = workbook
        self.requests: list[tuple[str, dict, dict]] = []
        self.once: dict[str, str] = {}
        self.last_new_dial = 0.0
        self.release = threading.Event()
        self.hang = False
        self.api = LocalApi(self._routes())
        # A request the client abandoned on purpose (timeout tests) ends in a broken pipe
        # when the handler finally answers; that is expected, not worth a stack trace.
        self.api._server.handle_error = lambda request, address: None  # type: ignore[method-assign]

    def _routes(self):
        def log(name, handler):
            def run(params, body):
                self.requests.append((name, dict(params), dict(body)))
                if self.hang:
                    self.release.wait(5)
                return handler(params, body)

            return run

        return {
            ("GET", "/status"): log("status", self.status),
            ("GET", "/lookup"): log("lookup", self.lookup),
            ("POST", "/lookups"): log("lookups", lambda params, body: {
                "results": [self.lookup({"number": n}, {}) for n in body["numbers"]]}),
            ("GET", "/stats"): log("stats", self.stats),
            ("GET", "/missed"): log("missed", self.missed),
            ("POST", "/call"): log("call", self.call),
        }

    def status(self, params, body):
        return {
            "state": "connected",
            "state_text": "connected to ws://pbx.office:10150/",
            "retry_in": None,
            "phone": "101",
            "server": "ws://pbx.office:10150/",
            "workbook": str(self.workbook),
            "journal": "/tmp/j.sqlite",
            "last_event": None,
            "contacts": 300,
            "warnings": [],
            "pending_rows": 0,
            "book": "file",
        }

    def lookup(self, params, body):
        key = phones.normalize(params["number"])
        known = key == phones.normalize(RAW)
        return {
            "number": params["number"],
            "key": key,
            "display": phones.display(key) if key else params["number"],
            "contact": {
                "name": "Ivan Petrov",
                "phone": RAW,
                "owner": "Anna Smirnova",
                "company": "Uralsteel",
                "row": 5,
            }
            if known
            else None,
            "extension": "102" if known else None,
        }

    def stats(self, params, body):
        if phones.normalize(params.get("number", "")) != phones.normalize(RAW):
            return {"count": 0, "last": None}
        last = {
            "call_id": "c-17",
            "direction": "incoming",
            "status": "answered",
            "client_phone": RAW,
            "contact": "Ivan Petrov",
            "owner": "Anna Smirnova",
            "extension": "102",
            "start": "2026-11-23 10:42:07",
            "end": "2026-11-23 10:42:42",
            "duration": 35,
            "recording": "",
            "line": "",
            "late": False,
        }
        return {"count": 7 if params.get("days") == "30" else 12, "last": last}

    def missed(self, params, body):
        return {"count": 2 if params.get("owner") == "Anna Smirnova" else 5, "calls": []}

    def call(self, params, body):
        # The agent's once-key contract: at most one dial per key, and a second new key
        # within a few seconds is refused (fill-down guard).
        key = body.get("once_key")
        if key in self.once:
            return {"code": 0, "already": True, "at": self.once[key], "message": ""}
        if key and time.monotonic() - self.last_new_dial < 3:
            return {
                "code": -1,
                "already": False,
                "at": None,
                "message": "not dialled: another formula dialled a moment ago",
            }
        if not body.get("number"):
            raise ApiError(400, Text("no number to call", "нет номера для звонка"))
        at = datetime.now().isoformat(sep=" ", timespec="seconds")
        if key:
            self.once[key] = at
            self.last_new_dial = time.monotonic()
        return {"code": 0, "already": False, "at": at, "message": "calling…"}

    def start(self) -> AgentStandIn:
        self.api.start(
            key="101-test",
            phone="101",
            workbook=str(self.workbook),
            server="ws://pbx.office:10150/",
            journal="/tmp/j.sqlite",
        )
        return self

    def stop(self) -> None:
        self.release.set()
        self.api.stop()

    def names(self) -> list[str]:
        return [name for name, _, _ in self.requests]


@pytest.fixture
def agent(tmp_path):
    book = tmp_path / "crm.xlsx"
    book.write_bytes(b"")
    stand_in = AgentStandIn(book).start()
    # One request first, with time to spare: the API's worker threads start on demand, and
    # under a full parallel suite that first start alone may pass the UDFs' 200 ms budget.
    ApiClient.discover(workbook=book, timeout=10.0).get("/status")
    stand_in.requests.clear()  # the tests count what the UDFs ask
    yield stand_in
    stand_in.stop()


@pytest.fixture
def link():
    return AgentLink(clock=Clock())


# ---------------------------------------------------------------------- local functions


def test_cell_text_handles_what_excel_passes():
    assert cell_text(73430112233.0) == "73430112233"  # a number typed into a cell
    assert cell_text(" +7 343 ") == "+7 343"
    assert cell_text(None) == "" and cell_text(True) == "TRUE"  # as Excel shows it
    assert cell_text([None, "", 101.0]) == "101"  # a range: its first non-empty cell
    assert cell_text(12.5) == "12.5"


def test_normalize_needs_no_agent_and_reads_numbers_typed_as_numbers():
    shown = phones.display(phones.normalize(RAW))
    assert udf_logic.pz_normalize(RAW) == shown
    assert udf_logic.pz_normalize(float(phones.normalize(RAW) or 0)) == shown
    assert udf_logic.pz_normalize("83430112233") == shown
    assert udf_logic.pz_normalize(None) == ""
    assert udf_logic.pz_normalize("Ivan Petrov") == "not a phone number"


def test_normalize_in_russian(monkeypatch):
    monkeypatch.setenv("PZ_LANG", "ru")
    assert udf_logic.pz_normalize("Иван") == "не номер телефона"


# ---------------------------------------------------------------------- agent down / slow


def test_agent_not_running_is_a_readable_text_in_both_languages(monkeypatch, link):
    assert udf_logic.pz_status(link=link) == "agent not running"
    assert udf_logic.pz_calls(RAW, link=link) == "agent not running"
    monkeypatch.setenv("PZ_LANG", "ru")
    assert udf_logic.pz_owner(RAW, link=link) == "агент не запущен"
    assert udf_logic.pz_missed(link=link) == "агент не запущен"


def test_a_sheet_of_500_formulas_discovers_once(agent, link):
    started = time.perf_counter()
    values = [udf_logic.pz_calls(RAW, link=link) for _ in range(500)]
    elapsed = time.perf_counter() - started
    assert values == [12] * 500
    assert link.discoveries == 1
    assert elapsed < 10  # loopback: milliseconds per formula, not a discovery each


def test_discovery_is_looked_up_again_after_the_ttl(agent):
    clock = Clock()
    link = AgentLink(clock=clock)
    udf_logic.pz_status(link=link)
    udf_logic.pz_status(link=link)
    clock.now += udf_logic.CLIENT_TTL + 1
    udf_logic.pz_status(link=link)
    assert link.discoveries == 2


def test_timeout_is_at_most_200_ms_and_a_hung_agent_costs_one_timeout(agent):
    clock = Clock()
    link = AgentLink(clock=clock, timeout=5.0)  # asks for more than allowed
    assert link.timeout <= 0.2
    agent.hang = True
    started = time.perf_counter()
    assert udf_logic.pz_status(link=link) == "agent not answering"
    first = time.perf_counter() - started
    started = time.perf_counter()
    rest = [udf_logic.pz_lastcall(RAW, link=link) for _ in range(100)]
    others = time.perf_counter() - started
    assert first < 1.5
    assert set(rest) == {"agent not answering"}
    assert others < first  # remembered: no second wait
    assert agent.names() == ["status"]
    agent.hang = False
    agent.release.set()
    clock.now += udf_logic.FAIL_TTL + 0.1
    assert udf_logic.pz_status(link=link) == "connected · ext 101"


def test_an_agent_that_stops_is_noticed_and_a_new_one_found(tmp_path):
    clock = Clock()
    link = AgentLink(clock=clock)
    book = tmp_path / "crm.xlsx"
    first = AgentStandIn(book).start()
    try:
        assert udf_logic.pz_missed(link=link) == 5
    finally:
        first.stop()
    assert udf_logic.pz_missed(link=link) == "agent not running"
    second = AgentStandIn(book).start()
    try:
        assert udf_logic.pz_missed(link=link) == "agent not running"  # remembered briefly
        clock.now += udf_logic.FAIL_TTL + 0.1
        assert udf_logic.pz_missed(link=link) == 5
    finally:
        second.stop()


# ---------------------------------------------------------------------- data functions


def test_status_owner_lastcall_calls_missed(agent, link):
    assert udf_logic.pz_status(link=link) == "connected · ext 101"
    assert udf_logic.pz_owner(RAW, link=link) == "Anna Smirnova (102)"
    assert udf_logic.pz_owner("+7 999 000-00-00", link=link) == "not in Contacts"
    assert udf_logic.pz_lastcall(RAW, link=link) == "2026-11-23 10:42 incoming answered 35 s"
    assert udf_logic.pz_lastcall("+7 999 000-00-00", link=link) == "no calls"
    assert udf_logic.pz_calls(RAW, link=link) == 12
    assert udf_logic.pz_calls(RAW, 30.0, link=link) == 7  # Excel passes numbers as floats
    assert udf_logic.pz_missed(link=link) == 5
    assert udf_logic.pz_missed("Anna Smirnova", link=link) == 2
    sent = {name: params for name, params, _ in agent.requests}
    bodies = {name: body for name, _params, body in agent.requests}
    assert bodies["lookups"]["numbers"] == [phones.normalize("+7 999 000-00-00")]
    assert "owner" in sent["missed"]


def test_texts_in_russian(agent, link, monkeypatch):
    monkeypatch.setenv("PZ_LANG", "ru")
    assert udf_logic.pz_status(link=link) == "подключено · доб. 101"
    assert udf_logic.pz_lastcall(RAW, link=link) == "2026-11-23 10:42 входящий отвечен 35 с"
    assert udf_logic.pz_owner("+7 999 000-00-00", link=link) == "нет в контактах"


def test_bad_arguments_never_reach_the_agent(agent, link):
    assert udf_logic.pz_owner("Ivan", link=link) == "not a phone number"
    assert udf_logic.pz_lastcall(None, link=link) == "no number"
    assert udf_logic.pz_calls(RAW, "week", link=link) == "not a number: week"
    assert udf_logic.pz_calls(RAW, -1, link=link) == "days must be 0 or more"
    assert agent.requests == []


def test_format_status_states():
    assert udf_logic.format_status({"state": "retrying", "retry_in": 4.6}) == (
        "reconnecting in 5 s"
    )
    assert udf_logic.format_status({"state": "connecting", "phone": "101"}) == (
        "connecting… · ext 101"
    )
    stopped = {"state": "stopped", "phone": "101", "state_text": "wrong password (4001)"}
    assert udf_logic.format_status(stopped) == "stopped · ext 101: wrong password (4001)"


def test_format_call_missed_shows_no_duration():
    row = {
        "start": "2026-11-23 09:05:00",
        "direction": "incoming",
        "status": "missed",
        "duration": 12,
    }
    assert udf_logic.format_call(row, "en") == "2026-11-23 09:05 incoming missed"
    assert udf_logic.format_call(row, "ru") == "2026-11-23 09:05 входящий пропущен"


# ---------------------------------------------------------------------- PZ_CALL


def cell(address: str = "$C$2", sheet: str = "Contacts") -> CallerCell:
    return CallerCell(book="crm.xlsx", sheet=sheet, address=address)


def test_pz_call_dials_once_per_cell_and_number(agent, link):
    assert udf_logic.pz_call(RAW, cell(), link=link) == "calling…"
    # Recalculation, F9, reopening: the same cell and number never redial.
    hhmm = datetime.now().strftime("%H:%M")
    for _ in range(3):
        assert udf_logic.pz_call(RAW, cell(), link=link) == f"called at {hhmm}"
    calls = [body for name, _, body in agent.requests if name == "call"]
    key = phones.normalize(RAW)
    assert calls[0] == {"number": RAW, "once_key": f"crm.xlsx|Contacts|C2|{key}"}
    assert {c["once_key"] for c in calls} == {calls[0]["once_key"]}
    assert len(agent.once) == 1


def test_pz_call_fill_down_is_refused_by_the_agent_guard(agent, link):
    assert udf_logic.pz_call(RAW, cell("$C$2"), link=link) == "calling…"
    # Fill-down: the next cells are new keys a moment later — the agent refuses them.
    for row in range(3, 8):
        text = udf_logic.pz_call("+7 343 011-22-44", cell(f"$C${row}"), link=link)
        assert text.startswith("not dialled")
    assert len(agent.once) == 1


def test_pz_call_reads_the_cell_lazily_and_explains_without_one(agent, link):
    assert udf_logic.pz_call(RAW, lambda: cell(), link=link) == "calling…"
    assert udf_logic.pz_call(RAW, None, link=link) == "PZ_CALL works in a cell only"
    assert udf_logic.pz_call(RAW, lambda: None, link=link) == "PZ_CALL works in a cell only"

    def broken():
        raise RuntimeError("COM says no")

    assert udf_logic.pz_call(RAW, broken, link=link) == "error: COM says no"
    array = CallerCell("crm.xlsx", "Contacts", "$C$2:$C$9", cells=8)
    assert "single cell" in udf_logic.pz_call(RAW, array, link=link)
    assert udf_logic.pz_call("Ivan", cell(), link=link) == "not a phone number"
    assert [n for n in agent.names() if n == "call"] == ["call"]


def test_pz_call_slow_agent_reports_the_dial_as_under_way(agent, link):
    agent.hang = True
    assert udf_logic.pz_call(RAW, cell(), link=link) == "calling… (no reply yet)"
    agent.hang = False
    agent.release.set()
    # A slow dial says nothing about the agent's health: other formulas carry on.
    assert udf_logic.pz_status(link=link) == "connected · ext 101"


def test_call_results_in_russian_and_other_days(monkeypatch):
    monkeypatch.setenv("PZ_LANG", "ru")
    today = date(2026, 11, 24)
    assert udf_logic.format_call_result({"code": 0, "already": False}, today) == "звоним…"
    old = {"code": 0, "already": True, "at": "2026-11-23 10:42:00"}
    assert udf_logic.format_call_result(old, today) == "звонок был в 2026-11-23 10:42"
    refused = {"code": 3, "already": False, "message": ""}
    assert udf_logic.format_call_result(refused, today) == "звонок отклонён (код 3)"


def test_once_key_ignores_dollar_signs_and_case():
    assert once_key(CallerCell("b.xlsx", "S", "$b$2"), "k") == once_key(
        CallerCell("b.xlsx", "S", "B2"), "k"
    )


# ---------------------------------------------------------------------- the xlwings module


def test_udf_module_imports_and_runs_without_excel(agent, monkeypatch):
    from udfs import pz_udfs

    monkeypatch.setattr(udf_logic, "LINK", AgentLink())  # the module's default link
    assert pz_udfs.PZ_NORMALIZE(RAW) == phones.display(phones.normalize(RAW))
    assert pz_udfs.PZ_STATUS() == "connected · ext 101"
    assert pz_udfs.PZ_CALL(RAW, None) == "PZ_CALL works in a cell only"


def _decorators(fn: ast.FunctionDef) -> list[ast.Call]:
    return [d for d in fn.decorator_list if isinstance(d, ast.Call)]


def _name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_every_udf_has_function_wizard_help():
    """xlwings takes the docstring (≤ 255 chars) as the wizard's description and each
    ``@xw.arg(name, doc=…)`` as an argument's help; ``caller`` is filled in by xlwings."""
    tree = ast.parse(UDF_FILE.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            namespace[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    udfs = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(_name(d) == "xw.func" for d in _decorators(node))
    }
    expected = {
        "PZ_STATUS",
        "PZ_NORMALIZE",
        "PZ_OWNER",
        "PZ_LASTCALL",
        "PZ_CALLS",
        "PZ_MISSED",
        "PZ_CALL",
        "PZ_TEAM_LAST",
    }
    assert set(udfs) == expected
    for name, fn in udfs.items():
        doc = ast.get_docstring(fn, clean=False)
        assert doc and len(doc) <= 255 and "\n" not in doc, name
        assert " / " in doc, f"{name}: the description should be bilingual"
        assert not any(a.annotation for a in fn.args.args), f"{name}: hints become converters"
        documented = {}
        for deco in _decorators(fn):
            if _name(deco) == "xw.arg":
                arg = ast.literal_eval(deco.args[0])
                help_node = next(k.value for k in deco.keywords if k.arg == "doc")
                if isinstance(help_node, ast.Name):
                    help_text = namespace[help_node.id]
                else:
                    help_text = ast.literal_eval(help_node)
                documented[arg] = help_text
        params = [a.arg for a in fn.args.args if a.arg != "caller"]
        assert set(documented) == set(params), name
        assert all(isinstance(t, str) and 0 < len(t) <= 255 for t in documented.values())
    call_kw = {
        k.arg: ast.literal_eval(k.value)
        for k in _decorators(udfs["PZ_CALL"])[0].keywords
        if k.arg == "call_in_wizard"
    }
    assert call_kw == {"call_in_wizard": False}  # the wizard must never dial
    assert [a.arg for a in udfs["PZ_CALL"].args.args] == ["number", "caller"]


# ---------------------------------------------------------------------- the real agent


@pytest.fixture
def real_agent(tmp_path):
    """The real agent on our test connector, with a template workbook."""
    from pz_excel.agent.lifecycle import Agent, AgentConfig
    from pz_excel.books.template import write_template
    from pz_excel.tools.testserver import ServerThread

    server = ServerThread(host="127.0.0.1", port=0).start()
    book = write_template(
        tmp_path / "crm.xlsx",
        lang="en",
        contacts=[("Ivan Petrov", RAW, "Anna Smirnova", "Uralsteel")],
        managers=[("Anna Smirnova", "101")],
    )
    config = AgentConfig(workbook=book, server=server.url, phone="101", save_interval=0.1)
    agent = Agent(config).start()
    try:
        wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
        yield server  # the agent is reached through its API only, as Excel reaches it
    finally:
        agent.stop()
        server.stop()


def test_the_functions_against_the_real_agent(real_agent):
    server = real_agent
    link = AgentLink()
    assert udf_logic.pz_status(link=link) == "connected · ext 101"
    assert udf_logic.pz_owner("83430112233", link=link) == "Anna Smirnova (101)"
    assert udf_logic.pz_calls(RAW, link=link) == 0
    assert udf_logic.pz_lastcall(RAW, link=link) == "no calls"

    g = server.generate
    g(2, {"From": "73430112233", "To": "101", "CallID": "100"})
    g(32, {"From": "73430112233", "To": "101", "CallID": "100"})
    done = {"Start": "1700000000", "End": "1700000042", "Duration": "42", "Direction": "0"}
    g(4, {"From": "73430112233", "To": "101", "CallID": "100", **done})
    g(2, {"From": "79990001122", "To": "101", "CallID": "300"})
    missed = {"Start": "1700000100", "End": "1700000120", "Duration": "0", "Direction": "0"}
    g(4, {"From": "79990001122", "To": "101", "CallID": "300", **missed})
    wait_until(lambda: udf_logic.pz_missed(link=link) == 1, 5, "the missed call")
    assert udf_logic.pz_calls(RAW, link=link) == 1
    assert udf_logic.pz_calls(RAW, 7, link=link) == 0  # 1700000000 is November 2023
    assert udf_logic.pz_lastcall(RAW, link=link).endswith(" incoming completed 42 s")
    assert udf_logic.pz_missed("Anna Smirnova", link=link) == 0


def test_pz_call_with_the_real_agent_dials_once(real_agent):
    server = real_agent
    link = AgentLink()
    first = udf_logic.pz_call(RAW, cell("$D$2"), link=link)
    # under load the connector's answer may come after the 200 ms budget: either is right
    assert first in ("calling…", "calling… (no reply yet)")
    before = datetime.now().strftime("%H:%M")
    again = [udf_logic.pz_call(RAW, cell("$D$2"), link=link) for _ in range(3)]  # F9, reopen
    after = datetime.now().strftime("%H:%M")
    assert all(text in (f"called at {before}", f"called at {after}") for text in again)
    # the same number reformatted in the same cell is the same number: no new dial
    assert udf_logic.pz_call("8 343 011 22 33", cell("$D$2"), link=link).startswith("called at")
    # fill-down: the next cell right away is refused by the agent's guard
    assert udf_logic.pz_call("+7 343 011-22-44", cell("$D$3"), link=link).startswith("not dialled")
    dialled = f"dst = {RAW}"
    wait_until(lambda: any(dialled in x for x in server.log_lines), 5, "the dial")
    assert sum(dialled in x for x in server.log_lines) == 1
    assert not any("011-22-44" in x for x in server.log_lines)


def test_owner_formulas_asked_at_once_go_as_a_few_requests(agent, link):
    """Excel recalculating a column of PZ_OWNER: 50 formulas at the same moment are
    gathered into a few /lookups requests (the agent's pool would queue 50), and each
    cell still gets its own number's answer."""
    numbers = [RAW if i % 2 else f"+7 999 000-00-{i:02d}" for i in range(50)]
    start = threading.Barrier(len(numbers))
    got: dict[int, object] = {}

    def one(i: int) -> None:
        start.wait()
        got[i] = udf_logic.pz_owner(numbers[i], link=link)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(numbers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(got[i] == ("Anna Smirnova (102)" if i % 2 else "not in Contacts")
               for i in range(len(numbers)))
    asked = [body for name, _params, body in agent.requests if name == "lookups"]
    assert sum(len(b["numbers"]) for b in asked) == len(numbers)
    assert len(asked) < len(numbers) // 5  # gathered, not one request each
