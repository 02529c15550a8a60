"""``pz-excel contact add`` (issue 12): a caller becomes a contact through the running
agent. Real agent on our loopback test connector, the CLI as a real process, the .xlsx
read back with openpyxl and compared member by member at the zip level."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pz_excel.agent.api import ApiClient
from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.template import write_template
from pz_excel.i18n import UserError
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.ooxml_schema import validate

ROOT = Path(__file__).resolve().parents[1]
MANAGERS = [("Anna Smirnova", "101"), ("Boris Ivanov", "102")]
CONTACTS = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),
    ("Olga Sidorova", "8 912 555 44 33", "Boris Ivanov", "Rosa"),
]
NEW = "8 (922) 111-22-33"  # not a contact yet
NEW_KEY = "79221112233"


@pytest.fixture
def book(tmp_path):
    return write_template(tmp_path / "crm.xlsx", lang="en", contacts=CONTACTS,
                          managers=MANAGERS)


@pytest.fixture
def agent(book, server):
    cfg = AgentConfig(workbook=book, server=server.url, phone="101", save_interval=0.1,
                      lang="en", area_code="343")
    a = Agent(cfg).start()
    wait_until(lambda: a.client.state.kind == "connected", 10, "agent connected")
    yield a
    a.stop()


def cli(*args: str, lang: str = "en") -> subprocess.CompletedProcess:
    env = {**os.environ, "PZ_LANG": lang}  # PZ_EXCEL_HOME: this test's, from conftest
    return subprocess.run([sys.executable, "-m", "pz_excel", *args], capture_output=True,
                          text=True, encoding="utf-8", cwd=ROOT, env=env, timeout=60)


def members(path: Path) -> dict[str, tuple[int, bytes, bytes]]:
    """Each member: (CRC-32, compressed bytes as stored, content)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset + 26)
            name_len, extra_len = int.from_bytes(fh.read(2), "little"), int.from_bytes(
                fh.read(2), "little")
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            out[info.filename] = (info.CRC, fh.read(info.compress_size), zf.read(info))
    return out


def contacts_rows(path: Path, title: str = "Contacts") -> list[tuple]:
    wb = load_workbook(path, read_only=True)
    try:
        return [tuple(r) for r in wb[title].iter_rows(values_only=True)]
    finally:
        wb.close()


def transfer_to(server: ServerThread, agent: Agent, caller: str, call_id: str) -> str:
    server.generate(1, {"From": caller, "CallID": call_id})
    wait_until(lambda: any(d.call_id == call_id for d in agent.decisions), 5, "decision")
    return next(d for d in agent.decisions if d.call_id == call_id).to


def test_add_contact_routes_the_number_to_the_owner_at_once(agent, server, book):
    assert transfer_to(server, agent, NEW_KEY, "9001") == ""  # unknown before
    before = members(book)
    done = cli("contact", "add", NEW, "--name", "Пётр & Co", "--owner", "boris  IVANOV",
               "-w", str(book))
    assert done.returncode == 0, done.stderr
    assert "row 4" in done.stdout and "extension 102" in done.stdout
    # routing knows the number at once: the next transfer request goes to its owner
    assert transfer_to(server, agent, NEW_KEY, "9002") == "102"
    wait_until(lambda: server.transfers.get("9002") == "102", 5, "transfer won")
    rows = contacts_rows(book)
    assert rows[3][:3] == ("Пётр & Co", "+7 922 111-22-33", "Boris Ivanov")
    assert rows[0] == ("Name", "Phone", "Owner", "Company", "Notes")
    assert [r[:4] for r in rows[1:3]] == CONTACTS
    after = members(book)
    contacts_part, table_part = "xl/worksheets/sheet1.xml", "xl/tables/table1.xml"
    assert set(after) == set(before)
    # Only the Contacts sheet, its table and (a quote-prefixed phone format) styles change;
    # every other member is the same, down to its compressed bytes — except the Calls
    # sheet and its relationships, which the Calls writer deflates afresh with every save
    # of the book: their content is the same.
    changed = {n for n in after if after[n][1] != before[n][1]}
    calls_parts = {"xl/worksheets/sheet3.xml", "xl/worksheets/_rels/sheet3.xml.rels"}
    assert changed - {contacts_part, table_part, "xl/styles.xml"} <= calls_parts
    for name in after:
        if name not in (contacts_part, table_part, "xl/styles.xml"):
            assert after[name][2] == before[name][2], name
    assert b'ref="A1:E4"' in after[table_part][2]
    for name in (contacts_part, table_part, "xl/styles.xml"):
        assert validate(name, after[name][2]) == [], name
    # the agent's status counts the new contact
    assert ApiClient.discover(workbook=book).get("/status")["contacts"] == 3


