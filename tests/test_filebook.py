"""The Calls sheet in a real .xlsx, read back with openpyxl: upserts, both languages, user
columns, formula safety, hyperlinks, locks, user edits and crashes mid-save."""

from __future__ import annotations

import os
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import PatternFill
from openpyxl.worksheet.table import Table

from pz_excel.agent.journal import Journal
from pz_excel.agent.writer import flush_dirty
from pz_excel.books import BookLocked, CallsBook
from pz_excel.books.filebook import FileBook
from pz_excel.crm.schema import CALLS, CallRow
from pz_excel.i18n import UserError

START = datetime(2024, 3, 1, 10, 0, 0)


def call(call_id: str, **kw) -> CallRow:
    base = dict(direction="incoming", status="completed", client_phone="73430112233",
                contact="Ivan Petrov", owner="Anna", extension="101", start=START,
                end=datetime(2024, 3, 1, 10, 0, 42), duration=42)
    base.update(kw)
    return CallRow(call_id, **base)


def make_book(path: Path, lang: str = "en", calls_columns: list[str] | None = None,
              extra: str | None = None, table: bool = False) -> Path:
    """A CRM workbook: Contacts sheet, and a Calls sheet with the given header order."""
    wb = Workbook()
    contacts = wb.active
    contacts.title = "Контакты" if lang == "ru" else "Contacts"
    contacts.append(["Имя", "Телефон", "Ответственный"] if lang == "ru"
                    else ["Name", "Phone", "Owner"])
    if calls_columns is not None:
        ws = wb.create_sheet("Звонки" if lang == "ru" else "Calls")
        headers = list(calls_columns) + ([extra] if extra else [])
        ws.append(headers)
        if table:
            last = chr(ord("A") + len(headers) - 1)
            ws.add_table(Table(displayName="CallsTable", ref=f"A1:{last}2"))
    wb.save(path)
    return path


def headers(lang: str) -> list[str]:
    return [c.header(lang) for c in CALLS.columns]


def sheet_rows(path: Path, title: str | None = None) -> tuple[list[str], dict[str, dict]]:
    """Header and rows by Call ID (cells), asserting there is no duplicate."""
    wb = load_workbook(path)
    ws = wb[title] if title else next(wb[t] for t in wb.sheetnames if t in ("Calls", "Звонки"))
    head = [c.value for c in ws[1]]
    id_col = next(i for i, h in enumerate(head) if h in ("Call ID", "ID звонка"))
    out: dict[str, dict] = {}
    for row in ws.iter_rows(min_row=2):
        cid = row[id_col].value if id_col < len(row) else None
        if cid is None:
            continue
        assert str(cid) not in out, f"duplicate row for {cid}"
        out[str(cid)] = {head[i]: cell for i, cell in enumerate(row) if i < len(head)}
    return head, out


def test_filebook_is_a_calls_book(tmp_path):
    book = FileBook(make_book(tmp_path / "crm.xlsx", calls_columns=headers("en")))
    assert isinstance(book, CallsBook) and "crm.xlsx" in book.description


# ------------------------------------------------------------------ upsert


