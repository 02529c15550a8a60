"""The Settings sheet is read one way: ``pz-excel run`` (the file, through
``books.settings.read_settings_sheet``) and the ribbon's Connect (the open book's cells,
through ``books.settings.parse_settings``) get the same values from the same sheet."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from pz_excel.books.settings import (
    LABEL_COLUMNS,
    SettingCell,
    parse_settings,
    read_settings_sheet,
    setting_writes,
    settings_values,
)
from pz_excel.books.template import write_template


def write_sheet(path: Path, rows: list[list], title: str = "Settings") -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def ribbon_table(path: Path, title: str) -> list[list]:
    """What ``excel_ui.sheet_table`` hands the ribbon: A1 to the last used cell, dense."""
    ws = openpyxl.load_workbook(path)[title]
    return [list(row) for row in ws.iter_rows(values_only=True)]


def both_paths(path: Path, title: str = "Settings") -> tuple[dict, dict]:
    cli = read_settings_sheet(path)
    ribbon = settings_values(parse_settings(ribbon_table(path, title)))
    return cli, ribbon


def test_labels_in_column_c_are_read_the_same_by_the_cli_and_the_ribbon(tmp_path):
    path = write_sheet(
        tmp_path / "c.xlsx",
        [
            ["Our phone settings"],
            [],
            [None, None, "Setting", "Value"],
            [None, "note", "Server URL", "ws://pbx:10150"],
            [None, None, "Extension", None, 101],  # the value: next non-empty cell
            [None, None, "client_type", "excel"],  # the key itself is a label too
            [None, None, "Fallback extension"],  # no value
        ],
    )
    cli, ribbon = both_paths(path)
    expected = {"server": "ws://pbx:10150", "phone": "101", "client_type": "excel"}
    assert cli == ribbon == expected
    cells = parse_settings(ribbon_table(path, "Settings"))
    assert cells["phone"] == SettingCell(5, 5, "101")
    assert cells["fallback"] == SettingCell(7, 4, "")  # its value belongs right of the label


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_template_reads_the_same_both_ways(tmp_path, lang):
    path = write_template(
        tmp_path / f"{lang}.xlsx", lang=lang, settings={"server": "ws://pbx:1", "phone": "7"}
    )
    title = "Настройки" if lang == "ru" else "Settings"
    cli, ribbon = both_paths(path, title)
    assert cli == ribbon == {"server": "ws://pbx:1", "phone": "7"}


def test_first_label_wins_and_labels_beyond_column_j_are_text(tmp_path):
    far = [None] * LABEL_COLUMNS + ["Extension", "999"]  # column K: not a label column
    path = write_sheet(
        tmp_path / "x.xlsx",
        [
            ["  адрес сервера ", "ws://first:1"],
            ["Server URL", "ws://second:2"],
            far,
            ["Добавочный номер", "Extension"],  # the value is whatever is right of the label
        ],
        title="Настройки",
    )
    cli, ribbon = both_paths(path, "Настройки")
    assert cli == ribbon == {"server": "ws://first:1", "phone": "Extension"}


def test_writes_go_where_the_values_were_read():
    table = [[None, "Server URL", None, "ws://old:1"], [None, "Extension"]]
    cells = parse_settings(table)
    writes = setting_writes(cells, {"server": "ws://new:1", "phone": "101"}, len(table), "en")
    assert writes == [(1, 4, "ws://new:1"), (2, 3, "101")]


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_help_column_is_never_a_value(tmp_path, lang):
    path = write_template(tmp_path / f"{lang}.xlsx", lang=lang)  # values empty, help beside
    title = "Настройки" if lang == "ru" else "Settings"
    assert both_paths(path, title) == ({}, {})
    cells = parse_settings(ribbon_table(path, title))
    # A value typed by the ribbon's Settings goes into the Value column, not over the help.
    table = ribbon_table(path, title)
    assert setting_writes(cells, {"phone": "101"}, len(table), lang) == [(3, 2, "101")]


def test_help_by_hand_is_skipped_by_its_header_or_its_text(tmp_path):
    from pz_excel.crm.schema import SETTING_HELP

    path = write_sheet(
        tmp_path / "h.xlsx",
        [
            [None, "Setting", "Value", None, "Help"],
            [None, "Server URL", None, None, "ask the admin"],  # under "Help": no value
            [None, "Extension", "102", None, "mine"],
            [None, "Area code", SETTING_HELP["area_code"][1]],  # a help text moved by hand
        ],
    )
    cli, ribbon = both_paths(path)
    assert cli == ribbon == {"phone": "102"}
    assert parse_settings(ribbon_table(path, "Settings"))["server"] == SettingCell(2, 3, "")