def test_refusals_name_the_reason_and_leave_the_book_alone(agent, book):
    before = members(book)
    api = ApiClient.discover(workbook=book, timeout=30)

    def refused(number: str, owner: str = "Anna Smirnova") -> str:
        with pytest.raises(UserError) as exc:
            api.post("/contacts", {"number": number, "name": "X", "owner": owner})
        return exc.value.text.en

    assert "not a phone number" in refused("call me")
    # a 7-digit local number with a 3-digit area code; 6 digits do not complete it
    assert "area code 343" in refused("555-00-0")
    assert "internal extension" in refused("102")
    owner = refused(NEW, owner="Vera Petrova")
    assert "not on the Managers sheet" in owner
    assert "Anna Smirnova (101)" in owner and "Boris Ivanov (102)" in owner
    assert "already a contact: Olga Sidorova (row 3" in refused("+79125554433")
    assert "already a contact: Ivan Petrov" in refused("011-22-33")  # local, area code 343
    assert members(book) == before
    # the CLI: one clean line, exit 2, in either language
    done = cli("contact", "add", "+79125554433", "--name", "X", "--owner", "101",
               "-w", str(book), lang="ru")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "уже есть в контактах: Olga Sidorova" in done.stderr
    assert members(book) == before


def test_append_to_a_users_own_contacts_sheet(tmp_path):
    """A sheet openpyxl wrote (shared strings, Russian headers in another order under a
    title, a styled row): the row goes below the last used one and looks like it."""
    from openpyxl import Workbook

    from pz_excel.books.contacts_append import ContactAppend
    from pz_excel.books.filebook import FileBook

    wb = Workbook()
    ws = wb.active
    ws.title = "Контакты"
    ws.append(["Наши клиенты"])
    ws.append(["Ответственный", "Имя", "Заметки", "Телефон"])
    ws.append(["Анна", "ООО Ромашка", "давний клиент", "+7 343 011-22-33"])
    ws["D3"].number_format = "@"
    ws.append([])
    ws.append(["", "", "note far below"])
    path = tmp_path / "own.xlsx"
    wb.save(path)
    book = FileBook(path, lang="ru")
    writer = ContactAppend("Сергей", "+7 922 111-22-33", "Анна")
    book.write_parts(writer)
    assert writer.row == 6  # below the note: nothing a user wrote is overwritten
    rows = contacts_rows(path, "Контакты")
    assert rows[4][:3] == (None, None, "note far below")
    assert rows[5][:4] == ("Анна", "Сергей", None, "+7 922 111-22-33")
    check = load_workbook(path)["Контакты"]
    assert check["D6"].number_format == "@" and check["D6"].quotePrefix
    from pz_excel.crm.contacts import load_index

    assert load_index(path).lookup("89221112233").name == "Сергей"


def test_an_extension_is_an_owner_as_it_is(agent, book):
    """Owner cells may hold an extension (routing reads them so; the drop-down allows it):
    contact add takes one even when Managers does not list it."""
    api = ApiClient.discover(workbook=book, timeout=30)
    done = api.post("/contacts", {"number": NEW, "name": "Пётр", "owner": "105"})
    assert (done["owner"], done["extension"]) == ("105", "105")
    with pytest.raises(UserError):
        api.post("/contacts", {"number": "8 922 111-22-44", "name": "X", "owner": "1234567"})
