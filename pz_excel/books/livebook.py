"""The workbook open in Excel, driven through xlwings: the live backend of the Calls sheet.

**Every xlwings call of the project lives in this module** (the agent's writes, the screen pop,
the status bar, and the Excel-side steps of ``pz-excel addin``), so one file shows all we ask of
Excel and ``tests/test_livebook_static.py`` can check each attribute against the installed
xlwings. xlwings is imported lazily: this module imports on Linux, where every call that needs
Excel raises :class:`ExcelUnavailable`, a clear one-line error.

Variables holding xlwings objects are annotated (``sheet: xw.Sheet``); the static test relies on
those annotations, keep them when editing.

COM can refuse a call while the user edits a cell or a dialog is open; such refusals surface as
``BookLocked`` (from :mod:`pz_excel.books`) so the agent retries later instead of failing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pz_excel.crm.schema import CALLS, CONTACTS, CallRow, Column, cell_text, word
from pz_excel.i18n import Text, UserError, current_lang

if TYPE_CHECKING:
    import xlwings as xw

# Text Excel would evaluate as a formula (= + - @) or mangle (tab, CR) when it starts a cell.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TEXT_FORMAT = "@"  # Excel's "Text" number format: the cell keeps exactly what is written
HIGHLIGHT = (255, 235, 156)  # soft yellow for the screen-pop row
# Columns whose values are identifiers: never let Excel turn them into numbers
# ("+7999…" → 7.999E+10, "0012" → 12, long call IDs → rounded floats).
_TEXT_KEYS = {"call_id", "line"} | {c.key for c in CALLS.columns if c.kind == "phone"}
# COM HRESULTs meaning "Excel is busy" (cell edit mode, modal dialog): retry later.
_BUSY_HRESULTS = {
    -2147418111,  # RPC_E_CALL_REJECTED
    -2147417846,  # RPC_E_SERVERCALL_RETRYLATER
    -2146777998,  # 0x800AC472 VBA_E_IGNORE: Excel is in edit mode
}


HEADER_SCAN_ROWS = 10  # a title or a note may sit above the header row (as in the file backend)


@dataclass
class _Layout:
    header_row: int
    cols: dict[str, int]  # Calls column key -> 1-based column
    last_row: int  # last row holding anything, header included


class ExcelUnavailable(UserError):
    """No Excel to talk to: Linux, xlwings missing, or Excel not installed."""


class BookNotOpen(UserError):
    """The workbook is not open in any running Excel."""


class _FallbackBookLocked(Exception):
    """Stand-in while ``pz_excel.books`` does not define ``BookLocked`` yet."""


def _book_locked_class() -> type[Exception]:
    # Looked up when raised, not at import: books/__init__ may import this module itself.
    try:
        from pz_excel import books
    except ImportError:  # pragma: no cover - the package is always there
        return _FallbackBookLocked
    return getattr(books, "BookLocked", _FallbackBookLocked)


NEEDS_EXCEL = Text(
    "this needs Microsoft Excel on Windows or macOS (xlwings cannot reach Excel here: {why})",
    "нужен Microsoft Excel на Windows или macOS (xlwings не может связаться с Excel: {why})",
)


def _xlwings() -> Any:
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


def _is_busy(exc: BaseException) -> bool:
    hresult = getattr(exc, "hresult", None)
    if hresult is None and getattr(exc, "args", None):
        hresult = exc.args[0]
    return hresult in _BUSY_HRESULTS


def _raise_if_busy(exc: Exception) -> None:
    """Excel only busy (cell edit, dialog): raise ``BookLocked`` so the caller retries later."""
    if _is_busy(exc):
        raise _book_locked_class()(f"Excel is busy: {exc}") from exc


def _same_path(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        p = os.path.normcase(os.path.abspath(os.path.expanduser(p)))
        return p.lower() if sys.platform == "darwin" else p  # default macOS volumes ignore case

    return norm(a) == norm(b)


def _iter_books(xw: Any) -> Iterator[xw.Book]:
    app: xw.App
    for app in xw.apps:
        yield from app.books


def _find_book(xw: Any, path: str | Path) -> xw.Book | None:
    target = str(path)
    by_name: list[xw.Book] = []
    book: xw.Book
    for book in _iter_books(xw):
        fullname = book.fullname
        if "://" not in fullname and _same_path(fullname, target):
            return book
        # OneDrive/SharePoint books report a URL as full name: fall back to a unique name
        if "://" in fullname and book.name.lower() == Path(target).name.lower():
            by_name.append(book)
    return by_name[0] if len(by_name) == 1 else None


def is_open_in_excel(path: str | Path) -> bool:
    """Whether ``path`` is open in a running Excel. ``False`` wherever Excel can't be reached
    (Linux, no Excel, COM trouble); never raises: callers use it to choose a backend."""
    if sys.platform not in ("win32", "darwin"):
        return False
    try:
        return _find_book(_xlwings(), path) is not None
    except Exception:  # noqa: BLE001 - any failure means "not reachable": use the file backend
        return False


def _excel_text(value: str) -> str:
    """Text from outside (caller IDs, names from the CRM, URLs) as Excel should keep it.

    A leading apostrophe is Excel's own way to say "this is text": it is what a user types to
    stop ``+7 999…`` or ``=HYPERLINK(…)`` from being evaluated. Excel hides it (it becomes the
    cell's PrefixCharacter, not part of the value), formulas that read the cell see the text
    without it, and CSV export leaves it out. Escaping any other way would change the visible
    value; not escaping would let a caller ID like ``=cmd|…`` run as a formula (CSV/formula
    injection).
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def _norm_header(value: object) -> str:
    return str(value or "").strip().casefold()


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
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
        xw = _xlwings()
        book: xw.Book
        if isinstance(path_or_book, (str, Path)):
            found = _find_book(xw, path_or_book)
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

    def _sheet(self, names: tuple[str, str]) -> xw.Sheet | None:
        wanted = {n.casefold() for n in names}
        sheet: xw.Sheet
        for sheet in self._book.sheets:
            if sheet.name.strip().casefold() in wanted:
                return sheet
        return None

    def _calls_sheet(self) -> xw.Sheet:
        """The Calls sheet; made (with our header) when the book has none, as the file
        backend does."""
        sheet = self._sheet(CALLS.names)
        if sheet is not None:
            return sheet
        sheets = self._book.sheets
        active: xw.Sheet = sheets.active
        last: xw.Sheet = sheets[len(sheets) - 1]
        sheet = sheets.add(name=CALLS.title(self.lang), after=last)
        active.activate()  # adding a sheet selects it: give the user their sheet back
        return sheet

    @staticmethod
    def _last_row_col(sheet: xw.Sheet) -> tuple[int, int]:
        used: xw.Range = sheet.used_range
        last: xw.Range = used.last_cell
        return last.row, last.column

    def _layout(self, sheet: xw.Sheet) -> _Layout:
        """Find the header row (first of the top :data:`HEADER_SCAN_ROWS` rows holding a Call ID
        header, either language) and our columns in it, by name, in any order: the same rules
        as the file backend. An empty sheet gets our header in row 1."""
        last_row, last_col = self._last_row_col(sheet)
        scan: xw.Range = sheet.range((1, 1), (min(last_row, HEADER_SCAN_ROWS), max(last_col, 1)))
        top = scan.options(ndim=2).value
        id_names = {n.casefold() for n in CALLS.column("call_id").names}
        header_row = next(
            (i for i, line in enumerate(top, 1) if any(_norm_header(v) in id_names for v in line)),
            None,
        )
        if header_row is None:
            if any(v is not None and v != "" for line in top for v in line):
                raise self._missing_error(sheet, list(CALLS.columns))
            header: xw.Range = sheet.range((1, 1), (1, len(CALLS.columns)))
            header.value = [[col.header(self.lang) for col in CALLS.columns]]
            cols = {col.key: i for i, col in enumerate(CALLS.columns, 1)}
            return _Layout(header_row=1, cols=cols, last_row=1)
        wanted = {}
        for col in CALLS.columns:
            wanted[col.en.casefold()] = (col.key, "en")
            wanted[col.ru.casefold()] = (col.key, "ru")
        cols: dict[str, int] = {}
        langs = {"en": 0, "ru": 0}
        for index, value in enumerate(top[header_row - 1], 1):
            hit = wanted.get(_norm_header(value))
            if hit is not None and hit[0] not in cols:
                cols[hit[0]] = index
                langs[hit[1]] += 1
        missing = [c for c in CALLS.columns if c.required and c.key not in cols]
        if missing:
            raise self._missing_error(sheet, missing)
        if langs["ru"] != langs["en"]:  # words written follow the sheet's own headers
            self.lang = "ru" if langs["ru"] > langs["en"] else "en"
        return _Layout(header_row=header_row, cols=cols, last_row=max(last_row, header_row))

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

    def _read_ids(self, sheet: xw.Sheet, layout: _Layout) -> dict[str, int]:
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
        return _excel_text(str(value))

    # -- the CallsBook interface -------------------------------------------------------------

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert rows by Call ID. Reads the ID column once, then writes each contiguous block
        of rows with one range write (per contiguous run of our columns, normally one)."""
        if not rows:
            return 0
        try:
            return self._write_calls(rows)
        except Exception as exc:
            _raise_if_busy(exc)
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
            col_runs = _runs([columns[c.key] for c in ordered])
            for first_row, last_row in _runs(sorted(by_row)):
                for first_col, last_col in col_runs:
                    cols = [c for c in ordered if first_col <= columns[c.key] <= last_col]
                    for col in cols:
                        if col.key in _TEXT_KEYS:
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
        sheet = self._sheet(CALLS.names)
        if sheet is None:
            return set()
        try:
            return set(self._read_ids(sheet, self._layout(sheet)))
        except Exception as exc:
            _raise_if_busy(exc)
            raise

    def read_table(self, sheet_names: tuple[str, str]) -> list[list]:
        """All values of a sheet from A1 to its last used cell (header row first); ``[]`` if the
        book has no such sheet."""
        sheet = self._sheet(sheet_names)
        if sheet is None:
            return []
        last_row, last_col = self._last_row_col(sheet)
        table: xw.Range = sheet.range((1, 1), (last_row, last_col))
        return table.options(ndim=2).value

    def highlight_contact(self, row: int) -> None:
        """Screen pop: bring the Contacts row of an incoming caller into view and colour it;
        the previous highlight gets its own colour back."""
        try:
            sheet = self._sheet(CONTACTS.names)
            if sheet is None:
                return
            self._clear_highlight()
            _, last_col = self._last_row_col(sheet)
            line: xw.Range = sheet.range((row, 1), (row, max(last_col, 1)))
            self._highlighted = (sheet.name, row, line.color)
            line.color = HIGHLIGHT
            self._book.activate()
            sheet.activate()
            first: xw.Range = sheet.range((row, 1))
            first.select()
        except Exception as exc:
            _raise_if_busy(exc)
            raise

    def _clear_highlight(self) -> None:
        if self._highlighted is None:
            return
        name, row, colour = self._highlighted
        self._highlighted = None
        sheet: xw.Sheet
        for sheet in self._book.sheets:
            if sheet.name == name:
                _, last_col = self._last_row_col(sheet)
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


# ---------------------------------------------------------------------------------------------
# Ribbon macros (pz_excel/macros.py): the calling workbook, dialogs, selection, cells
# ---------------------------------------------------------------------------------------------

SELECTION_CELLS = 1000  # a whole-column selection is clipped, never read a million cells


def caller_book() -> xw.Book:
    """The workbook that was active when a ribbon button ran RunPython (xlwings passes the
    active book, not the add-in, as the caller)."""
    xw = _xlwings()
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


def _sheet_of(book: xw.Book, names: Sequence[str]) -> xw.Sheet | None:
    wanted = {n.strip().casefold() for n in names}
    sheet: xw.Sheet
    for sheet in book.sheets:
        if sheet.name.strip().casefold() in wanted:
            return sheet
    return None


def _used_bounds(sheet: xw.Sheet) -> tuple[int, int]:
    used: xw.Range = sheet.used_range
    last: xw.Range = used.last_cell
    return last.row, last.column


def selection_values(book: xw.Book) -> list[tuple[str, int, int, Any]]:
    """The selected cells as (sheet name, row, column, value), row by row, read in one go and
    clipped to the used area and :data:`SELECTION_CELLS` cells."""
    try:
        selection: xw.Range | None = book.selection
        if selection is None:
            return []
        sheet: xw.Sheet = selection.sheet
        last: xw.Range = selection.last_cell
        used_row, used_col = _used_bounds(sheet)
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
        _raise_if_busy(exc)
        raise


def row_values(book: xw.Book, sheet_name: str, row: int) -> list[Any]:
    """One sheet row from column A to the last used column."""
    try:
        sheet = _sheet_of(book, (sheet_name,))
        if sheet is None:
            return []
        _, used_col = _used_bounds(sheet)
        line: xw.Range = sheet.range((row, 1), (row, max(used_col, 1)))
        return line.options(ndim=2).value[0]
    except Exception as exc:
        _raise_if_busy(exc)
        raise


def sheet_table(book: xw.Book, names: Sequence[str]) -> list[list]:
    """All values of the sheet named by any of ``names`` (A1 to the last used cell); ``[]``
    if the book has no such sheet."""
    try:
        sheet = _sheet_of(book, names)
        if sheet is None:
            return []
        used_row, used_col = _used_bounds(sheet)
        table: xw.Range = sheet.range((1, 1), (used_row, used_col))
        return table.options(ndim=2).value
    except Exception as exc:
        _raise_if_busy(exc)
        raise


def write_cell(book: xw.Book, names: Sequence[str], row: int, col: int, value: Any) -> None:
    """Write one cell of the sheet named by any of ``names``; text stays text (a "101"
    extension must not become the number 101)."""
    sheet = _sheet_of(book, names)
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
            value = _excel_text(value)
        cell.value = value
    except Exception as exc:
        _raise_if_busy(exc)
        raise


# ---------------------------------------------------------------------------------------------
# Excel-side steps of `pz-excel addin` (install location, loaded add-ins, COM build)
# ---------------------------------------------------------------------------------------------


def excel_startup_path() -> Path:
    """The user's XLSTART folder, as ``xlwings addin install`` finds it (asking a running Excel,
    or a hidden one started for the question)."""
    xw = _xlwings()
    try:
        active: xw.App | None = xw.apps.active if xw.apps else None
        if active is not None:
            return Path(active.startup_path)
        with xw.App(visible=False, add_book=False) as hidden:
            app: xw.App = hidden
            return Path(app.startup_path)
    except Exception as exc:
        raise ExcelUnavailable(NEEDS_EXCEL.format(why=exc)) from exc


def close_addin(name: str) -> None:
    """Unload add-in ``name`` from every running Excel so its file can be replaced."""
    xw = _xlwings()
    try:
        app: xw.App
        for app in xw.apps:
            try:
                book: xw.Book = app.books[name]
            except KeyError:
                continue
            book.close()
    except Exception:  # noqa: BLE001 - best effort: copying over a loaded add-in reports it
        pass


def load_addin(path: Path) -> bool:
    """Load the installed add-in into running Excels on Windows (macOS asks about macros when a
    file is opened directly, so there the user restarts Excel). True if it is loaded now."""
    if sys.platform != "win32":
        return False
    xw = _xlwings()
    loaded = False
    try:
        app: xw.App
        for app in xw.apps:
            app.books.open(str(path))
            loaded = True
    except Exception:  # noqa: BLE001 - not fatal: the add-in loads on Excel's next start
        return False
    return loaded


VBA_TRUST = Text(
    "Excel refused access to the VBA project. Enable File > Options > Trust Center > Trust Center"
    " Settings > Macro Settings > 'Trust access to the VBA project object model', or build"
    " without Excel: pz-excel addin build --engine offline ({why})",
    "Excel не дал доступ к проекту VBA. Включите Файл > Параметры > Центр управления безопасностью"
    " > Параметры > Параметры макросов > «Доверять доступ к объектной модели проектов VBA» или"
    " соберите без Excel: pz-excel addin build --engine offline ({why})",
)


def build_vba_with_excel(
    template: Path,
    out: Path,
    module_path: Path,
    remove_modules: Sequence[str],
    replace_lines: dict[str, tuple[str, str]],
    rename_sheets: dict[str, str],
) -> None:
    """Let Excel itself assemble the add-in's VBA project (Windows: COM only).

    Opens ``template`` hidden, removes ``remove_modules``, imports the ``.bas`` at
    ``module_path``, replaces whole code lines (``{module: (old_line, new_line)}``), renames
    sheets and saves as an add-in to ``out``. Excel for Mac has no VBA object model for
    automation, so there this raises :class:`ExcelUnavailable`.
    """
    xw = _xlwings()
    if sys.platform != "win32":
        raise ExcelUnavailable(
            Text(
                "Excel for Mac cannot import VBA code by automation; use --engine offline",
                "Excel для Mac не умеет импортировать код VBA по автоматизации;"
                " используйте --engine offline",
            )
        )
    with xw.App(visible=False, add_book=False) as hidden:
        app: xw.App = hidden
        app.display_alerts = False
        book: xw.Book = app.books.open(str(template))
        try:
            try:
                project = book.api.VBProject
                components = project.VBComponents
            except Exception as exc:
                raise UserError(VBA_TRUST.format(why=exc)) from exc
            for name in remove_modules:
                components.Remove(components.Item(name))
            components.Import(str(module_path))
            for module, (old, new) in replace_lines.items():
                code = components.Item(module).CodeModule
                for number in range(1, code.CountOfLines + 1):
                    if code.Lines(number, 1).strip() == old.strip():
                        code.ReplaceLine(number, new)
                        break
                else:
                    raise UserError(
                        Text(
                            "template module {m} has no line {l!r}",
                            "в модуле шаблона {m} нет строки {l!r}",
                        ).format(m=module, l=old)
                    )
            sheet: xw.Sheet
            for sheet in book.sheets:
                if sheet.name in rename_sheets:
                    sheet.name = rename_sheets[sheet.name]
            book.save(str(out))  # new book: the add-in built from its template
        finally:
            book.close()


# ---- ribbon macro helpers
# (caller_book, selection_values and the other ribbon helpers are above; this one serves
# the PZ_CALL worksheet function of udfs/pz_udfs.py.)


def caller_cell(caller: xw.Range) -> tuple[str, str, str, str, int]:
    """Where a UDF's formula sits, from xlwings' ``caller`` argument: (book name, sheet
    name, address, book full name, cell count). PZ_CALL dials once per cell and number."""
    sheet: xw.Sheet = caller.sheet
    book: xw.Book = sheet.book
    return book.name, sheet.name, caller.address, book.fullname, caller.count
