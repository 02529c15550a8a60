"""Which number a ribbon button dials: the selection on a table row or a phone cell, the
Managers sheet's owner of an extension, and the newest missed call. Pure: sheets arrive as
rows of plain values (read from Excel by ``pz_excel.books.excel_ui``), tested without Excel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pz_excel.crm import phones
from pz_excel.crm.schema import CALLS, CONTACTS, MANAGERS, Sheet
from pz_excel.excel.udf_logic import cell_text
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.header import HeaderNotFound, find_header

HEADER_READ_ROWS = 100  # rows looked at for a header (empty ones do not count: xlsx.header)
SELECTION_LIMIT = 1000  # cells of a selection looked at; whole columns are clipped

# Selection cell: (sheet name, row, column, value), rows and columns 1-based.
Cell = tuple[str, int, int, Any]
RowReader = Callable[[str, int], Sequence[Any]]


def _names(col_names: Sequence[str]) -> set[str]:
    return {n.strip().casefold() for n in col_names}


def table_header(
    row_of: Callable[[int], Sequence[Any]], sheet: Sheet, need: str, last: int = HEADER_READ_ROWS
) -> tuple[int, dict[str, int]]:
    """(header row, {column key: 1-based column}) of a table sheet whose header holds column
    ``need``, by :func:`pz_excel.xlsx.header.find_header` (the rule every reader of our sheets
    uses); (0, {}) if none. ``row_of(n)`` reads row ``n``; rows are read only as far as needed,
    never past ``last``."""
    rows = ((n, _filled(row_of(n))) for n in range(1, last + 1))
    try:
        number, cols, _lang = find_header(rows, sheet.header_names, [need])
    except HeaderNotFound:
        return 0, {}
    return number, cols


def _filled(row: Sequence[Any]) -> dict[int, Any]:
    return {col: value for col, value in enumerate(row, 1) if value is not None and value != ""}


def _cell_at(row: Sequence[Any], col: int | None) -> Any:
    return row[col - 1] if col and 0 < col <= len(row) else None


def _phone_text(value: Any) -> str:
    """A cell as a dialable candidate; dates and flags are never phone numbers."""
    if isinstance(value, (datetime, date, bool)):
        return ""
    return cell_text(value)


@dataclass(frozen=True)
class Pick:
    """The number a button will dial, and how to tell the user about it."""

    number: str  # normalised: the number's identity
    shown: str  # as people read it
    who: str = ""  # contact name when known
    where: str = ""  # e.g. Contacts!B5
    dial: str = ""  # as typed: the connector gets numbers the way users write them

    @property
    def to_dial(self) -> str:
        return self.dial or self.number

    def label(self) -> str:
        return f"{self.who} ({self.shown})" if self.who else self.shown


# Table sheet → (its phone column, the column naming the person).
_TABLES: dict[str, tuple[Sheet, str, str]] = {
    CONTACTS.key: (CONTACTS, "phone", "name"),
    CALLS.key: (CALLS, "client_phone", "contact"),
}


def _table_of(sheet_name: str, tables: Sequence[Sheet]) -> Sheet | None:
    name = sheet_name.strip().casefold()
    for sheet in tables:
        if name in _names(sheet.names):
            return sheet
    return None


def _address(sheet: str, row: int, col: int) -> str:
    from pz_excel.xlsx.refs import get_column_letter

    return f"{sheet}!{get_column_letter(col)}{row}"


def _dialable(raw: str, who: str, where: str, area_code: str = "") -> Pick | None:
    # The Settings area code makes a bare city number (555-00-00) dialable, as the agent
    # reads contacts and callers: one rule, crm.phones.
    key = phones.normalize(raw, area_code=area_code) if raw else None
    return Pick(key, phones.display(key), who, where, raw) if key else None


def pick_number(
    selection: Sequence[Cell],
    row_of: RowReader,
    *,
    tables: Sequence[Sheet] = (CONTACTS, CALLS),
    tables_only: bool = False,
    area_code: str = "",
) -> Pick | None:
    """The number to dial for a selection, first valid cell first.

    On a row of a table sheet (Contacts, Calls) the row's phone column is dialled whatever
    cell of the row is selected: a name, a company, a date or a duration there is never a
    number to dial. Elsewhere the cell's own value is dialled if it is a phone number.
    ``row_of(sheet, row)`` reads a sheet row (header rows included). Returns ``None`` only
    with ``tables_only`` when nothing selected is on a table row; otherwise raises a
    :class:`UserError` saying why nothing can be dialled.
    """
    headers: dict[str, tuple[int, dict]] = {}
    rows: dict[tuple[str, int], Sequence[Any]] = {}
    first_text = ""
    on_table_row = False

    def read(sheet: str, row: int) -> Sequence[Any]:
        if (sheet, row) not in rows:
            rows[(sheet, row)] = row_of(sheet, row)
        return rows[(sheet, row)]

    for sheet_name, row, col, value in selection[:SELECTION_LIMIT]:
        table = _table_of(sheet_name, tables)
        if table is not None:
            _, phone_key, who_key = _TABLES[table.key]
            if sheet_name not in headers:
                headers[sheet_name] = table_header(
                    lambda r, name=sheet_name: read(name, r), table, phone_key
                )
            header_row, cols = headers[sheet_name]
            if header_row and row > header_row:
                on_table_row = True
                line = read(sheet_name, row)
                found = _dialable(
                    _phone_text(_cell_at(line, cols.get(phone_key))),
                    cell_text(_cell_at(line, cols.get(who_key))),
                    _address(sheet_name, row, cols[phone_key]),
                    area_code,
                )
                if found:
                    return found
                first_text = first_text or cell_text(value)
                continue
        if tables_only:
            continue
        found = _dialable(_phone_text(value), "", _address(sheet_name, row, col), area_code)
        if found:
            return found
        first_text = first_text or cell_text(value)
    if tables_only and not on_table_row:
        return None
    if not selection:
        raise UserError(
            Text(
                "Select a cell with a phone number, or a row of Contacts or Calls.",
                "Выделите ячейку с номером телефона или строку листа «Контакты» или «Звонки».",
            )
        )
    if on_table_row:
        raise UserError(
            Text(
                "The selected row has no valid phone number in its phone column.",
                "В выделенной строке нет правильного номера в столбце телефона.",
            )
        )
    if first_text:
        raise UserError(
            Text(
                f"«{first_text}» is not a phone number. Select a phone number, "
                "or any cell of a row of Contacts or Calls.",
                f"«{first_text}» — не номер телефона. Выделите номер телефона "
                "или любую ячейку строки листа «Контакты» или «Звонки».",
            )
        )
    raise UserError(
        Text(
            "The selected cells are empty. Select a phone number, or a row of Contacts or Calls.",
            "Выделенные ячейки пусты. Выделите номер телефона или строку листа «Контакты» "
            "или «Звонки».",
        )
    )


def next_contact_row(rows: Sequence[Sequence[Any]]) -> tuple[int, dict[str, int]]:
    """Where the ribbon's *Add contact* writes in Contacts read as ``rows`` (row 1 first):
    the row below the last one holding anything under the header (as the agent appends to
    the file), and the header's {column key: 1-based column}."""
    header_row, cols = table_header(
        lambda n: rows[n - 1] if n <= len(rows) else [], CONTACTS, "phone"
    )
    if not header_row:
        raise UserError(
            Text(
                "Contacts has no header row with a Phone column: add the header first.",
                "На листе «Контакты» нет строки заголовков со столбцом «Телефон».",
            )
        )
    last = next(
        (n for n in range(len(rows), header_row, -1) if _filled(rows[n - 1])), header_row
    )
    return last + 1, cols


def owner_for_extension(table: Sequence[Sequence[Any]], extension: str) -> str | None:
    """The Managers sheet's owner whose extension is ``extension``, if any."""
    header_row, cols = table_header(
        lambda r: table[r - 1] if r <= len(table) else (), MANAGERS, "extension", len(table)
    )
    if not header_row or "owner" not in cols:
        return None
    for row in table[header_row:]:
        if cell_text(_cell_at(row, cols["extension"])) == extension.strip():
            owner = cell_text(_cell_at(row, cols["owner"]))
            if owner:
                return owner
    return None


def latest_missed(calls: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest missed call with a number (the API's rows, ISO start times)."""
    usable = [c for c in calls if str(c.get("client_phone") or "").strip()]
    return max(usable, key=lambda c: str(c.get("start") or ""), default=None)


def call_back_pick(call: Mapping[str, Any]) -> Pick:
    raw = str(call.get("client_phone") or "")
    found = _dialable(raw, str(call.get("contact") or ""), "")
    if found is None:
        raise UserError(
            Text(
                f"The missed call's number «{raw}» cannot be dialled.",
                f"Номер пропущенного звонка «{raw}» набрать нельзя.",
            )
        )
    return found
