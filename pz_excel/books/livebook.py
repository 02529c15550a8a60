"""The workbook open in Excel, driven through xlwings: the live backend of the Calls sheet.

``LiveBook`` upserts call rows on the Calls sheet, pops the caller's Contacts row and sets the
status bar. It is one of the modules of the xlwings layer (with ``excel_app``, ``excel_ui`` and
``excel_addin_steps``); ``tests/test_livebook_static.py`` checks each xlwings attribute they use
against the installed xlwings. This module imports on Linux, where :class:`LiveBook` raises
:class:`ExcelUnavailable`, a clear one-line error.

Variables holding xlwings objects are annotated (``sheet: xw.Sheet``); the static test relies on
those annotations, keep them when editing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pz_excel.books.excel_app import (
    TEXT_FORMAT,
    ExcelUnavailable,
    excel_text,
    find_open_book,
    raise_if_busy,
    sheet_named,
    used_bounds,
    xlwings_module,
)
from pz_excel.crm.schema import CALLS, CONTACTS, CallRow, Column, cell_text, word
from pz_excel.i18n import Text, UserError, current_lang
from pz_excel.xlsx.cells import HEADER_SCAN_ROWS
from pz_excel.xlsx.header import HeaderNotFound, find_header

if TYPE_CHECKING:
    import xlwings as xw

__all__ = ["BookNotOpen", "ExcelUnavailable", "LiveBook", "is_open_in_excel"]

HIGHLIGHT = (255, 235, 156)  # soft yellow for the screen-pop row
# Columns whose values are identifiers: never let Excel turn them into numbers
# ("+7999…" → 7.999E+10, "0012" → 12, long call IDs → rounded floats).
TEXT_KEYS = {"call_id", "line"} | {c.key for c in CALLS.columns if c.kind == "phone"}
# Rows read in one go to find the header: empty rows do not count towards HEADER_SCAN_ROWS.
HEADER_READ_ROWS = 100


@dataclass
class CallsLayout:
    """Where the Calls table sits on its sheet."""

    header_row: int
    cols: dict[str, int]  # Calls column key -> 1-based column
    last_row: int  # last row holding anything, header included


class BookNotOpen(UserError):
    """The workbook is not open in any running Excel."""


def is_open_in_excel(path: str | Path) -> bool:
    """Whether ``path`` is open in a running Excel. ``False`` wherever Excel can't be reached
    (Linux, no Excel, COM trouble); never raises: callers use it to choose a backend."""
    if sys.platform not in ("win32", "darwin"):
        return False
    try:
        return find_open_book(xlwings_module(), path) is not None
    except Exception:  # noqa: BLE001 - any failure means "not reachable": use the file backend
        return False


def _filled(line: Sequence[Any]) -> dict[int, Any]:
    """A row's non-empty cells by 1-based column (what ``find_header`` reads)."""
    return {col: value for col, value in enumerate(line, 1) if value is not None and value != ""}


def runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted ints as (first, last)."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


