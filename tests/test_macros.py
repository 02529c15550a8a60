"""Ribbon macros' decisions, the agent process they start, and the screen-pop text.

Sheets are real .xlsx files (openpyxl) read row by row as the macros read Excel; the
agent side is a real ``LocalApi`` or a real ``python -m pz_excel`` process.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from pz_excel.agent import notify
from pz_excel.agent.api import ApiClient, LocalApi
from pz_excel.books.settings import (
    SettingCell,
    parse_settings,
    setting_writes,
    settings_values,
    table_lang,
)
from pz_excel.crm import phones
from pz_excel.crm.schema import CALLS
from pz_excel.excel import agent_process, macros, messages
from pz_excel.excel.agent_process import agent_command, spawn_options, wait_for_agent
from pz_excel.excel.messages import status_message
from pz_excel.excel.number_pick import (
    Pick,
    call_back_pick,
    latest_missed,
    next_contact_row,
    owner_for_extension,
    pick_number,
)
from pz_excel.excel.settings_dialog import apply_setting_answer, problems_text, validate_settings
from pz_excel.i18n import UserError

ANNA = "+7 (343) 011-22-33"
BORIS = "8 343 011-22-44"


def key(raw: str) -> str:
    found = phones.normalize(raw)
    assert found
    return found


@pytest.fixture
def book(tmp_path) -> Path:
    """A CRM workbook like the template: Contacts under a title, Calls, Managers, Notes."""
    wb = openpyxl.Workbook()
    contacts = wb.active
    contacts.title = "Contacts"
    contacts.append(["Our clients"])
    contacts.append([])
    contacts.append(["Name", "Company", "Phone", "Owner", "Notes"])
    contacts.append(["Ivan Petrov", "Uralsteel", ANNA, "Anna", "call after 15"])
    contacts.append(["Olga Sidorova", "Mebel", None, "Boris", ""])
    contacts.append(["Pavel", "", 73430112255, "Boris", ""])  # a number typed as a number
    calls = wb.create_sheet("Звонки")  # Russian headers: found in either language
    calls.append(
        [
            "ID звонка",
            "Направление",
            "Статус",
            "Телефон клиента",
            "Контакт",
            "Длительность (с)",
            "Начало",
        ]
    )
    calls.append(
        ["c-1", "входящий", "пропущен", BORIS, "Boris Client", 0, datetime(2026, 11, 23, 10, 42)]
    )
    calls.append(["c-2", "исходящий", "завершён", "", "", 35, datetime(2026, 11, 23, 11, 0)])
    managers = wb.create_sheet("Managers")
    managers.append(["Owner", "Extension"])
    managers.append(["Anna", 101])
    managers.append(["Boris", "102"])
    notes = wb.create_sheet("Notes")
    notes.append(["Ivan", "+7 343 011-22-66", datetime(2026, 1, 2)])
    path = tmp_path / "crm.xlsx"
    wb.save(path)
    return path


@pytest.fixture
def sheets(book):
    wb = openpyxl.load_workbook(book)

    def row_of(sheet: str, row: int) -> list:
        return [c.value for c in wb[sheet][row]]

    def cell(sheet: str, ref: str):
        c = wb[sheet][ref]
        return (sheet, c.row, c.column, c.value)

    return row_of, cell


# ---------------------------------------------------------------------- what to call


def test_a_phone_cell_anywhere_is_dialled(sheets):
    row_of, cell = sheets
    pick = pick_number([cell("Notes", "B1")], row_of)
    assert pick is not None and pick.to_dial == "+7 343 011-22-66"
    assert pick == Pick(
        key("+7 343 011-22-66"),
        phones.display(key("+7 343 011-22-66")),
        "",
        "Notes!B1",
        "+7 343 011-22-66",
    )


def test_a_name_on_contacts_dials_the_rows_phone(sheets):
    row_of, cell = sheets
    for ref in ("A4", "B4", "C4", "E4"):  # name, company, the phone itself, notes
        pick = pick_number([cell("Contacts", ref)], row_of)
        assert pick is not None
        assert (pick.number, pick.who, pick.where) == (key(ANNA), "Ivan Petrov", "Contacts!C4")
        assert pick.to_dial == ANNA  # dialled the way it is written
    assert pick.label() == f"Ivan Petrov ({phones.display(key(ANNA))})"


def test_a_number_typed_as_a_number_is_read_as_digits(sheets):
    row_of, cell = sheets
    pick = pick_number([cell("Contacts", "A6")], row_of)
    assert pick is not None and pick.number == key("73430112255")
    assert pick.to_dial == "73430112255"  # not "73430112255.0"


def test_calls_sheet_in_russian_dials_the_client_phone_not_the_duration(sheets):
    row_of, cell = sheets
    for ref in ("A2", "F2", "G2"):  # the ID, the duration, the start time
        pick = pick_number([cell("Звонки", ref)], row_of)
        assert pick is not None and pick.number == key(BORIS)
        assert pick.who == "Boris Client" and pick.where == "Звонки!D2"


def test_multi_cell_selection_takes_the_first_valid_number(sheets):
    row_of, cell = sheets
    selection = [cell("Contacts", "A5"), cell("Contacts", "D5"), cell("Contacts", "A4")]
    pick = pick_number(selection, row_of)  # Olga has no phone: Ivan's row is next
    assert pick is not None and pick.who == "Ivan Petrov"


def test_nothing_valid_says_why(sheets, monkeypatch):
    row_of, cell = sheets
    with pytest.raises(UserError, match="Select a cell with a phone number"):
        pick_number([], row_of)
    with pytest.raises(UserError, match="«Ivan» is not a phone number"):
        pick_number([cell("Notes", "A1")], row_of)
    with pytest.raises(UserError, match="no valid phone number"):
        pick_number([cell("Contacts", "A5")], row_of)
    with pytest.raises(UserError, match="are empty"):
        pick_number([cell("Notes", "E9")], row_of)
    with pytest.raises(UserError, match="not a phone number"):
        pick_number([cell("Notes", "C1")], row_of)  # a date is never dialled
    with pytest.raises(UserError, match="not a phone number"):
        pick_number([cell("Contacts", "A1")], row_of)  # the title above the header
    monkeypatch.setenv("PZ_LANG", "ru")
    with pytest.raises(UserError, match="не номер телефона"):
        pick_number([cell("Notes", "A1")], row_of)


def test_call_back_uses_a_calls_row_or_falls_back(sheets):
    row_of, cell = sheets
    on_calls = pick_number([cell("Звонки", "B2")], row_of, tables=(CALLS,), tables_only=True)
    assert on_calls is not None and on_calls.number == key(BORIS)
    # Elsewhere (even on a phone number) call back means "the newest missed call".
    assert pick_number([cell("Notes", "B1")], row_of, tables=(CALLS,), tables_only=True) is None
    assert pick_number([cell("Звонки", "A1")], row_of, tables=(CALLS,), tables_only=True) is None
    with pytest.raises(UserError, match="no valid phone number"):
        pick_number([cell("Звонки", "A3")], row_of, tables=(CALLS,), tables_only=True)


def test_missed_call_fallback_pieces(book):
    wb = openpyxl.load_workbook(book)
    managers = [[c.value for c in r] for r in wb["Managers"].iter_rows()]
    assert owner_for_extension(managers, "101") == "Anna"  # 101 typed as a number
    assert owner_for_extension(managers, "102") == "Boris"
    assert owner_for_extension(managers, "999") is None
    calls = [
        {"client_phone": ANNA, "start": "2026-11-23 09:00:00", "contact": "Ivan Petrov"},
        {"client_phone": BORIS, "start": "2026-11-23 10:42:00", "contact": ""},
        {"client_phone": "", "start": "2026-11-23 11:00:00"},  # hidden number
    ]
    newest = latest_missed(calls)
    assert newest is calls[1]
    assert call_back_pick(newest).number == key(BORIS)
    assert latest_missed([]) is None
    with pytest.raises(UserError, match="cannot be dialled"):
        call_back_pick({"client_phone": "unknown"})


# ---------------------------------------------------------------------- messages


STATUS = {
    "state": "connected",
    "state_text": "connected",
    "retry_in": None,
    "phone": "101",
    "server": "ws://pbx.office:10150/",
    "workbook": "C:/crm/crm.xlsx",
    "journal": "C:/Users/anna/AppData/Local/pz-excel/journal/101-abc.sqlite",
    "last_event": {
        "type": 1,
        "name": "incoming",
        "call_id": "c-1",
        "from": "73430112233",
        "to": "101",
        "at": "2026-11-23T10:42:07",
    },
    "contacts": 300,
    "warnings": ["row 7: phone 'abc' is not a number"],
    "pending_rows": 0,
    "book": "excel",
}


def test_status_message_in_both_languages():
    text = status_message(STATUS, "en")
    assert "State: connected" in text and "Extension: 101" in text
    assert "Server: ws://pbx.office:10150/" in text
    # the event's name from its type in the reader's language, whatever the agent's
    assert "Last event: transfer request c-1 73430112233 → 101, 2026-11-23 10:42:07" in text
    assert "Workbook: C:/crm/crm.xlsx (open in Excel)" in text
    ru_full = status_message(STATUS, "ru")
    assert "Последнее событие: запрос перевода c-1" in ru_full
    assert "Книга: C:/crm/crm.xlsx (открыта в Excel)" in ru_full
    assert "Journal: C:/Users/anna/AppData/Local/pz-excel/journal/101-abc.sqlite" in text
    assert "row 7: phone 'abc' is not a number" in text
    ru = status_message(
        {**STATUS, "state": "retrying", "state_text": "повтор через 5 с", "last_event": None}, "ru"
    )
    assert "Состояние: переподключение — повтор через 5 с" in ru
    assert "Последнее событие: —" in ru and "Добавочный: 101" in ru


def test_call_and_refresh_messages(monkeypatch):
    pick = Pick("73430112233", "+7 343 011-22-33", "Ivan Petrov")
    ok, text = messages.call_message(pick, {"code": 0})
    assert ok and text.en == "Calling Ivan Petrov (+7 343 011-22-33)…"
    ok, text = messages.call_message(pick, {"code": 503, "message": "connector offline"})
    assert not ok and "code 503" in text.en and "connector offline" in text.en
    refreshed = messages.refresh_message(
        {"contacts": 300, "warnings": [f"w{i}" for i in range(12)]}
    )
    assert refreshed.en.startswith("Contacts loaded: 300.") and "… and 2 more" in refreshed.en
    monkeypatch.setenv("PZ_LANG", "ru")
    assert str(refreshed).startswith("Загружено контактов: 300.")


# ---------------------------------------------------------------------- settings


def settings_table(lang: str = "en") -> list[list]:
    if lang == "ru":
        return [
            ["Параметр", "Значение"],
            ["Адрес сервера", "pbx.office"],
            ["Добавочный номер", 101.0],
            ["Тип клиента", None],
        ]
    return [
        ["Setting", "Value"],
        ["Server URL", "ws://pbx.office:10150"],
        ["Extension", "101"],
        ["Client type", "excel"],
        ["Fallback extension", ""],
    ]


def test_parse_and_validate_settings():
    cells = parse_settings(settings_table())
    assert cells["server"] == SettingCell(2, 2, "ws://pbx.office:10150")
    assert settings_values(cells) == {
        "server": "ws://pbx.office:10150",
        "phone": "101",
        "client_type": "excel",
    }
    assert validate_settings(settings_values(cells)) == []
    ru = settings_values(parse_settings(settings_table("ru")))
    assert ru == {"server": "pbx.office", "phone": "101"}  # 101.0 from Excel is "101"
    assert validate_settings(ru) == []


def test_settings_problems_are_sentences():
    problems = validate_settings({})
    assert [p.en.split(":")[0] for p in problems] == ["Server URL is empty", "Extension is empty"]
    problems = validate_settings(
        {"server": "http://pbx", "phone": "1O1", "client_type": "эксель", "fallback": "x"}
    )
    assert len(problems) == 4
    assert "ws://" in problems[0].en and "«1O1»" in problems[1].en
    # The agent's own rules (crm/phones), as for init: a 7-digit "extension", a bad code.
    problems = validate_settings(
        {"server": "pbx", "phone": "1234567", "fallback": "102", "area_code": "12"}
    )
    assert ["«1234567»" in problems[0].en, "area code '12'" in problems[1].en] == [True, True]
    assert len(problems) == 2
    assert validate_settings({"server": "pbx", "phone": "101", "area_code": "(343)"}) == []
    text = problems_text(problems)
    assert text.en.startswith("Please fix the settings:\n• ")
    assert text.ru.startswith("Исправьте настройки:\n• ")


def test_settings_edits():
    assert apply_setting_answer("101", "", required=True) == "101"
    assert apply_setting_answer("101", " 102 ", required=True) == "102"
    assert apply_setting_answer("105", "-", required=False) == ""
    assert apply_setting_answer("101", "-", required=True) == "-"  # then validation says no
    table = settings_table("ru")
    cells = parse_settings(table)
    new = {"server": "pbx.office", "phone": "102", "client_type": "", "fallback": "105"}
    writes = setting_writes(cells, new, len(table), table_lang(table))
    assert writes == [(3, 2, "102"), (5, 1, "Добавочный по умолчанию"), (5, 2, "105")]
    assert table_lang(settings_table("en")) in ("en", "ru")  # no Russian label: the locale


# ---------------------------------------------------------------------- the agent process


def test_agent_command_carries_the_live_settings():
    values = {"server": "ws://pbx:10150", "phone": "101", "client_type": "", "fallback": "105"}
    argv = agent_command("/crm/crm.xlsx", values, python="/py/bin/python", windows=False)
    assert argv == [
        "/py/bin/python",
        "-m",
        "pz_excel",
        "run",
        "--workbook",
        "/crm/crm.xlsx",
        "--server",
        "ws://pbx:10150",
        "--phone",
        "101",
        "--fallback",
        "105",
    ]
    argv = agent_command(
        "/crm/crm.xlsx", values, python="/py/python", password_env=True, windows=False
    )
    assert argv[-2:] == ["--password-env", agent_process.PASSWORD_ENV]
    assert "secret" not in " ".join(argv)


def test_agent_command_prefers_pythonw_on_windows(tmp_path):
    (tmp_path / "python.exe").write_bytes(b"")
    (tmp_path / "pythonw.exe").write_bytes(b"")
    argv = agent_command("C:/crm.xlsx", {}, python=str(tmp_path / "python.exe"), windows=True)
    assert argv[0] == str(tmp_path / "pythonw.exe")


def test_spawn_options_detach():
    win = spawn_options(windows=True)
    assert win["creationflags"] & 0x00000008  # DETACHED_PROCESS
    assert win["creationflags"] & 0x00000200  # CREATE_NEW_PROCESS_GROUP
    assert spawn_options(windows=False)["start_new_session"] is True


def test_start_agent_failure_shows_the_agents_own_words(tmp_path):
    missing = tmp_path / "nowhere.xlsx"
    proc = agent_process.start_agent(missing, {"server": "ws://127.0.0.1:9", "phone": "101"})
    with pytest.raises(UserError) as info:
        wait_for_agent(missing, proc, timeout=60)
    assert proc.returncode == 2
    assert "workbook not found" in info.value.text.en
    assert str(missing) in info.value.text.en


def test_password_is_never_on_the_command_line_or_in_the_log(tmp_path):
    book = tmp_path / "b.xlsx"
    proc = agent_process.start_agent(book, {"server": "ws://127.0.0.1:9", "phone": "101"}, "s3cret")
    assert "s3cret" not in " ".join(proc.args)
    assert proc.args[-2:] == ["--password-env", agent_process.PASSWORD_ENV]
    proc.wait(60)  # the agent ran and stopped on the missing workbook
    log_text = agent_process.agent_log(book).read_text(encoding="utf-8")
    assert "workbook not found" in log_text and "s3cret" not in log_text


class StartingAgent:
    """A stand-in agent whose connection goes connecting → connected as it is polled."""

    def __init__(self, workbook: Path, states: list[str]):
        self.states = states
        self.api = LocalApi({("GET", "/status"): self.status, ("POST", "/call"): self.call})
        self.api.start(
            key="101-x",
            phone="101",
            workbook=str(workbook),
            server="ws://pbx:10150/",
            journal="/tmp/j",
        )
        self.calls: list[dict] = []

    def status(self, params, body):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {**STATUS, "state": state, "state_text": state}

    def call(self, params, body):
        self.calls.append(body)
        return {"code": 0, "already": False, "at": "2026-11-23 10:42:00", "message": ""}


def test_wait_for_agent_returns_once_past_connecting(book):
    agent = StartingAgent(book, ["connecting", "connecting", "connected"])
    try:
        assert agent_process.agent_for(book) is not None
        assert agent_process.agent_for(book.with_name("other.xlsx")) is None  # never another book's
        status = wait_for_agent(book, None, timeout=30)
        assert status["state"] == "connected" and agent.states == ["connected"]
    finally:
        agent.api.stop()


def test_place_call_through_the_api(book):
    agent = StartingAgent(book, ["connected"])
    try:
        client = ApiClient.discover(workbook=book)
        pick = Pick(key(ANNA), "+7 343 011-22-33", "Ivan", dial=ANNA)
        ok, text = macros.place_call(client, pick)
        assert ok and agent.calls == [{"number": ANNA}]  # as typed; no once-key for a button
        assert text.en.startswith("Calling Ivan")
    finally:
        agent.api.stop()


def test_wait_for_agent_gives_up_with_a_pointer_to_the_log(tmp_path):
    with pytest.raises(UserError, match="did not start within"):
        wait_for_agent(tmp_path / "b.xlsx", None, timeout=0)


# ---------------------------------------------------------------------- screen pop


def test_screen_pop_text():
    contact = {"name": "Ivan Petrov", "company": "Uralsteel", "owner": "Anna"}
    text = notify.screen_pop_text("73430112233", contact)
    assert text.en == "Incoming: Ivan Petrov — Uralsteel (Anna)"
    assert text.ru == "Входящий: Ivan Petrov — Uralsteel (Anna)"
    assert notify.screen_pop_text("73430112233", {"name": "Ivan", "company": ""}).en == (
        "Incoming: Ivan"
    )
    assert notify.screen_pop_text("73430112233", None).ru == "Входящий: 73430112233"


def test_notify_is_a_no_op_off_windows():
    if sys.platform == "win32":
        pytest.skip("shows a real toast on Windows")
    assert notify.notify("Incoming", "Ivan Petrov") is False


def test_toast_text_never_becomes_code():
    import base64

    evil = "'; Remove-Item C:\\ -Recurse; '<b>"
    argv, env = notify.toast_command("Входящий", evil)
    script = base64.b64decode(argv[-1]).decode("utf-16-le")
    assert evil not in script and "Remove-Item" not in script
    assert env["PZ_TOAST_TEXT"] == evil and env["PZ_TOAST_TITLE"] == "Входящий"
    assert "SecurityElement]::Escape" in script


# ---------------------------------------------------------------------- Connect, for real


def test_connect_starts_a_detached_agent_that_connects_and_stops(tmp_path):
    """What Connect does, minus Excel: settings read from the template's Settings sheet,
    a detached ``python -m pz_excel run`` process, the wait, and Disconnect's /stop."""
    from pz_excel.books.template import write_template
    from pz_excel.tools.testserver import ServerThread

    server = ServerThread(host="127.0.0.1", port=0).start()
    proc = None
    try:
        book = write_template(
            tmp_path / "crm.xlsx", lang="ru", settings={"server": server.url, "phone": "101"}
        )
        wb = openpyxl.load_workbook(book)
        table = [[c.value for c in r] for r in wb["Настройки"].iter_rows()]
        values = settings_values(parse_settings(table))
        assert values["server"] == server.url and values["phone"] == "101"
        assert validate_settings(values) == []
        proc = agent_process.start_agent(book, values)
        status = wait_for_agent(book, proc, timeout=60)
        assert status["state"] == "connected" and status["phone"] == "101"
        assert "Extension: 101" in status_message(status, "en")
        client = agent_process.agent_for(book)
        assert client is not None
        client.post("/stop")
        assert proc.wait(30) == 0
        assert agent_process.agent_for(book) is None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()  # our own child only, if an assertion above failed
            proc.wait(10)
        server.stop()


