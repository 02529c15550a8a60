"""The Contacts and Managers sheets as an index by phone number.

Columns are found by header name in either language (``schema.CONTACTS`` / ``MANAGERS``), in
any order, with the header row anywhere in the first 10 rows; extra columns are ignored.
A cell that is not a phone number skips its row with a warning naming the cell — never an
exception: one typo must not stop a sales team's calls.

Speed matters: a team's book may hold a million contacts, and openpyxl needs minutes for
that (about 5 min per million rows in read-only mode). So ``load_index`` streams the sheet
XML itself: the zip member is decompressed in 4 MB chunks cut at ``</row>``; once the header
is known, one regular-expression match per row takes the four needed cells in the shapes
Excel, openpyxl, LibreOffice and XlsxWriter write, and a chunk with anything else (other
attribute orders, rich text, CDATA, namespace prefixes, cells without ``r``) goes cell by
cell, through lxml if need be. Values are then handled a column at a time: escapes decoded
by libxml2 in one call, phones normalised in bulk, records made by ``zip``. About 10 s and
400 MB for a million contacts (``python -m bench.bench_routing``).

Nothing here expands entities or loads a DTD: the regular expressions never interpret
markup, lxml runs with ``resolve_entities=False``, ``no_network=True`` and
``huge_tree=False``, a DOCTYPE is refused, and part and row sizes are bounded.

``build_index`` does the same from rows already in memory (the live xlwings backend), and
``ContactsWatcher`` re-reads the file when it changes, swapping the new index in atomically.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import posixpath
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from itertools import compress
from pathlib import Path
from typing import IO, Any, TypeVar

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as safe_fromstring
from lxml import etree

from pz_excel.crm import phones
from pz_excel.crm.schema import CONTACTS, MANAGERS, Column, Sheet
from pz_excel.i18n import Text, UserError

log = logging.getLogger("pz_excel.crm.contacts")
F = TypeVar("F", bound=Callable[..., Any])

#: The header row is looked for in the first rows that have any cell (titles sit above).
HEADER_SEARCH_ROWS = 10
#: Warnings kept per load; the rest are counted in one closing line.
MAX_WARNINGS = 500
#: Bounds for a hostile or broken file: decompressed size of one sheet or string table,
#: of workbook.xml and relationship parts, and of a single row.
MAX_PART_BYTES = 2 << 30
MAX_SMALL_PART_BYTES = 16 << 20
MAX_ROW_BYTES = 64 << 20
_CHUNK_BYTES = 4 << 20
_HEAD_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class Contact:
    row: int  # sheet row, 1-based
    name: str
    phone: str  # the number's key (``73430112233``); several keys joined by ", "
    owner: str  # extension digits or a manager's name, as typed
    company: str


#: How a contact is stored: one UTF-8 ``bytes``, ``row␟name␟phone␟owner␟company`` (␟ is
#: U+001F, the unit separator; ``phone`` is the number's key, several joined by ", ").
#: Bytes hold no references, so the cyclic garbage collector neither tracks nor walks
#: them. As tuples, a million records cost every full collection 25–40 ms and the first
#: collection after a build ~85 ms, paid by whichever thread allocated next: often the
#: event thread, with a caller waiting. Packed they are also smaller (~100 bytes a
#: contact). ``Contact`` objects are made on demand (a lookup, an iteration); the dict key
#: is the phone key as an int (32 bytes instead of 60) unless a leading zero makes it an
#: extension like ``0101``.
Record = bytes
_US = "\x1f"


def _slot(key: str) -> int | str:
    """The dict key for a phone key (see ``Record``)."""
    return key if key[0] == "0" else int(key)


def _contact(record: Record) -> Contact:
    row, name, phone, owner, company = record.decode().split(_US)
    return Contact(int(row), name, phone, owner, company)


def _record_row(record: Record) -> int:
    return int(record[: record.index(b"\x1f")])


def _pack(
    rows: Iterable[int],
    names: Iterable[str],
    phones_: Iterable[str],
    owners: Iterable[str],
    companies: Iterable[str],
) -> list[Record]:
    """Records for aligned columns, in C: one join per contact, one UTF-8 encode in all."""
    texts = list(map(_US.join, zip(map(str, rows), names, phones_, owners, companies, strict=True)))
    parts = "\x00".join(texts).encode().split(b"\x00")  # cell text never holds a NUL
    return parts if len(parts) == len(texts) else [t.encode() for t in texts]


def _no_separator(values: list[str]) -> list[str]:
    """A unit separator inside a cell (only an ``_x001F_`` escape makes one) would split
    its record wrongly: it becomes a space. Checked on the whole column in one C call."""
    if _US not in "".join(values):
        return values
    return [v.replace(_US, " ") for v in values]


class _ContactList(Sequence):  # type: ignore[type-arg]
    """A read-only view of the records as ``Contact`` objects."""

    __slots__ = ("_records",)

    def __init__(self, records: Sequence[Record]):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [_contact(r) for r in self._records[i]]
        return _contact(self._records[i])

    def __iter__(self) -> Iterator[Contact]:
        return map(_contact, self._records)


class ContactIndex:
    """Contacts by normalised phone key, and Managers by name. Immutable once built."""

    def __init__(
        self,
        by_key: dict[int | str, Record] | None = None,
        records: Sequence[Record] | None = None,
        managers: dict[str, str] | None = None,
        warnings: list[Text] | None = None,
        *,
        source: Path | None = None,
        mtime: float = 0.0,
        fingerprint: tuple = (),
        build_seconds: float = 0.0,
    ):
        self._by_key = by_key or {}
        # A tuple of bytes: the collector untracks it once and never walks it again.
        self._records: tuple[Record, ...] = tuple(records or ())
        self.managers: dict[str, str] = managers or {}  # name_key(owner) -> extension
        self.warnings: list[Text] = warnings or []
        self.source = source
        self.mtime = mtime
        self.fingerprint = fingerprint  # what was read: (part, CRC-32, size) per zip member
        self.build_seconds = build_seconds

    def lookup(self, number: object) -> Contact | None:
        """The contact with this phone number in any form, or ``None``. O(1)."""
        key = phones.normalize(number)
        return None if key is None else self.lookup_key(key)

    def lookup_key(self, key: str) -> Contact | None:
        """Like ``lookup`` for an already normalised key."""
        if not (key and key.isdigit() and key.isascii()):
            return None
        record = self._by_key.get(_slot(key))
        return None if record is None else _contact(record)

    def owner_extension(self, owner: object) -> str | None:
        """Extension for an Owner value: digits are the extension itself; a name is looked
        up in Managers (case, spaces and ё/е do not matter). ``None`` if unresolved."""
        text = _cell_text(owner)
        if not text:
            return None
        if text.isdigit() and text.isascii():
            return text
        return self.managers.get(name_key(text))

    def owner_name(self, owner: object) -> str:
        """One name per manager, whatever the Owner cell says: an extension listed in
        Managers gives that manager's name, a name its spelling there; else as typed."""
        text = _cell_text(owner)
        ext = self.owner_extension(text)
        names = getattr(self.managers, "names", {})
        return names.get(ext, text) if ext else text

    @property
    def contacts(self) -> Sequence[Contact]:
        """All contacts in sheet order."""
        return _ContactList(self._records)

    @property
    def phone_count(self) -> int:
        """Distinct phone keys (a contact may have several numbers)."""
        return len(self._by_key)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Contact]:
        return iter(self.contacts)

    def __repr__(self) -> str:
        return (
            f"<ContactIndex {len(self)} contacts, {len(self.managers)} managers, "
            f"{len(self.warnings)} warnings, source={self.source}>"
        )