class LiveBook:
    """The CRM workbook as open in Excel. Use it from one thread at a time."""

    def __init__(self, path_or_book: str | Path | xw.Book, lang: str | None = None):
        xw = xlwings_module()
        book: xw.Book
        if isinstance(path_or_book, (str, Path)):
            found = find_open_book(xw, path_or_book)
            if found is None:
                raise BookNotOpen(
                    Text(
                        "the workbook {p} is not open in Excel",
                        "книга {p} не открыта в Excel",
                    ).format(p=path_or_book)
                )
            book = found
        else:
            book = path_or_book
        self._book: xw.Book = book
        self._app: xw.App = book.app
        self.lang = lang or self._guess_lang()
        self.description = f"{book.name} (Excel)"
        self._highlighted: tuple[str, int, Any] | None = None  # sheet, row, previous colour
        self._status_set = False

    # -- sheets and columns -------------------------------------------------------------------

    def _guess_lang(self) -> str:
        names: set[str] = set()
        sheet: xw.Sheet
        for sheet in self._book.sheets:
            names.add(sheet.name)
        if CALLS.ru in names or CONTACTS.ru in names:
            return "ru"
        if CALLS.en in names or CONTACTS.en in names:
            return "en"
        return current_lang()

    def _calls_sheet(self) -> xw.Sheet:
        """The Calls sheet; made (with our header) when the book has none, as the file
        backend does."""
        sheet = sheet_named(self._book, CALLS.names)
        if sheet is not None:
            return sheet
        sheets = self._book.sheets
        active: xw.Sheet = sheets.active
        last: xw.Sheet = sheets[len(sheets) - 1]
        sheet = sheets.add(name=CALLS.title(self.lang), after=last)
        active.activate()  # adding a sheet selects it: give the user their sheet back
        return sheet

    def _layout(self, sheet: xw.Sheet) -> CallsLayout:
        """Find the header row and our columns in it by :func:`pz_excel.xlsx.header.find_header`,
        the rule the file backend uses (first of the top non-empty rows holding every required
        Calls header, either language, any order). An empty sheet gets our header in row 1."""
        last_row, last_col = used_bounds(sheet)
        height = min(last_row, HEADER_READ_ROWS)
        scan: xw.Range = sheet.range((1, 1), (height, max(last_col, 1)))
        top = scan.options(ndim=2).value
        rows = [(number, _filled(line)) for number, line in enumerate(top, 1)]
        try:
            header_row, cols, lang = find_header(rows, CALLS.header_names, CALLS.required)
        except HeaderNotFound as exc:
            if any(cells for _, cells in rows):
                raise self._missing_error(sheet, [CALLS.column(k) for k in exc.missing]) from None
            header: xw.Range = sheet.range((1, 1), (1, len(CALLS.columns)))
            header.value = [[col.header(self.lang) for col in CALLS.columns]]
            cols = {col.key: i for i, col in enumerate(CALLS.columns, 1)}
            return CallsLayout(header_row=1, cols=cols, last_row=1)
        if lang is not None:  # words written follow the sheet's own headers
            self.lang = lang
        return CallsLayout(header_row=header_row, cols=cols, last_row=max(last_row, header_row))

    def _missing_error(self, sheet: xw.Sheet, missing: list[Column]) -> UserError:
        en = ", ".join(f"“{c.en}”" for c in missing)
        ru = ", ".join(f"«{c.ru}»" for c in missing)
        return UserError(
            Text(
                f"sheet “{sheet.name}” of {self._book.name} has no column {en} (Russian: {ru})"
                f" in its first {HEADER_SCAN_ROWS} rows; add the header back",
                f"на листе «{sheet.name}» книги {self._book.name} нет столбца {ru}"
                f" (по-английски: {en}) в первых {HEADER_SCAN_ROWS} строках; верните заголовок",
            )
        )

    def _read_ids(self, sheet: xw.Sheet, layout: CallsLayout) -> dict[str, int]:
        """Call ID → row, from one read of the ID column below the header (first row wins
        over a copy)."""
        rows: dict[str, int] = {}
        first = layout.header_row + 1
        if layout.last_row >= first:
            id_col = layout.cols["call_id"]
            column: xw.Range = sheet.range((first, id_col), (layout.last_row, id_col))
            for offset, (value,) in enumerate(column.options(ndim=2).value):
                key = cell_text(value)
                if key and key not in rows:
                    rows[key] = first + offset
        return rows

    # -- values -------------------------------------------------------------------------------

    def _cell(self, col: Column, value: object) -> object:
        if value is None or value == "":
            return None
        if col.kind == "bool":
            return word("yes" if value else "no", self.lang) or None
        if col.kind == "datetime" and isinstance(value, datetime):
            # COM dates carry no zone: show local wall-clock time
            return value.astimezone().replace(tzinfo=None) if value.tzinfo else value
        if col.kind == "int":
            return int(value)  # type: ignore[call-overload]
        if col.key in ("direction", "status"):
            try:
                return word(str(value), self.lang)
            except KeyError:
                pass
        return excel_text(str(value))

    # -- the CallsBook interface -------------------------------------------------------------

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert rows by Call ID. Reads the ID column once, then writes each contiguous block
        of rows with one range write (per contiguous run of our columns, normally one)."""
        if not rows:
            return 0
        try:
            return self._write_calls(rows)
        except Exception as exc:
            raise_if_busy(exc)
            raise

    def _write_calls(self, rows: Sequence[CallRow]) -> int:
        sheet = self._calls_sheet()
        app = self._app
        was_updating = app.screen_updating
        app.screen_updating = False  # no flicker, no per-cell redraw
        try:
            layout = self._layout(sheet)
            columns = layout.cols
            existing = self._read_ids(sheet, layout)
            by_row: dict[int, dict[str, object]] = {}
            next_row = layout.last_row + 1  # anything below the header counts: never overwrite
            for call in rows:
                row = existing.get(call.call_id)
                if row is None:
                    row = existing[call.call_id] = next_row
                    next_row += 1
                by_row[row] = call.values()  # a later update of the same call wins
            ordered = sorted(CALLS.columns, key=lambda c: columns[c.key])
            col_runs = runs([columns[c.key] for c in ordered])
            for first_row, last_row in runs(sorted(by_row)):
                for first_col, last_col in col_runs:
                    cols = [c for c in ordered if first_col <= columns[c.key] <= last_col]
                    for col in cols:
                        if col.key in TEXT_KEYS:
                            fmt: xw.Range = sheet.range(
                                (first_row, columns[col.key]), (last_row, columns[col.key])
                            )
                            fmt.number_format = TEXT_FORMAT
                    block = [
                        [self._cell(col, by_row[r][col.key]) for col in cols]
                        for r in range(first_row, last_row + 1)
                    ]
                    target: xw.Range = sheet.range((first_row, first_col), (last_row, last_col))
                    target.value = block  # the one write of this batch
            return len(by_row)
        finally:
            app.screen_updating = was_updating

    def existing_call_ids(self) -> set[str]:
        sheet = sheet_named(self._book, CALLS.names)
        if sheet is None:
            return set()
        try:
            return set(self._read_ids(sheet, self._layout(sheet)))
        except Exception as exc:
            raise_if_busy(exc)
            raise

    def read_table(self, sheet_names: tuple[str, str]) -> list[list]:
        """All values of a sheet from A1 to its last used cell (header row first); ``[]`` if the
        book has no such sheet."""
        sheet = sheet_named(self._book, sheet_names)
        if sheet is None:
            return []
        last_row, last_col = used_bounds(sheet)
        table: xw.Range = sheet.range((1, 1), (last_row, last_col))
        return table.options(ndim=2).value

    def highlight_contact(self, row: int) -> None:
        """Screen pop: bring the Contacts row of an incoming caller into view and colour it;
        the previous highlight gets its own colour back."""
        try:
            sheet = sheet_named(self._book, CONTACTS.names)
            if sheet is None:
                return
            self._clear_highlight()
            _, last_col = used_bounds(sheet)
            line: xw.Range = sheet.range((row, 1), (row, max(last_col, 1)))
            self._highlighted = (sheet.name, row, line.color)
            line.color = HIGHLIGHT
            self._book.activate()
            sheet.activate()
            first: xw.Range = sheet.range((row, 1))
            first.select()
        except Exception as exc:
            raise_if_busy(exc)
            raise

    def _clear_highlight(self) -> None:
        if self._highlighted is None:
            return
        name, row, colour = self._highlighted
        self._highlighted = None
        sheet: xw.Sheet
        for sheet in self._book.sheets:
            if sheet.name == name:
                _, last_col = used_bounds(sheet)
                line: xw.Range = sheet.range((row, 1), (row, max(last_col, 1)))
                line.color = colour  # None clears the fill
                return

    def status_bar(self, text: str) -> None:
        """Show ``text`` in Excel's status bar; an empty text gives the bar back to Excel."""
        app = self._app
        app.status_bar = text if text else False
        self._status_set = bool(text)

    def close(self) -> None:
        """Undo our screen marks; the workbook itself stays open (it is the user's)."""
        try:
            self._clear_highlight()
            if self._status_set:
                app = self._app
                app.status_bar = False
                self._status_set = False
        except Exception:  # noqa: BLE001 - Excel may be gone already; nothing left to undo
            pass
