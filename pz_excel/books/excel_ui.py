"""The Excel side of the ribbon macros and the worksheet functions: the calling workbook,
message and input boxes, the status bar, the selection, and single cells.

Part of the xlwings layer (see :mod:`pz_excel.books.excel_app`); checked statically by
``tests/test_livebook_static.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pz_excel.books.excel_app import (
    NEEDS_EXCEL,
    TEXT_FORMAT,
    ExcelUnavailable,
    excel_text,
    raise_if_busy,
    sheet_named,
    used_bounds,
    xlwings_module,
)
from pz_excel.i18n import Text, UserError

if TYPE_CHECKING:
    import xlwings as xw

SELECTION_CELLS = 1000  # a whole-column selection is clipped, never read a million cells


def caller_book() -> xw.Book:
    """The workbook that was active when a ribbon button ran RunPython (xlwings passes the
    active book, not the add-in, as the caller)."""
    xw = xlwings_module()
    try:
        book: xw.Book = xw.Book.caller()
    except Exception as exc:
        raise ExcelUnavailable(NEEDS_EXCEL.format(why=exc)) from exc
    return book


def book_path(book: xw.Book) -> str:
    """Full name as Excel reports it: a local path, a URL (OneDrive), or just a name for a
    book never saved."""
    return book.fullname


def message_box(book: xw.Book, text: str, title: str) -> None:
    app: xw.App = book.app
    app.alert(text, title=title)


def status_bar(book: xw.Book, text: str) -> None:
    """Excel's status bar for ``book``; an empty text gives the bar back to Excel."""
    app: xw.App = book.app
    app.status_bar = text if text else False


def _ask_hidden(prompt: str, title: str) -> str | None:
    """A masked password prompt: Excel's InputBox cannot hide what is typed."""
    if sys.platform == "darwin":
        import subprocess

        script = (
            "on run argv\n"
            "display dialog (item 1 of argv) with title (item 2 of argv)"
            ' default answer "" with hidden answer\n'
            "return text returned of result\n"
            "end run"
        )
        done = subprocess.run(
            ["osascript", "-e", script, prompt, title], capture_output=True, text=True
        )
        return done.stdout.rstrip("\n") if done.returncode == 0 else None
    import tkinter
    from tkinter import simpledialog

    root = tkinter.Tk()
    root.withdraw()
    root.attributes("-topmost", True)  # RunPython's Python has no window: stay above Excel
    try:
        return simpledialog.askstring(title, prompt, show="\u2022", parent=root)
    finally:
        root.destroy()


def input_box(book: xw.Book, prompt: str, title: str, password: bool = False) -> str | None:
    """Ask for one line of text; ``None`` when the user cancels."""
    if password:
        return _ask_hidden(prompt, title)
    if sys.platform == "darwin":  # Excel for Mac's InputBox is not scriptable: a system dialog
        import subprocess

        script = (
            "on run argv\n"
            'display dialog (item 1 of argv) with title (item 2 of argv) default answer ""\n'
            "return text returned of result\n"
            "end run"
        )
        done = subprocess.run(
            ["osascript", "-e", script, prompt, title], capture_output=True, text=True
        )
        return done.stdout.rstrip("\n") if done.returncode == 0 else None
    app: xw.App = book.app
    answer = app.api.InputBox(Prompt=prompt, Title=title, Default="", Type=2)  # 2: text
    return None if answer is False else str(answer)


def selection_values(book: xw.Book) -> list[tuple[str, int, int, Any]]:
    """The selected cells as (sheet name, row, column, value), row by row, read in one go and
    clipped to the used area and :data:`SELECTION_CELLS` cells."""
    try:
        selection: xw.Range | None = book.selection
        if selection is None:
            return []
        sheet: xw.Sheet = selection.sheet
        last: xw.Range = selection.last_cell
        used_row, used_col = used_bounds(sheet)
        top, left = selection.row, selection.column
        right = max(left, min(last.column, used_col))
        width = right - left + 1
        bottom = max(top, min(last.row, used_row, top + max(SELECTION_CELLS // width, 1) - 1))
        block: xw.Range = sheet.range((top, left), (bottom, right))
        values = block.options(ndim=2).value
        name = sheet.name
        return [
            (name, top + r, left + c, value)
            for r, line in enumerate(values)
            for c, value in enumerate(line)
        ][:SELECTION_CELLS]
    except Exception as exc:
        raise_if_busy(exc)
        raise


def row_values(book: xw.Book, sheet_name: str, row: int) -> list[Any]:
    """One sheet row from column A to the last used column."""
    try:
        sheet = sheet_named(book, (sheet_name,))
        if sheet is None:
            return []
        _, used_col = used_bounds(sheet)
        line: xw.Range = sheet.range((row, 1), (row, max(used_col, 1)))
        return line.options(ndim=2).value[0]
    except Exception as exc:
        raise_if_busy(exc)
        raise


def sheet_table(book: xw.Book, names: Sequence[str]) -> list[list]:
    """All values of the sheet named by any of ``names`` (A1 to the last used cell); ``[]``
    if the book has no such sheet."""
    try:
        sheet = sheet_named(book, names)
        if sheet is None:
            return []
        used_row, used_col = used_bounds(sheet)
        table: xw.Range = sheet.range((1, 1), (used_row, used_col))
        return table.options(ndim=2).value
    except Exception as exc:
        raise_if_busy(exc)
        raise


def write_cell(book: xw.Book, names: Sequence[str], row: int, col: int, value: Any) -> None:
    """Write one cell of the sheet named by any of ``names``; text stays text (a "101"
    extension must not become the number 101)."""
    sheet = sheet_named(book, names)
    if sheet is None:
        raise UserError(
            Text("the workbook has no sheet {n}", "в книге нет листа {n}").format(
                n=" / ".join(names)
            )
        )
    try:
        cell: xw.Range = sheet.range((row, col))
        if isinstance(value, str):
            cell.number_format = TEXT_FORMAT
            value = excel_text(value)
        cell.value = value
    except Exception as exc:
        raise_if_busy(exc)
        raise


def select_cell(book: xw.Book, names: Sequence[str], row: int, col: int) -> None:
    """Show the sheet named by any of ``names`` and select one cell (where to type next)."""
    sheet = sheet_named(book, names)
    if sheet is None:
        return
    try:
        sheet.activate()
        sheet.range((row, col)).select()
    except Exception as exc:
        raise_if_busy(exc)
        raise


def caller_cell(caller: xw.Range) -> tuple[str, str, str, str, int]:
    """Where a UDF's formula sits, from xlwings' ``caller`` argument: (book name, sheet
    name, address, book full name, cell count). PZ_CALL dials once per cell and number."""
    sheet: xw.Sheet = caller.sheet
    book: xw.Book = sheet.book
    return book.name, sheet.name, caller.address, book.fullname, caller.count
