"""Contacts and Managers from real .xlsx files (written with openpyxl, our template, or by
hand as Excel would), read back by header name; the watcher on real file changes."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from pz_excel.books.template import demo_contacts, write_contacts_fast, write_template
from pz_excel.crm.contacts import (
    Contact,
    ContactsWatcher,
    build_index,
    load_index,
    name_key,
    workbook_fingerprint,
)
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx import reader
from tests.conftest import wait_until

MANAGERS = [("Anna Smirnova", "101"), ("Борис Иванов", "102"), ("Алёна Ёлкина", "103")]
PEOPLE = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),
    ("Ольга Сидорова", "8 912 555 44 33", " борис  иванов ", "Роза"),
    ("No Owner", "79120000001", "", "Nobody"),
    ("Ghost", "79120000002", "Somebody Unknown", "Ghost Inc"),
    ("Елена", "8 343 222-33-44", "алена елкина", ""),
]


def write_book(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A workbook laid out by hand with openpyxl (normal mode), as a user would make it."""
    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


@pytest.fixture
def book(tmp_path):
    return write_template(tmp_path / "crm.xlsx", contacts=PEOPLE, managers=MANAGERS)


# ---------------------------------------------------------------------- reading


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_template_round_trip_in_both_languages(tmp_path, lang):
    path = write_template(tmp_path / f"{lang}.xlsx", lang, contacts=PEOPLE, managers=MANAGERS)
    index = load_index(path)
    assert len(index) == 5 and index.phone_count == 5
    assert index.warnings == []
    ivan = index.lookup("83430112233")
    assert ivan == Contact(2, "Ivan Petrov", "73430112233", "101", "Uralmash")
    for form in ("+7 343 011 22 33", "73430112233", 73430112233.0, "3430112233"):
        assert index.lookup(form) == ivan
    assert index.lookup("+7 912 555-44-33").name == "Ольга Сидорова"
    assert index.lookup("79990001122") is None and index.lookup("not a number") is None
    assert index.managers == {"anna smirnova": "101", "борис иванов": "102", "алена елкина": "103"}
    assert index.source == path and index.mtime == path.stat().st_mtime
    assert [c.row for c in index.contacts] == [2, 3, 4, 5, 6]
    assert next(iter(index)) == ivan and index.contacts[-1].name == "Елена"


def test_owner_extension_by_digits_and_by_name(book):
    index = load_index(book)
    assert index.owner_extension("101") == "101"
    assert index.owner_extension(" 104 ") == "104"  # an extension need not be in Managers
    assert index.owner_extension(104.0) == "104"
    assert index.owner_extension("БОРИС   ИВАНОВ") == "102"
    assert index.owner_extension(" борис  иванов ") == "102"
    assert index.owner_extension("Алена Елкина") == "103"  # ё and е are one letter here
    assert index.owner_extension("anna smirnova") == "101"
    assert index.owner_extension("Petrov") is None
    assert index.owner_extension("") is None and index.owner_extension(None) is None
    assert name_key("  Алёна   ЁЛКИНА ") == "алена елкина"


def test_shuffled_columns_extra_columns_and_title_rows(tmp_path):
    path = write_book(
        tmp_path / "mine.xlsx",
        {
            "Notes": [["not the contacts"]],
            "контакты": [  # sheet names compare case-insensitively
                ["Клиенты отдела продаж"],
                [],
                ["Выгрузка от 01.03.2024", None, "по менеджерам"],
                [None, "Регион", "ОТВЕТСТВЕННЫЙ", "Мой столбец", " Телефон ", "Имя", "Компания"],
                [None, "Урал", "101", "x", "+7 343 011-22-33", "Иван Петров", "Уралмаш"],
                [None, "Сибирь", "Борис Иванов", "y", 89125554433, "Ольга", None],
                [None, None, None, None, None, None, None],
                [None, "Юг", "", "z", "8 912 000-00-01", "Без ответственного", "ООО"],
            ],
            "Менеджеры": [["Добавочный", "Ответственный"], ["102", "Борис Иванов"]],
        },
    )
    index = load_index(path)
    assert index.warnings == []
    assert index.lookup("73430112233") == Contact(5, "Иван Петров", "73430112233", "101", "Уралмаш")
    olga = index.lookup("+7 912 555 44 33")
    assert (olga.row, olga.name, olga.company) == (6, "Ольга", "")
    assert index.owner_extension(olga.owner) == "102"
    assert index.lookup("89120000001").owner == ""
    assert len(index) == 3


