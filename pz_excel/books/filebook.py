"""The Calls sheet in an .xlsx/.xlsm file on disk (Excel not running).

Saves go through the zip-level writer (``xlsxpatch``): only the Calls sheet's parts are
rewritten and every other part is copied as it is, so a save costs about one copy of the
file. openpyxl is the fallback, for what that writer does not handle (no Calls sheet yet,
unusual XML, a formula in one of our cells, any unexpected failure); the semantics below
are the same on both paths.

What it promises the user:

* columns are found **by header name in either language**, in any order; extra user
  columns, their values and formatting are kept; a missing Calls sheet is created;
* one row per Call ID, updated in place, also across restarts (the sheet is indexed on
  load); new rows go below the last used row and extend the sheet's Excel table;
* nothing that comes from outside (caller IDs, names, recording URLs, lines) is ever
  stored as a formula: strings are written as strings (``data_type "s"``, plus Excel's
  quote prefix when they look like one), http(s) recordings become hyperlinks;
* saves are atomic (temp file in the same folder, fsync, ``os.replace``): a crash leaves
  the old workbook or the new one, never half of one;
* user edits are never clobbered: if the file changed on disk since we read it we reload
  it before applying rows, and we check once more right before replacing it;
* a workbook open in Excel or LibreOffice (owner/lock file next to it, or access denied)
  raises ``BookLocked``: the rows stay dirty in the journal and go out later.

The workbook stays loaded between batches while the file is unchanged; each batch is one
save. On the openpyxl path, openpyxl drops what it cannot read (shapes, some charts); the
zip-level path leaves every other part as it was. The live backend (xlwings) is the one to
use while the workbook is open in Excel.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from copy import copy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Font
from openpyxl.styles.numbers import is_date_format
from openpyxl.utils.cell import get_column_letter, range_boundaries
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.worksheet import Worksheet

from ..i18n import Text, UserError, current_lang
from ..schema import (
    CALLS,
    CONTACTS,
    MANAGERS,
    SETTINGS,
    WORDS,
    CallRow,
    Column,
    cell_text,
    word,
)
from . import BookLocked

if TYPE_CHECKING:
    from .xlsxpatch import CallsPatch

log = logging.getLogger("pz_excel.books.filebook")

#: Characters that make Excel (or a CSV export opened in it) evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_CELL_TEXT = 32767  # Excel's limit for a cell
MAX_LINK = 2079  # Excel's limit for a hyperlink address
HEADER_SCAN_ROWS = 10  # a title or a note may sit above the header row
DATE_FORMATS = {"en": "yyyy-mm-dd hh:mm:ss", "ru": "dd.mm.yyyy hh:mm:ss"}
TEXT_KINDS = ("phone",)
ID_KEYS = ("call_id",)
LINK_COLOR = "0563C1"  # Excel's hyperlink blue
SAVE_ATTEMPTS = 3
#: After this many refusals in a row the zip-level writer is not tried again (this run).
FAST_REFUSALS = 3

Replace = Callable[[str, str], None]


def _norm(text: object) -> str:
    return " ".join(str(text).split()).casefold() if text is not None else ""


def safe_text(value: str) -> str:
    """Text a cell can hold: no XML-illegal control characters, within Excel's limit."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:MAX_CELL_TEXT]


def is_web_link(value: str) -> bool:
    """Only plain http(s) addresses become hyperlinks (never file:, javascript:, ftp:)."""
    if not value or len(value) > MAX_LINK or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def set_text(cell: Cell, value: str, number_format: str | None = None) -> None:
    """Store ``value`` as a string, never a formula, whatever it starts with."""
    text = safe_text(value or "")
    if number_format is not None:
        cell.number_format = number_format
    if not text:
        cell.value = None
        return
    cell.value = text
    cell.data_type = "s"  # openpyxl made "=…" a formula on assignment: undo that
    # Excel's own marker for "typed with a leading apostrophe": stays text when re-edited.
    risky = text.startswith(FORMULA_START)
    if bool(cell.quotePrefix) != risky:
        cell.quotePrefix = risky


def lock_files(path: Path) -> list[tuple[Path, str]]:
    """Owner/lock files of Excel (``~$NAME``) and LibreOffice (``.~lock.NAME#``) that exist."""
    found = []
    for candidate, app in (
        (path.with_name("~$" + path.name), "Excel"),
        (path.with_name(f".~lock.{path.name}#"), "LibreOffice"),
    ):
        if candidate.exists():
            found.append((candidate, app))
    return found


