"""The CRM workbook template, read back with openpyxl as Excel would see it."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from openpyxl import load_workbook

from pz_excel.books.settings import read_settings_sheet
from pz_excel.books.template import (
    DEMO_MANAGERS,
    demo_contacts,
    write_contacts_fast,
    write_template,
)
from pz_excel.crm.contacts import load_index
from pz_excel.crm.schema import CALLS, CONTACTS, MANAGERS, SETTING_ROWS, SETTINGS, CallRow
from pz_excel.i18n import UserError

PEOPLE = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash", "VIP"),
    ("Olga", 89125554433, "Anna Smirnova", None),
]
CALL = CallRow(
    "470667154161667",
    "incoming",
    "completed",
    "73430112233",
    "Ivan Petrov",
    "101",
    "101",
    datetime(2024, 3, 1, 9, 30, 5),
    datetime(2024, 3, 1, 9, 31, 45),
    100,
    "http://rec.example/1.mp3",
    "1",
    True,
)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_sheets_tables_headers_and_layout(tmp_path, lang):
    path = write_template(
        tmp_path / "crm.xlsx",
        lang,
        contacts=PEOPLE,
        managers=[("Anna Smirnova", 101)],
        calls=[CALL],
        settings={"server": "wss://pbx.example:10150", "phone": "101"},
    )
    wb = load_workbook(path)
    assert wb.sheetnames == [s.title(lang) for s in (CONTACTS, MANAGERS, CALLS, SETTINGS)]
    for sheet, rows in ((CONTACTS, 2), (MANAGERS, 1), (CALLS, 1), (SETTINGS, len(SETTING_ROWS))):
        ws = wb[sheet.title(lang)]
        headers = [col.header(lang) for col in sheet.columns]
        assert [c.value for c in ws[1]] == headers
        assert ws.freeze_panes == "A2"
        assert list(ws.tables) == [sheet.en]  # ASCII table names in both languages
        table = ws.tables[sheet.en]
        assert table.tableStyleInfo.name == "TableStyleMedium2"
        assert table.ref == f"A1:{chr(64 + len(headers))}{rows + 1}"
        assert [c.name for c in table.tableColumns] == headers
        assert ws.column_dimensions["A"].width == sheet.columns[0].width
    contacts = wb[CONTACTS.title(lang)]
    phone = contacts["B2"]
    assert (phone.value, phone.data_type, phone.number_format) == ("+7 (343) 011-22-33", "s", "@")
    assert (contacts["B3"].value, contacts["B3"].data_type) == ("89125554433", "s")
    assert contacts.column_dimensions["B"].number_format == "@"  # for rows typed later
    assert contacts["E2"].value == "VIP" and contacts["D3"].value is None
    ext = wb[MANAGERS.title(lang)]["B2"]
    assert (ext.value, ext.data_type) == ("101", "s")
    calls = wb[CALLS.title(lang)]
    start, end = calls["H2"], calls["I2"]
    assert start.value == datetime(2024, 3, 1, 9, 30, 5) and start.is_date
    assert (end.value - start.value).total_seconds() == 100
    assert start.number_format == ("dd.mm.yyyy hh:mm:ss" if lang == "ru" else "yyyy-mm-dd hh:mm:ss")
    assert calls["D2"].data_type == "s" and calls["J2"].value == 100
    assert calls["K2"].hyperlink.target == "http://rec.example/1.mp3"
    assert calls["B2"].value == ("входящий" if lang == "ru" else "incoming")
    assert calls["M2"].value == ("да" if lang == "ru" else "yes")
    settings = wb[SETTINGS.title(lang)]
    labels = [settings.cell(r, 1).value for r in range(2, 2 + len(SETTING_ROWS))]
    assert labels == [pair[1 if lang == "ru" else 0] for pair in SETTING_ROWS.values()]
    assert read_settings_sheet(path) == {"server": "wss://pbx.example:10150", "phone": "101"}
    assert settings["B3"].data_type == "s"
    # and the agent's reader understands the result
    index = load_index(path)
    assert index.lookup("83430112233").company == "Uralmash"
    assert index.owner_extension(index.lookup("79125554433").owner) == "101"


def test_empty_template_is_still_a_valid_table_book(tmp_path):
    path = write_template(tmp_path / "empty.xlsx")
    wb = load_workbook(path)
    assert wb["Contacts"].tables["Contacts"].ref == "A1:E2"  # a table needs one body row
    assert wb["Calls"].tables["Calls"].ref == "A1:M2" and wb["Calls"]["A2"].value is None
    index = load_index(path)
    assert len(index) == 0 and index.managers == {} and index.warnings == []
    assert read_settings_sheet(path) == {}


def test_refuses_to_overwrite_without_force(tmp_path):
    path = write_template(tmp_path / "crm.xlsx", contacts=PEOPLE)
    before = path.read_bytes()
    with pytest.raises(UserError) as exc:
        write_template(path, "ru")
    assert "already exists; use --force" in exc.value.text.en
    assert "уже существует" in exc.value.text.ru
    assert path.read_bytes() == before
    write_template(path, "ru", force=True)
    assert load_workbook(path).sheetnames[0] == "Контакты"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.xlsx"]  # no temp file left


def test_text_that_looks_like_a_formula_stays_text(tmp_path):
    people = [('=HYPERLINK("http://x","y")', "+7 343 011-22-33", "=1+1", "-Co-", "@note")]
    path = write_template(tmp_path / "f.xlsx", contacts=people, managers=[("=A1", "101")])
    ws = load_workbook(path)["Contacts"]
    for ref in ("A2", "C2", "D2", "E2"):
        assert ws[ref].data_type == "s" and ws[ref].quotePrefix, ref
    assert ws["A2"].value.startswith("=HYPERLINK")
    assert ws["B2"].data_type == "s" and not ws["B2"].quotePrefix  # a text column anyway
    fast = write_contacts_fast(tmp_path / "fast.xlsx", 1)
    assert load_workbook(fast)["Contacts"]["A2"].data_type == "s"
    index = load_index(path)
    assert index.lookup("73430112233").owner == "=1+1"
    assert index.managers == {"=a1": "101"}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="password"):
        write_template(tmp_path / "a.xlsx", settings={"password": "secret"})
    assert not (tmp_path / "a.xlsx").exists()
    with pytest.raises(UserError) as exc:
        write_template(tmp_path / "a.xls")
    assert ".xlsx" in exc.value.text.en
    with pytest.raises(UserError):
        write_template(tmp_path / "a.xlsx", lang="de")


def test_new_file_gets_normal_permissions_and_parent_folders(tmp_path):
    path = write_template(tmp_path / "team" / "shared" / "crm.xlsx")
    umask = os.umask(0)
    os.umask(umask)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_demo_contacts_are_realistic_and_deterministic():
    people = demo_contacts(2000, DEMO_MANAGERS, seed=7)
    assert people == demo_contacts(2000, DEMO_MANAGERS, seed=7)
    assert people != demo_contacts(2000, DEMO_MANAGERS, seed=8)
    assert all(len(p) == 4 for p in people)
    names = [p[0] for p in people]
    assert all(any("а" <= ch <= "я" for ch in n) for n in names)
    from pz_excel.crm.phones import normalize

    keys = [normalize(p[1]) for p in people]
    assert None not in keys and len(set(keys)) == len(keys)  # every number distinct
    assert "79990000000" not in keys  # the demo's stranger stays a stranger
    owners = [p[2] for p in people]
    manager_names = {m[0] for m in DEMO_MANAGERS}
    assert sum(o in manager_names for o in owners) > 1500
    assert any(o in {"101", "102", "103"} for o in owners) and None in owners
    assert len({p[3] for p in people}) > 100


def test_write_contacts_fast_reads_back(tmp_path):
    path = write_contacts_fast(tmp_path / "bench.xlsx", 500, seed=2)
    wb = load_workbook(path, read_only=False)
    ws = wb["Contacts"]
    assert ws.tables["Contacts"].ref == "A1:E501" and ws.freeze_panes == "A2"
    assert ws.column_dimensions["B"].number_format == "@" and ws["B2"].data_type == "s"
    index = load_index(path)
    assert len(index) == 500 and index.warnings == []
    assert set(index.managers.values()) == {"101", "102", "103"}


def test_settings_sheet_typed_by_hand_numbers_and_russian_labels(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Настройки"
    for row in [["Параметр", "Значение"], ["  адрес сервера ", "ws://pbx:10150"],
                ["Добавочный номер", 101], [None, "orphan"], ["unknown label", "x"]]:
        ws.append(row)
    wb.save(tmp_path / "ru.xlsx")
    assert read_settings_sheet(tmp_path / "ru.xlsx") == {"server": "ws://pbx:10150", "phone": "101"}
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    with pytest.raises(UserError):
        read_settings_sheet(tmp_path / "bad.xlsx")


# ---------------------------------------------------------------------- the Owner drop-down


@pytest.mark.parametrize(("lang", "source"), [("en", "'Managers'!$A$2:$A$1000"),
                                              ("ru", "'Менеджеры'!$A$2:$A$1000")])
def test_owner_column_offers_the_managers_names(tmp_path, lang, source):
    path = write_template(tmp_path / "crm.xlsx", lang, contacts=PEOPLE, managers=DEMO_MANAGERS)
    wb = load_workbook(path)
    (choice,) = wb[CONTACTS.title(lang)].data_validations.dataValidation
    assert (choice.type, choice.formula1, str(choice.sqref)) == ("list", source, "C2:C1048576")
    assert wb[MANAGERS.title(lang)]["A2"].value == DEMO_MANAGERS[0][0]  # what the list shows
    # An extension typed instead is a valid owner too: a note to accept, never a refusal.
    assert choice.allow_blank and choice.errorStyle == "information"
    assert ("Менеджеры" if lang == "ru" else "Managers") in choice.error
    fast = load_workbook(write_contacts_fast(tmp_path / "fast.xlsx", 3, lang=lang))
    choices = fast[CONTACTS.title(lang)].data_validations.dataValidation
    assert [v.formula1 for v in choices] == [source]


def test_every_template_part_validates_against_the_ooxml_schemas(tmp_path):
    import zipfile

    from tests.ooxml_schema import validate

    for lang in ("en", "ru"):
        path = write_template(tmp_path / f"{lang}.xlsx", lang, contacts=PEOPLE, calls=[CALL])
        with zipfile.ZipFile(path) as zf:
            # docProps/core.xml is Dublin Core: the schemas here do not cover it
            parts = {n: zf.read(n) for n in zf.namelist()
                     if n.endswith((".xml", ".rels")) and n != "docProps/core.xml"}
        assert b"<dataValidations" in parts["xl/worksheets/sheet1.xml"]
        for name, data in parts.items():
            assert validate(name, data) == [], (lang, name)


def test_owner_list_survives_a_libreoffice_round_trip(tmp_path):
    from tests.kitchen_sink import SOFFICE_MISSING, XLSX_FILTER, run_soffice, soffice

    if soffice() is None:
        pytest.skip(SOFFICE_MISSING)
    path = write_template(tmp_path / "crm.xlsx", "ru", managers=DEMO_MANAGERS)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_soffice(["--convert-to", XLSX_FILTER, "--outdir", str(out), str(path)], cwd=out)
    saved = out / "crm.xlsx"
    assert proc.returncode == 0 and saved.is_file(), proc.stderr
    (choice,) = load_workbook(saved)["Контакты"].data_validations.dataValidation
    assert choice.type == "list" and "C2" in str(choice.sqref)
    assert choice.formula1.replace("'", "").replace("$", "") == "Менеджеры!A2:A1000"


# ---------------------------------------------------------------------- Settings help


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_every_setting_has_help_in_the_books_language(tmp_path, lang):
    from pz_excel.crm.schema import SETTING_HELP

    path = write_template(tmp_path / "crm.xlsx", lang, settings={"phone": "101"})
    ws = load_workbook(path)[SETTINGS.title(lang)]
    assert ws["C1"].value == ("Подсказка" if lang == "ru" else "Help")
    assert ws.tables["Settings"].ref == f"A1:C{1 + len(SETTING_ROWS)}"
    assert set(SETTING_HELP) == set(SETTING_ROWS)  # every row explained
    for row, key in enumerate(SETTING_ROWS, start=2):
        text = ws.cell(row, 3).value
        assert text == SETTING_HELP[key][1 if lang == "ru" else 0]
        cyrillic = any("а" <= ch <= "я" for ch in text.lower())
        assert cyrillic == (lang == "ru"), text
        assert "e.g." in text or "например" in text, text  # an example
        assert f"--{key.replace('_', '-')}" in text, text  # where else it can be given
    assert read_settings_sheet(path) == {"phone": "101"}  # help is never a value
