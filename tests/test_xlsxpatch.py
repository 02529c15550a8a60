"""The zip-level Calls writer (FileBook's fast path) on real .xlsx files, read back with
openpyxl: same values as the openpyxl path, user cells and parts kept byte for byte, the
deflate/CRC plumbing checked against zlib, fallbacks that lose nothing."""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
import zipfile
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import PatternFill
from openpyxl.worksheet.table import Table

from bench._util import to_shared_strings
from pz_excel.agent.journal import Journal
from pz_excel.agent.writer import flush_dirty
from pz_excel.books import BookUnpatchable
from pz_excel.books.callspatch import CallsPatch
from pz_excel.books.filebook import FileBook
from pz_excel.books.template import DEMO_MANAGERS, write_template
from pz_excel.crm.contacts import workbook_fingerprint
from pz_excel.crm.schema import CALLS, CallRow
from pz_excel.xlsx.cells import is_web_link
from pz_excel.xlsx.segments import Blocks
from pz_excel.xlsx.zipio import FINAL_BLOCK, Unsupported, crc32_combine, read_layout

START = datetime(2024, 3, 1, 10, 0, 0)
EVIL = ['=HYPERLINK("http://x","y")', "+7 343 011-22-33", "@SUM(A1:A9)", "-1+2", "\tcmd",
        "=1+1", " padded ", "a\r\nb"]


def call(call_id: str, **kw) -> CallRow:
    base = dict(direction="incoming", status="completed", client_phone="73430112233",
                contact="Ivan Petrov", owner="Anna", extension="101", start=START,
                end=START + timedelta(seconds=42), duration=42,
                recording=f"https://rec.example/{call_id}.mp3?a=1&b=2", line="1")
    base.update(kw)
    return CallRow(call_id, **base)


def headers(lang: str = "en") -> list[str]:
    return [c.header(lang) for c in CALLS.columns]