def test_header_below_many_empty_rows(tmp_path):
    empty = "".join(f'<row r="{i}"></row>' for i in range(1, 40))  # rows with no cells
    rows = empty + (
        '<row r="40"><c r="A40" t="inlineStr"><is><t>Name</t></is></c>'
        '<c r="B40" t="inlineStr"><is><t>Phone</t></is></c>'
        '<c r="C40" t="inlineStr"><is><t>Owner</t></is></c></row>'
        '<row r="41"><c r="A41" t="inlineStr"><is><t>Ivan</t></is></c>'
        '<c r="B41" t="inlineStr"><is><t>83430112233</t></is></c>'
        '<c r="C41" t="inlineStr"><is><t>101</t></is></c></row>'
    )
    path = raw_xlsx(tmp_path / "gaps.xlsx", [("Contacts", sheet_xml(rows))])
    assert load_index(path).lookup("73430112233").row == 41


def test_header_must_be_within_the_first_ten_rows(tmp_path):
    rows = [[f"title {i}"] for i in range(10)] + [["Name", "Phone", "Owner"], ["a", "101", "1"]]
    path = write_book(
        tmp_path / "deep.xlsx", {"Contacts": rows, "Managers": [["Owner", "Extension"]]}
    )
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert "'Name' (Имя), 'Phone' (Телефон), 'Owner' (Ответственный)" in exc.value.text.en


def test_missing_sheet_names_it_in_both_languages(tmp_path):
    path = write_book(tmp_path / "book.xlsx", {"Clients": [["Name", "Phone", "Owner"]]})
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert exc.value.text.en == "sheet 'Contacts' (Контакты) not found in book.xlsx"
    assert exc.value.text.ru == "лист «Контакты» (Contacts) не найден в книге book.xlsx"
    assert exc.value.exit_code == 2


def test_missing_column_names_it_in_both_languages(tmp_path):
    path = write_book(
        tmp_path / "book.xlsx",
        {
            "Contacts": [["Name", "Phone", "Company"], ["a", "83430112233", "c"]],
            "Managers": [["Owner", "Extension"]],
        },
    )
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert exc.value.text.en.startswith(
        "column 'Owner' (Ответственный) missing in sheet 'Contacts'"
    )
    assert exc.value.text.ru.startswith("в листе «Contacts» нет столбца «Ответственный» (Owner)")


def test_managers_sheet_problems(tmp_path):
    path = write_book(
        tmp_path / "book.xlsx",
        {
            "Contacts": [["Name", "Phone", "Owner"], ["a", "83430112233", "Boris"]],
            "Managers": [["Owner"], ["Boris"]],
        },
    )
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert "'Extension' (Добавочный) missing in sheet 'Managers'" in exc.value.text.en

    path = write_book(
        tmp_path / "no-managers.xlsx",
        {"Contacts": [["Name", "Phone", "Owner"], ["a", "83430112233", "101"]]},
    )
    index = load_index(path)  # owners by extension still work
    assert index.owner_extension(index.lookup("83430112233").owner) == "101"
    assert "sheet 'Managers' (Менеджеры) not found" in index.warnings[0].en

    path = write_book(
        tmp_path / "bad-managers.xlsx",
        {
            "Contacts": [["Name", "Phone", "Owner"]],
            "Managers": [
                ["Owner", "Extension"],
                ["Anna", "ext 1"],
                [None, "104"],
                ["Boris", 102.0],
                ["boris", "105"],
                [None, None],
            ],
        },
    )
    index = load_index(path)
    assert index.managers == {"boris": "102"}
    assert [w.en for w in index.warnings] == [
        "Managers!B2: 'ext 1' is not an extension (digits) for Anna",
        "Managers!A3: extension 104 has no owner name",
        "Managers!B5: boris is listed twice; extension 102 is used",
    ]


