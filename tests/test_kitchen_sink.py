"""The user's workbook stays theirs, proven on books made by a real spreadsheet application.

LibreOffice builds a "kitchen-sink" CRM (pictures, a text box, sparklines, validation,
conditional formats, comments, names, a second table, custom properties; and an .xlsm with a
VBA project: ``tests/kitchen_sink.py``). The agent's writers then add 1,000 calls in batches
and refresh the Dashboard several times. Every zip member that is not ours must be
byte-identical to before (compressed bytes and CRC), every part we wrote must validate
against the OOXML schemas, and LibreOffice must open the result and print it to PDF.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from datetime import datetime, timedelta

import pytest
from openpyxl import load_workbook

from pz_excel.agent import dashboard
from pz_excel.agent.journal import Journal
from pz_excel.agent.writer import flush_dirty
from pz_excel.books.filebook import FileBook
from pz_excel.crm.contacts import load_index
from pz_excel.crm.schema import CallRow
from tests.kitchen_sink import build_kitchen_sink, build_xlsm, needs_soffice, raw_members, to_pdf
from tests.ooxml_schema import validate

pytestmark = needs_soffice

#: Shared parts our writes may change (each edited in place, the rest of it kept).
SHARED = {"[Content_Types].xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels",
          "docProps/app.xml", "xl/styles.xml"}
#: Where the parts we add go.
OURS = ("xl/worksheets/sheet", "xl/worksheets/_rels/sheet", "xl/drawings/drawing",
        "xl/drawings/_rels/drawing", "xl/charts/chart")


def calls(n: int) -> list[CallRow]:
    now = datetime.now().replace(microsecond=0)
    owners = ["Анна Смирнова", "101", "Борис Иванов", "", "102"]
    out = []
    for i in range(n):
        kind = i % 4
        out.append(CallRow(
            call_id=f"{9_000_000 + i}",
            direction="outgoing" if kind == 3 else "incoming",
            status="missed" if kind == 2 else "completed",
            client_phone=f"+7 343 011-{i % 97:02d}-{i % 89:02d}",
            contact=f"Клиент {i}" if i % 5 else "",
            owner=owners[i % len(owners)],
            extension="101",
            start=now - timedelta(hours=i % 700),
            duration=0 if kind == 2 else 30 + i % 300,
            recording=f"https://rec.example/{i}.mp3" if i % 3 == 0 else "",
        ))
    return out


@pytest.mark.parametrize("kind", ["xlsx", "xlsx-ru", "xlsm"])
def test_1000_calls_and_dashboard_refreshes_keep_every_other_member_byte_for_byte(
        tmp_path, kind):
    made = tmp_path / "made"
    made.mkdir()
    lang = "ru" if kind.endswith("ru") else "en"
    src = build_xlsm(made, lang) if kind == "xlsm" else build_kitchen_sink(made, lang)
    book = tmp_path / f"crm{src.suffix}"
    shutil.copy(src, book)
    before = raw_members(book)

    writer = FileBook(book)
    with Journal(tmp_path / "journal.sqlite") as journal:
        rows = calls(1000)
        for start in range(0, len(rows), 100):  # ten batches, as the agent's writer does
            for row in rows[start:start + 100]:
                journal.upsert_call(row)
            assert flush_dirty(journal, writer) == 100
            if start % 250 == 0:  # four Dashboard refreshes along the way
                index = load_index(book)
                fig = dashboard.figures(journal, datetime.now().date(), index.owner_name)
                writer.write_parts(dashboard.writer(fig))
        assert journal.stats()["dirty"] == 0
    after = raw_members(book)

    kept = sorted(n for n in before if n not in SHARED)
    assert [n for n in kept if after.get(n) != before[n]] == []  # byte for byte
    assert set(before) <= set(after)  # nothing of theirs removed
    written = sorted(n for n in after if before.get(n) != after[n])
    assert all(n in SHARED or n.startswith(OURS) for n in written), written
    with zipfile.ZipFile(book) as zf:
        for name in written:
            assert validate(name, zf.read(name)) == [], name
    print(f"\n{kind}: {len(kept)} members byte for byte: {', '.join(kept)}")
    print(f"{kind}: written: {', '.join(written)}")

    index = load_index(book)  # the contacts still read as before
    assert len(index) >= 20
    pdf = to_pdf(book, tmp_path / "pdf")
    assert pdf.stat().st_size > 10_000
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                              text=True).stdout
        assert ("Сводка по звонкам" if lang == "ru" else "Calls dashboard") in text
        assert "9000999" in text  # the last call, in the Calls sheet


def test_excels_hyperlink_limit_is_never_passed(tmp_path, monkeypatch):
    """Excel keeps at most 65,530 links on a sheet and repairs a file with more: past our
    limit a recording is plain text. The limit is lowered here to keep the test quick;
    the rule is the same at 65,000."""
    import pz_excel.books.callspatch as callspatch

    monkeypatch.setattr(callspatch, "MAX_SHEET_LINKS", 50)
    made = tmp_path / "made"
    made.mkdir()
    book = tmp_path / "crm.xlsx"
    shutil.copy(build_kitchen_sink(made), book)
    writer = FileBook(book)
    rows = [r for r in calls(400) if r.recording]
    for start in range(0, len(rows), 40):
        writer.write_calls(rows[start:start + 40])
    ws = load_workbook(book)["Calls"]
    links = [c for row in ws.iter_rows() for c in row if c.hyperlink is not None]
    texts = [c for row in ws.iter_rows(min_row=2) for c in row
             if isinstance(c.value, str) and c.value.startswith("https://")]
    assert len(links) == 50 and len(texts) == len(rows)
    to_pdf(book, tmp_path / "pdf")  # LibreOffice opens it as it is


def test_limit_constant_is_below_excels():
    from pz_excel.xlsx.cells import MAX_SHEET_LINKS

    assert MAX_SHEET_LINKS < 65_530


def test_the_agent_never_rewrites_a_book_it_cannot_patch(tmp_path):
    """A strict-OOXML or otherwise unpatchable book: one clear line, the file as it was."""
    from pz_excel.books import BookUnpatchable

    made = tmp_path / "made"
    made.mkdir()
    book = tmp_path / "crm.xlsx"
    shutil.copy(build_kitchen_sink(made), book)
    strict = tmp_path / "strict.xlsx"
    with zipfile.ZipFile(book) as zin, zipfile.ZipFile(strict, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "xl/workbook.xml":
                data = data.replace(b"http://schemas.openxmlformats.org/spreadsheetml/2006/main",
                                    b"http://purl.oclc.org/ooxml/spreadsheetml/main")
            zout.writestr(info, data)
    saved = strict.read_bytes()
    writer = FileBook(strict)
    with pytest.raises(BookUnpatchable) as err:
        writer.write_calls(calls(1))
    assert "strict" in str(err.value).lower() and strict.read_bytes() == saved
    assert "журнале" in err.value.text.ru