def _lock_owner(lock: Path, app: str) -> str:
    """Who holds the lock, best effort: the lock files name the user."""
    try:
        data = lock.read_bytes()[:512]
    except OSError:
        return ""
    if app == "LibreOffice":  # "Full Name,login,host,date,profile;"
        parts = data.decode("utf-8", "replace").split(",")
        who = (parts[0] or (parts[1] if len(parts) > 1 else "")).strip()
        host = parts[2].strip() if len(parts) > 2 else ""
        return f"{who}@{host}" if who and host else who
    if data and 0 < data[0] < 54:  # Excel: a length byte, then the user name (ANSI)
        name = data[1 : 1 + data[0]].decode("cp1252", "replace").strip()
        return name if name.isprintable() else ""
    return ""


def _locked_text(path: Path, lock: Path, app: str) -> Text:
    who = _lock_owner(lock, app)
    by_en, by_ru = (f" by {who}", f" пользователем {who}") if who else ("", "")
    return Text(
        f"the workbook {path.name} is open in {app}{by_en} (lock file {lock.name}); new calls "
        f"wait in the journal and are written once it is closed. If {app} is not running, "
        f"delete the lock file {lock}",
        f"книга {path.name} открыта в {app}{by_ru} (файл блокировки {lock.name}); новые "
        f"звонки ждут в журнале и будут записаны, когда книгу закроют. Если {app} не "
        f"запущен, удалите файл блокировки {lock}",
    )


def _denied_text(path: Path, exc: OSError) -> Text:
    return Text(
        f"the workbook {path.name} is locked by another program ({exc.strerror or exc}); "
        "new calls wait in the journal and are written once it is free",
        f"книга {path.name} заблокирована другой программой ({exc.strerror or exc}); "
        "новые звонки ждут в журнале и будут записаны, когда она освободится",
    )


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _ChangedOnDisk(Exception):
    """Someone saved the workbook while we were writing ours: reload and redo."""


@dataclass
class _CallsSheet:
    """Where the Calls sheet's parts are, found by header names."""

    ws: Worksheet
    header_row: int
    cols: dict[str, int]  # column key → 1-based column index
    lang: str
    index: dict[str, int] = field(default_factory=dict)  # Call ID → row
    last_row: int = 0  # last row holding anything, header included
    width: int = 0  # columns of the header row, ours and the user's


Stamp = tuple[int, int, int]