def test_bad_phone_cells_are_warnings_not_errors(tmp_path):
    path = write_book(
        tmp_path / "book.xlsx",
        {
            "Contacts": [
                ["Name", "Phone", "Owner"],
                ["ok", "83430112233", "101"],
                ["typo", "call me", "101"],
                ["date", "12.03.2024", "101"],
                ["no phone", None, "101"],
                ["two", "8 912 555 44 33, +7 343 222-33-44", "102"],
                ["three", "8 912 000 00 01; 101; oops", "102"],
                ["dup", "+7 (343) 011-22-33", "103"],
            ],
            "Managers": [["Owner", "Extension"]],
        },
    )
    index = load_index(path)
    assert [w.en for w in index.warnings] == [
        "Contacts!B3: 'call me' is not a phone number",
        "Contacts!B4: '12.03.2024' is not a phone number",
        "Contacts!B7: 'oops' is not a phone number",
        "Contacts!B8: +7 343 011-22-33 is also in row 2 (ok); row 2 is used",
    ]
    assert index.warnings[0].ru == "Contacts!B3: «call me» — не номер телефона"
    two = index.lookup("89125554433")
    assert two is index.lookup("73432223344") or two == index.lookup("73432223344")
    assert two.phone == "79125554433, 73432223344"
    three = index.lookup("101")
    assert three.name == "three" and index.lookup("89120000001").name == "three"
    assert index.lookup("83430112233").name == "ok"
    assert [c.name for c in index] == ["ok", "two", "three", "dup"]


def test_not_a_workbook(tmp_path):
    with pytest.raises(UserError) as exc:
        load_index(tmp_path / "missing.xlsx")
    assert "workbook not found" in exc.value.text.en and "книга не найдена" in exc.value.text.ru
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(UserError) as exc:
        load_index(junk)
    assert "not an .xlsx workbook" in exc.value.text.en
    with pytest.raises(UserError) as exc:
        load_index(tmp_path / "old.xls")
    assert "save it as .xlsx" in exc.value.text.en


