"""Shared strings read only as far as they are needed (xlsx/reader.py): Excel keeps a small
sheet's strings after a million contacts', and a warm start must not decode those."""

from __future__ import annotations

import zipfile

import pytest
from openpyxl import Workbook

from bench._util import to_shared_strings
from pz_excel.crm.contacts import read_small_sheet
from pz_excel.crm.schema import SETTINGS
from pz_excel.xlsx import reader


@pytest.fixture
def book(tmp_path, monkeypatch):
    """Contacts with 6 000 distinct strings first, then a Settings sheet whose strings come
    last in the shared table (as Excel orders it); chunks made small so the table spans
    many of them."""
    monkeypatch.setattr(reader, "CHUNK_BYTES", 16 << 10)
    wb = Workbook()
    ws = wb.active
    ws.title = "Contacts"
    ws.append(["Name", "Phone", "Owner"])
    for i in range(6000):
        ws.append([f"Client number {i}", f"+7 343 {i:07d}", f"Owner {i}"])
    settings = wb.create_sheet(SETTINGS.names[0])
    settings.append(["Server", "ws://pbx.office:10150"])
    settings.append(["Extension", "101"])
    inline = tmp_path / "inline.xlsx"
    wb.save(inline)  # openpyxl writes inline strings: made into Excel's shared table
    return to_shared_strings(inline, tmp_path / "crm.xlsx")


def test_wanted_strings_only_and_in_place(book):
    with zipfile.ZipFile(book) as zf:
        info = zf.getinfo("xl/sharedStrings.xml")
        whole = reader.shared_strings(zf, info, "crm.xlsx")
        last = len(whole) - 1
        some = reader.shared_strings(zf, info, "crm.xlsx", {3, 4000, last})
    assert len(whole) > 18000
    assert some[3] == whole[3] and some[4000] == whole[4000] and some[last] == whole[last]
    assert some[5] == "" and some[10000] == ""  # not wanted: not decoded


def test_a_small_sheet_after_the_contacts_reads_right(book):
    rows = read_small_sheet(book, SETTINGS)
    assert rows == [(1, {0: "Server", 1: "ws://pbx.office:10150"}),
                    (2, {0: "Extension", 1: "101"})]