def test_table_header_uses_the_one_header_rule():
    """Empty rows above the header do not count; headers match whatever their spacing/case."""
    from pz_excel.crm.schema import CONTACTS
    from pz_excel.excel.number_pick import table_header

    sheet = [["Our clients"]] + [[]] * 12 + [["name", "PHONE ", "  Owner"], ["Ivan", ANNA, "Anna"]]
    row, cols = table_header(lambda n: sheet[n - 1] if n <= len(sheet) else [], CONTACTS, "phone")
    assert (row, cols) == (14, {"name": 1, "phone": 2, "owner": 3})
    assert table_header(lambda n: [], CONTACTS, "phone") == (0, {})


# ---------------------------------------------------------------------- add contact, send SMS


@pytest.fixture
def running_agent(tmp_path):
    """A real agent on our test connector, for the buttons that go through it."""
    from pz_excel.tools.testserver import ServerThread
    from tests.test_agent import make_book, start_agent

    server = ServerThread().start()
    crm = make_book(tmp_path / "crm.xlsx")
    agent = start_agent(crm, server)
    yield agent, crm, server
    agent.stop()
    server.stop()


def test_add_contact_checks_with_the_agent_then_excel_writes_the_row(running_agent):
    """In Excel the book is Excel's: the agent checks and gives the values (nothing
    written to the file), the macro writes them below the last row, then /refresh."""
    _agent, crm, _server = running_agent
    before = crm.read_bytes()
    client = ApiClient.discover(workbook=crm)
    pick = pick_number([("Notes", 1, 2, "+7 343 011-22-66")], lambda sheet, row: [])
    checked = macros.check_contact(client, pick, " Nina  Orlova ", "boris ivanov")
    assert checked["row"] is None and checked["number"] == key("+7 343 011-22-66")
    assert (checked["name"], checked["owner"], checked["extension"]) == (
        "Nina Orlova", "Boris Ivanov", "102")
    assert crm.read_bytes() == before
    message = messages.contact_added_message(pick, {**checked, "row": 6})
    assert message.en.startswith("Contact added: Nina Orlova (") and "row 6" in message.en
    assert "строка 6 листа «Контакты»" in message.ru
    # The agent's refusals reach the user in their language, as one clean message.
    olga = pick_number([("Notes", 1, 2, "8 912 555 44 33")], lambda sheet, row: [])
    with pytest.raises(UserError) as refused:
        macros.check_contact(client, olga, "Olga again", "Anna Smirnova")
    assert "already a contact: Olga Sidorova" in refused.value.text.en
    assert "уже есть в контактах" in refused.value.text.ru
    with pytest.raises(UserError) as refused:
        macros.check_contact(client, pick, "Nina", "Nobody Known")
    assert "Anna Smirnova (101)" in refused.value.text.en
    assert crm.read_bytes() == before