class Managers(dict):
    """The Managers sheet: name_key(owner) → extension, and ``names``: extension → the
    owner's name as first written there (what reports show)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}


def name_key(name: str) -> str:
    """How owner names compare: trimmed, inner spaces collapsed, case-folded, ё = е."""
    return " ".join(name.split()).casefold().replace("ё", "е")


# ---------------------------------------------------------------------- cell values


_XESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")  # OOXML escape of control characters


def _cell_text(value: object) -> str:
    """A cell value as the text a user sees (numbers without a trailing .0)."""
    if value is None:
        return ""
    if type(value) is str:
        text = value.strip()
        if "_x" in text:
            text = _XESCAPE.sub(lambda m: chr(int(m[1], 16)), text).strip()
        return text
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    return str(value).strip()


def _number(text: str) -> object:
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def col_letters(index: int) -> str:
    """0-based column index → ``A``, ``B``, … ``AA``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def col_index(letters: str) -> int:
    """``A`` → 0, ``AA`` → 26."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _clip(value: object, limit: int = 40) -> str:
    text = _cell_text(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- messages


def _sheet_missing(sheet: Sheet, book: str) -> Text:
    return Text(
        f"sheet '{sheet.en}' ({sheet.ru}) not found in {book}",
        f"лист «{sheet.ru}» ({sheet.en}) не найден в книге {book}",
    )


def _columns_missing(missing: Sequence[Column], title: str, book: str) -> Text:
    en = ", ".join(f"'{c.en}' ({c.ru})" for c in missing)
    ru = ", ".join(f"«{c.ru}» ({c.en})" for c in missing)
    where_en = f"(header row looked for in the first {HEADER_SEARCH_ROWS} rows of {book})"
    where_ru = f"(строка заголовков ищется в первых {HEADER_SEARCH_ROWS} строках, {book})"
    if len(missing) == 1:
        return Text(
            f"column {en} missing in sheet '{title}' {where_en}",
            f"в листе «{title}» нет столбца {ru} {where_ru}",
        )
    return Text(
        f"columns {en} missing in sheet '{title}' {where_en}",
        f"в листе «{title}» нет столбцов {ru} {where_ru}",
    )


class _Warnings:
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


# ---------------------------------------------------------------------- header search


def _header_name(value: object) -> str:
    return " ".join(value.split()).casefold() if isinstance(value, str) else ""


def find_header(
    rows: Iterable[tuple[int, dict[int, object]]], sheet: Sheet, title: str, book: str
) -> tuple[int, dict[str, int]]:
    """(header row number, column key → 0-based column) of the first row, among the first
    ``HEADER_SEARCH_ROWS`` non-empty ones, that holds every required header of ``sheet``.

    Raises ``UserError`` naming the missing columns of the closest candidate row.
    """
    wanted = {name.casefold(): col.key for col in sheet.columns for name in col.names}
    required = [c for c in sheet.columns if c.required]
    best: list[Column] | None = None
    for seen, (rownum, cells) in enumerate(rows):
        if seen >= HEADER_SEARCH_ROWS:
            break
        found: dict[str, int] = {}
        for ci in sorted(cells):
            key = wanted.get(_header_name(cells[ci]))
            if key is not None and key not in found:
                found[key] = ci
        missing = [c for c in required if c.key not in found]
        if not missing:
            return rownum, found
        if best is None or len(missing) < len(best):
            best = missing
    raise UserError(_columns_missing(best or required, title, book))


# ---------------------------------------------------------------------- building


_FIELDS = ("name", "phone", "owner", "company")  # column order of a record after the row
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
        out = [v.strip() if type(v) is str else _cell_text(v) for v in values]
    else:
        if "_x" not in joined and not _edge_space(joined):
            return values if isinstance(values, list) else list(values)  # type: ignore[return-value]
        out = [v.strip() for v in values]  # type: ignore[union-attr]
    if any("_x" in v for v in out):  # rare OOXML escapes (_x000D_): fix only then
        out = [_cell_text(v) if "_x" in v else v for v in out]
    return out


class _ContactsBuilder:
    """Turns columns of cell values into the phone-key dict of packed records."""

    def __init__(self, title: str, phone_letters: str, warnings: _Warnings):
        self.title = title
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
        keys = phones.normalize_many(phone_values)
        names = _no_separator(_texts(names))
        owners = _no_separator(_texts(owners))
        companies = _no_separator(_texts(companies))
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
        records = _pack(rows, names, keys, owners, companies)  # type: ignore[arg-type]
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
                record = _pack([row], [name], [", ".join(several)], [owner], [company])[0]
                for more in several:
                    first = setdefault(_slot(more), record)
                    if first is not record:
                        self._duplicate(first, record, more)
            else:
                slot = _slot(key)
                record = _pack([row], [name], [key], [owner], [company])[0]
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
            key = phones.normalize(part)
            if key is None:
                self.warnings.add(
                    Text(
                        f"{ref}: '{_clip(part)}' is not a phone number",
                        f"{ref}: «{_clip(part)}» — не номер телефона",
                    )
                )
            elif key not in keys:
                keys.append(key)
        return keys

    def _duplicate(self, earlier: Record, record: Record, key: str) -> None:
        if _record_row(earlier) == _record_row(record):
            return
        ref = f"{self.title}!{self.phone_letters}{_record_row(record)}"
        number = phones.display(key)
        first = _contact(earlier)
        self.warnings.add(
            Text(
                f"{ref}: {number} is also in row {first.row} ({first.name}); "
                f"row {first.row} is used",
                f"{ref}: номер {number} уже есть в строке {first.row} ({first.name}); "
                f"используется строка {first.row}",
            )
        )


def _managers(
    rows: Sequence[tuple[int, dict[int, object]]], title: str, book: str, warnings: _Warnings
) -> dict[str, str]:
    header, cols = find_header(rows, MANAGERS, title, book)
    owner_col, ext_col = cols["owner"], cols["extension"]
    out = Managers()
    for rownum, cells in rows:
        if rownum <= header:
            continue
        owner = _cell_text(cells.get(owner_col))
        ext = _cell_text(cells.get(ext_col))
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
                    f"{ref}: '{_clip(ext)}' is not an extension (digits) for {owner}",
                    f"{ref}: «{_clip(ext)}» — не добавочный номер (цифры) для {owner}",
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


def _no_managers_warning(book: str) -> Text:
    return Text(
        f"sheet '{MANAGERS.en}' ({MANAGERS.ru}) not found in {book} or empty: owners given "
        f"by name cannot be resolved, only extensions",
        f"лист «{MANAGERS.ru}» ({MANAGERS.en}) не найден в книге {book} или пуст: "
        f"ответственные, указанные по имени, не будут найдены, только добавочные",
    )


# ---------------------------------------------------------------------- in-memory rows


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


def _without_gc(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        with _gc_paused():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_without_gc
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
) -> ContactIndex:
    """An index from cell values already read (the live Excel backend).

    ``contact_rows`` / ``manager_rows`` are the sheets' used ranges as rows of values
    (titles and the header row included: the header is found as in a file), starting at
    sheet row ``first_row`` and column ``first_col`` (1-based) so that warnings name the
    right cells. ``manager_rows`` None or empty: the book has no (filled) Managers sheet.
    """
    started = time.perf_counter()
    book = source.name if source else "the workbook"
    warnings = _Warnings()
    offset = first_col - 1
    contact_rows = contact_rows if isinstance(contact_rows, Sequence) else list(contact_rows)

    def numbered(rows: Sequence[Sequence[object]]) -> Iterator[tuple[int, dict[int, object]]]:
        for i, row in enumerate(rows):
            cells = {offset + j: v for j, v in enumerate(row) if v is not None and v != ""}
            if cells:
                yield first_row + i, cells

    header, cols = find_header(numbered(contact_rows), CONTACTS, contacts_title, book)
    data = contact_rows[header - first_row + 1 :]

    def column(key: str) -> list[object]:
        if key not in cols:
            return [None] * len(data)
        p = cols[key] - offset
        return [row[p] if p < len(row) else None for row in data]

    builder = _ContactsBuilder(contacts_title, col_letters(cols["phone"]), warnings)
    builder.add_columns(
        range(header + 1, header + 1 + len(data)), *(column(key) for key in _FIELDS)
    )
    mrows = list(numbered(list(manager_rows or ())))
    if mrows:
        managers = _managers(mrows, managers_title, book, warnings)
    else:  # no sheet, or an empty one: owners given as extensions still work
        managers = {}
        warnings.add(_no_managers_warning(book))
    return ContactIndex(
        builder.by_key,
        builder.records,
        managers,
        warnings.result(),
        source=source,
        mtime=mtime,
        build_seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------- .xlsx streaming

_R_ID = (
    "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id",
    "{http://purl.oclc.org/ooxml/officeDocument/relationships}id",
)

# One cell as Excel, openpyxl, LibreOffice and XlsxWriter write it (a formula's cached
# value included). Groups: column letters, row, type, <v> text, inline <t> text. Anything
# else makes the chunk take the lxml path.
_CELL = re.compile(
    r'<c r="([A-Z]{1,3})([0-9]{1,7})"(?: s="[0-9]+")?(?: t="([a-zA-Z]+)")?'
    r"(?:/>|></c>|>(?:(?:<f(?: [^>]*)?(?:/>|>[^<]*</f>))?<v>([^<]*)</v>"
    r'|<is><t(?: xml:space="preserve")?>([^<]*)</t></is>)</c>)'
)
_SI = re.compile(r'<si><t(?: xml:space="preserve")?>([^<]*)</t></si>')
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)\b[^>]*>")
_PROLOG_SKIP = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->)", re.S)
_ENCODING = re.compile(rb"""<\?xml[^>]*encoding=["']([^"']+)["']""")
_SEP = "\ue000"  # joins values for one libxml2 decode; a clash is detected and handled
_UNESCAPE_BATCH = 4_000_000  # chars per decode call, well under libxml2's 10 MB text limit

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_comments=True,
)


def _unescape_one(raw: str) -> str:
    try:
        return etree.fromstring(f"<a>{raw}</a>".encode(), _PARSER).text or ""
    except etree.XMLSyntaxError:
        return raw  # an undefined entity: keep what is there rather than lose the row


def _unescape_many(values: list[str]) -> list[str]:
    """XML-decode many text values (``&amp;``, ``&#1057;``) with few libxml2 calls."""
    joined = _SEP.join(values)
    if "&" not in joined:
        return values
    if len(joined) > _UNESCAPE_BATCH and len(values) > 1:
        half = len(values) // 2
        return _unescape_many(values[:half]) + _unescape_many(values[half:])
    try:
        parts = (etree.fromstring(f"<a>{joined}</a>".encode(), _PARSER).text or "").split(_SEP)
    except etree.XMLSyntaxError:
        parts = []
    return parts if len(parts) == len(values) else [_unescape_one(v) for v in values]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;") if "&" in text or "<" in text else text


class _Frame:
    """What the lxml fallback needs to parse a chunk on its own: the root start tag (with
    its namespace declarations), the namespace prefix and the container element."""

    def __init__(self, root_tag: str, prefix: str, root_name: str, container: str | None):
        self.root_tag = root_tag
        self.prefix = prefix
        self.root_name = root_name
        self.container = container
        self.last_row = 0  # for rows and cells written without r="…"

    def wrap(self, text: str) -> bytes:
        p = self.prefix
        inner = f"<{p}{self.container}>{text}</{p}{self.container}>" if self.container else text
        return f"{self.root_tag}{inner}</{p}{self.root_name}>".encode()


class _Book:
    """Just enough of an .xlsx (a zip of XML parts) to stream two sheets and the strings."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        try:
            self.zf = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise UserError(
                Text(f"workbook not found: {path}", f"книга не найдена: {path}")
            ) from None
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UserError(_not_xlsx(path, exc)) from None
        try:
            self.members = {info.filename.lower(): info for info in self.zf.infolist()}
            self.sheets, self.sst_part = self._workbook()
        except BaseException:
            self.zf.close()
            raise
        self._sst: list[str] | None = None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> _Book:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- package structure

    def _info(self, part: str) -> zipfile.ZipInfo | None:
        return self.members.get(part.lstrip("/").lower())

    def _small_xml(self, part: str):  # type: ignore[no-untyped-def]
        info = self._info(part)
        if info is None:
            return None
        if info.file_size > MAX_SMALL_PART_BYTES:
            raise UserError(self._broken(f"{part} is too large"))
        try:
            return safe_fromstring(self.zf.read(info))
        except (ParseError, DefusedXmlException, zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UserError(self._broken(f"{part}: {exc}")) from None

    def _rels(self, part: str) -> list[tuple[str, str, str]]:
        """(Id, type, target part) of a part's relationships."""
        folder, name = posixpath.split(part)
        root = self._small_xml(posixpath.join(folder, "_rels", name + ".rels"))
        out = []
        for el in root.iter() if root is not None else ():
            if el.tag.endswith("Relationship") and el.get("TargetMode") != "External":
                target = el.get("Target") or ""
                if target.startswith("/"):
                    resolved = target.lstrip("/")
                else:
                    resolved = posixpath.normpath(posixpath.join(folder, target))
                out.append((el.get("Id") or "", el.get("Type") or "", resolved))
        return out

    def _workbook(self) -> tuple[list[tuple[str, str]], str | None]:
        main = next(
            (target for _, kind, target in self._rels("") if kind.endswith("/officeDocument")),
            "xl/workbook.xml",
        )
        root = self._small_xml(main)
        if root is None:
            raise UserError(_not_xlsx(self.path, "no workbook part"))
        rels = self._rels(main)
        by_id = {rid: target for rid, kind, target in rels if kind.endswith("/worksheet")}
        sheets = []
        for el in root.iter():
            if el.tag.endswith("}sheet") or el.tag == "sheet":
                rid = next((el.get(a) for a in _R_ID if el.get(a)), None)
                if rid in by_id:
                    sheets.append((el.get("name") or "", by_id[rid]))
        sst = next((target for _, kind, target in rels if kind.endswith("/sharedStrings")), None)
        return sheets, sst

    def find_sheet(self, sheet: Sheet) -> tuple[str, str] | None:
        """(title as in the book, part) of the first worksheet named like ``sheet``."""
        names = {n.casefold() for n in sheet.names}
        return next(
            ((title, part) for title, part in self.sheets if title.strip().casefold() in names),
            None,
        )

    def fingerprint(self, parts: Iterable[str | None]) -> tuple:
        out = []
        for part in parts:
            info = self._info(part) if part else None
            if info is not None:
                out.append((info.filename, info.CRC, info.file_size))
        return tuple(out)

    def _broken(self, detail: str) -> Text:
        return Text(
            f"cannot read {self.name}: {detail}",
            f"не удалось прочитать книгу {self.name}: {detail}",
        )

    # -- streaming

    def chunks(self, part: str, container: str | None, item: str) -> Iterator[tuple[str, _Frame]]:
        """Decoded text of whole ``<item>`` elements, a few MB at a time, from inside
        ``<container>`` (or the root element if ``container`` is None)."""
        info = self._info(part)
        if info is None:
            raise UserError(self._broken(f"{part} is missing"))
        if info.file_size > MAX_PART_BYTES:
            raise UserError(self._broken(f"{part} is larger than {MAX_PART_BYTES >> 20} MB"))
        try:
            with self.zf.open(info) as stream:
                yield from self._chunks(stream, part, container, item)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise UserError(_not_xlsx(self.path, exc)) from None

    def _chunks(
        self, stream: IO[bytes], part: str, container: str | None, item: str
    ) -> Iterator[tuple[str, _Frame]]:
        buf = stream.read(_CHUNK_BYTES)
        while len(buf) < _HEAD_BYTES:  # the prolog and root start tag, whole
            more = stream.read(_CHUNK_BYTES)
            if not more:
                break
            buf += more
        # Prolog: encoding, no DTD, the root start tag (its namespace declarations are
        # needed to parse chunks on their own).
        if buf.startswith(b"\xef\xbb\xbf"):
            buf = buf[3:]
        enc = _ENCODING.match(buf)
        if enc and enc.group(1).lower().replace(b"-", b"") != b"utf8":
            raise UserError(self._broken(f"{part} is not UTF-8; save it again in Excel"))
        pos = 0
        while True:
            m = _PROLOG_SKIP.match(buf, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
        if buf[pos:].lstrip().startswith(b"<!DOCTYPE"):
            raise UserError(self._broken(f"{part} has a DTD (refused for safety)"))
        root = _ROOT_TAG.search(buf, pos)
        if root is None:
            raise UserError(self._broken(f"{part} has no root element"))
        prefix = (root.group(1) or b"").decode()
        frame = _Frame(root.group(0).decode(), prefix, root.group(2).decode(), container)
        if root.group(0).endswith(b"/>"):
            return
        pos = root.end()
        if container is not None:
            start = re.compile(
                rb"<" + re.escape(prefix.encode() + container.encode()) + rb"\b[^>]*>"
            )
            while True:
                m = start.search(buf, pos)
                if m is not None:
                    break
                if len(buf) > MAX_ROW_BYTES:
                    return  # no <sheetData> in the first 64 MB: nothing to read
                more = stream.read(_CHUNK_BYTES)
                if not more:
                    return
                buf += more
            if m.group(0).endswith(b"/>"):
                return  # <sheetData/>: an empty sheet
            pos = m.end()
            close = f"</{prefix}{container}>".encode()
        else:
            close = f"</{prefix}{frame.root_name}>".encode()
        end_item = f"</{prefix}{item}>".encode()
        buf = buf[pos:]
        while True:
            stop = buf.find(close)
            if stop >= 0:
                yield self._decode(buf[:stop], part), frame
                return
            cut = buf.rfind(end_item)
            if cut >= 0:
                cut += len(end_item)
                yield self._decode(buf[:cut], part), frame
                buf = buf[cut:]
            elif len(buf) > MAX_ROW_BYTES:
                raise UserError(
                    self._broken(f"{part}: an element is larger than {MAX_ROW_BYTES >> 20} MB")
                )
            more = stream.read(_CHUNK_BYTES)
            if not more:
                raise UserError(self._broken(f"{part} ends unexpectedly"))
            buf += more

    def _decode(self, data: bytes, part: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(self._broken(f"{part} is not valid UTF-8")) from None

    def _parse_chunk(self, text: str, frame: _Frame, part: str):  # type: ignore[no-untyped-def]
        try:
            return etree.fromstring(frame.wrap(text), _PARSER)
        except etree.XMLSyntaxError as exc:
            raise UserError(self._broken(f"{part}: {exc}")) from None

    # -- shared strings

    def shared_strings(self) -> list[str]:
        if self._sst is None:
            self._sst = []
            if self.sst_part and self._info(self.sst_part) is not None:
                for text, frame in self.chunks(self.sst_part, None, "si"):
                    self._sst.extend(self._sst_chunk(text, frame))
        return self._sst

    def _sst_chunk(self, text: str, frame: _Frame) -> list[str]:
        if not frame.prefix:
            found = _SI.findall(text)
            if len(found) == text.count("<si"):
                return _unescape_many(found) if "&" in text else found
        root = self._parse_chunk(text, frame, self.sst_part or "")
        return [_rich_text(si) for si in root if _local(si.tag) == "si"]

    # -- cells

    def cells(self, text: str, frame: _Frame, part: str) -> list[tuple[str, str, str, str, str]]:
        """Cells of a chunk as (column letters, row, type, <v> text, inline text), raw XML
        text (escapes not yet decoded), the fast way when the regex accounts for every
        ``<c``, else through lxml."""
        if not frame.prefix:
            found = _CELL.findall(text)
            if len(found) == text.count("<c"):
                if found:
                    frame.last_row = int(found[-1][1])
                return found
        return self._cells_slow(text, frame, part)

    def _cells_slow(
        self, text: str, frame: _Frame, part: str
    ) -> list[tuple[str, str, str, str, str]]:
        root = self._parse_chunk(text, frame, part)
        out: list[tuple[str, str, str, str, str]] = []
        container = root[0] if len(root) else root
        for row in container:
            if _local(row.tag) != "row":
                continue
            r = row.get("r") or ""
            rownum = int(r) if r.isdigit() else frame.last_row + 1
            frame.last_row = rownum
            col = -1
            for c in row:
                if _local(c.tag) != "c":
                    continue
                ref = (c.get("r") or "").upper()
                letters = ref.rstrip("0123456789")
                if letters and letters.isalpha() and letters.isascii() and len(letters) <= 3:
                    col = col_index(letters)
                else:
                    col += 1
                    letters = col_letters(col)
                kind = c.get("t") or "n"
                if kind == "inlineStr":
                    inline = next((x for x in c if _local(x.tag) == "is"), None)
                    value = _rich_text(inline) if inline is not None else ""
                    out.append((letters, str(rownum), kind, "", _escape(value)))
                    continue
                v = next((x.text for x in c if _local(x.tag) == "v"), None)
                if v is None:
                    continue  # a formula without a cached value, or an empty styled cell
                out.append((letters, str(rownum), kind, _escape(v) if kind == "str" else v, ""))
        return out


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""  # comments and processing instructions
    return tag.rpartition("}")[2].rpartition(":")[2]


def _rich_text(el) -> str:  # type: ignore[no-untyped-def]
    """Text of <si>/<is>: plain <t> and rich-text runs <r><t>; not phonetic <rPh>."""
    parts = []
    for child in el:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)


def _not_xlsx(path: Path, detail: object) -> Text:
    return Text(
        f"cannot read {path.name}: not an .xlsx workbook, damaged, password-protected or "
        f"being saved right now ({detail})",
        f"не удалось прочитать {path.name}: это не книга .xlsx, она повреждена, защищена "
        f"паролем или сейчас сохраняется ({detail})",
    )


def _value(kind: str, v: str, sst: list[str]) -> object:
    """A raw cell value (escapes already decoded) as a Python value."""
    if kind == "s":
        try:
            return sst[int(v)]
        except (ValueError, IndexError):
            return None
    if kind in ("n", ""):
        return _number(v) if v else None
    if kind == "b":
        return v == "1"
    return v  # str, e (error text like #N/A), d (ISO date)


def _decoded(cells: list[tuple[str, str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """(letters, row, type, text) with the text XML-decoded, for the generic path."""
    texts = _unescape_many(
        [inline if kind == "inlineStr" else v for _, _, kind, v, inline in cells]
    )
    return [(c[0], c[1], c[2], t) for c, t in zip(cells, texts, strict=True)]


def _all_rows(
    book: _Book, part: str, limit: int | None = None
) -> list[tuple[int, dict[int, object]]]:
    """Every cell of a (small) sheet, by row: for the header search and Managers, or only
    the first ``limit`` rows that have cells."""
    sst = book.shared_strings()
    rows: list[tuple[int, dict[int, object]]] = []
    for text, frame in book.chunks(part, "sheetData", "row"):
        for piece in _pieces(text, limit):
            for letters, rn, kind, value in _decoded(book.cells(piece, frame, part)):
                if not value:
                    continue
                rownum = int(rn)
                if not rows or rows[-1][0] != rownum:
                    if limit is not None and len(rows) >= limit:
                        return rows
                    rows.append((rownum, {}))
                rows[-1][1][col_index(letters)] = (
                    value if kind == "inlineStr" else _value(kind, value, sst)
                )
            if limit is not None and len(rows) >= limit:
                return rows
    return rows


def read_small_sheet(
    path: Path | str, sheet: Sheet, limit: int = 200
) -> list[tuple[int, dict[int, object]]] | None:
    """The first ``limit`` non-empty rows of a small sheet (Settings) as ``(row, {column:
    value})``, columns 0-based; None when the book has no such sheet. Streams like the
    contacts reader: openpyxl, even read-only, took 26 s on a book of a million contacts
    and left a million objects of cyclic garbage behind. Raises ``UserError`` for a file
    that is not an .xlsx."""
    with _Book(Path(path)) as book:
        found = book.find_sheet(sheet)
        return None if found is None else _all_rows(book, found[1], limit)


def _pieces(text: str, limit: int | None) -> list[str]:
    """A chunk split after a few rows when only ``limit`` rows are wanted (the header
    search needs a handful of rows, not 4 MB of them)."""
    if limit is None:
        return [text]
    end = -1
    for _ in range(2 * limit):
        end = text.find("</row>", end + 1)
        if end < 0:
            return [text]
    return [text[: end + 6], text[end + 6 :]]


_TEXT_KINDS = frozenset(("inlineStr", "str"))
_TEXT_OR_EMPTY = frozenset(("inlineStr", "str", ""))
_SAMPLE = 256  # cells looked at to guess whether a column repeats its values

# Row-at-a-time matching, once the header is known: one regex match per row yields the
# needed columns' (type, raw text) pairs, so Python touches rows, not cells. Templates for
# a needed column's cell, a skipped column's cell, and cells right of the last needed one.
_NEEDED_CELL = (
    r'(?:<c r="{L}[0-9]+"(?: s="[0-9]+")?(?: t="([a-zA-Z]+)")?'
    r"(?:/>|></c>|>(?:<f(?: [^>/]*)?(?:/>|>[^<]*</f>))?"
    r'<(?:v|is><t(?: xml:space="preserve")?)>([^<]*)</(?:v|t></is)></c>))?'
)
_ANY_CONTENT = r"[^>/]*(?:/>|>(?:[^<]|<(?!/c>))*</c>)"  # cannot run past its own </c>
_SKIP_CELL = r'(?:<c r="{L}[0-9]+"' + _ANY_CONTENT + ")?"
_TAIL_CELLS = r'(?:<c r="{AFTER}[0-9]+"' + _ANY_CONTENT + ")*"


def _letters_after(letters: str) -> str:
    """A regex for the column names right of ``letters`` (``D`` → ``[E-Z]|[A-Z]{2,3}``)."""
    n = len(letters)
    alts = [f"[A-Z]{{{n + 1},3}}"] if n < 3 else []
    for i, ch in enumerate(letters):
        if ch < "Z":
            rest = n - i - 1
            alts.append(
                letters[:i] + f"[{chr(ord(ch) + 1)}-Z]" + (f"[A-Z]{{{rest}}}" if rest else "")
            )
    return "(?:" + "|".join(alts) + ")" if alts else "(?!)"


class _Plan:
    """How to pull the contact columns out of a chunk of rows."""

    def __init__(self, cols: dict[str, int], header: int):
        self.header = header
        needed = sorted((cols[key], pos) for pos, key in enumerate(_FIELDS) if key in cols)
        self.positions = [pos for _, pos in needed]  # field of each needed column, in order
        self.slot = {col_letters(ci): j for j, (ci, _) in enumerate(needed)}
        last = needed[-1][0]
        self.row_re: re.Pattern[str] | None = None
        if last < 26 * 27:  # up to column ZZ: a few dozen groups at most
            wanted = {ci for ci, _ in needed}
            cells = "".join(
                (_NEEDED_CELL if ci in wanted else _SKIP_CELL).replace("{L}", col_letters(ci))
                for ci in range(last + 1)
            )
            tail = _TAIL_CELLS.replace("{AFTER}", _letters_after(col_letters(last)))
            self.row_re = re.compile(r'<row r="([0-9]+)"[^>/]*(?:/>|>' + cells + tail + r"</row>)")

    def rows(self, book: _Book, text: str, frame: _Frame, part: str) -> list[Sequence[str]]:
        """(row, type, text, type, text, …) per row, text still XML-escaped."""
        if self.row_re is not None and not frame.prefix:
            found = self.row_re.findall(text)
            # Every row matched means every needed cell had the strict shape; otherwise
            # this chunk goes cell by cell (and through lxml if need be).
            if len(found) == text.count("<row"):
                if found:
                    frame.last_row = int(found[-1][0])
                return found
        slot = self.slot
        width = 1 + 2 * len(slot)
        out: list[list[str]] = []
        current = None
        rec: list[str] = []
        for letters, rn, kind, v, inline in book.cells(text, frame, part):
            j = slot.get(letters)
            if j is None:
                continue
            if rn != current:
                current = rn
                rec = [rn] + [""] * (width - 1)
                out.append(rec)
            rec[1 + 2 * j] = kind
            rec[2 + 2 * j] = inline if kind == "inlineStr" else v
        return out


def _decode_cells(kinds: Sequence[str], raws: Sequence[str], sst: list[str]) -> list[object]:
    """One column of raw cells → values (text decoded, shared strings looked up)."""
    found = set(kinds)
    if found <= _TEXT_KINDS or (
        found <= _TEXT_OR_EMPTY and not any(v for k, v in zip(kinds, raws, strict=True) if not k)
    ):
        # The openpyxl case: inline strings (and empty cells, which become "").
        sample = raws[:_SAMPLE]
        if len(set(sample)) * 2 > len(sample):  # names: mostly distinct
            return _unescape_many(list(raws))  # type: ignore[arg-type]
        # Owners, companies: decode each distinct value once; equal cells share one string.
        distinct = list(dict.fromkeys(raws))
        decoded = dict(zip(distinct, _unescape_many(distinct), strict=True))
        return [decoded[v] for v in raws]
    if found == {"s"}:  # the Excel case: all shared strings
        try:
            return [sst[int(v)] for v in raws]
        except (ValueError, IndexError):
            pass
    out: list[object] = []
    escaped: list[int] = []
    for kind, v in zip(kinds, raws, strict=True):
        if kind in _TEXT_KINDS:
            if "&" in v:
                escaped.append(len(out))
            out.append(v)
        elif not v:
            out.append(None)
        else:
            out.append(_value(kind, v, sst))
    if escaped:
        for i, text in zip(escaped, _unescape_many([out[i] for i in escaped]), strict=True):  # type: ignore[misc]
            out[i] = text
    return out


def _contact_columns(
    book: _Book, part: str, plan: _Plan
) -> Iterator[tuple[list[int], list[list[object]]]]:
    """Per chunk: row numbers below the header and the four field columns."""
    sst = book.shared_strings()
    for text, frame in book.chunks(part, "sheetData", "row"):
        rows = plan.rows(book, text, frame, part)
        if rows and int(rows[0][0]) <= plan.header:
            rows = [r for r in rows if int(r[0]) > plan.header]
        if not rows:
            continue
        cols = list(zip(*rows, strict=True))  # transposed in C
        fields: list[list[object]] = [[None] * len(rows) for _ in _FIELDS]
        for j, pos in enumerate(plan.positions):
            fields[pos] = _decode_cells(cols[1 + 2 * j], cols[2 + 2 * j], sst)
        yield list(map(int, cols[0])), fields


@_without_gc
def load_index(path: Path | str) -> ContactIndex:
    """Read Contacts and Managers of an .xlsx/.xlsm file into a ``ContactIndex``.

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
    with _Book(path) as book:
        found = book.find_sheet(CONTACTS)
        if found is None:
            raise UserError(_sheet_missing(CONTACTS, book.name))
        title, part = found
        header, cols = find_header(
            _all_rows(book, part, HEADER_SEARCH_ROWS), CONTACTS, title, book.name
        )
        warnings = _Warnings()
        builder = _ContactsBuilder(title, col_letters(cols["phone"]), warnings)
        for rows, fields in _contact_columns(book, part, _Plan(cols, header)):
            builder.add_columns(rows, *fields)
        found_managers = book.find_sheet(MANAGERS)
        manager_rows = _all_rows(book, found_managers[1]) if found_managers else []
        if manager_rows:
            managers = _managers(manager_rows, found_managers[0], book.name, warnings)
        else:  # no sheet, or an empty one: owners given as extensions still work
            managers = {}
            warnings.add(_no_managers_warning(book.name))
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
    )


def workbook_fingerprint(path: Path | str) -> tuple | None:
    """CRC-32 and size of the parts ``load_index`` reads, from the zip directory (cheap):
    equal fingerprints mean the contacts did not change, whatever else did."""
    try:
        with _Book(Path(path)) as book:
            contacts = book.find_sheet(CONTACTS)
            managers = book.find_sheet(MANAGERS)
            return book.fingerprint(
                (
                    contacts[1] if contacts else None,
                    managers[1] if managers else None,
                    book.sst_part,
                )
            )
    except UserError:
        return None


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
    """

    def __init__(
        self,
        path: Path | str,
        on_reload: ReloadCallback | None = None,
        *,
        interval: float = 1.0,
        settle: float = 0.2,
        loader: Callable[[Path], ContactIndex] = load_index,
        start: bool = True,
    ):
        self.path = Path(path)
        self.interval = interval
        self.settle = settle
        self.on_reload = on_reload
        self._loader = loader
        self._build_lock = threading.RLock()  # a listener may call refresh()
        self._stopping = threading.Event()
        self._sig = _signature(self.path)
        self._index = loader(self.path)  # a bad workbook is the caller's error, now
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
        while not self._stopping.wait(self.interval):
            try:
                self._poll()
            except Exception:  # the watcher must outlive any surprise
                log.exception("contacts watcher: unexpected error")

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