# ---------------------------------------------------------------------- hand-made XML

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def raw_xlsx(path: Path, sheets: list[tuple[str, str]], sst: str | None = None) -> Path:
    """An .xlsx assembled part by part, for shapes openpyxl never writes but Excel and
    other tools do (shared strings, rich text, prefixes, missing refs…)."""
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, len(sheets) + 1)
    )
    if sst is not None:
        rels += f'<Relationship Id="rIdS" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
    sheet_list = "".join(
        f'<sheet name="{title}" sheetId="{i}" r:id="rId{i}"/>'
        for i, (title, _) in enumerate(sheets, 1)
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr(
            "_rels/.rels",
            (
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/>'
                "</Relationships>"
            ),
        )
        zf.writestr(
            "xl/workbook.xml",
            (f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>{sheet_list}</sheets></workbook>'),
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            (
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                f"{rels}</Relationships>"
            ),
        )
        for i, (_, xml) in enumerate(sheets, 1):
            zf.writestr(f"xl/worksheets/sheet{i}.xml", xml)
        if sst is not None:
            zf.writestr("xl/sharedStrings.xml", sst)
    return path


def sheet_xml(rows: str, prefix: str = "") -> str:
    p = f"{prefix}:" if prefix else ""
    ns = f'xmlns:{prefix}="{MAIN}"' if prefix else f'xmlns="{MAIN}"'
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<{p}worksheet {ns} xmlns:r="{REL}" xmlns:x14ac="urn:x14ac">'
        f"<{p}sheetData>{rows}</{p}sheetData></{p}worksheet>"
    )


MANAGERS_XML = sheet_xml(
    '<row r="1"><c r="A1" t="inlineStr"><is><t>Owner</t></is></c>'
    '<c r="B1" t="inlineStr"><is><t>Extension</t></is></c></row>'
    '<row r="2"><c r="A2" t="inlineStr"><is><t>Борис Иванов</t></is></c>'
    '<c r="B2"><v>102</v></c></row>'
)


def test_excel_shaped_file_shared_strings_rich_text_formulas(tmp_path):
    sst = (
        f'<sst xmlns="{MAIN}" count="9" uniqueCount="9">'
        "<si><t>Name</t></si><si><t>Phone</t></si><si><t>Owner</t></si>"
        "<si><t>Company</t></si>"
        "<si><t>Ivan Petrov</t></si>"  # 4
        "<si><t>Рога &amp; Копыта</t></si>"  # 5
        '<si><r><t>Ольга</t></r><r><rPr><b/></rPr><t xml:space="preserve"> Сидорова</t>'
        '</r><rPh sb="0" eb="1"><t>IGNORED</t></rPh></si>'  # 6: rich text
        "<si><t>+7 (343) 011-22-33</t></si>"  # 7
        "<si><t>Борис Иванов</t></si>"  # 8
        "</sst>"
    )
    rows = (
        '<row r="1" spans="1:4" x14ac:dyDescent="0.25"><c r="A1" t="s"><v>0</v></c>'
        '<c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c>'
        "</row>"
        '<row r="2"><c r="A2" s="1" t="s"><v>4</v></c><c r="B2" t="s"><v>7</v></c>'
        '<c r="C2"><v>101</v></c><c r="D2" t="s"><v>5</v></c></row>'
        '<row r="3"><c r="A3" t="s"><v>6</v></c><c r="B3"><v>79125554433</v></c>'
        '<c r="C3" t="s"><v>8</v></c><c r="D3" s="2"/></row>'
        '<row r="4"><c r="A4" t="str"><f>"Формула "&amp;1</f><v>Формула 1</v></c>'
        '<c r="B4" t="str"><f>"8343"&amp;"2223344"</f><v>83432223344</v></c>'
        '<c r="C4"><f>100+1</f><v>101</v></c></row>'
        '<row r="5"><c r="A5" t="inlineStr"><is><t>Sci</t></is></c>'
        '<c r="B5"><v>7.3433334455E10</v></c><c r="C5" t="e"><v>#N/A</v></c></row>'
    )
    path = raw_xlsx(
        tmp_path / "excel.xlsx", [("Contacts", sheet_xml(rows)), ("Managers", MANAGERS_XML)], sst
    )
    index = load_index(path)
    assert index.warnings == []
    assert list(index) == [
        Contact(2, "Ivan Petrov", "73430112233", "101", "Рога & Копыта"),
        Contact(3, "Ольга Сидорова", "79125554433", "Борис Иванов", ""),
        Contact(4, "Формула 1", "73432223344", "101", ""),
        Contact(5, "Sci", "73433334455", "#N/A", ""),
    ]
    assert index.owner_extension("борис иванов") == "102"
    # what was read is fingerprinted: the contacts sheet, Managers and the strings
    assert [part for part, _, _ in index.fingerprint] == [
        "xl/worksheets/sheet1.xml",
        "xl/worksheets/sheet2.xml",
        "xl/sharedStrings.xml",
    ]
    assert workbook_fingerprint(path) == index.fingerprint


IRREGULAR_ROWS = (
    # attributes in another order, single quotes, no r= on cells or rows, whitespace between
    # elements, CDATA, rich inline text, an empty self-closing row, comments
    '<row r="1">\n  <c t="inlineStr" r="A1"><is><t>Имя</t></is></c>\n'
    "  <c r='B1' t='inlineStr'><is><t>Телефон</t></is></c>\n"
    '  <c r="C1" t="inlineStr"><is><t>Ответственный</t></is></c>\n</row>\n'
    '<row r="2"><c t="inlineStr"><is><t><![CDATA[Ivan & <Co>]]></t></is></c>'
    '<c t="inlineStr"><is><t>+7 343 011-22-33</t></is></c><c><v>101</v></c></row>'
    '<!-- a comment --><row r="3" spans="1:3"/>'
    '<row><c r="A4" t="inlineStr"><is><r><t>Boris</t></r><r><rPr><b/></rPr><t> B.</t></r>'
    '</is></c><c r="B4" t="inlineStr"><is><t>8 912 555 44 33</t></is></c>'
    '<c r="C4" t="inlineStr"><is><t>Борис Иванов</t></is></c></row>'
)
IRREGULAR = [
    Contact(2, "Ivan & <Co>", "73430112233", "101", ""),
    Contact(4, "Boris B.", "79125554433", "Борис Иванов", ""),
]


def test_irregular_xml_goes_through_the_full_parser(tmp_path):
    path = raw_xlsx(
        tmp_path / "odd.xlsx", [("Контакты", sheet_xml(IRREGULAR_ROWS)), ("Managers", MANAGERS_XML)]
    )
    index = load_index(path)
    assert list(index) == IRREGULAR and index.warnings == []


def test_namespace_prefixed_xml(tmp_path):
    rows = (
        IRREGULAR_ROWS.replace("<row", "<x:row")
        .replace("</row", "</x:row")
        .replace("<c ", "<x:c ")
        .replace("<c>", "<x:c>")
        .replace("</c>", "</x:c>")
        .replace("<is>", "<x:is>")
        .replace("</is>", "</x:is>")
        .replace("<t>", "<x:t>")
        .replace("</t>", "</x:t>")
        .replace("<v>", "<x:v>")
        .replace("</v>", "</x:v>")
        .replace("<r>", "<x:r>")
        .replace("</r>", "</x:r>")
        .replace("<rPr>", "<x:rPr>")
        .replace("</rPr>", "</x:rPr>")
        .replace("<b/>", "<x:b/>")
    )
    path = raw_xlsx(
        tmp_path / "prefixed.xlsx",
        [("Contacts", sheet_xml(rows, prefix="x")), ("Managers", MANAGERS_XML)],
    )
    assert list(load_index(path)) == IRREGULAR


def test_hostile_xml_is_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        f'<worksheet xmlns="{MAIN}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>'
        "&lol2;</t></is></c></row></sheetData></worksheet>"
    )
    path = raw_xlsx(tmp_path / "bomb.xlsx", [("Contacts", bomb)])
    with pytest.raises(UserError) as exc:
        load_index(path)
    assert "DTD" in exc.value.text.en
    latin = sheet_xml("").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    with pytest.raises(UserError) as exc:
        load_index(raw_xlsx(tmp_path / "latin.xlsx", [("Contacts", latin)]))
    assert "not UTF-8" in exc.value.text.en
    truncated = sheet_xml('<row r="1"><c r="A1" t="inlineStr"><is><t>Name</t></is></c></row>')
    with pytest.raises(UserError) as exc:
        load_index(raw_xlsx(tmp_path / "cut.xlsx", [("Contacts", truncated[:-40])]))
    assert "ends unexpectedly" in exc.value.text.en