def test_next_contact_row_is_below_the_last_filled_row():
    rows = [
        ["Our clients", None, None],
        [None, None, None],
        ["Name", "Phone", "Owner"],
        ["Ivan", "+7 343 011-22-33", "101"],
        [None, None, None],
        ["Olga", "89125554433", None],
        [None, None, None],
    ]
    row, cols = next_contact_row(rows)
    assert row == 7 and (cols["name"], cols["phone"], cols["owner"]) == (1, 2, 3)
    assert next_contact_row(rows[:3])[0] == 4  # an empty table: right under the header
    with pytest.raises(UserError):
        next_contact_row([["Notes only"]])


def test_send_sms_goes_to_the_connector_as_typed(running_agent):
    _agent, crm, server = running_agent
    client = ApiClient.discover(workbook=crm)
    pick = pick_number([("Notes", 1, 2, "8 912 555 44 33")], lambda sheet, row: [])
    text = macros.post_sms(client, pick, "  Перезвоню в 15:00 ")
    assert server.wait_for(lambda: any("type = 128" in x for x in server.log_lines), 5)
    assert text.en.startswith(f"SMS to {pick.label()} handed to the phone system (id ")
    assert text.ru.startswith(f"SMS на {pick.label()} передано в телефонию (номер ")


def test_new_ribbon_macros_are_entry_points():
    # RunPython calls them without arguments; errors become message boxes, not tracebacks
    for name in ("add_contact", "send_sms"):
        func = getattr(macros, name)
        assert func.__wrapped__.__name__ == f"_{name}"