def crm_book(path: Path, *, lang: str = "en", contacts: int = 50, table: bool = True,
             note_rows: int = 0) -> Path:
    """A CRM workbook as a user keeps it: Contacts, a Calls table with a styled user column
    ("Notes"), a user's hyperlink, and an extra sheet with a formula."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Contacts" if lang == "en" else "Контакты"
    ws.append(["Name", "Phone", "Owner"] if lang == "en" else ["Имя", "Телефон", "Ответственный"])
    for i in range(contacts):
        ws.append([f"Client {i}", f"+7 912 {i:07d}", "101"])
    calls = wb.create_sheet("Calls" if lang == "en" else "Звонки")
    calls.append([*headers(lang), "Notes"])
    yellow = PatternFill("solid", fgColor="FFFF00")
    for r in range(2, 2 + note_rows):  # the user's notes, no Call ID: our rows go below
        calls.cell(row=r, column=14, value=f"note {r}").fill = yellow
    if table:
        calls.add_table(Table(displayName="CallsTable", ref=f"A1:N{max(2, 1 + note_rows)}"))
    calls["P1"] = "my link"
    calls["P1"].hyperlink = "https://user.example/page"
    wb.create_sheet("Report")["A1"] = "=COUNTA(Calls!A:A)"
    wb.save(path)
    return path


def rewritten(path: Path, before: dict[str, tuple[int, bytes]]) -> set[str]:
    return {name for name, raw in raw_members(path).items() if before.get(name) != raw}


def raw_members(path: Path) -> dict[str, tuple[int, bytes]]:
    """CRC-32 and compressed bytes of every member, straight from the local records."""
    out = {}
    with open(path, "rb") as fh:
        members, _ = read_layout(fh)
        for m in members:
            fh.seek(m.offset)
            head = fh.read(30)
            names = int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")
            skip = 30 + names
            fh.seek(m.offset + skip)
            out[m.name] = (m.crc, fh.read(m.compressed))
    return out


def cells(path: Path) -> dict[str, dict[str, tuple]]:
    """Everything a user sees of every cell, by sheet and coordinate (style ids aside)."""
    wb = load_workbook(path)
    out: dict[str, dict[str, tuple]] = {}
    for ws in wb.worksheets:
        sheet = out.setdefault(ws.title, {})
        for row in ws.iter_rows():
            for c in row:
                if c.value is None and not c.has_style:
                    continue
                color = c.font.color.rgb if c.font.color is not None else None
                sheet[c.coordinate] = (
                    c.value, c.data_type, c.number_format, bool(c.quotePrefix),
                    c.hyperlink.target if c.hyperlink else None, c.font.u,
                    color[-6:] if isinstance(color, str) else None, c.fill.fgColor.rgb,
                )
        sheet["#tables"] = tuple(sorted((t.displayName, t.ref) for t in ws.tables.values()))
    return out


def fast_book(path: Path, **kw) -> FileBook:
    return FileBook(path, **kw)


def no_fallback(caplog: pytest.LogCaptureFixture) -> bool:
    return not any("openpyxl" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ plumbing


def test_crc32_combine_matches_zlib():
    rng = random.Random(5)
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 3000))
        b = rng.randbytes(rng.choice([0, 1, 7, rng.randrange(1, 100_000)]))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_segments_make_one_deflate_stream_through_inserts_updates_and_removals():
    rng = random.Random(9)
    blocks = Blocks(lambda data: [bytes([x]) * 3 for x in data[::3]], ordered=True, segment=4)
    model: dict[int, bytes] = {}
    keys = sorted(rng.sample(range(0, 500, 2), 40))
    blocks.load(list(keys), [bytes([k % 251]) * 3 for k in keys])
    model.update({k: bytes([k % 251]) * 3 for k in keys})
    for step in range(300):
        if step % 25 == 0:
            run = blocks.run(6)  # a save: everything packed, then clean segments go cold
            blocks.cool()
        key = rng.randrange(0, 520)
        item = bytes([rng.randrange(256)]) * 3
        if key in model and rng.random() < 0.2:
            blocks.remove(key)
            del model[key]
        else:
            blocks.set(key, item)
            model[key] = item
        assert blocks.get(key) == model.get(key)
    run = blocks.run(6)
    expected = b"".join(model[k] for k in sorted(model))
    raw = b"".join(c if isinstance(c, bytes) else c.read() for c in run.chunks)  # spans: spill
    data = zlib.decompressobj(-15).decompress(raw + FINAL_BLOCK)
    assert data == expected and run.size == len(expected) and run.crc == zlib.crc32(expected)
    assert list(blocks.keys()) == sorted(model)


def zip64(src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``src`` rewritten as a ZIP64 archive (end record and locator), as zipfile writes
    one past 65535 parts: the limit is lowered for this copy only."""
    with monkeypatch.context() as m:
        m.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
            for info in zin.infolist():
                z.writestr(info.filename, zin.read(info))
    return dst


def test_read_layout_handles_data_descriptors_and_refuses_zip64(tmp_path, monkeypatch):
    class Stream(io.RawIOBase):  # not seekable: zipfile writes data descriptors
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def]
            self.buf += b
            return len(b)

    stream = Stream()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.xml", b"<a/>" * 1000)
        z.writestr("b.bin", os.urandom(3000))
    path = tmp_path / "dd.zip"
    path.write_bytes(bytes(stream.buf))
    with open(path, "rb") as fh:
        members, _ = read_layout(fh)
    assert [m.name for m in members] == ["a.xml", "b.bin"]
    assert members[0].offset + members[0].length == members[1].offset  # descriptor counted

    with open(zip64(path, tmp_path / "z64.zip", monkeypatch), "rb") as fh:
        with pytest.raises(Unsupported, match="ZIP64"):
            read_layout(fh)


# ------------------------------------------------------------------ same result as openpyxl