def test_undefined_entity_keeps_the_text(tmp_path):
    rows = (
        '<row r="1"><c r="A1" t="inlineStr"><is><t>Name</t></is></c>'
        '<c r="B1" t="inlineStr"><is><t>Phone</t></is></c>'
        '<c r="C1" t="inlineStr"><is><t>Owner</t></is></c></row>'
        '<row r="2"><c r="A2" t="inlineStr"><is><t>A&nbsp;B &amp; C</t></is></c>'
        '<c r="B2" t="inlineStr"><is><t>101</t></is></c>'
        '<c r="C2" t="inlineStr"><is><t>101</t></is></c></row>'
    )
    path = raw_xlsx(
        tmp_path / "ent.xlsx", [("Contacts", sheet_xml(rows)), ("Managers", MANAGERS_XML)]
    )
    assert load_index(path).lookup("101").name == "A&nbsp;B &amp; C"  # not lost, not expanded


# ---------------------------------------------------------------------- scale and equality


def test_small_chunks_give_the_same_index(tmp_path, monkeypatch):
    """Chunk boundaries anywhere (a few hundred bytes) change nothing."""
    path = write_contacts_fast(tmp_path / "many.xlsx", 1500, seed=3)
    big = load_index(path)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 333)
    small = load_index(path)
    assert list(small) == list(big) and len(big) == 1500
    assert small.managers == big.managers and small.warnings == big.warnings == []


