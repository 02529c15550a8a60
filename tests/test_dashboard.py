"""The Dashboard sheet: real .xlsx files written and read back with openpyxl."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, timedelta

import openpyxl
import pytest

from pz_excel import dashboard
from pz_excel.dashboard import compute, waiting_for_call_back, write_dashboard
from pz_excel.schema import CallRow

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


def test_figures(rows):
    fig = compute(rows, TODAY)
    today, week, month = fig.kpi["today"], fig.kpi["week"], fig.kpi["month"]
    assert (today.calls, today.incoming, today.outgoing, today.missed) == (4, 3, 1, 1)
    assert today.talk == 120 + 60 + 300  # a missed call's ring time is not talk
    assert (week.calls, week.incoming, week.missed, week.talk) == (8, 6, 4, 480 + 90)
    assert (month.calls, month.incoming, month.outgoing, month.missed) == (10, 7, 3, 5)
    assert len(fig.days) == 30 and min(fig.days) == TODAY - timedelta(days=29)
    assert fig.days[MONDAY].missed == 2 and fig.days[TODAY].calls == 4
    names = [name for name, _, _ in fig.owners.values()]
    assert names[0] == "Anna"  # most calls first
    anna = fig.owners["anna"]
    assert (anna[1].calls, anna[1].missed, anna[1].talk, anna[2].calls) == (5, 2, 465, 3)


def test_waiting_for_call_back_matches_the_journal_rule(rows):
    waiting = waiting_for_call_back(rows)
    phones_waiting = [w.phone for w in waiting]
    # newest first; the same caller in two formats is one line with two misses
    assert phones_waiting == [
        "+7 343 011-22-35",
        "73430112237",
        "+7 343 011-22-38",
        "+7 343 011-22-39",
    ]
    assert waiting[1].times == 2 and waiting[1].contact == "Sergey"


def _sheet_rows(ws):
    return [list(r) for r in ws.iter_rows(values_only=True)]


def _find(rows_, label):
    return next(i for i, r in enumerate(rows_) if r and r[0] == label)


def test_dashboard_is_written_read_back_and_has_its_charts(tmp_path, rows):
    wb = openpyxl.Workbook()
    wb.active.title = "Contacts"
    wb.create_sheet("Calls")
    write_dashboard(wb, rows, lang="en", today=TODAY)
    ws = wb["Dashboard"]
    assert len(ws._charts) == 2
    assert wb.active.title == "Contacts"  # rebuilding does not switch the user's view
    out = tmp_path / "crm.xlsx"
    wb.save(out)

    with zipfile.ZipFile(out) as zf:
        charts = sorted(n for n in zf.namelist() if n.startswith("xl/charts/chart"))
        assert len(charts) == 2
        daily = zf.read(charts[0]).decode("utf-8")
    assert 'grouping val="stacked"' in daily and 'overlap val="100"' in daily
    assert "Dashboard" in daily  # series refer to this sheet's cells

    back = openpyxl.load_workbook(out)
    assert back.sheetnames == ["Contacts", "Calls", "Dashboard"]
    ws = back["Dashboard"]
    assert len(ws._charts) == 2  # openpyxl reads its charts back too
    cells = _sheet_rows(ws)
    assert cells[0][0] == "Calls dashboard"
    assert cells[2][:6] == ["Period", "Calls", "Incoming", "Outgoing", "Missed", "Talk time"]
    assert cells[3][:5] == ["Today", 4, 3, 1, 1]
    assert cells[3][5] == timedelta(seconds=480)
    assert cells[4][:5] == ["This week", 8, 6, 2, 4]
    assert cells[5][:5] == ["Last 30 days", 10, 7, 3, 5]
    assert cells[6][:2] == ["Waiting for a call back", 4]
    assert ws["F4"].number_format == "[h]:mm:ss"

    per_day = _find(cells, "Date")
    days = cells[per_day + 1 : per_day + 31]
    assert days[0][0] == datetime.combine(TODAY - timedelta(days=29), datetime.min.time())
    assert days[-1][:5] == [datetime.combine(TODAY, datetime.min.time()), 2, 1, 1, 4]
    monday = days[29 - (TODAY - MONDAY).days]
    assert monday[:5] == [datetime.combine(MONDAY, datetime.min.time()), 0, 2, 0, 2]

    owners = _find(cells, "Owner")
    table = {r[0]: r[1:6] for r in cells[owners + 1 :] if r[0] and r[1] is not None}
    assert table["Anna"] == [5, 2, timedelta(seconds=465), 8, 3]
    assert table["(no owner)"][:2] == [2, 2]

    missed = _find(cells, "Client phone")
    first = cells[missed + 1]
    assert first[:3] == ["+7 343 011-22-35", "Olga", "Anna"]
    assert first[3] == at(TODAY, 11) and first[4] == 1


def test_russian_sheet_replaces_the_old_one_in_place(tmp_path, rows):
    wb = openpyxl.Workbook()
    wb.active.title = "Контакты"
    write_dashboard(wb, rows, lang="en", today=TODAY)
    wb.create_sheet("Звонки")
    write_dashboard(wb, rows, lang="ru", today=TODAY)
    assert wb.sheetnames == ["Контакты", "Сводка", "Звонки"]  # same place, one dashboard
    wb.active = 1
    write_dashboard(wb, rows, lang="ru", today=TODAY)
    assert wb.active.title == "Сводка"  # a dashboard on screen stays on screen
    out = tmp_path / "crm-ru.xlsx"
    wb.save(out)
    ws = openpyxl.load_workbook(out)["Сводка"]
    cells = _sheet_rows(ws)
    assert cells[0][0] == "Сводка по звонкам"
    assert cells[3][0] == "Сегодня" and cells[4][0] == "Эта неделя"
    assert any(r[0] == "Пропущенные без обратного звонка" for r in cells)
    with zipfile.ZipFile(out) as zf:
        assert len([n for n in zf.namelist() if n.startswith("xl/charts/chart")]) == 2


def test_empty_history_still_gives_a_readable_sheet(tmp_path):
    wb = openpyxl.Workbook()
    write_dashboard(wb, [], lang="en", today=TODAY)
    ws = wb["Dashboard"]
    assert len(ws._charts) == 1  # no owners: no owner chart
    out = tmp_path / "empty.xlsx"
    wb.save(out)
    cells = _sheet_rows(openpyxl.load_workbook(out)["Dashboard"])
    assert cells[3][:5] == ["Today", 0, 0, 0, 0]
    assert cells[_find(cells, "Client phone") + 1][0] == "none"


def test_long_call_back_list_is_capped_with_a_note(monkeypatch):
    monkeypatch.setattr(dashboard, "MISSED_SHOWN", 3)
    many = [row(i, TODAY, 9, "incoming", "missed", f"+7 343 011-23-{i:02d}") for i in range(10, 15)]
    wb = openpyxl.Workbook()
    write_dashboard(wb, many, lang="en", today=TODAY)
    cells = _sheet_rows(wb["Dashboard"])
    assert cells[6][:2] == ["Waiting for a call back", 5]
    assert "… and 2 more" in [r[0] for r in cells]


# ---------------------------------------------------------------------- refresh_file


def _crm(path, vba: bytes | None = None):
    wb = openpyxl.Workbook()
    wb.active.title = "Contacts"
    wb.active.append(["Name", "Phone", "Owner"])
    wb.create_sheet("Calls")
    wb.save(path)
    if vba is not None:  # a stand-in VBA part: openpyxl only has to carry it through
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("xl/vbaProject.bin", vba)
    return path


@pytest.mark.parametrize("in_child", [False, True])
def test_refresh_file_in_process_and_in_a_child_give_the_same_sheet(tmp_path, rows, in_child):
    path = _crm(tmp_path / "crm.xlsm", vba=b"\xd0\xcf\x11\xe0fake-vba")
    assert dashboard.refresh_file(path, rows, lang="en", today=TODAY, in_child=in_child)
    back = openpyxl.load_workbook(path)
    assert back.sheetnames == ["Contacts", "Calls", "Dashboard"]
    cells = _sheet_rows(back["Dashboard"])
    assert cells[3][:5] == ["Today", 4, 3, 1, 1] and cells[5][:5] == ["Last 30 days", 10, 7, 3, 5]
    with zipfile.ZipFile(path) as z:
        assert z.read("xl/vbaProject.bin") == b"\xd0\xcf\x11\xe0fake-vba"  # macros kept
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failing_child_is_a_clear_error_and_changes_nothing(tmp_path, rows):
    path = tmp_path / "crm.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(dashboard.DashboardFailed, match=r"\S"):
        dashboard.refresh_file(path, rows, lang="en", today=TODAY, in_child=True)
    assert path.read_bytes() == b"PK\x03\x04 not really a workbook"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_save_during_the_rebuild_wins(tmp_path, rows):
    """Someone saves the book while the child builds: their copy stays, we retry later."""
    path = _crm(tmp_path / "crm.xlsx")

    class SaveOnEnter:  # the Calls writer's lock, entered right after the build
        def __enter__(self):
            wb = openpyxl.load_workbook(path)
            wb["Calls"]["A1"] = "theirs"
            wb.save(path)

        def __exit__(self, *exc):
            return False

    assert not dashboard.refresh_file(path, rows, lang="en", today=TODAY,
                                      commit_lock=SaveOnEnter(), in_child=True)  # fmt: skip
    back = openpyxl.load_workbook(path)
    assert back["Calls"]["A1"].value == "theirs" and "Dashboard" not in back.sheetnames