class FileBook:
    """``CallsBook`` on an .xlsx/.xlsm file. ``lang`` is used for a new Calls sheet only
    when the other sheets don't tell; the words follow the sheet's own headers.

    ``replace`` is the rename step of the atomic save (a seam for crash tests). ``fast``
    False writes through openpyxl only (benchmarks and tests compare the two paths).
    """

    kind = "file"

    def __init__(
        self,
        path: Path | str,
        lang: str | None = None,
        *,
        replace: Replace = os.replace,
        fast: bool = True,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.lang = lang
        self.fast = fast
        self.description = str(Text(f"file {self.path}", f"файл {self.path}"))
        self._replace = replace
        self._lock = threading.RLock()
        self._wb: Workbook | None = None
        self._sheet: _CallsSheet | None = None
        self._patch: CallsPatch | None = None  # the zip-level model, when that path is on
        self._fast_refusals = 0
        self._stamp: Stamp | None = None
        self._new_sheet = False  # the Calls sheet in memory is ours, not saved yet
        self._clean_stale_temps()
        try:  # read now: a workbook without the right columns is a start-up error
            self._load()
        except BookLocked as exc:  # reading is retried with the first batch
            log.warning("%s", exc.text.both())

    # ------------------------------------------------------------------ public

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert ``rows`` by Call ID and save once. Raises BookLocked, UserError."""
        if not rows:
            return 0
        with self._lock:
            for _attempt in range(SAVE_ATTEMPTS):
                self._check_locks()
                try:
                    if self._stale():
                        self._load()  # user edits on disk win: we apply rows on top of them
                    try:
                        self._apply(rows)
                        self._save()
                    except (_ChangedOnDisk, OSError, BookLocked, UserError):
                        raise
                    except Exception as exc:
                        if self._patch is None:
                            raise
                        self._fast_failed(exc)  # this batch through openpyxl
                        self._apply(rows)
                        self._save()
                    if self._wb is not None and self.fast and self._fast_refusals < FAST_REFUSALS:
                        self._forget()  # the next batch is read by the zip-level writer again
                    return len(rows)
                except _ChangedOnDisk:
                    log.info("%s changed while saving; reloading and writing again", self.path)
                    self._forget()
                except PermissionError as exc:
                    self._forget()
                    raise BookLocked(_denied_text(self.path, exc)) from exc
                except BaseException:
                    self._forget()  # the copy in memory may be half-applied: re-read next time
                    raise
            raise BookLocked(
                Text(
                    f"the workbook {self.path.name} keeps changing on disk; will try again",
                    f"книга {self.path.name} всё время меняется на диске; попробуем позже",
                )
            )

    def ensure_calls_sheet(self) -> bool:
        """Save a new Calls sheet now if the book has none; True if it did.

        Only openpyxl can add a sheet, and on a big book that means reading and writing
        all of it (a minute and a million objects for 1 M contacts). The agent calls this
        at start-up, before it connects, so no caller waits behind it; from then on every
        batch takes the zip-level writer.
        """
        with self._lock:
            if self._stale():
                self._load()
            if self._wb is None or not self._new_sheet:
                return False
            started = time.monotonic()
            try:
                self._save()
            finally:
                self._forget()  # the next batch is read by the zip-level writer
            log.info("%s", Text(
                f"{self.path.name}: Calls sheet added ({time.monotonic() - started:.1f} s)",
                f"{self.path.name}: лист «Звонки» добавлен ({time.monotonic() - started:.1f} с)",
            ))  # fmt: skip
            return True

    def existing_call_ids(self) -> set[str]:
        with self._lock:
            if self._stale():
                self._load()
            if self._patch is not None:
                return set(self._patch.index)
            assert self._sheet is not None
            return set(self._sheet.index)

    def close(self) -> None:
        with self._lock:
            self._forget()

    @property
    def lang_of_sheet(self) -> str | None:
        if self._patch is not None:
            return self._patch.lang
        return self._sheet.lang if self._sheet is not None else None

    # ------------------------------------------------------------------ loading

    def _stale(self) -> bool:
        """Nothing read yet, or the file changed on disk since we read it."""
        return (self._wb is None and self._patch is None) or self._stat() != self._stamp

    def _stat(self) -> Stamp | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _forget(self) -> None:
        vba = getattr(self._wb, "vba_archive", None)
        if vba is not None:  # openpyxl's in-memory copy of an .xlsm's macros: close it now,
            try:  # or the garbage collector may close its buffer first and complain
                vba.close()
            except (OSError, ValueError):
                pass
        self._wb = None
        self._sheet = None
        self._patch = None
        self._stamp = None
        self._new_sheet = False

    def _check_locks(self) -> None:
        for lock, app in lock_files(self.path):
            raise BookLocked(_locked_text(self.path, lock, app), str(lock))

    def _load(self, *, fast: bool = True) -> None:
        self._forget()
        suffix = self.path.suffix.lower()
        if suffix not in (".xlsx", ".xlsm", ".xltx", ".xltm"):
            raise UserError(
                Text(
                    f"{self.path.name}: only .xlsx and .xlsm workbooks can be written",
                    f"{self.path.name}: записывать можно только книги .xlsx и .xlsm",
                )
            )
        if fast and self.fast and self._fast_refusals < FAST_REFUSALS and self._load_patch():
            return
        for _attempt in range(SAVE_ATTEMPTS):
            before = self._stat()
            if before is None:
                raise UserError(
                    Text(f"workbook not found: {self.path}", f"книга не найдена: {self.path}")
                )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "extension not supported" and the like
                    wb = load_workbook(
                        self.path, keep_vba=suffix in (".xlsm", ".xltm"), keep_links=True
                    )
            except PermissionError as exc:
                raise BookLocked(_denied_text(self.path, exc)) from exc
            except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
                if self._stat() != before:
                    continue  # read while someone was saving it: read again
                raise UserError(
                    Text(
                        f"cannot read the workbook {self.path}: {exc}",
                        f"не удаётся прочитать книгу {self.path}: {exc}",
                    )
                ) from exc
            if self._stat() == before:
                self._wb, self._stamp = wb, before
                self._sheet = self._find_sheet(wb)
                return
        raise BookLocked(
            Text(
                f"the workbook {self.path.name} keeps changing on disk; will try again",
                f"книга {self.path.name} всё время меняется на диске; попробуем позже",
            )
        )

    def _load_patch(self) -> bool:
        """Read the book for the zip-level writer; False: use openpyxl (logged why)."""
        from .xlsxpatch import CallsPatch, MissingColumns, NoCallsSheet, Unsupported

        for _attempt in range(SAVE_ATTEMPTS):
            before = self._stat()
            if before is None:
                raise UserError(
                    Text(f"workbook not found: {self.path}", f"книга не найдена: {self.path}")
                )
            try:
                patch = CallsPatch.open(self.path, self.lang)
            except PermissionError as exc:
                raise BookLocked(_denied_text(self.path, exc)) from exc
            except MissingColumns as exc:
                raise self._missing_error(_Titled(exc.title), exc.missing) from None
            except NoCallsSheet:
                self._fast_refusals += 1
                mb = self.path.stat().st_size / 2**20
                log.info("%s", Text(
                    f"{self.path.name} has no Calls sheet: adding it, a one-time save of the "
                    f"whole book ({mb:.1f} MB; a minute or more for a very big book)…",
                    f"в книге {self.path.name} нет листа «Звонки»: добавляем его — один раз "
                    f"сохраняется вся книга ({mb:.1f} МБ; для очень большой книги — минута и "
                    "больше)…",
                ))  # fmt: skip
                return False
            except Unsupported as exc:
                self._fast_refusals += 1
                log.info("%s: %s; this batch goes through openpyxl", self.path.name, exc)
                return False
            except Exception as exc:  # noqa: BLE001 - openpyxl reads it, or words the error
                if self._stat() != before:
                    continue  # read while someone was saving it: read again
                self._fast_refusals += 1
                log.warning("%s: zip-level read failed (%s: %s); using openpyxl",
                            self.path.name, type(exc).__name__, exc)  # fmt: skip
                return False
            if self._stat() == before:
                self._patch, self._stamp = patch, before
                return True
        return False

    def _fast_failed(self, exc: Exception) -> None:
        """The zip-level writer could not save: log why, read the book with openpyxl."""
        from .xlsxpatch import Unsupported

        if isinstance(exc, Unsupported):
            log.info("%s: %s; this batch goes through openpyxl", self.path.name, exc)
        else:
            log.error("%s: zip-level write failed (%s: %s); this batch goes through openpyxl",
                      self.path.name, type(exc).__name__, exc, exc_info=exc)  # fmt: skip
        self._fast_refusals += 1
        self._load(fast=False)

    def _workbook_lang(self, wb: Workbook) -> str:
        titles = {_norm(t) for t in wb.sheetnames}
        ru = sum(_norm(s.ru) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
        en = sum(_norm(s.en) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
        if ru != en:
            return "ru" if ru > en else "en"
        return self.lang or current_lang()

    def _find_sheet(self, wb: Workbook) -> _CallsSheet:
        names = {_norm(n) for n in CALLS.names}
        ws = next((wb[t] for t in wb.sheetnames if _norm(t) in names), None)
        if ws is None or not any(c.value is not None for c in ws._cells.values()):
            lang = self._workbook_lang(wb)
            if ws is None:
                ws = wb.create_sheet(CALLS.title(lang))
            self._new_sheet = True
            return self._init_sheet(ws, lang)
        return self._read_sheet(ws)

    def _init_sheet(self, ws: Worksheet, lang: str) -> _CallsSheet:
        """Headers, widths and formats for a new (or empty) Calls sheet."""
        for idx, col in enumerate(CALLS.columns, start=1):
            cell = ws.cell(row=1, column=idx)
            set_text(cell, col.header(lang))
            cell.font = Font(bold=True)
            ws.column_dimensions[get_column_letter(idx)].width = col.width
        ws.freeze_panes = "A2"
        last = get_column_letter(len(CALLS.columns))
        ws.auto_filter.ref = f"A1:{last}1"
        cols = {col.key: idx for idx, col in enumerate(CALLS.columns, start=1)}
        return _CallsSheet(ws, header_row=1, cols=cols, lang=lang, last_row=1, width=len(cols))

    def _read_sheet(self, ws: Worksheet) -> _CallsSheet:
        wanted = {}
        for col in CALLS.columns:
            wanted[_norm(col.en)] = (col.key, "en")
            wanted[_norm(col.ru)] = (col.key, "ru")
        id_names = {_norm(n) for n in CALLS.column("call_id").names}
        # openpyxl's cell store: reading it creates no empty cells (iter_rows would).
        cells = ws._cells
        top = sorted(
            (key, cell.value)
            for key, cell in cells.items()
            if key[0] <= HEADER_SCAN_ROWS and cell.value is not None
        )
        header_row = next(
            (r for (r, _c), v in top if isinstance(v, str) and _norm(v) in id_names), None
        )
        cols: dict[str, int] = {}
        langs = {"en": 0, "ru": 0}
        width = 0
        for (row, col_idx), value in top:
            if row != header_row:
                continue
            width = max(width, col_idx)
            hit = wanted.get(_norm(value)) if isinstance(value, str) else None
            if hit is not None and hit[0] not in cols:
                cols[hit[0]] = col_idx
                langs[hit[1]] += 1
        missing = [c for c in CALLS.columns if c.required and c.key not in cols]
        if missing:
            raise self._missing_error(ws, missing)
        if langs["ru"] != langs["en"]:
            lang = "ru" if langs["ru"] > langs["en"] else "en"
        else:
            lang = self.lang or current_lang()
        assert header_row is not None
        sheet = _CallsSheet(ws, header_row=header_row, cols=cols, lang=lang, width=width)
        id_col = cols["call_id"]
        last = header_row
        for (row, col_idx), cell in cells.items():
            if row <= header_row or cell.value is None:
                continue
            last = max(last, row)  # anything the user wrote below counts: never overwrite it
            if col_idx == id_col:
                key = cell_text(cell.value)
                if key:
                    sheet.index.setdefault(key, row)  # first row wins over a copy
        sheet.last_row = last
        return sheet

    def _missing_error(self, ws: Worksheet, missing: list[Column]) -> UserError:
        en = ", ".join(f"“{c.en}”" for c in missing)
        ru = ", ".join(f"«{c.ru}»" for c in missing)
        return UserError(
            Text(
                f"sheet “{ws.title}” of {self.path.name} has no column {en} (Russian: {ru}) "
                f"in its first {HEADER_SCAN_ROWS} rows; add the header back, or rename the "
                "sheet so a new Calls sheet is made",
                f"на листе «{ws.title}» книги {self.path.name} нет столбца {ru} "
                f"(по-английски: {en}) в первых {HEADER_SCAN_ROWS} строках; верните "
                "заголовок или переименуйте лист, и будет создан новый лист звонков",
            )
        )

    def _clean_stale_temps(self) -> None:
        """Temp files of a save that was killed halfway (an hour old: not a running save)."""
        try:
            for tmp in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.pz-saving"):
                if time.time() - tmp.stat().st_mtime > 3600:
                    tmp.unlink(missing_ok=True)
        except OSError:
            pass

    # ------------------------------------------------------------------ writing

    def _apply(self, rows: Sequence[CallRow]) -> None:
        if self._patch is not None:
            self._apply_patch(rows)
            return
        sheet = self._sheet
        assert sheet is not None
        grew = False
        for row in rows:
            r = sheet.index.get(row.call_id)
            if r is None:
                sheet.last_row += 1
                r = sheet.last_row
                sheet.index[row.call_id] = r
                self._style_like_above(sheet, r)
                grew = True
            self._write_row(sheet, r, row)
        if grew:
            self._extend_ranges(sheet)

    def _apply_patch(self, rows: Sequence[CallRow]) -> None:
        """Zip-level upsert; what it cannot do goes through openpyxl, this batch only."""
        from .xlsxpatch import Unsupported

        assert self._patch is not None
        try:
            self._patch.apply(rows)
        except Unsupported as exc:
            log.info("%s: %s; this batch goes through openpyxl", self.path.name, exc)
            self._load(fast=False)
            self._apply(rows)

    @staticmethod
    def _style_like_above(sheet: _CallsSheet, r: int) -> None:
        """A new row looks like the one above it (fills, borders, fonts, formats)."""
        if r - 1 <= sheet.header_row:
            return
        ws = sheet.ws
        for col_idx in range(1, sheet.width + 1):
            src = ws._cells.get((r - 1, col_idx))
            if src is not None and src.has_style:
                ws.cell(row=r, column=col_idx)._style = copy(src._style)

    def _write_row(self, sheet: _CallsSheet, r: int, row: CallRow) -> None:
        ws, lang = sheet.ws, sheet.lang
        for col in CALLS.columns:
            idx = sheet.cols.get(col.key)
            if idx is None:
                continue
            cell = ws.cell(row=r, column=idx)
            value = getattr(row, col.key)
            if col.key in ("direction", "status"):
                set_text(cell, word(value, lang) if value in WORDS else str(value or ""))
            elif col.kind == "bool":
                set_text(cell, word("yes", lang) if value else "")
            elif col.kind == "datetime":
                self._set_datetime(cell, value, lang)
            elif col.kind == "int":
                cell.value = int(value) if value is not None else None
            elif col.kind == "url":
                self._set_recording(cell, str(value or ""))
            elif col.kind in TEXT_KINDS or col.key in ID_KEYS:
                set_text(cell, str(value or ""), number_format="@")  # phones stay text
            else:
                set_text(cell, str(value or ""))

    @staticmethod
    def _set_datetime(cell: Cell, value: datetime | None, lang: str) -> None:
        if value is None:
            cell.value = None
            return
        if value.tzinfo is not None:  # Excel has no zones: local wall time
            value = value.astimezone().replace(tzinfo=None)
        # Looked at before assigning: openpyxl gives a datetime its own default format.
        users_format = is_date_format(cell.number_format)  # keep a date format the user chose
        cell.value = value
        if not users_format:
            cell.number_format = DATE_FORMATS.get(lang, DATE_FORMATS["en"])

    @staticmethod
    def _set_recording(cell: Cell, url: str) -> None:
        set_text(cell, url)
        if is_web_link(url):
            if cell.hyperlink is None or cell.hyperlink.target != url:
                cell.hyperlink = url
                font = cell.font
                cell.font = Font(
                    name=font.name, sz=font.sz, b=font.b, i=font.i, u="single",
                    color=LINK_COLOR,
                )  # fmt: skip
        else:
            if cell.hyperlink is not None:
                cell.hyperlink = None
            font = cell.font  # link look inherited from the row above, or left by an old link
            rgb = font.color.rgb if font.color is not None else None
            if font.u == "single" and isinstance(rgb, str) and rgb[-6:] == LINK_COLOR:
                cell.font = Font(name=font.name, sz=font.sz, b=font.b, i=font.i)

    @staticmethod
    def _extend_ranges(sheet: _CallsSheet) -> None:
        """Grow the sheet's Excel table and filter over the appended rows."""
        ws, last = sheet.ws, sheet.last_row
        id_col = sheet.cols["call_id"]
        for table in ws.tables.values():
            min_col, min_row, max_col, max_row = range_boundaries(table.ref)
            if min_row != sheet.header_row or not (min_col <= id_col <= max_col):
                continue
            if table.totalsRowCount:  # rows below a totals row would break the table
                log.warning("table %s has a totals row: not extended", table.displayName)
                continue
            if last > max_row:
                ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{last}"
                table.ref = ref
                if table.autoFilter is not None:
                    table.autoFilter.ref = ref  # must match the table, or Excel "repairs" it
        if ws.auto_filter.ref:
            min_col, min_row, max_col, max_row = range_boundaries(ws.auto_filter.ref)
            if min_row == sheet.header_row and last > max_row:
                ws.auto_filter.ref = (
                    f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{last}"
                )

    def _save(self) -> None:
        """Temp file next to the book, fsync, check nobody saved meanwhile, atomic rename."""
        assert self._wb is not None or self._patch is not None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.pz-saving")
        try:
            if self._patch is not None:
                self._patch.write(tmp, self._stamp)
            else:
                assert self._wb is not None
                self._wb.save(tmp)
            with open(tmp, "r+b") as fh:  # r+ : Windows can only flush a writable handle
                os.fsync(fh.fileno())
            try:
                os.chmod(tmp, self.path.stat().st_mode & 0o7777)
            except OSError:
                pass
            if self._stat() != self._stamp:
                raise _ChangedOnDisk
            self._check_locks()  # Excel may have opened it during the save
            self._replace(str(tmp), str(self.path))
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        _fsync_dir(self.path.parent)
        self._stamp = self._stat()
        if self._patch is not None:
            self._patch.committed()
            self._fast_refusals = 0


@dataclass
class _Titled:
    """Just a sheet title, for ``_missing_error`` when the zip-level reader found it."""

    title: str
