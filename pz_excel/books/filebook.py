"""The Calls sheet (and the Dashboard) in an .xlsx/.xlsm file on disk, Excel closed.

Every write is a zip-level patch (``callspatch``, on the ``xlsx`` layer): only our parts
are written — the Calls sheet and its relationships, the styles we add, a missing Calls
sheet's entries in the package, the Dashboard's sheet, drawing and charts — and every other
member of the zip is copied byte for byte. A book that cannot be patched that way
(encrypted, strict OOXML, ZIP64, markup we do not understand) is never rewritten some other
way: ``write_calls`` raises ``BookUnpatchable`` with one clear line, and the rows wait in
the journal.

What it promises the user:

* columns are found **by header name in either language**, in any order; extra user
  columns, their values and formatting are kept; a missing Calls sheet is created;
* one row per Call ID, updated in place, also across restarts (the sheet is indexed on
  load); new rows go below the last used row and extend the sheet's Excel table;
* nothing that comes from outside (caller IDs, names, recording URLs, lines) is ever
  stored as a formula; http(s) recordings become hyperlinks;
* saves are atomic (temp file in the same folder, fsync, ``os.replace``): a crash leaves
  the old workbook or the new one, never half of one; the file keeps its mode;
* user edits are never clobbered: if the file changed on disk since we read it we read it
  again before applying rows, and we check once more right before replacing it;
* a workbook open in Excel or LibreOffice (owner/lock file next to it, or access denied)
  raises ``BookLocked``: the rows stay dirty in the journal and go out later.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pz_excel.books import BookDefaults, BookLocked, BookUnpatchable
from pz_excel.books.callspatch import CallsPatch, ChangedOnDisk, FormulaInOurCell, MissingColumns
from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text, UserError
from pz_excel.locks import AlreadyRunning, InstanceLock
from pz_excel.xlsx.cells import HEADER_SCAN_ROWS
from pz_excel.xlsx.zipio import Unsupported

log = logging.getLogger("pz_excel.books.filebook")

SAVE_ATTEMPTS = 3
#: How long a save waits for another writer of the same book (another agent) to finish.
WRITER_WAIT = 30.0
SUFFIXES = (".xlsx", ".xlsm", ".xltx", ".xltm")

#: Where Linux keeps a file's POSIX ACLs (copied to the new file by every save).
ACL_ATTRS = ("system.posix_acl_access",)

Replace = Callable[[str, str], None]
#: Builds our parts into the book's package before a save (the Dashboard's writer).
PartsWriter = Callable[[CallsPatch], None]


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


def _changing_text(path: Path) -> Text:
    return Text(
        f"the workbook {path.name} keeps changing on disk; will try again",
        f"книга {path.name} всё время меняется на диске; попробуем позже",
    )


def _unpatchable_text(path: Path, why: str) -> Text:
    return Text(
        f"the workbook {path.name} cannot be written safely ({why}); new calls wait in the "
        "journal. Save it in Excel as an ordinary .xlsx workbook (File > Save As)",
        f"в книгу {path.name} нельзя безопасно записать ({why}); новые звонки ждут в "
        "журнале. Сохраните её в Excel как обычную книгу .xlsx (Файл > Сохранить как)",
    )


def _formula_text(path: Path, ref: str) -> Text:
    return Text(
        f"cell {ref} of the Calls sheet in {path.name} holds a formula, but the agent writes "
        "that column; new calls wait in the journal until the formula is removed (put it "
        "in a column of your own)",
        f"в ячейке {ref} листа звонков книги {path.name} формула, а этот столбец заполняет "
        "агент; новые звонки ждут в журнале, пока формулу не уберут (перенесите её в свой "
        "столбец)",
    )


Stamp = tuple[int, int, int]


class FileBook(BookDefaults):
    """``CallsBook`` on an .xlsx/.xlsm file. ``lang`` is used for a new Calls sheet only
    when the other sheets don't tell; the words follow the sheet's own headers.

    ``replace`` is the rename step of the atomic save (a seam for crash tests).
    """

    kind = "file"

    def __init__(
        self, path: Path | str, lang: str | None = None, *, replace: Replace = os.replace
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.lang = lang
        self.description = str(Text(f"file {self.path}", f"файл {self.path}"))
        self._replace = replace
        self._lock = threading.RLock()
        self._patch: CallsPatch | None = None
        self._stamp: Stamp | None = None
        self._refused: tuple[Stamp | None, BookUnpatchable] | None = None
        self._recreated = False
        try:  # read now: a workbook without the right columns is a start-up error
            self._load()
        except (BookLocked, BookUnpatchable) as exc:  # retried with the first batch
            log.warning("%s", exc.text.both())

    # ------------------------------------------------------------------ public

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert ``rows`` by Call ID and save once. Raises BookLocked, BookUnpatchable,
        UserError."""
        if not rows:
            return 0
        self._save_with(lambda patch: patch.apply(rows))
        return len(rows)

    def write_parts(self, writer: PartsWriter) -> bool:
        """Put our parts (``writer`` edits the package: the Dashboard) and save once."""
        self._save_with(writer)
        return True

    def prepare(self) -> None:
        self.ensure_calls_sheet()

    def ensure_calls_sheet(self) -> bool:
        """Save a new Calls sheet now if the book had none; True if it did. The agent calls
        this at start-up, so the book shows the sheet before the first call."""
        with self._lock:
            if self._stale():
                self._load()
            if self._patch is None or not self._patch.created:
                return False
            self._save_with(lambda _patch: None)
            log.info("%s", Text(f"{self.path.name}: Calls sheet added",
                                f"{self.path.name}: лист «Звонки» добавлен"))
            return True

    def take_recreated(self) -> bool:
        """True once after we (re)created the Calls sheet: a sheet deleted while the agent
        ran, or missing at start. The agent then writes every call of its journal back."""
        recreated, self._recreated = self._recreated, False
        return recreated

    def existing_call_ids(self) -> set[str]:
        with self._lock:
            if self._stale():
                self._load()
            assert self._patch is not None
            return set(self._patch.index)

    def close(self) -> None:
        with self._lock:
            self._forget()

    @property
    def lang_of_sheet(self) -> str | None:
        return self._patch.lang if self._patch is not None else None

    # ------------------------------------------------------------------ loading

    def _stale(self) -> bool:
        """Nothing read yet, or the file changed on disk since we read it."""
        return self._patch is None or self._stat() != self._stamp

    def _stat(self) -> Stamp | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _forget(self) -> None:
        self._patch = None
        self._stamp = None

    def _check_locks(self) -> None:
        for lock, app in lock_files(self.path):
            raise BookLocked(_locked_text(self.path, lock, app), str(lock))
        try:
            read_only = not self.path.stat().st_mode & 0o222
        except OSError:
            return
        if read_only:  # the user made it read-only: respected, even where we could write
            raise BookLocked(Text(
                f"the workbook {self.path.name} is read-only; new calls wait in the journal "
                "and are written once it is writable again",
                f"книга {self.path.name} только для чтения; новые звонки ждут в журнале и "
                "будут записаны, когда запись снова разрешат",
            ))

    def _load(self) -> None:
        self._forget()
        if self.path.suffix.lower() not in SUFFIXES:
            raise UserError(
                Text(
                    f"{self.path.name}: only .xlsx and .xlsm workbooks can be written",
                    f"{self.path.name}: записывать можно только книги .xlsx и .xlsm",
                )
            )
        if self._refused is not None and self._refused[0] == self._stat():
            raise self._refused[1]  # the same file: no use reading it again
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
                raise _missing_error(self.path, exc) from None
            except zipfile.BadZipFile as exc:
                if self._stat() != before:
                    continue
                raise UserError(
                    Text(
                        f"cannot read the workbook {self.path}: it is not an .xlsx file "
                        f"({exc})",
                        f"не удаётся прочитать книгу {self.path}: это не файл .xlsx ({exc})",
                    )
                ) from exc
            except (Unsupported, OSError, ValueError, KeyError) as exc:
                if self._stat() != before:
                    continue  # read while someone was saving it: read again
                refused = BookUnpatchable(_unpatchable_text(self.path, str(exc) or repr(exc)))
                self._refused = (before, refused)
                raise refused from exc
            if self._stat() == before:
                self._patch, self._stamp = patch, before
                self._recreated = self._recreated or patch.created
                return
        raise BookLocked(_changing_text(self.path))

    # ------------------------------------------------------------------ writing

    def _save_with(self, edit: Callable[[CallsPatch], None]) -> None:
        """Apply ``edit`` to the book (read again if it changed) and save, as the book's
        only writer: every agent takes the book's lock file for the whole read-check-
        write-rename, so no save can land between another's check and its rename. A
        save someone else made meanwhile is read first (their rows kept, ours on top)."""
        with self._lock, self._writer_lock():
            self._remove_dead_temps()
            for _attempt in range(SAVE_ATTEMPTS):
                self._check_locks()
                try:
                    if self._stale():
                        self._load()
                    assert self._patch is not None
                    edit(self._patch)
                    self._save()
                    return
                except ChangedOnDisk:
                    log.info("%s changed while saving; reading it again", self.path)
                    self._forget()
                except PermissionError as exc:
                    self._forget()
                    raise BookLocked(_denied_text(self.path, exc)) from exc
                except FormulaInOurCell as exc:
                    self._forget()
                    raise BookUnpatchable(_formula_text(self.path, exc.ref)) from exc
                except Unsupported as exc:
                    self._forget()
                    raise BookUnpatchable(_unpatchable_text(self.path, str(exc))) from exc
                except BaseException:
                    self._forget()  # the copy in memory may be half-applied: re-read next time
                    raise
            raise BookLocked(_changing_text(self.path))

    def _writer_lock(self) -> InstanceLock:
        """The lock file beside the book (every agent on this machine sees the same one)."""
        lock = InstanceLock(self.path.with_name(f".{self.path.name}.pz-lock"))
        try:
            lock.acquire(wait=WRITER_WAIT)
        except AlreadyRunning:
            raise BookLocked(Text(
                f"another program of ours is writing {self.path.name}; will try again",
                f"в книгу {self.path.name} пишет другой агент; попробуем позже",
            )) from None
        except OSError as exc:  # a folder we may not create files in: the book is not ours
            raise BookLocked(_denied_text(self.path, exc)) from exc
        return lock

    def _remove_dead_temps(self) -> None:
        """Our temp files left by a writer that died mid-save (we hold the writer lock, so
        no live save owns one), and the Dashboard temp file of versions before 0.2."""
        name = glob.escape(self.path.name)
        try:
            for pattern in (f".{name}.*.pz-saving", f".{name}.dashboard.tmp"):
                for tmp in self.path.parent.glob(pattern):
                    tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def _save(self) -> None:
        """Temp file next to the book, fsync, check nobody saved meanwhile, atomic rename."""
        assert self._patch is not None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.pz-saving")
        try:
            self._patch.write(tmp, self._stamp)
            with open(tmp, "r+b") as fh:  # r+ : Windows can only flush a writable handle
                os.fsync(fh.fileno())
            keep_owner_and_mode(self.path, tmp)
            if self._stat() != self._stamp:
                raise ChangedOnDisk
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
        self._patch.committed()


