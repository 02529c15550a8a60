"""Reaching Excel through xlwings: the module, COM's "busy" refusals, the open books.

Part of the xlwings layer (with ``livebook``, ``excel_ui`` and ``excel_addin_steps``): only
these modules import xlwings, and ``tests/test_livebook_static.py`` checks every attribute
they use against the installed xlwings. xlwings is imported lazily: this imports on Linux,
where every call that needs Excel raises :class:`ExcelUnavailable`, a clear one-line error.

Variables holding xlwings objects are annotated (``sheet: xw.Sheet``); the static test relies
on those annotations, keep them when editing.

COM can refuse a call while the user edits a cell or a dialog is open; such refusals surface
as ``BookLocked`` (from :mod:`pz_excel.books`) so the caller retries later instead of failing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pz_excel.books import BookLocked
from pz_excel.books.identity import same_workbook
from pz_excel.i18n import Text, UserError

if TYPE_CHECKING:
    import xlwings as xw

# Text Excel would evaluate as a formula (= + - @) or mangle (tab, CR) when it starts a cell.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TEXT_FORMAT = "@"  # Excel's "Text" number format: the cell keeps exactly what is written
# COM HRESULTs meaning "Excel is busy" (cell edit mode, modal dialog): retry later.
_BUSY_HRESULTS = {
    -2147418111,  # RPC_E_CALL_REJECTED
    -2147417846,  # RPC_E_SERVERCALL_RETRYLATER
    -2146777998,  # 0x800AC472 VBA_E_IGNORE: Excel is in edit mode
}


class ExcelUnavailable(UserError):
    """No Excel to talk to: Linux, xlwings missing, or Excel not installed."""


NEEDS_EXCEL = Text(
    "this needs Microsoft Excel on Windows or macOS (xlwings cannot reach Excel here: {why})",
    "нужен Microsoft Excel на Windows или macOS (xlwings не может связаться с Excel: {why})",
)


def xlwings_module() -> Any:
    """The xlwings module, or :class:`ExcelUnavailable` where it cannot drive Excel."""
    if sys.platform not in ("win32", "darwin"):
        raise ExcelUnavailable(NEEDS_EXCEL.format(why=sys.platform))
    try:
        import xlwings as xw
    except ImportError as exc:
        raise ExcelUnavailable(NEEDS_EXCEL.format(why=f"import xlwings: {exc}")) from exc
    if sys.platform == "win32":
        try:  # COM needs initialising in every thread that calls Excel; repeat calls are no-ops
            import pythoncom

            pythoncom.CoInitialize()
        except ImportError:  # pragma: no cover - pywin32 comes with xlwings on Windows
            pass
    return xw


def is_busy(exc: BaseException) -> bool:
    hresult = getattr(exc, "hresult", None)
    if hresult is None and getattr(exc, "args", None):
        hresult = exc.args[0]
    return hresult in _BUSY_HRESULTS


def raise_if_busy(exc: Exception) -> None:
    """Excel only busy (cell edit, dialog): raise ``BookLocked`` so the caller retries later."""
    if is_busy(exc):
        raise BookLocked(f"Excel is busy: {exc}") from exc


def iter_books(xw: Any) -> Iterator[xw.Book]:
    app: xw.App
    for app in xw.apps:
        yield from app.books


def find_open_book(xw: Any, path: str | Path) -> xw.Book | None:
    """The open book saved at ``path`` (:func:`same_workbook`); a cloud book whose URL ends
    in the same file name when it is the only one."""
    target = str(path)
    by_name: list[xw.Book] = []
    book: xw.Book
    for book in iter_books(xw):
        fullname = book.fullname
        if same_workbook(fullname, target):
            return book
        # OneDrive/SharePoint books report a URL as full name: fall back to a unique name
        if "://" in fullname and book.name.lower() == Path(target).name.lower():
            by_name.append(book)
    return by_name[0] if len(by_name) == 1 else None


def excel_text(value: str) -> str:
    """Text from outside (caller IDs, names from the CRM, URLs) as Excel should keep it.

    A leading apostrophe is Excel's own way to say "this is text": it is what a user types to
    stop ``+7 999…`` or ``=HYPERLINK(…)`` from being evaluated. Excel hides it (it becomes the
    cell's PrefixCharacter, not part of the value), formulas that read the cell see the text
    without it, and CSV export leaves it out. Escaping any other way would change the visible
    value; not escaping would let a caller ID like ``=cmd|…`` run as a formula (CSV/formula
    injection).
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def sheet_named(book: xw.Book, names: Sequence[str]) -> xw.Sheet | None:
    """The sheet of ``book`` called any of ``names`` (case and spaces ignored)."""
    wanted = {n.strip().casefold() for n in names}
    sheet: xw.Sheet
    for sheet in book.sheets:
        if sheet.name.strip().casefold() in wanted:
            return sheet
    return None


def used_bounds(sheet: xw.Sheet) -> tuple[int, int]:
    """(last row, last column) of the sheet's used range."""
    used: xw.Range = sheet.used_range
    last: xw.Range = used.last_cell
    return last.row, last.column
