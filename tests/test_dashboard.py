"""The Dashboard sheet: figures from a real journal, written at the zip level into real
.xlsx files and read back (openpyxl reads; LibreOffice renders in test_kitchen_sink)."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from pz_excel.agent import dashboard
from pz_excel.agent.journal import Journal
from pz_excel.books.filebook import FileBook
from pz_excel.books.template import write_template
from pz_excel.crm.contacts import build_index
from pz_excel.crm.schema import CallRow

TODAY = date(2026, 11, 26)  # a Thursday: the week started on Monday the 23rd
MONDAY = date(2026, 11, 23)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm)


def row(n, day, hh, direction, status, phone, owner="", duration=None, contact=""):
    start = at(day, hh)
    end = start + timedelta(seconds=duration or 0)
    return CallRow(
        call_id=f"c{n}",
        direction=direction,
        status=status,
        client_phone=phone,
        contact=contact,
        owner=owner,
        extension="",
        start=start,
        end=end,
        duration=duration,
    )


@pytest.fixture
def rows() -> list[CallRow]:
    d = TODAY
    return [
        # today: 2 answered incoming, 1 missed (not called back), 1 outgoing
        row(1, d, 9, "incoming", "answered", "+7 343 011-22-33", "Anna", 120, "Ivan Petrov"),
        row(2, d, 10, "incoming", "completed", "+7 343 011-22-34", "Boris", 60),
        row(3, d, 11, "incoming", "missed", "+7 343 011-22-35", "Anna", 15, "Olga"),
        row(4, d, 12, "outgoing", "completed", "+7 343 011-22-33", "Anna", 300),
        # Tuesday: a missed call later called back (by another format of the same number)
        row(
            5,
            MONDAY + timedelta(days=1),
            9,
            "incoming",
            "missed",
            "+7 (343) 011-22-36",
            "Boris",
            None,
            "Pavel",
        ),
        row(6, MONDAY + timedelta(days=1), 10, "outgoing", "answered", "83430112236", "Boris", 90),
        # Monday: the same caller missed twice, never called back
        row(7, MONDAY, 9, "incoming", "missed", "+7 343 011-22-37", "", None, "Sergey"),
        row(8, MONDAY, 15, "incoming", "missed", "73430112237", "", None, "Sergey"),
        # last week: an outgoing call, and a missed one called back *before* it was missed
        row(
            9,
            TODAY - timedelta(days=10),
            9,
            "outgoing",
            "completed",
            "+7 343 011-22-38",
            "Anna",
            45,
        ),
        row(
            10, TODAY - timedelta(days=9), 9, "incoming", "missed", "+7 343 011-22-38", "Anna", None
        ),
        # too old for the 30-day figures, still waiting for a call back
        row(
            11,
            TODAY - timedelta(days=45),
            9,
            "incoming",
            "missed",
            "+7 343 011-22-39",
            "Boris",
            None,
        ),
        CallRow(call_id="c12", direction="incoming", status="ringing"),  # no start yet
    ]


@pytest.fixture
def journal(tmp_path, rows):
    with Journal(tmp_path / "journal.sqlite") as j:
        for r in rows:
            j.upsert_call(r)
        yield j


def test_figures(journal):
    fig = dashboard.figures(journal, TODAY)
    today, week, month = fig.kpi["today"], fig.kpi["week"], fig.kpi["month"]
    assert (today.calls, today.incoming, today.outgoing, today.missed) == (4, 3, 1, 1)
    assert today.talk == 120 + 60 + 300  # a missed call's ring time is not talk
    assert (week.calls, week.incoming, week.missed, week.talk) == (8, 6, 4, 480 + 90)
    assert (month.calls, month.incoming, month.outgoing, month.missed) == (10, 7, 3, 5)
    assert len(fig.days) == 30 and min(fig.days) == TODAY - timedelta(days=29)
    assert fig.days[MONDAY].missed == 2 and fig.days[TODAY].calls == 4
    assert next(iter(fig.owners)) == "Anna"  # most calls first
    month_, week_ = fig.owners["Anna"]
    assert (month_.calls, month_.missed, month_.talk, week_.calls) == (5, 2, 465, 3)


def test_waiting_for_call_back_matches_the_journal_rule(journal):
    fig = dashboard.figures(journal, TODAY)
    # newest first; the same caller in two formats is one line with two misses
    assert [w.phone for w in fig.waiting] == [
        "+7 343 011-22-35", "73430112237", "+7 343 011-22-38", "+7 343 011-22-39"]
    assert fig.waiting[1].times == 2 and fig.waiting[1].contact == "Sergey"
    assert fig.waiting_total == 4
    missed = journal.missed_not_called_back()  # what PZ_MISSED() counts, call by call
    assert sorted(r.call_id for r in missed) == ["c10", "c11", "c3", "c7", "c8"]


def test_one_owner_whether_written_as_extension_or_name(tmp_path):
    index = build_index_from([("Иван", "+73430112233", "101")],
                             [("Анна Смирнова", "101"), ("Борис", "102")])
    with Journal(tmp_path / "j.sqlite") as j:
        for n, owner in enumerate(["101", "Анна Смирнова", "анна  смирнова", "102", ""]):
            j.upsert_call(row(n, TODAY, 9, "incoming", "answered", "+73430112233", owner, 60))
        fig = dashboard.figures(j, TODAY, index.owner_name)
    assert {name: m.calls for name, (m, _w) in fig.owners.items()} == {
        "Анна Смирнова": 3, "Борис": 1, "": 1}


def build_index_from(contacts, managers):
    return build_index(
        [("Name", "Phone", "Owner"), *contacts], [("Owner", "Extension"), *managers]
    )


# ---------------------------------------------------------------------- in a workbook


def book(tmp_path: Path, lang: str, rows: list[CallRow]) -> Path:
    path = write_template(tmp_path / f"crm-{lang}.xlsx", lang)
    FileBook(path).write_calls([r for r in rows if r.start is not None])
    return path


def refresh(path: Path, journal: Journal, now: datetime | None = None) -> None:
    FileBook(path).write_parts(dashboard.writer(dashboard.figures(journal, TODAY), now))


def test_the_sheet_matches_a_recount_of_the_calls_sheet(tmp_path, rows, journal):
    """The Dashboard's figures against an independent count of the Calls sheet itself."""
    path = book(tmp_path, "en", rows)
    refresh(path, journal)
    refresh(path, journal)  # twice: nothing doubles
    wb = openpyxl.load_workbook(path)
    calls = list(wb["Calls"].iter_rows(min_row=2, values_only=True))
    by_id = {c[0]: c for c in calls}
    assert len(by_id) == len(calls)  # one row per call ID
    monday = TODAY - timedelta(days=TODAY.weekday())
    first = TODAY - timedelta(days=29)

    def count(since, kind=None):
        return sum(1 for c in calls if c[7] is not None and since <= c[7].date() <= TODAY
                   and (kind is None or ((kind == "missed") == (c[2] == "missed")
                        and (kind == "missed" or c[1] == kind))))

    dash = {r[0]: r for r in wb["Dashboard"].iter_rows(values_only=True) if r and r[0]}
    for label, since in (("Today", TODAY), ("This week", monday), ("Last 30 days", first)):
        got = dash[label]
        assert got[1] == count(since), label
        assert got[3] == count(since, "outgoing") and got[4] == count(since, "missed")
    assert dash["Waiting for a call back"][1] == 4
    assert wb["Dashboard"]["A1"].font.name and wb["Dashboard"]["A1"].font.b


