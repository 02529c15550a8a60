"""``pz-excel team export`` (pz_excel/team/export.py): the team's calls of a date range to
a NEW .xlsx (read back with openpyxl) or a UTF-8 CSV with a BOM, from a real journal."""

from __future__ import annotations

import csv
from datetime import date, datetime

import openpyxl
import pytest
from click.testing import CliRunner

from pz_excel.agent import sqldb
from pz_excel.agent.journal import Journal
from pz_excel.cli import team_admin_cmd
from pz_excel.crm.schema import CALLS, CallRow, word
from pz_excel.i18n import UserError
from pz_excel.team import export

CALLS_IN_JOURNAL = [
    CallRow("a1", "incoming", "missed", "+7 343 011-22-33", "Ёжиков Пётр", "Анна", "101",
            datetime(2026, 1, 4, 23, 59, 59), datetime(2026, 1, 5, 0, 0, 10), 0),
    CallRow("a2", "incoming", "completed", "+7 343 011-22-33", "=cmd|' /C calc'!A0", "Анна",
            "101", datetime(2026, 1, 5, 0, 0, 0), datetime(2026, 1, 5, 0, 1, 0), 60,
            "https://rec.example/a2.mp3", "1", True),
    CallRow("a3", "outgoing", "completed", "83430112244", "ООО «Ромашка»", "Борис", "102",
            datetime(2026, 1, 6, 12, 30, 0), datetime(2026, 1, 6, 12, 35, 0), 300),
    CallRow("a4", "outgoing", "answered", "+7 343 011-22-55", "", "", "103",
            datetime(2026, 1, 7, 23, 59, 59)),
    CallRow("a5", "incoming", "completed", "+7 343 011-22-66", "Поздний", "Вера", "103",
            datetime(2026, 1, 8, 0, 0, 0), datetime(2026, 1, 8, 0, 0, 5), 5),
]
IN_RANGE = ["a2", "a3", "a4"]  # --from 2026-01-05 --to 2026-01-07


@pytest.fixture(params=["sqlite", "postgresql"])
def team_db(request, tmp_path):
    target = (str(tmp_path / "team.sqlite") if request.param == "sqlite"
              else request.getfixturevalue("pg_dsn"))
    with Journal(target) as journal:
        for row in CALLS_IN_JOURNAL:
            journal.upsert_call(row)
    return target


def expected(lang: str) -> list[CallRow]:
    return [r for r in CALLS_IN_JOURNAL if r.call_id in IN_RANGE]


def test_query_reads_back_the_journals_rows_in_range(team_db):
    db = sqldb.connect(team_db)
    try:
        since, until = export.day_range(date(2026, 1, 5), date(2026, 1, 7))
        assert list(export.calls(db, since, until)) == expected("en")
        assert [r.call_id for r in export.calls(db, extension="101")] == ["a1", "a2"]
        assert [r.call_id for r in export.calls(db, limit=2, newest_first=True)] == ["a5", "a4"]
    finally:
        db.close()