def batches() -> list[list[CallRow]]:
    return [
        [call("1", status="ringing", end=None, duration=None, recording=""),
         call("2", direction="outgoing", recording="ftp://rec.example/2.mp3"),
         *[call(f"e{i}", client_phone=v, contact=v, line=v, recording=v)
           for i, v in enumerate(EVIL)]],
        [call("1", status="missed", duration=0, late=True),  # update, gains a link
         call("2", recording="http://rec.example/2.mp3"),  # non-link → link
         call("e0", recording="javascript:alert(1)"),  # link text, no link
         call("3", start=datetime(2024, 3, 2, 23, 59, 59, 999000), end=None)],
        [call("3", recording="https://rec.example/3b.mp3"),  # a link changes its target
         call("1", recording="ftp://elsewhere/1"),  # a link goes
         call("4", start=None, end=None, duration=None, contact="", owner="")],
    ]


@pytest.mark.parametrize("kind", ["user-book", "template-ru", "notes-above"])
def test_batches_leave_the_last_value_of_each_call_and_every_other_cell(tmp_path, kind):
    """What openpyxl's whole-book save used to be compared with: here the rows' own last
    values, read back, and every cell that is not ours exactly as it was."""
    if kind == "user-book":
        src = crm_book(tmp_path / "src.xlsx")
    elif kind == "notes-above":
        src = crm_book(tmp_path / "src.xlsx", note_rows=3, table=False)
    else:
        src = write_template(tmp_path / "src.xlsx", "ru", managers=DEMO_MANAGERS,
                             contacts=[("Иван", "+73430112233", "101")], calls=[call("p1")])
    path = tmp_path / "book.xlsx"
    shutil.copy(src, path)
    book = fast_book(path)
    last: dict[str, CallRow] = {}
    for batch in batches():
        assert book.write_calls(batch) == len(batch)
        last.update((r.call_id, r) for r in batch)
    before, after = cells(src), cells(path)
    calls_title = next(t for t in after if t in CALLS.names)
    assert {t: v for t, v in after.items() if t != calls_title} == \
        {t: v for t, v in before.items() if t != calls_title}
    ws = load_workbook(path)[calls_title]
    head = next(r for r in ws.iter_rows(max_row=10) if any(
        c.value in CALLS.column("call_id").names for c in r))
    col = {c.value: c.column for c in head if c.value}
    id_col = col[next(n for n in CALLS.column("call_id").names if n in col)]
    rec_col = col[next(n for n in CALLS.column("recording").names if n in col)]
    seen: dict[str, int] = {}
    for r in range(head[0].row + 1, ws.max_row + 1):
        cid = ws.cell(r, id_col).value
        if cid is None:
            continue
        assert cid not in seen, f"call {cid} twice"
        seen[cid] = r
        if cid in last:
            rec = ws.cell(r, rec_col)
            assert (rec.value or "") == last[cid].recording
            link = rec.hyperlink.target if rec.hyperlink else None
            assert link == (last[cid].recording if is_web_link(last[cid].recording) else None)
    assert set(last) <= set(seen)
    for r, cell in before[calls_title].items():  # the user's cells above and beside ours
        if not r.startswith("#") and (r[0] not in "ABCDEFGHIJKLMN" or int(r[1:]) <= 1):
            assert after[calls_title].get(r) == cell