def test_the_books_language_names_the_sheet_and_its_labels(tmp_path, rows, journal):
    path = book(tmp_path, "ru", rows)
    refresh(path, journal)
    wb = openpyxl.load_workbook(path)
    assert "Сводка" in wb.sheetnames and "Dashboard" not in wb.sheetnames
    ws = wb["Сводка"]
    assert ws["A1"].value == "Сводка по звонкам" and ws["A4"].value == "Сегодня"
    assert ws.column_dimensions["A"].width >= len("Ждут обратного звонка")  # fits RU labels


def test_a_refresh_replaces_its_parts_and_touches_nothing_else(tmp_path, rows, journal):
    path = book(tmp_path, "en", rows)
    refresh(path, journal)
    before = raw(path)
    for _ in range(3):
        refresh(path, journal, now=datetime(2026, 11, 26, 18, 0))
    after = raw(path)
    assert set(after) == set(before)  # no orphan drawings or charts pile up
    ours = {n for n in after if n.startswith(("xl/charts/", "xl/drawings/"))
            or n in ("xl/worksheets/sheet5.xml", "xl/worksheets/_rels/sheet5.xml.rels",
                     "xl/styles.xml", "[Content_Types].xml")}
    assert {n for n in after if after[n] != before[n]} <= ours
    assert len([n for n in after if n.startswith("xl/charts/")]) == 3


def test_an_old_dashboard_in_another_language_is_renamed_not_doubled(tmp_path, rows, journal):
    path = book(tmp_path, "ru", rows)
    wb = openpyxl.load_workbook(path)
    wb.create_sheet("Dashboard")  # made by an older version under an English locale
    wb.save(path)  # (a new book of the test's)
    refresh(path, journal)
    names = openpyxl.load_workbook(path).sheetnames
    assert names.count("Сводка") == 1 and "Dashboard" not in names


def raw(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def test_every_part_we_write_validates_against_the_ooxml_schemas(tmp_path, rows, journal):
    from tests.ooxml_schema import validate

    path = tmp_path / "crm.xlsx"
    wb = openpyxl.Workbook()  # a book of the test's own, with no Calls sheet yet
    wb.active.title = "Контакты"
    wb.active.append(["Имя", "Телефон", "Ответственный"])
    wb.save(path)
    before = raw(path)
    rows = [r for r in rows if r.start is not None]
    rows[0].recording = "https://rec.example/1.mp3"  # a hyperlink and its relationship
    FileBook(path).write_calls(rows)
    refresh(path, journal)
    after = raw(path)
    written = [n for n in after if before.get(n) != after[n]]
    assert {"xl/charts/chart1.xml", "xl/drawings/drawing1.xml", "[Content_Types].xml",
            "xl/workbook.xml", "xl/_rels/workbook.xml.rels"} <= set(written)
    for name in written:
        assert validate(name, after[name]) == [], name
    assert openpyxl.load_workbook(path).sheetnames == ["Контакты", "Звонки", "Сводка"]