def test_file_and_in_memory_rows_agree(tmp_path):
    people = demo_contacts(300, seed=11)
    path = write_template(
        tmp_path / "demo.xlsx",
        "ru",
        contacts=people,
        managers=[("Анна Смирнова", "101"), ("Борис Иванов", "102"), ("Вера Петрова", "103")],
    )
    from_file = load_index(path)
    # as the live backend reads it: values from A1, floats for numbers, titles allowed
    header = ["Имя", "Телефон", "Ответственный", "Компания", "Заметки"]
    rows = [header] + [[n, p, o if o else None, c, None] for n, p, o, c in people]
    managers = [
        ["Ответственный", "Добавочный"],
        ["Анна Смирнова", 101.0],
        ["Борис Иванов", 102.0],
        ["Вера Петрова", 103.0],
    ]
    in_memory = build_index(rows, managers, contacts_title="Контакты", managers_title="Менеджеры")
    assert list(in_memory) == list(from_file) and len(from_file) == 300
    assert in_memory.managers == from_file.managers
    assert from_file.lookup(people[0][1]).name == people[0][0]


def test_build_index_offsets_and_missing_managers():
    rows = [
        ["Contacts of the team"],
        [None, None],
        ["Phone", "Name", "Owner"],
        ["bad", "X", "101"],
        [73430112233.0, "Ivan", 101.0],
    ]
    index = build_index(rows, None, first_row=3, first_col=2)
    assert index.lookup("83430112233") == Contact(7, "Ivan", "73430112233", "101", "")
    assert index.warnings[0].en == "Contacts!B6: 'bad' is not a phone number"
    assert "not found" in index.warnings[1].en


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
        min_size=1,
        max_size=8,
    )
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_any_text_round_trips_through_a_file(tmp_path, names):
    """Names with &, <, quotes, spaces, Cyrillic, emoji… read back as written (stripped)."""
    people = [
        (name, f"+7 912 000-{i // 100:02d}-{i % 100:02d}", "101", name)
        for i, name in enumerate(names)
    ]
    path = write_template(tmp_path / "t.xlsx", force=True, contacts=people, managers=MANAGERS)
    index = load_index(path)
    written = [ILLEGAL_CHARACTERS_RE.sub("", n).strip() for n in names]
    assert [(c.name, c.company) for c in index] == [(w, w) for w in written]


# ---------------------------------------------------------------------- watcher