def test_query_pages_through_many_rows(tmp_path, monkeypatch):
    path = tmp_path / "big.sqlite"
    with Journal(path) as journal:
        for i in range(25):  # equal start times: the call ID orders them in a page
            journal.upsert_call(CallRow(f"c{i:02d}", "incoming", "completed", "101",
                                        start=datetime(2026, 2, 1, 9, i // 10)))
    from pz_excel.agent import journal_sql

    monkeypatch.setattr(journal_sql, "BATCH", 4)
    db = sqldb.connect(path)
    try:
        got = [r.call_id for r in export.calls(db, datetime(2026, 1, 1), datetime(2026, 3, 1))]
    finally:
        db.close()
    assert got == [f"c{i:02d}" for i in range(25)]


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_xlsx_equals_the_journals_calls_in_range(team_db, tmp_path, lang):
    out = tmp_path / "out" / "calls.xlsx"
    result = CliRunner().invoke(team_admin_cmd.export_command, [
        "--db", team_db, "--from", "2026-01-05", "--to", "2026-01-07", "--out", str(out),
        "--lang", lang])
    assert result.exit_code == 0, result.output
    assert "3 calls" in result.output
    book = openpyxl.load_workbook(out)
    sheet = book[CALLS.title(lang)]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [c.header(lang) for c in CALLS.columns]
    want = []
    for call in expected(lang):
        values = call.values()
        values["direction"] = word(call.direction, lang)
        values["status"] = word(call.status, lang)
        values["late"] = word("yes", lang) if call.late else None
        want.append(tuple(values[c.key] if values[c.key] != "" else None for c in CALLS.columns))
    assert rows[1:] == want
    # The contact text that looks like a formula is text, never a formula.
    assert sheet.cell(row=2, column=5).data_type == "s"


def test_csv_has_a_bom_and_cyrillic_intact(team_db, tmp_path):
    out = tmp_path / "calls.csv"
    result = CliRunner().invoke(team_admin_cmd.export_command, [
        "--db", team_db, "--from", "2026-01-04", "--to", "2026-01-06", "--out", str(out),
        "--lang", "ru"])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines(), delimiter=";"))
    assert rows[0] == [c.ru for c in CALLS.columns]
    assert [r[0] for r in rows[1:]] == ["a1", "a2", "a3"]
    assert rows[1][4] == "Ёжиков Пётр" and rows[3][4] == "ООО «Ромашка»"
    assert rows[1][1:3] == ["входящий", "пропущен"]
    assert rows[1][7] == "04.01.2026 23:59:59"  # a date Russian Excel reads as one
    assert rows[2][4].startswith("'=")  # a formula-like text stays text
    assert rows[2][3] == "+7 343 011-22-33"  # a phone is not quoted
    assert rows[2][12] == "да"


def test_existing_or_wrong_out_is_refused_clearly(team_db, tmp_path):
    out = tmp_path / "calls.xlsx"
    out.write_bytes(b"the user's own file")
    args = ["--db", team_db, "--from", "2026-01-05", "--to", "2026-01-07", "--out"]
    runner = CliRunner()
    result = runner.invoke(team_admin_cmd.export_command, [*args, str(out)])
    assert isinstance(result.exception, UserError) and "--force" in result.exception.text.en
    assert out.read_bytes() == b"the user's own file"
    assert runner.invoke(team_admin_cmd.export_command, [*args, str(out), "--force"]
                         ).exit_code == 0
    assert openpyxl.load_workbook(out).sheetnames == ["Calls"]

    result = runner.invoke(team_admin_cmd.export_command, [*args, str(tmp_path / "x.pdf")])
    assert isinstance(result.exception, UserError) and ".csv" in result.exception.text.en
    result = runner.invoke(team_admin_cmd.export_command, [
        "--db", str(tmp_path / "missing.sqlite"), "--from", "2026-01-05", "--to",
        "2026-01-07", "--out", str(tmp_path / "y.csv")])
    assert isinstance(result.exception, UserError) and "does not exist" in str(
        result.exception.text.en)
    assert not (tmp_path / "missing.sqlite").exists()  # not created by asking
    result = runner.invoke(team_admin_cmd.export_command, [
        "--db", team_db, "--from", "2026-01-07", "--to", "2026-01-05", "--out",
        str(tmp_path / "z.csv")])
    assert isinstance(result.exception, UserError) and "before" in result.exception.text.en
    result = runner.invoke(team_admin_cmd.export_command, [
        "--db", team_db, "--from", "5.1.2026", "--to", "2026-01-05", "--out",
        str(tmp_path / "z.csv")])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_a_database_without_calls_is_named(tmp_path):
    users_only = tmp_path / "other.sqlite"
    sqldb.connect(users_only).execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(UserError) as err:
        export.open_team_db(str(users_only))
    assert "team database" in err.value.text.en
