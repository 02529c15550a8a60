"""The Settings sheet, read one way by the CLI (``pz-excel run``) and the ribbon (Connect).

The rule, for a sheet typed by hand as much as for our template:

* a setting's label is one of ``schema.SETTING_ROWS``' labels in either language, or its
  key (``server``, ``phone``…), case and surrounding spaces ignored;
* the label may sit in any of the first :data:`LABEL_COLUMNS` columns (A–J), so a sheet
  with a title column or labels in column C reads the same as the template's A/B layout;
* its value is the next non-empty cell to the right of the label in the same row (empty
  when there is none: the value then belongs in the cell right after the label), help
  excepted: a cell in a column headed Help / Подсказка, or holding one of
  ``schema.SETTING_HELP``'s texts, is the template's explanation, never a value;
* the first row holding a label wins; rows and cells that are not labels are ignored.

Tables are lists of rows, row 1 first, each a list of cell values from column A (what
``livebook``'s ``sheet_table`` returns for the open book; :func:`read_settings_sheet`
builds the same from the file).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pz_excel.crm.schema import SETTING_HELP, SETTING_ROWS, SETTINGS, cell_text
from pz_excel.i18n import Text, UserError, current_lang

LABEL_COLUMNS = 10  # labels are looked for in columns A–J

Table = Sequence[Sequence[Any]]


@dataclass(frozen=True)
class SettingCell:
    row: int  # 1-based row of the label
    col: int  # 1-based column of the value (or where it belongs when empty)
    value: str


def _label_keys() -> dict[str, str]:
    labels = {label.strip().casefold(): key for key, pair in SETTING_ROWS.items() for label in pair}
    labels.update({key: key for key in SETTING_ROWS})
    return labels


def parse_settings(table: Table) -> dict[str, SettingCell]:
    """Settings by key: where each value is and what it says (see the module's rule)."""
    labels = _label_keys()
    help_columns = _help_columns(table, labels)
    found: dict[str, SettingCell] = {}
    for number, row in enumerate(table, start=1):
        for index, cell in enumerate(list(row or ())[:LABEL_COLUMNS]):
            key = labels.get(str(cell or "").strip().casefold())
            if key is None:
                continue
            if key not in found:
                found[key] = _value_right_of(number, row, index, help_columns)
            break  # one label per row: what follows it is its value
    return found


def _help_columns(table: Table, labels: Mapping[str, str]) -> set[int]:
    """0-based columns headed Help / Подсказка in a row that holds no setting label: the
    template's help column, whose text would otherwise be read as an empty setting's
    value."""
    headers = {name.casefold() for name in SETTINGS.column("help").names}
    columns: set[int] = set()
    for row in table:
        texts = [str(cell or "").strip().casefold() for cell in row or ()]
        if any(text in labels for text in texts[:LABEL_COLUMNS]):
            continue
        columns.update(i for i, text in enumerate(texts) if text in headers)
    return columns


@functools.cache
def _help_texts() -> frozenset[str]:
    # A help text copied out of its column (rows moved by hand) is still no value.
    return frozenset(text.casefold() for pair in SETTING_HELP.values() for text in pair)


def _value_right_of(
    number: int, row: Sequence[Any], index: int, help_columns: set[int]
) -> SettingCell:
    for right in range(index + 1, len(row)):
        if right in help_columns:
            continue
        text = cell_text(row[right])
        if text and text.casefold() not in _help_texts():
            return SettingCell(number, right + 1, text)
    return SettingCell(number, index + 2, "")


def settings_values(cells: Mapping[str, SettingCell]) -> dict[str, str]:
    """The non-empty values by key."""
    return {key: cell.value for key, cell in cells.items() if cell.value}


def area_code_setting(values: Mapping[str, str], given: str | None = None) -> str:
    """The area code (digits, "" for none): ``given`` (``--area-code``) or the sheet's;
    a bad one is a ``UserError`` (the rule: ``phones.parse_area_code``)."""
    from pz_excel.crm.phones import parse_area_code

    return parse_area_code(given if given else values.get("area_code"))


def checked_settings(server: str = "", phone: str = "", area_code: str = "") -> dict[str, str]:
    """The given (non-empty) values for a new Settings sheet (``pz-excel init``), checked
    before anything is written by the rules that already exist: the server address by
    ``protocol.login.normalize_server_url``, the extension by ``crm.phones`` (a short
    internal number), the area code by :func:`area_code_setting`. A ``UserError`` names the
    first bad one."""
    from pz_excel.crm.phones import MAX_SHORT, extension
    from pz_excel.protocol.login import ProtocolError, normalize_server_url

    out: dict[str, str] = {}
    server, phone = server.strip(), phone.strip()
    if server:
        try:
            normalize_server_url(server)
        except ProtocolError as exc:
            raise UserError(
                Text(
                    f"--server {server}: {exc}; give the connector's address, "
                    "e.g. ws://pbx.office:10150",
                    f"адрес сервера «{server}» указан неверно: нужен адрес коннектора, "
                    "например ws://pbx.office:10150",
                )
            ) from None
        out["server"] = server
    if phone:
        key = extension(phone)
        if key is None:  # the agent's extension rule: crm/phones.py
            raise UserError(
                Text(
                    f"extension {phone!r} is not valid: give your extension, up to "
                    f"{MAX_SHORT} digits, e.g. 101",
                    f"добавочный «{phone}» указан неверно: нужен ваш добавочный номер "
                    f"(до {MAX_SHORT} цифр), например 101",
                )
            )
        out["phone"] = key
    code = area_code_setting({}, area_code)
    if code:
        out["area_code"] = code
    return out


def read_settings_sheet(book: Path) -> dict[str, str]:
    """Values of the Settings sheet of the file ``book``; {} if it or the sheet is absent."""
    from pz_excel.crm.contacts import read_small_sheet

    if not book.exists():
        return {}
    try:
        rows = read_small_sheet(book, SETTINGS)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            Text(f"cannot read workbook {book}: {exc}", f"не удалось прочитать книгу {book}: {exc}")
        ) from exc
    if rows is None:
        return {}
    return settings_values(parse_settings(_dense(rows)))


