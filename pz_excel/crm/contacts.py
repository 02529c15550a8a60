"""The Contacts and Managers sheets as an index by phone number.

Columns are found by header name in either language (``schema.CONTACTS`` / ``MANAGERS``), in
any order, with the header row anywhere in the first 10 rows that have a value
(``xlsx/header.py``); extra columns are ignored. A cell that is not a phone number skips its
row with a warning naming the cell (``crm/contact_build.py``) — never an exception.

``load_index`` streams the workbook (``xlsx/reader.py``, ``xlsx/columns.py``: a million
contacts in about 10 s, where openpyxl needs minutes); ``build_index`` does the same from
rows already in memory (the live xlwings backend); ``ContactsWatcher`` re-reads the file
when it changes, swapping the new index in atomically. The index itself is
``crm/contact_index.py``; the copy of it kept on disk between runs, ``crm/index_store.py``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from pz_excel.crm.contact_build import (
    FIELDS,
    ContactsBuilder,
    Warnings,
    header_of,
    no_managers_warning,
    read_managers,
    sheet_missing,
    without_gc,
)
from pz_excel.crm.contact_index import Contact, ContactIndex, name_key
from pz_excel.crm.index_store import IndexStore
from pz_excel.crm.schema import CONTACTS, MANAGERS, Sheet
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.cells import HEADER_SCAN_ROWS
from pz_excel.xlsx.columns import ColumnPlan, read_columns
from pz_excel.xlsx.reader import Book, all_rows, col_letters

# What other modules import from here (the index types live in crm/contact_index.py).
__all__ = [
    "Contact",
    "ContactIndex",
    "ContactsWatcher",
    "build_index",
    "load_index",
    "name_key",
    "read_small_sheet",
    "workbook_fingerprint",
]

log = logging.getLogger("pz_excel.crm.contacts")


# ---------------------------------------------------------------------- building


@without_gc
def build_index(
    contact_rows: Iterable[Sequence[object]],
    manager_rows: Iterable[Sequence[object]] | None = None,
    *,
    first_row: int = 1,
    first_col: int = 1,
    contacts_title: str = CONTACTS.en,
    managers_title: str = MANAGERS.en,
    source: Path | None = None,
    mtime: float = 0.0,
    area_code: str = "",
) -> ContactIndex:
    """An index from cell values already read (the live Excel backend).

    ``area_code``: the Settings' area code (``phones.normalize``), "" for none.
    ``contact_rows`` / ``manager_rows`` are the sheets' used ranges as rows of values
    (titles and the header row included: the header is found as in a file), starting at
    sheet row ``first_row`` and column ``first_col`` (1-based) so that warnings name the
    right cells. ``manager_rows`` None or empty: the book has no (filled) Managers sheet.
    """
    started = time.perf_counter()
    book = source.name if source else "the workbook"
    warnings = Warnings()
    offset = first_col - 1
    contact_rows = contact_rows if isinstance(contact_rows, Sequence) else list(contact_rows)

    def numbered(rows: Sequence[Sequence[object]]) -> Iterator[tuple[int, dict[int, object]]]:
        for i, row in enumerate(rows):
            cells = {offset + j: v for j, v in enumerate(row) if v is not None and v != ""}
            if cells:
                yield first_row + i, cells

    header, cols = header_of(numbered(contact_rows), CONTACTS, contacts_title, book)
    data = contact_rows[header - first_row + 1 :]

    def column(key: str) -> list[object]:
        if key not in cols:
            return [None] * len(data)
        p = cols[key] - offset
        return [row[p] if p < len(row) else None for row in data]

    builder = ContactsBuilder(contacts_title, col_letters(cols["phone"]), warnings, area_code)
    builder.add_columns(
        range(header + 1, header + 1 + len(data)), *(column(key) for key in FIELDS)
    )
    mrows = list(numbered(list(manager_rows or ())))
    if mrows:
        managers = read_managers(mrows, managers_title, book, warnings)
    else:  # no sheet, or an empty one: owners given as extensions still work
        managers = {}
        warnings.add(no_managers_warning(book))
    return ContactIndex(
        builder.by_key,
        builder.records,
        managers,
        warnings.result(),
        source=source,
        mtime=mtime,
        build_seconds=time.perf_counter() - started,
        area_code=area_code,
    )


@without_gc
def load_index(path: Path | str, area_code: str = "") -> ContactIndex:
    """Read Contacts and Managers of an .xlsx/.xlsm file into a ``ContactIndex``.

    ``area_code``: the Settings' area code (``phones.normalize``), "" for none.
    Raises ``UserError`` (bilingual, naming the sheet or column) when the file cannot be
    used; bad cells only add ``warnings``.
    """
    started = time.perf_counter()
    path = Path(path).expanduser()
    if path.suffix.lower() in (".xls", ".xlsb", ".csv", ".ods"):
        raise UserError(
            Text(
                f"{path.name}: only .xlsx / .xlsm workbooks are supported; save it as .xlsx",
                f"{path.name}: поддерживаются только книги .xlsx / .xlsm; сохраните её как .xlsx",
            )
        )
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise UserError(Text(f"workbook not found: {path}", f"книга не найдена: {path}")) from None
    with Book(path) as book:
        found = book.find_sheet(CONTACTS.names)
        if found is None:
            raise UserError(sheet_missing(CONTACTS, book.name))
        title, part = found
        header, cols = header_of(all_rows(book, part, HEADER_SCAN_ROWS), CONTACTS, title, book.name)
        warnings = Warnings()
        builder = ContactsBuilder(title, col_letters(cols["phone"]), warnings, area_code)
        for rows, fields in read_columns(book, part, ColumnPlan(cols, FIELDS, header)):
            builder.add_columns(rows, *fields)
        found_managers = book.find_sheet(MANAGERS.names)
        manager_rows = all_rows(book, found_managers[1]) if found_managers else []
        if manager_rows:
            managers = read_managers(manager_rows, found_managers[0], book.name, warnings)
        else:  # no sheet, or an empty one: owners given as extensions still work
            managers = {}
            warnings.add(no_managers_warning(book.name))
        fingerprint = book.fingerprint(
            (part, found_managers[1] if found_managers else None, book.sst_part)
        )
    return ContactIndex(
        builder.by_key,
        builder.records,
        managers,
        warnings.result(),
        source=path,
        mtime=mtime,
        fingerprint=fingerprint,
        build_seconds=time.perf_counter() - started,
        area_code=area_code,
    )


def workbook_fingerprint(path: Path | str, *, contacts_required: bool = False) -> tuple | None:
    """CRC-32 and size of the parts ``load_index`` reads, from the zip directory (cheap):
    equal fingerprints mean the contacts did not change, whatever else did. None when the
    file is no workbook (or, ``contacts_required``, has no Contacts sheet)."""
    try:
        with Book(Path(path)) as book:
            contacts = book.find_sheet(CONTACTS.names)
            if contacts is None and contacts_required:
                return None
            managers = book.find_sheet(MANAGERS.names)
            return book.fingerprint(
                (
                    contacts[1] if contacts else None,
                    managers[1] if managers else None,
                    book.sst_part,
                )
            )
    except UserError:
        return None


def read_small_sheet(
    path: Path | str, sheet: Sheet, limit: int = 200
) -> list[tuple[int, dict[int, object]]] | None:
    """The first ``limit`` non-empty rows of a small sheet (Settings) as ``(row, {column:
    value})``, columns 0-based; None when the book has no such sheet. Streams like the
    contacts reader: openpyxl, even read-only, took 26 s on a book of a million contacts
    and left a million objects of cyclic garbage behind. Raises ``UserError`` for a file
    that is not an .xlsx."""
    with Book(Path(path)) as book:
        found = book.find_sheet(sheet.names)
        return None if found is None else all_rows(book, found[1], limit)


# ---------------------------------------------------------------------- watcher


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


ReloadCallback = Callable[[ContactIndex, "Text | None"], None]


class ContactsWatcher:
    """Keeps ``current`` up to date with the workbook on disk.

    A background thread polls the file's mtime/size; on a change it waits for the writer
    to finish, checks whether the contacts parts really changed (the agent's own Calls
    writes do not touch them) and builds the new index off the decision path, then swaps
    it in with one assignment. A failed re-read keeps the old index and reports why.

    With a ``store`` (``crm/index_store.py``: the index kept next to the agent's journal)
    the first index is the stored one when it was built from the contacts the book holds
    now: no parse, routing starts at once (``started_from`` "store"). When the book's
    contacts changed since (edited while the agent was stopped: "stale store"), routing
    also starts from the stored index, and the thread's first work is the re-read, swapped
    in as for any edit. Until that swap (the parse time, 7–10 s at a million contacts) a
    contact edited meanwhile is routed as before the edit — what a running agent does
    between an edit and its re-read; every other contact is routed right; after the swap
    no decision reads the old index. A stored index of another program version, book or
    area code, or a damaged one, is not used: the sheet is parsed as with no store. Each
    index built from the file is saved to the store afterwards, by the thread.
    """

    def __init__(
        self,
        path: Path | str,
        on_reload: ReloadCallback | None = None,
        *,
        interval: float = 1.0,
        settle: float = 0.2,
        loader: Callable[[Path], ContactIndex] | None = None,
        start: bool = True,
        store: Path | str | None = None,
        area_code: str = "",
    ):
        self.path = Path(path)
        self.interval = interval
        self.settle = settle
        self.on_reload = on_reload
        self._loader = loader or functools.partial(load_index, area_code=area_code)
        self._store = None if store is None else IndexStore(store, self.path, area_code)
        self._build_lock = threading.RLock()  # a listener may call refresh()
        self._stopping = threading.Event()
        self._sig = _signature(self.path)
        self.started_from = "sheet"  # or "store", "stale store": see the class
        self.saves = 0  # indexes written to the store
        self._unsaved: ContactIndex | None = None  # built from the file, not yet stored
        self._index = self._first_index()
        self._next_allowed = 0.0
        self.last_error: Text | None = None
        self.reloads = 0  # indexes swapped in after the first
        self.skipped = 0  # file changes that left the contacts parts as they were
        self._failed_fp: tuple = ()  # what a failed read saw: the same is not said again
        self._notify(self._index, None)
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="pz-contacts", daemon=True)
            self._thread.start()

    @property
    def current(self) -> ContactIndex:
        return self._index

    @property
    def store_problem(self) -> Text | None:
        """Why the stored index was not used at start (None: used, or no store)."""
        return None if self._store is None else self._store.problem

    def _first_index(self) -> ContactIndex:
        if self._store is not None:
            # No Contacts sheet now: the parse below says so, as without a store.
            fingerprint = workbook_fingerprint(self.path, contacts_required=True)
            stored = self._store.load(fingerprint) if fingerprint else None
            if stored is not None:
                self.started_from = "store" if stored.current else "stale store"
                if not stored.current:
                    log.info("%s", Text(
                        "contacts changed since the last run: routing from the saved index "
                        "while the workbook is read again",
                        "контакты изменились с прошлого запуска: пока книга перечитывается, "
                        "звонки направляются по сохранённому индексу"))
                return stored.index
        index = self._loader(self.path)  # a bad workbook is the caller's error, now
        self._unsaved = index
        return index

    def save_pending(self) -> bool:
        """Store the last index built from the file (the thread does it after each build,
        off the decision path; stopping cancels it). True if one was written."""
        with self._build_lock:
            index, self._unsaved = self._unsaved, None
        if index is None or self._store is None:
            return False
        # Not a workbook: the index's own file beside the journal (crm/index_store.py,
        # temp file + rename); the workbook is only read here.
        if not self._store.save(index, cancelled=self._stopping.is_set):
            return False
        self.saves += 1
        return True

    def name_and_owner(self, number: str) -> tuple[str, str] | None:
        """(name, owner) of the contact with this number in the current index: what the
        call log writes next to a call (``agent/calllog.py`` takes this function)."""
        contact = self._index.lookup(number)
        return (contact.name, contact.owner) if contact else None

    def refresh(self) -> Text | None:
        """Re-read now (the ribbon's "Refresh contacts"); the error text if it failed."""
        with self._build_lock:
            return self._reload(_signature(self.path), force=True)

    def swap(self, index: ContactIndex) -> None:
        """Put in an index built elsewhere (the open Excel book's unsaved contacts); the
        next change of the file on disk replaces it as usual."""
        with self._build_lock:
            self._index = index
            self.reloads += 1
        self._notify(index, None)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        first = True
        while first or not self._stopping.wait(self.interval):
            try:
                if first and self.started_from == "stale store":
                    with self._build_lock:  # the stored index is stale: re-read now
                        self._reload(_signature(self.path), force=False)
                elif not first:
                    self._poll()
                self.save_pending()
            except Exception:  # the watcher must outlive any surprise
                log.exception("contacts watcher: unexpected error")
            first = False

    def _poll(self) -> None:
        sig = _signature(self.path)
        if sig == self._sig or time.monotonic() < self._next_allowed:
            return
        # Let the writer finish: Excel and openpyxl write a new file then rename it,
        # others write in place; read once the signature holds still.
        if sig is not None and self._stopping.wait(self.settle):
            return
        if _signature(self.path) != sig:
            return  # still changing: the next poll sees it
        with self._build_lock:
            self._reload(sig, force=False)

    def _reload(self, sig: tuple[int, int, int] | None, force: bool) -> Text | None:
        if sig is None:
            error = Text(f"workbook not found: {self.path}", f"книга не найдена: {self.path}")
            if self._sig is not None or force:
                self._failed(error)
            self._sig = None
            return error
        fp = workbook_fingerprint(self.path)
        if not force:
            if fp and fp == self._index.fingerprint:
                self._sig = sig  # only other sheets changed (e.g. our own Calls rows)
                self.skipped += 1
                return None
            if fp and fp == self._failed_fp:
                self._sig = sig  # the same broken sheets as last time: said once already
                self.skipped += 1
                return self.last_error
        started = time.monotonic()
        try:
            index = self._loader(self.path)
        except UserError as exc:
            error = exc.text
        except Exception as exc:  # a surprise in a re-read keeps the old index
            log.debug("contacts re-read failed", exc_info=True)
            error = Text(
                f"cannot read {self.path.name}: {exc}",
                f"не удалось прочитать {self.path.name}: {exc}",
            )
        else:
            error = None
        # A file that changed while being read is looked at again on the next poll.
        self._sig = sig if _signature(self.path) == sig else None
        # Big books: do not spend more than about a third of the time re-reading.
        self._next_allowed = time.monotonic() + 2 * (time.monotonic() - started)
        if error is not None:
            self._failed_fp = fp
            self._failed(error)
            return error
        self._failed_fp = ()
        self._index = index  # the swap: readers see the old or the new, never a mix
        self._unsaved = index
        self.reloads += 1
        self.last_error = None
        self._notify(index, None)
        return None

    def _failed(self, error: Text) -> None:
        self.last_error = error
        if self.on_reload is None:  # a listener (the agent) says it once, in its own words
            log.warning("contacts not reloaded, the previous ones stay in use: %s", error.en)
        self._notify(self._index, error)

    def _notify(self, index: ContactIndex, error: Text | None) -> None:
        if self.on_reload is None:
            return
        try:
            self.on_reload(index, error)
        except Exception:  # a listener's bug must not stop reloading
            log.exception("contacts on_reload callback failed")