def keep_owner_and_mode(original: Path, tmp: Path) -> None:
    """The new file gets the book's permission bits and, where we may, its owner: a
    private call log stays private after a save."""
    try:
        st = original.stat()
    except OSError:
        return
    try:
        os.chmod(tmp, st.st_mode & 0o7777)
    except OSError:
        pass
    if hasattr(os, "chown"):
        try:
            t = tmp.stat()
            if (t.st_uid, t.st_gid) != (st.st_uid, st.st_gid):
                os.chown(tmp, st.st_uid, st.st_gid)
                os.chmod(tmp, st.st_mode & 0o7777)  # chown may clear set-id bits
        except OSError:
            pass
    for attr in ACL_ATTRS:  # POSIX ACLs live in extended attributes
        try:
            os.setxattr(tmp, attr, os.getxattr(original, attr))
        except (OSError, AttributeError):
            pass


def _missing_error(path: Path, exc: MissingColumns) -> UserError:
    en = ", ".join(f"“{c.en}”" for c in exc.missing)
    ru = ", ".join(f"«{c.ru}»" for c in exc.missing)
    return UserError(
        Text(
            f"sheet “{exc.title}” of {path.name} has no column {en} (Russian: {ru}) "
            f"in its first {HEADER_SCAN_ROWS} rows; add the header back, or rename the "
            "sheet so a new Calls sheet is made",
            f"на листе «{exc.title}» книги {path.name} нет столбца {ru} "
            f"(по-английски: {en}) в первых {HEADER_SCAN_ROWS} строках; верните "
            "заголовок или переименуйте лист, и будет создан новый лист звонков",
        )
    )