def _dense(rows: Sequence[tuple[int, Mapping[int, object]]]) -> list[list[object]]:
    """``read_small_sheet``'s sparse rows (row number, {0-based column: value}) as a table."""
    height = max((number for number, _ in rows), default=0)
    table: list[list[object]] = [[] for _ in range(height)]
    for number, cells in rows:
        width = max(cells, default=-1) + 1
        table[number - 1] = [cells.get(col) for col in range(width)]
    return table


def table_lang(table: Table) -> str:
    """``ru`` if the sheet's labels are Russian, else the user's language."""
    ru_labels = {pair[1].casefold() for pair in SETTING_ROWS.values()}
    ru_labels |= {SETTINGS.column("setting").ru.casefold()}
    for row in table:
        for cell in row:
            if str(cell or "").strip().casefold() in ru_labels:
                return "ru"
    return current_lang()


def setting_writes(
    cells: Mapping[str, SettingCell], new: Mapping[str, str], table_rows: int, lang: str
) -> list[tuple[int, int, str]]:
    """Cell writes (row, col, value) that put ``new`` values on the Settings sheet.

    Existing settings are updated where :func:`parse_settings` found them; missing ones are
    appended below the last row, label in column A (the sheet's language), value in B.
    """
    writes: list[tuple[int, int, str]] = []
    next_row = max(table_rows, 1) + 1
    for key, value in new.items():
        cell = cells.get(key)
        if cell is not None:
            if value != cell.value:
                writes.append((cell.row, cell.col, value))
        elif value:
            en, ru = SETTING_ROWS[key]
            writes.append((next_row, 1, ru if lang == "ru" else en))
            writes.append((next_row, 2, value))
            next_row += 1
    return writes
