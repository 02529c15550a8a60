"""Building a contacts index from columns of cell values: the rules for what a row
means (phones normalised, several numbers in a cell, duplicates, the Managers sheet) and the
warnings that name the cell. A bad cell skips its row with a warning, never an exception:
one typo must not stop a sales team's calls. Used by ``crm/contacts.py`` for a file and for
rows already in memory alike.
"""

from __future__ import annotations

import functools
import gc
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import compress
from typing import Any, TypeVar

from pz_excel.crm import phones
from pz_excel.crm.contact_index import (
    Managers,
    Record,
    key_slot,
    name_key,
    no_separator,
    pack_records,
    record_row,
    to_contact,
)
from pz_excel.crm.schema import MANAGERS, Column, Sheet, cell_text
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.cells import HEADER_SCAN_ROWS
from pz_excel.xlsx.header import HeaderNotFound, find_header
from pz_excel.xlsx.reader import col_letters

F = TypeVar("F", bound=Callable[..., Any])

#: Warnings kept per load; the rest are counted in one closing line.
MAX_WARNINGS = 500


def clip(value: object, limit: int = 40) -> str:
    text = cell_text(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sheet_missing(sheet: Sheet, book: str) -> Text:
    return Text(
        f"sheet '{sheet.en}' ({sheet.ru}) not found in {book}",
        f"лист «{sheet.ru}» ({sheet.en}) не найден в книге {book}",
    )


def columns_missing(missing: Sequence[Column], title: str, book: str) -> Text:
    en = ", ".join(f"'{c.en}' ({c.ru})" for c in missing)
    ru = ", ".join(f"«{c.ru}» ({c.en})" for c in missing)
    where_en = f"(header row looked for in the first {HEADER_SCAN_ROWS} rows of {book})"
    where_ru = f"(строка заголовков ищется в первых {HEADER_SCAN_ROWS} строках, {book})"
    if len(missing) == 1:
        return Text(
            f"column {en} missing in sheet '{title}' {where_en}",
            f"в листе «{title}» нет столбца {ru} {where_ru}",
        )
    return Text(
        f"columns {en} missing in sheet '{title}' {where_en}",
        f"в листе «{title}» нет столбцов {ru} {where_ru}",
    )


class Warnings:
    """Bounded warning list: a million bad rows must not become a million messages."""

    def __init__(self) -> None:
        self.items: list[Text] = []
        self.dropped = 0

    def add(self, text: Text) -> None:
        if len(self.items) < MAX_WARNINGS:
            self.items.append(text)
        else:
            self.dropped += 1

    def result(self) -> list[Text]:
        if self.dropped:
            return [
                *self.items,
                Text(
                    f"… and {self.dropped} more warnings", f"… и ещё предупреждений: {self.dropped}"
                ),
            ]
        return self.items


def header_of(
    rows: Iterable[tuple[int, dict[int, object]]], sheet: Sheet, title: str, book: str
) -> tuple[int, dict[str, int]]:
    """(header row, column key → 0-based column) of one of our sheets, by the one rule
    (``xlsx.header.find_header``); a ``UserError`` naming the missing columns if none."""
    try:
        header, cols, _lang = find_header(rows, sheet.header_names, sheet.required)
    except HeaderNotFound as exc:
        missing = [sheet.column(key) for key in exc.missing]
        raise UserError(columns_missing(missing, title, book)) from None
    return header, cols


# ---------------------------------------------------------------------- building


FIELDS = ("name", "phone", "owner", "company")  # column order of a record after the row
_SPLIT_PHONES = re.compile(r"[,;\n]")


_AFTER_NUL_SPACE = re.compile(r"\x00\s")  # a literal first: the scan jumps from NUL to NUL


def _edge_space(joined: str) -> bool:
    """Does any of the NUL-joined values start or end with whitespace?"""
    if joined[:1].isspace() or joined[-1:].isspace():
        return True
    return bool(_AFTER_NUL_SPACE.search(joined) or _AFTER_NUL_SPACE.search(joined[::-1]))


def _texts(values: Sequence[object]) -> list[str]:
    """Cell values → stripped text. Runs per contact, so the usual case (all strings, none
    with spaces around) is settled on one joined string, in C."""
    try:
        joined = "\x00".join(values)  # type: ignore[arg-type]
    except TypeError:  # numbers, empty cells: one by one
        out = [v.strip() if type(v) is str else cell_text(v) for v in values]
    else:
        if "_x" not in joined and not _edge_space(joined):
            return values if isinstance(values, list) else list(values)  # type: ignore[return-value]
        out = [v.strip() for v in values]  # type: ignore[union-attr]
    if any("_x" in v for v in out):  # rare OOXML escapes (_x000D_): fix only then
        out = [cell_text(v) if "_x" in v else v for v in out]
    return out


class ContactsBuilder:
    """Turns columns of cell values into the phone-key dict of packed records."""

    def __init__(self, title: str, phone_letters: str, warnings: Warnings, area_code: str = ""):
        self.title = title
        self.area_code = area_code  # phones.normalize's: local numbers of this city
        self.phone_letters = phone_letters
        self.warnings = warnings
        self.by_key: dict[int | str, Record] = {}
        self.records: list[Record] = []

    def add_columns(
        self,
        rows: Sequence[int],
        names: Sequence[object],
        phone_values: Sequence[object],
        owners: Sequence[object],
        companies: Sequence[object],
    ) -> None:
        """Aligned columns of one batch of sheet rows. Rows without a phone are skipped."""
        keys = phones.normalize_many(phone_values, area_code=self.area_code)
        names = no_separator(_texts(names))
        owners = no_separator(_texts(owners))
        companies = no_separator(_texts(companies))
        if None in keys:
            if any(
                keys[i] is None and v is not None and v != "" for i, v in enumerate(phone_values)
            ):
                # bad or several numbers in a cell: row by row, with warnings
                self._add_rows(rows, keys, names, phone_values, owners, companies)
                return
            mask = [k is not None for k in keys]  # only empty phone cells: drop them
            rows, keys, names, owners, companies = (
                list(compress(col, mask)) for col in (rows, keys, names, owners, companies)
            )
        # The bulk path, all in C but one comprehension: a million rows in about a second.
        slots = [k if k[0] == "0" else int(k) for k in keys]  # type: ignore[index]
        records = pack_records(rows, names, keys, owners, companies)  # type: ignore[arg-type]
        # Reversed, so that the first row of a number wins, as in the row-by-row path.
        batch = dict(zip(reversed(slots), reversed(records), strict=True))
        clash = batch.keys() & self.by_key.keys()  # numbers already in earlier rows
        if clash or len(batch) != len(records):  # duplicates: warn in sheet order
            for slot, record in zip(slots, records, strict=True):
                first = self.by_key[slot] if slot in clash else batch[slot]
                if first is not record:
                    self._duplicate(first, record, str(slot))
            for key in clash:
                del batch[key]
        self.by_key.update(batch)  # type: ignore[arg-type]
        self.records.extend(records)

    def _add_rows(
        self,
        rows: Sequence[int],
        keys: list[str | None],
        names: list[str],
        phone_values: Sequence[object],
        owners: list[str],
        companies: list[str],
    ) -> None:
        setdefault = self.by_key.setdefault
        append = self.records.append
        for row, key, name, phone, owner, company in zip(
            rows, keys, names, phone_values, owners, companies, strict=True
        ):
            if key is None:
                if phone is None or phone == "":
                    continue  # nothing to route by; blank table rows are not worth a warning
                several = self._several(row, phone)
                if not several:
                    continue
                record = pack_records([row], [name], [", ".join(several)], [owner], [company])[0]
                for more in several:
                    first = setdefault(key_slot(more), record)
                    if first is not record:
                        self._duplicate(first, record, more)
            else:
                slot = key_slot(key)
                record = pack_records([row], [name], [key], [owner], [company])[0]
                first = setdefault(slot, record)
                if first is not record:
                    self._duplicate(first, record, key)
            append(record)

    def _several(self, row: int, phone: object) -> list[str]:
        """Keys of a cell holding several numbers (``a, b; c``); warns about bad parts."""
        ref = f"{self.title}!{self.phone_letters}{row}"
        parts = _SPLIT_PHONES.split(phone) if isinstance(phone, str) else [phone]
        keys: list[str] = []
        for part in parts:
            if isinstance(part, str) and not part.strip():
                continue
            key = phones.normalize(part, area_code=self.area_code)
            mismatch = phones.local_mismatch(part, self.area_code) if key is None else None
            if mismatch is not None:
                got, want = mismatch
                self.warnings.add(
                    Text(
                        f"{ref}: '{clip(part)}' has {got} digits, but a local number of "
                        f"area code {self.area_code} has {want}: write it with its area code",
                        f"{ref}: в «{clip(part)}» {got} цифр, а в местном номере с кодом "
                        f"{self.area_code} их {want}: запишите номер с кодом города",
                    )
                )
            elif key is None:
                self.warnings.add(
                    Text(
                        f"{ref}: '{clip(part)}' is not a phone number",
                        f"{ref}: «{clip(part)}» — не номер телефона",
                    )
                )
            elif key not in keys:
                keys.append(key)
        return keys

    def _duplicate(self, earlier: Record, record: Record, key: str) -> None:
        if record_row(earlier) == record_row(record):
            return
        ref = f"{self.title}!{self.phone_letters}{record_row(record)}"
        number = phones.display(key)
        first = to_contact(earlier)
        self.warnings.add(
            Text(
                f"{ref}: {number} is also in row {first.row} ({first.name}); "
                f"row {first.row} is used",
                f"{ref}: номер {number} уже есть в строке {first.row} ({first.name}); "
                f"используется строка {first.row}",
            )
        )


def read_managers(
    rows: Sequence[tuple[int, dict[int, object]]], title: str, book: str, warnings: Warnings
) -> dict[str, str]:
    header, cols = header_of(rows, MANAGERS, title, book)
    owner_col, ext_col = cols["owner"], cols["extension"]
    out = Managers()
    for rownum, cells in rows:
        if rownum <= header:
            continue
        owner = cell_text(cells.get(owner_col))
        ext = cell_text(cells.get(ext_col))
        if not owner and not ext:
            continue
        ref = f"{title}!{col_letters(ext_col)}{rownum}"
        if not owner:
            warnings.add(
                Text(
                    f"{title}!{col_letters(owner_col)}{rownum}: extension {ext} has no owner name",
                    f"{title}!{col_letters(owner_col)}{rownum}: у добавочного {ext} не указано имя",
                )
            )
            continue
        if not (ext.isdigit() and ext.isascii()):
            warnings.add(
                Text(
                    f"{ref}: '{clip(ext)}' is not an extension (digits) for {owner}",
                    f"{ref}: «{clip(ext)}» — не добавочный номер (цифры) для {owner}",
                )
            )
            continue
        key = name_key(owner)
        if key in out and out[key] != ext:
            warnings.add(
                Text(
                    f"{ref}: {owner} is listed twice; extension {out[key]} is used",
                    f"{ref}: {owner} указан дважды; используется добавочный {out[key]}",
                )
            )
            continue
        out[key] = ext
        out.names.setdefault(ext, owner)
    return out


def no_managers_warning(book: str) -> Text:
    return Text(
        f"sheet '{MANAGERS.en}' ({MANAGERS.ru}) not found in {book} or empty: owners given "
        f"by name cannot be resolved, only extensions",
        f"лист «{MANAGERS.ru}» ({MANAGERS.en}) не найден в книге {book} или пуст: "
        f"ответственные, указанные по имени, не будут найдены, только добавочные",
    )


# ---------------------------------------------------------------------- garbage collection


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while an index is built: a million tuples would trigger dozens of
    collections that find nothing (records hold no cycles) and cost a quarter of the time.
    Reference counting still frees everything; collection resumes right after."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
        _gc_holders += 1
        gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def without_gc(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        with _gc_paused():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