def test_upsert_in_place_never_duplicates_also_across_reopen(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    book = FileBook(path)
    assert book.write_calls([call("1", status="ringing", end=None, duration=None),
                             call("2")]) == 2
    assert book.write_calls([]) == 0
    book.close()
    again = FileBook(path)
    assert again.existing_call_ids() == {"1", "2"}
    again.write_calls([call("1"), call("3", direction="outgoing")])
    _, rows = sheet_rows(path)
    assert list(rows) == ["1", "2", "3"]
    one = rows["1"]
    assert one["Status"].value == "completed" and one["Duration (s)"].value == 42
    assert one["Start"].value == START and one["Start"].is_date
    assert one["Client phone"].number_format == "@" and one["Call ID"].data_type == "s"
    assert one["Late"].value is None
    assert rows["3"]["Direction"].value == "outgoing"


def test_call_id_typed_as_a_number_by_excel_still_matches(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    wb = load_workbook(path)
    wb["Calls"].append([470667154161667, "incoming", "completed"])
    wb.save(path)
    FileBook(path).write_calls([call("470667154161667", late=True)])
    _, rows = sheet_rows(path)
    assert len(rows) == 1 and rows["470667154161667"]["Late"].value == "yes"


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_headers_in_either_language_shuffled_with_a_user_column(tmp_path, lang):
    cols = headers(lang)
    shuffled = cols[7:] + cols[:7][::-1]
    extra = "Комментарий" if lang == "ru" else "Comment"
    path = make_book(tmp_path / "crm.xlsx", lang, calls_columns=shuffled, extra=extra)
    wb = load_workbook(path)
    ws = wb.worksheets[1]
    ws.cell(row=2, column=len(shuffled) + 1, value="call back Monday")
    ws.cell(row=2, column=len(shuffled) + 1).fill = PatternFill("solid", fgColor="FFFF00")
    wb.save(path)

    book = FileBook(path)
    assert book.lang_of_sheet == lang
    book.write_calls([call("1", status="missed", duration=0, late=True),
                      call("2", direction="outgoing")])
    head, rows = sheet_rows(path)
    assert head == [*shuffled, extra]  # order and the user's column kept
    word = {"en": ("incoming", "missed", "yes"), "ru": ("входящий", "пропущен", "да")}[lang]
    r1 = rows["1"]
    assert (r1[cols[1]].value, r1[cols[2]].value, r1[cols[12]].value) == word
    assert r1[cols[3]].value == "73430112233" and r1[cols[7]].value == START
    # the user's note sat in row 2 without a Call ID: our rows went below it, untouched
    ws = load_workbook(path).worksheets[1]
    note = ws.cell(row=2, column=len(shuffled) + 1)
    assert note.value == "call back Monday" and note.fill.fgColor.rgb.endswith("FFFF00")
    assert ws.cell(row=2, column=1).value is None
    # new rows look like the row above them (the user's fill on their column)
    assert ws.cell(row=4, column=len(shuffled) + 1).fill.fgColor.rgb.endswith("FFFF00")
    assert ws.cell(row=4, column=len(shuffled) + 1).value is None


def test_missing_calls_sheet_is_created_in_the_books_language(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", "ru")  # Контакты only
    FileBook(path, lang="en").write_calls([call("1")])
    head, rows = sheet_rows(path, "Звонки")
    assert head == headers("ru") and rows["1"]["Статус"].value == "завершён"
    ws = load_workbook(path)["Звонки"]
    assert ws.freeze_panes == "A2" and ws.cell(1, 1).font.b


def test_ensure_calls_sheet_saves_a_new_sheet_once_and_leaves_a_present_one(tmp_path):
    path = make_book(tmp_path / "crm.xlsx")  # Contacts only
    book = FileBook(path)
    assert book.ensure_calls_sheet() is True
    head, rows = sheet_rows(path, "Calls")
    assert head == headers("en") and rows == {}
    stamp = path.stat().st_mtime_ns
    assert book.ensure_calls_sheet() is False
    assert FileBook(path).ensure_calls_sheet() is False
    assert path.stat().st_mtime_ns == stamp  # nothing saved when the sheet is there
    book.write_calls([call("1")])  # and rows go in as usual
    assert set(sheet_rows(path, "Calls")[1]) == {"1"}


def test_missing_required_header_names_it(tmp_path):
    cols = [h for h in headers("en") if h != "Client phone"]
    path = make_book(tmp_path / "crm.xlsx", calls_columns=cols)
    with pytest.raises(UserError) as exc:
        FileBook(path)
    assert "Client phone" in exc.value.text.en and "Телефон клиента" in exc.value.text.ru


def test_not_a_workbook_and_missing_file_are_user_errors(tmp_path):
    bad = tmp_path / "crm.xlsx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError):
        FileBook(bad)
    with pytest.raises(UserError):
        FileBook(tmp_path / "nope.xlsx")


def test_excel_table_grows_with_the_rows(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"), table=True)
    FileBook(path).write_calls([call(str(i)) for i in range(1, 6)])
    ws = load_workbook(path)["Calls"]
    table = ws.tables["CallsTable"]
    assert table.ref == "A1:M6"
    assert table.autoFilter is None or table.autoFilter.ref == "A1:M6"
    _, rows = sheet_rows(path)
    assert list(rows) == ["1", "2", "3", "4", "5"]  # row 2 (empty, inside the table) used


# ------------------------------------------------------------------ formula safety, links


EVIL = ['=HYPERLINK("http://x","y")', "+7 343 011-22-33", "@SUM(A1:A9)", "-1+2", "\tcmd", "=1+1"]


def test_formula_looking_values_stay_text(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    rows = [call(str(i), client_phone=v, contact=v, owner=v, line=v, recording=v)
            for i, v in enumerate(EVIL)]
    FileBook(path).write_calls(rows)
    _, back = sheet_rows(path)
    for i, value in enumerate(EVIL):
        for name in ("Client phone", "Contact", "Owner", "Line", "Recording"):
            cell = back[str(i)][name]
            assert (cell.value, cell.data_type) == (value, "s"), (name, value)
        assert back[str(i)]["Client phone"].quotePrefix == value.startswith(
            ("=", "+", "-", "@", "\t")
        )
    with zipfile.ZipFile(path) as z:
        xml = "".join(z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/"))
    assert "<f>" not in xml and "<f " not in xml  # not a single formula in the file


def test_control_characters_are_dropped_not_fatal(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    FileBook(path).write_calls([call("1", contact="Ivan\x00\x07 Petrov", line="\x1b[31m")])
    _, rows = sheet_rows(path)
    assert rows["1"]["Contact"].value == "Ivan Petrov" and rows["1"]["Line"].value == "[31m"


def test_http_recording_is_a_link_other_schemes_are_text(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    book = FileBook(path)
    book.write_calls([call("1", recording="https://rec.example/1.mp3?a=1&b=2"),
                      call("2", recording="ftp://rec.example/2.mp3"),
                      call("3", recording="javascript:alert(1)")])
    _, rows = sheet_rows(path)
    one = rows["1"]["Recording"]
    assert one.hyperlink.target == "https://rec.example/1.mp3?a=1&b=2"
    assert one.value == "https://rec.example/1.mp3?a=1&b=2" and one.data_type == "s"
    assert one.font.u == "single"
    assert rows["2"]["Recording"].hyperlink is None
    assert rows["2"]["Recording"].font.u is None  # the link look of the row above is not copied
    assert rows["2"]["Recording"].value == "ftp://rec.example/2.mp3"
    assert rows["3"]["Recording"].hyperlink is None
    book.write_calls([call("1", recording="ftp://rec.example/1.mp3")])  # the link goes
    _, rows = sheet_rows(path)
    assert rows["1"]["Recording"].hyperlink is None


# ------------------------------------------------------------------ locks, edits, crashes


@pytest.mark.parametrize(
    ("lock_name", "app"), [("~$crm.xlsx", "Excel"), (".~lock.crm.xlsx#", "LibreOffice")]
)
def test_locked_book_keeps_rows_in_the_journal_until_unlocked(tmp_path, lock_name, app):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    lock = tmp_path / lock_name
    lock.write_text(",Anna Smirnova,pc-7,01.03.2024 10:00,file:///x;" if app == "LibreOffice"
                    else "\x04Anna")
    before = path.read_bytes()
    book = FileBook(path)  # opening is fine: only writing needs the file
    with Journal(tmp_path / "j.sqlite", normalize=lambda s: s) as journal:
        journal.upsert_call(call("1"))
        with pytest.raises(BookLocked) as exc:
            flush_dirty(journal, book)
        assert app in exc.value.text.en and lock_name in exc.value.text.en
        assert lock_name in exc.value.text.ru and "Anna" in exc.value.text.en
        assert exc.value.lock_path == str(lock)
        assert journal.stats()["dirty"] == 1 and path.read_bytes() == before
        lock.unlink()
        assert flush_dirty(journal, book) == 1
        assert journal.stats()["dirty"] == 0
    assert list(sheet_rows(path)[1]) == ["1"]


def test_user_edits_on_disk_between_batches_are_kept(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"), extra="Notes")
    book = FileBook(path)
    book.write_calls([call("1"), call("2")])
    # the user opens the file, writes a note, adds a sheet, sorts nothing, saves
    wb = load_workbook(path)
    wb["Calls"].cell(row=2, column=14, value="promised a discount")
    wb["Calls"]["E3"] = "Olga (edited)"
    wb.create_sheet("Report")["A1"] = "=COUNTA(Calls!A:A)"
    wb.save(path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # coarse clocks: a clear change
    book.write_calls([call("3")])
    wb = load_workbook(path)
    ws = wb["Calls"]
    assert ws.cell(row=2, column=14).value == "promised a discount"
    assert ws["E3"].value == "Olga (edited)"  # call 2 was not in this batch: untouched
    assert wb["Report"]["A1"].value == "=COUNTA(Calls!A:A)"  # the user's formula is a formula
    assert list(sheet_rows(path)[1]) == ["1", "2", "3"]


def test_crash_at_the_rename_leaves_the_old_workbook_intact(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    FileBook(path).write_calls([call("1")])
    before = path.read_bytes()

    def dies(src: str, dst: str) -> None:
        raise OSError(5, "I/O error: the power went out")

    crashing = FileBook(path, replace=dies)
    with Journal(tmp_path / "j.sqlite", normalize=lambda s: s) as journal:
        journal.upsert_call(call("2"))
        with pytest.raises(OSError):
            flush_dirty(journal, crashing)
        assert path.read_bytes() == before and list(sheet_rows(path)[1]) == ["1"]
        assert [p.name for p in tmp_path.iterdir() if "pz-saving" in p.name] == []
        assert journal.stats()["dirty"] == 1  # not acknowledged: it goes out next time
        assert flush_dirty(journal, FileBook(path)) == 1
    assert list(sheet_rows(path)[1]) == ["1", "2"]


def test_access_denied_at_the_rename_is_a_lock(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))

    def denied(src: str, dst: str) -> None:  # what Windows says while Excel holds the file
        raise PermissionError(13, "The process cannot access the file")

    with pytest.raises(BookLocked) as exc:
        FileBook(path, replace=denied).write_calls([call("1")])
    assert "crm.xlsx" in exc.value.text.en and "crm.xlsx" in exc.value.text.ru


def test_xlsm_keeps_its_macros(tmp_path):
    path = tmp_path / "crm.xlsm"
    wb = Workbook()
    wb.active.title = "Calls"
    wb.active.append(headers("en"))
    wb.save(path)
    # a stand-in VBA part: openpyxl only has to carry it through unchanged
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0fake-vba")
    book = FileBook(path)
    book.write_calls([call("1")])
    book.close()
    with zipfile.ZipFile(path) as z:
        assert z.read("xl/vbaProject.bin") == b"\xd0\xcf\x11\xe0fake-vba"


def test_a_save_by_the_user_during_our_save_is_not_clobbered(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", calls_columns=headers("en"))
    raced: list[bool] = []

    class RacingBook(FileBook):
        """The user saves the file while our batch is being applied (once)."""

        def _save(self):
            if not raced:
                raced.append(True)
                wb = load_workbook(path)
                wb["Calls"]["P1"] = "user was here"
                wb.save(path)
                os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
            super()._save()

    assert RacingBook(path).write_calls([call("1")]) == 1
    ws = load_workbook(path)["Calls"]
    assert ws["P1"].value == "user was here" and raced
    assert list(sheet_rows(path)[1]) == ["1"]


def test_book_locked_takes_a_plain_message_too():
    exc = BookLocked("Excel is busy: edit mode")
    assert exc.text.en == exc.text.ru == "Excel is busy: edit mode" and exc.lock_path is None
    assert str(exc) == "Excel is busy: edit mode"