def test_watcher_swaps_in_a_changed_book(book):
    events: list[tuple[int, Text | None]] = []
    done = threading.Event()

    def on_reload(index, error):
        events.append((len(index), error))
        done.set()

    watcher = ContactsWatcher(book, on_reload=on_reload, interval=0.02, settle=0.02)
    try:
        assert events == [(5, None)] and watcher.current.lookup("79995554433") is None
        old = watcher.current
        write_template(
            book,
            force=True,
            contacts=[*PEOPLE, ("New", "+7 999 555-44-33", "102", "")],
            managers=MANAGERS,
        )
        new = wait_until(lambda: watcher.current.lookup("79995554433"), 10, "new contact")
        assert new.name == "New" and watcher.reloads == 1 and old is not watcher.current
        assert events[-1] == (6, None)

        # A broken save keeps the previous index and says why.
        book.write_bytes(b"PK\x03\x04 half a zip")
        wait_until(lambda: events[-1][1] is not None, 10, "error reported")
        assert "not an .xlsx workbook" in events[-1][1].en and len(watcher.current) == 6
        assert watcher.last_error is not None

        # Fixed again: back to normal.
        write_template(book, force=True, contacts=PEOPLE[:2], managers=MANAGERS)
        wait_until(lambda: len(watcher.current) == 2, 10, "reloaded after the fix")
        assert watcher.last_error is None and events[-1] == (2, None)
    finally:
        watcher.stop()


def test_watcher_skips_saves_that_leave_contacts_alone(book):
    watcher = ContactsWatcher(book, interval=0.02, settle=0.02)
    try:
        first = watcher.current
        # The agent writing the Calls sheet: a new file, same Contacts and Managers parts.
        call = CallRow("1", "incoming", "completed", "73430112233")
        write_template(book, force=True, contacts=PEOPLE, managers=MANAGERS, calls=[call])
        wait_until(lambda: watcher.skipped >= 1, 10, "change seen and skipped")
        assert watcher.current is first and watcher.reloads == 0
        assert watcher.refresh() is None  # a forced refresh re-reads anyway
        assert watcher.current is not first and watcher.reloads == 1
    finally:
        watcher.stop()


def test_watcher_refuses_a_bad_book_at_start_and_reports_a_deleted_one(tmp_path, book):
    with pytest.raises(UserError):
        ContactsWatcher(tmp_path / "nope.xlsx")
    errors: list[Text | None] = []
    watcher = ContactsWatcher(book, on_reload=lambda i, e: errors.append(e), interval=0.02)
    try:
        os.unlink(book)
        wait_until(lambda: errors[-1] is not None, 10, "deletion reported")
        assert "workbook not found" in errors[-1].en and len(watcher.current) == 5
        assert watcher.refresh() is not None
    finally:
        watcher.stop()


# ---------------------------------------------------------------------- memory layout


def test_records_are_invisible_to_the_cyclic_collector(tmp_path):
    """A million contacts must not be walked by every garbage collection (the event
    thread pays for it): records are packed bytes, and the record store is untracked."""
    import gc

    path = write_contacts_fast(tmp_path / "big.xlsx", 3000, managers=MANAGERS)
    index = load_index(path)
    records = index._records
    assert len(records) == 3000
    assert not any(gc.is_tracked(r) for r in records)  # tracked from birth as tuples
    assert not gc.is_tracked(index._by_key)
    gc.collect()
    assert not gc.is_tracked(records)
    contact = index.contacts[2999]
    assert index.lookup(contact.phone) == contact


def test_separator_inside_a_cell_does_not_split_the_record(tmp_path):
    # "_x001F_" is how OOXML escapes U+001F, the character records are joined with.
    rows = [["Name", "Phone", "Owner", "Company"],
            ["A_x001F_B", "79120000011", "101", "C_x001F_D"]]
    path = write_book(tmp_path / "sep.xlsx", {"Contacts": rows, "Managers": [
        ["Owner", "Extension"], *MANAGERS]})
    contact = load_index(path).lookup("79120000011")
    assert contact is not None
    assert (contact.phone, contact.owner) == ("79120000011", "101")
    assert (contact.name, contact.company) == ("A B", "C D")
    rows[1][3] = "C\x1fD"  # the live backend hands over cell values as they are
    built = build_index(rows).lookup("79120000011")
    assert built is not None and built.owner == "101" and "\x1f" not in built.company