def test_read_back_types_links_table_and_the_users_cells(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = crm_book(tmp_path / "crm.xlsx", note_rows=2)
    before = cells(path)
    book = fast_book(path)
    book.write_calls([call("1"), call("2", direction="outgoing", late=True)])
    book.write_calls([call("1", status="missed", duration=0)])
    assert no_fallback(caplog)
    wb = load_workbook(path)
    ws = wb["Calls"]
    head = [c.value for c in ws[1]]
    col = {h: i + 1 for i, h in enumerate(head)}
    assert ws.cell(4, col["Call ID"]).value == "1" and ws.cell(5, col["Call ID"]).value == "2"
    one = {h: ws.cell(4, i) for h, i in col.items() if h}
    assert (one["Status"].value, one["Duration (s)"].value) == ("missed", 0)
    assert one["Duration (s)"].data_type == "n" and one["Call ID"].data_type == "s"
    assert one["Start"].value == START and one["Start"].is_date
    assert one["End"].value == START + timedelta(seconds=42) and one["End"].is_date
    assert one["Client phone"].number_format == "@" and one["Call ID"].number_format == "@"
    assert one["Recording"].hyperlink.target == "https://rec.example/1.mp3?a=1&b=2"
    assert one["Recording"].font.u == "single"
    assert ws.cell(5, col["Late"]).value == "yes" and one["Late"].value is None
    assert ws.tables["CallsTable"].ref == "A1:N5"
    # the user's cells: notes and fills above our rows, the look copied down, their link
    assert ws["N2"].value == "note 2" and ws["N3"].value == "note 3"
    assert ws["N2"].fill.fgColor.rgb.endswith("FFFF00")
    assert ws["N4"].value is None and ws["N4"].fill.fgColor.rgb.endswith("FFFF00")
    assert ws["P1"].hyperlink.target == "https://user.example/page"
    assert wb["Report"]["A1"].value == "=COUNTA(Calls!A:A)"
    after = cells(path)
    assert after["Contacts"] == before["Contacts"] and after["Report"] == before["Report"]


def test_formula_looking_values_stay_text_as_inline_strings(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx")
    fast_book(path).write_calls(
        [call(f"x{i}", client_phone=v, contact=v, owner=v, line=v, recording=v)
         for i, v in enumerate(EVIL)])
    ws = load_workbook(path)["Calls"]
    for r, value in enumerate(EVIL, start=2):
        for c in (4, 5, 6, 11, 12):
            cell = ws.cell(r, c)
            assert (cell.value, cell.data_type) == (value, "s"), (cell.coordinate, value)
        risky = value.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert bool(ws.cell(r, 4).quotePrefix) == risky
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        sheet = next(z.read(n) for n in names if b"x0" in z.read(n))
    assert b"<f>" not in sheet and b"<f " not in sheet and b't="inlineStr"' in sheet


# ------------------------------------------------------------------ raw copies, edits


def test_unchanged_members_are_copied_raw_byte_for_byte(tmp_path):
    path = crm_book(tmp_path / "crm.xlsm", contacts=3000)
    vba = os.urandom(5000)
    with zipfile.ZipFile(path, "a") as z:  # a stand-in macro part, stored uncompressed
        z.writestr("xl/vbaProject.bin", vba, zipfile.ZIP_STORED)
    source = raw_members(path)
    fingerprint = workbook_fingerprint(path)
    book = fast_book(path)
    book.write_calls([call("1"), call("2", recording="")])  # formats for links and text
    book.write_calls([call("3")])
    ours = {"xl/worksheets/sheet2.xml", "xl/worksheets/_rels/sheet2.xml.rels",
            "xl/tables/table1.xml", "xl/styles.xml"}
    assert rewritten(path, source) == ours
    warm = raw_members(path)
    book.write_calls([call("1", status="missed")])  # in place, same link: the sheet only
    assert rewritten(path, warm) == {"xl/worksheets/sheet2.xml"}
    warm = raw_members(path)
    book.write_calls([call("9")])  # a new row with a link: + relationships + table ref
    assert rewritten(path, warm) == {"xl/worksheets/sheet2.xml", "xl/tables/table1.xml",
                                     "xl/worksheets/_rels/sheet2.xml.rels"}
    after = raw_members(path)
    assert set(after) == set(source)
    for name in set(source) - ours:  # CRC and compressed bytes as in the user's file
        assert after[name] == source[name], name
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert z.read("xl/vbaProject.bin") == vba
    assert workbook_fingerprint(path) == fingerprint  # the contacts watcher skips our saves
    assert [c.value for c in load_workbook(path, keep_vba=True)["Calls"]["A"]][1:] == [
        "1", "2", "3", "9"]


def test_a_user_edit_between_saves_survives_also_when_excel_made_shared_strings(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx")
    book = fast_book(path)
    book.write_calls([call("1"), call("2"), call("3")])
    wb = load_workbook(path)  # the user writes a note and renames a contact, saves
    wb["Calls"]["N2"] = "promised a discount"
    wb["Calls"]["E3"] = "Olga (edited)"
    wb.save(path)
    to_shared_strings(path, tmp_path / "sst.xlsx")  # … and Excel stores text in the table
    os.replace(tmp_path / "sst.xlsx", path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    with zipfile.ZipFile(path) as z:
        assert b't="s"' in z.read("xl/worksheets/sheet2.xml")
    assert book.existing_call_ids() == {"1", "2", "3"}  # IDs read through shared strings
    book.write_calls([call("1", status="missed", duration=0), call("4")])
    ws = load_workbook(path)["Calls"]
    assert ws["N2"].value == "promised a discount" and ws["E3"].value == "Olga (edited)"
    assert [ws.cell(r, 1).value for r in range(2, 6)] == ["1", "2", "3", "4"]
    assert ws["C2"].value == "missed" and ws["C3"].value == "completed"


def test_styles_the_book_lacks_are_added_once(tmp_path):
    wb = Workbook()
    wb.active.title = "Calls"
    wb.active.append(headers())  # bare headers: no "@", date or link formats yet
    path = tmp_path / "bare.xlsx"
    wb.save(path)
    book = fast_book(path)
    book.write_calls([call("1", client_phone="=2+2")])
    first = raw_members(path)
    ws = load_workbook(path)["Calls"]
    assert ws["A2"].number_format == "@" and ws["D2"].quotePrefix
    assert ws["H2"].number_format == "yyyy-mm-dd hh:mm:ss" and ws["K2"].font.u == "single"
    book.write_calls([call("2", client_phone="=3+3")])
    assert "xl/styles.xml" not in rewritten(path, first)  # reused, not added again


# ------------------------------------------------------------------ fallbacks


def test_a_formula_in_our_column_is_said_once_and_the_rows_wait(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx")
    book = fast_book(path)
    book.write_calls([call("1")])
    wb = load_workbook(path)
    wb["Calls"]["E2"] = "=VLOOKUP(D2,Contacts!B:A,2,FALSE)"  # the user's lookup formula
    wb.save(path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    saved = path.read_bytes()
    with Journal(tmp_path / "j.sqlite", normalize=lambda s: s) as journal:
        journal.upsert_call(call("1", contact="Ivan"))
        with pytest.raises(BookUnpatchable, match="E2") as err:
            flush_dirty(journal, book)
        assert "E2" in err.value.text.ru
        assert journal.stats()["dirty"] == 1 and path.read_bytes() == saved
        wb = load_workbook(path)
        wb["Calls"]["E2"] = None  # the user removes it, as the message says
        wb.save(path)
        assert flush_dirty(journal, book) == 1
    assert load_workbook(path)["Calls"]["E2"].value == "Ivan"


def test_a_zip64_book_is_refused_with_one_line_and_never_rewritten(tmp_path, monkeypatch):
    path = zip64(crm_book(tmp_path / "src.xlsx"), tmp_path / "z64.xlsx", monkeypatch)
    saved = path.read_bytes()
    book = FileBook(path)  # the agent still starts: routing needs no writable book
    with pytest.raises(BookUnpatchable, match="ZIP64") as err:
        book.write_calls([call("1")])
    assert "журнале" in err.value.text.ru and path.read_bytes() == saved


def test_an_unexpected_failure_loses_no_row(tmp_path, monkeypatch):
    """A bug in the zip-level writer (injected at its save seam) leaves the book as it was
    and the row dirty in the journal, for the next batch."""
    path = crm_book(tmp_path / "crm.xlsx")
    book = fast_book(path)
    saved = path.read_bytes()
    real = CallsPatch.write

    def broken(self, tmp, stamp):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected bug")

    monkeypatch.setattr(CallsPatch, "write", broken)
    with Journal(tmp_path / "j.sqlite", normalize=lambda s: s) as journal:
        journal.upsert_call(call("1"))
        with pytest.raises(RuntimeError):
            flush_dirty(journal, book)
        assert journal.stats()["dirty"] == 1 and path.read_bytes() == saved
        monkeypatch.setattr(CallsPatch, "write", real)
        assert flush_dirty(journal, book) == 1
    assert load_workbook(path)["Calls"]["A2"].value == "1"


# ------------------------------------------------------------------ many saves


def test_many_small_saves_with_tiny_segments_match_a_model(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx", table=True)
    FileBook(path).write_calls([call("seed")])  # formats in place
    patch = CallsPatch.open(path, segment=3)
    rng = random.Random(3)
    model: dict[str, CallRow] = {"seed": call("seed")}
    for save in range(25):
        rows = []
        for _ in range(rng.randrange(1, 6)):
            cid = rng.choice([*model, f"n{save}-{rng.randrange(99)}"])
            rec = rng.choice(["", "ftp://x/1", f"https://rec.example/{save}", "=1"])
            rows.append(call(cid, status=rng.choice(["ringing", "completed", "missed"]),
                             recording=rec, duration=rng.randrange(100)))
        patch.apply(rows)
        tmp = tmp_path / f"save{save}.xlsx"
        patch.write(tmp, None)
        os.replace(tmp, path)
        patch.committed()
        for row in rows:
            model[row.call_id] = row
    assert any(seg.items is None for seg in patch.rows.segs)  # clean segments kept packed
    ws = load_workbook(path)["Calls"]
    seen = {}
    for r in range(2, ws.max_row + 1):
        cid = ws.cell(r, 1).value
        assert cid not in seen
        seen[cid] = r
        want = model[cid]
        assert ws.cell(r, 3).value == want.status and ws.cell(r, 10).value == want.duration
        link = ws.cell(r, 11).hyperlink
        assert (link.target if link else None) == (
            want.recording if want.recording.startswith("https") else None)
        assert (ws.cell(r, 11).value or "") == want.recording
    assert set(seen) == set(model)
    assert ws.tables["CallsTable"].ref == f"A1:N{ws.max_row}"
    with zipfile.ZipFile(path) as z:
        rels = z.read("xl/worksheets/_rels/sheet2.xml.rels").decode()
    assert rels.count("/hyperlink") == 1 + sum(
        r.recording.startswith("https") for r in model.values())  # none orphaned


def test_pretty_printed_rows_and_empty_rows_take_the_careful_path(tmp_path, caplog):
    """Other writers indent sheetData and write ``<row …/>``: same index, same result."""
    caplog.set_level(logging.INFO)
    src = crm_book(tmp_path / "src.xlsx", table=False)
    FileBook(src).write_calls([call("1"), call("2"), call("3")])
    path = tmp_path / "pretty.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "xl/worksheets/sheet2.xml":
                data = data.replace(b"</row><row", b"</row>\n  <row")
                data = data.replace(b"</sheetData>", b'\n  <row r="9" ht="20" customHeight="1"/>'
                                    b"\n</sheetData>")
                assert data.count(b"\n  <row") >= 4
            z.writestr(info, data)
    book = fast_book(path)
    assert book.existing_call_ids() == {"1", "2", "3"}
    book.write_calls([call("2", status="missed"), call("4")])
    assert no_fallback(caplog)
    ws = load_workbook(path)["Calls"]
    assert [ws.cell(r, 1).value for r in range(2, 6)] == ["1", "2", "3", "4"]
    assert ws["C3"].value == "missed" and ws.row_dimensions[9].height == 20
