"""Rules that live once and are shared by both .xlsx readers: the header finder, the text of
a cell, shared strings and rich text (issue "One house")."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

import pytest
from openpyxl import load_workbook

from pz_excel.books.filebook import FileBook
from pz_excel.crm.contacts import build_index, load_index
from pz_excel.crm.schema import CALLS, CONTACTS, CallRow, cell_text
from pz_excel.i18n import UserError
from pz_excel.xlsx.header import HeaderNotFound, find_header
from pz_excel.xlsx.reader import shared_strings
from pz_excel.xlsx.xmltext import rich_text

from .test_contacts import write_book

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


# ---------------------------------------------------------------------- find_header


def test_header_names_compare_without_case_and_runs_of_spaces():
    rows = [(1, {0: "My calls"}), (3, {2: "  call  id ", 5: "CLIENT   phone", 7: "x"})]
    header, cols, lang = find_header(rows, {"call_id": ("Call ID", "ID звонка"),
                                            "client_phone": ("Client phone", "Телефон клиента")},
                                     ["call_id"])
    assert (header, cols, lang) == (3, {"call_id": 2, "client_phone": 5}, "en")


def test_header_language_is_the_majority_and_none_on_a_tie():
    names = CONTACTS.header_names
    rows = [(1, {0: "Имя", 1: "Телефон", 2: "Owner"})]
    assert find_header(rows, names, CONTACTS.required)[2] == "ru"
    rows = [(1, {0: "Имя", 1: "Phone", 2: "Owner", 3: "Компания"})]
    assert find_header(rows, names, CONTACTS.required)[2] is None


def test_header_is_the_first_complete_row_and_the_closest_names_what_is_missing():
    names, required = CONTACTS.header_names, CONTACTS.required
    rows = [(1, {0: "Name"}), (2, {0: "Name", 1: "Phone", 2: "Owner"})]
    assert find_header(rows, names, required)[:2] == (2, {"name": 0, "phone": 1, "owner": 2})
    with pytest.raises(HeaderNotFound) as exc:
        find_header([(1, {0: "Title"}), (2, {0: "Name", 1: "Phone"})], names, required)
    assert exc.value.missing == ["owner"]
    with pytest.raises(HeaderNotFound) as exc:
        find_header([], names, required)
    assert exc.value.missing == ["name", "phone", "owner"]


def test_header_window_is_the_first_ten_rows_that_have_a_value():
    names, required = CONTACTS.header_names, CONTACTS.required
    head = {0: "Name", 1: "Phone", 2: "Owner"}
    empty = [(n, {}) for n in range(1, 30)]
    assert find_header([*empty, (30, head)], names, required)[0] == 30
    titles = [(n, {0: f"note {n}"}) for n in range(1, 11)]
    with pytest.raises(HeaderNotFound):
        find_header([*titles, (11, head)], names, required)


def test_contacts_reader_finds_a_header_typed_with_other_case_and_spaces(tmp_path):
    head = ["  NAME", "phone  ", "Owner", "COMPANY"]
    rows = [["Client list"], head, ["Ivan", "+7 343 011-22-33", "101", "Uralmash"]]
    path = write_book(tmp_path / "crm.xlsx", {"Contacts": rows,
                                              "Managers": [["owner", "EXTENSION"], ["A", 101]]})
    found = load_index(path).lookup("73430112233")
    assert (found.row, found.name, found.company) == (3, "Ivan", "Uralmash")
    assert build_index(rows).lookup("73430112233").row == 3  # the in-memory path agrees


def test_contacts_reader_names_the_missing_column(tmp_path):
    path = write_book(tmp_path / "crm.xlsx", {"Contacts": [["Name", "Phone"]]})
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert "'Owner' (Ответственный)" in exc.value.text.en


def test_calls_writer_finds_a_header_typed_with_other_case_and_spaces(tmp_path):
    typed = [c.en.upper().replace(" ", "  ") if i % 2 else c.en.lower()
             for i, c in enumerate(CALLS.columns)]  # "CALL  ID" … "client phone" …
    path = write_book(tmp_path / "crm.xlsx", {"Contacts": [["Name", "Phone", "Owner"]],
                                              "Calls": [["Today's calls"], typed]})
    FileBook(path).write_calls([CallRow("c-1", direction="incoming", status="missed",
                                        client_phone="73430112233", duration=7)])
    ws = load_workbook(path)["Calls"]
    assert [c.value for c in ws[2]] == typed  # the user's header is left as typed
    row = {h.strip().casefold(): c.value for h, c in zip(typed, ws[3], strict=False)}
    assert row["call id"] == "c-1" and row["status"] == "missed" and row["duration  (s)"] == 7


# ---------------------------------------------------------------------- cell_text


def test_cell_text_is_what_excel_shows():
    assert cell_text(True) == "TRUE" and cell_text(False) == "FALSE"
    assert cell_text(1234.0) == "1234" and cell_text(12.5) == "12.5" and cell_text(7) == "7"
    assert cell_text(None) == "" and cell_text("  a b ") == "a b"
    assert cell_text("a_x000D_b") == "a\rb"  # how a file stores a control character
    assert cell_text(date(2024, 3, 1)) == "2024-03-01"
    assert cell_text(datetime(2024, 3, 1, 10, 5)) == "2024-03-01T10:05:00"


def test_contacts_reader_reads_a_boolean_owner_as_excel_shows_it():
    index = build_index([["Name", "Phone", "Owner"], ["Ivan", "83430112233", True]])
    assert index.lookup("73430112233").owner == "TRUE"


# ---------------------------------------------------------------------- strings


def sst_zip(items: list[str]) -> zipfile.ZipFile:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("xl/sharedStrings.xml", f'<?xml version="1.0" encoding="UTF-8"?>'
                    f'<sst xmlns="{MAIN}">{"".join(items)}</sst>')
    return zipfile.ZipFile(data)


def test_shared_strings_whole_table_or_only_the_wanted_ones():
    items = ["<si><t>a &amp; b</t></si>", "<si><t>two</t></si>", "<si/>",
             "<si><r><t>ri</t></r><r><rPr><b/></rPr><t>ch</t></r><rPh><t>x</t></rPh></si>",
             "<si><t>last</t></si>"]
    zf = sst_zip(items)
    info = zf.getinfo("xl/sharedStrings.xml")
    assert shared_strings(zf, info, "b.xlsx") == ["a & b", "two", "", "rich", "last"]
    assert shared_strings(zf, info, "b.xlsx", {0, 3}) == ["a & b", "", "", "rich"]
    assert shared_strings(zf, info, "b.xlsx", set()) == []


def test_rich_text_plain_runs_and_prefixes():
    assert rich_text(b"<t>x &lt; y</t>") == "x < y"
    assert rich_text(b'<r><t xml:space="preserve"/></r><r><t> a</t></r>') == " a"
    prefixed = (b'<x:si xmlns:x="u"><x:r><x:t>A</x:t></x:r><x:t>B</x:t>'
                b"<x:rPh><x:t>Z</x:t></x:rPh></x:si>")
    assert rich_text(prefixed) == "AB"
