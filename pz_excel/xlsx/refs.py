"""The few spreadsheet basics the zip-level layer needs: A1 references, Excel's serial dates,
which number formats show a date, and what may not go into a cell.

They are openpyxl's rules (openpyxl.utils.cell, .utils.datetime, .styles.numbers and
.cell.cell, MIT licence), restated here so that the agent and its book process
(books/bookproc.py) do not import openpyxl at all: its import costs ~0.2 s and ~35 MB
(it pulls in numpy when that is installed), twice per running agent. openpyxl stays what
creates new books and reads; tests/test_refs.py checks these against it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from functools import cache

WINDOWS_EPOCH = datetime(1899, 12, 30)
MAC_EPOCH = datetime(1904, 1, 1)  # a workbook with <workbookPr date1904="1"/>
SECS_PER_DAY = 86400

#: Control characters XML 1.0 does not allow (tab, newline and return are kept).
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")

MAX_COLUMN = 18278  # XFD: "ZZZ" would be 18278; Excel stops at 16384, the format at ZZZ
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@cache
def get_column_letter(index: int) -> str:
    """1 → "A", 27 → "AA"."""
    if not 1 <= index <= MAX_COLUMN:
        raise ValueError(f"Invalid column index {index}")
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = _LETTERS[rest] + letters
    return letters


@cache
def column_index_from_string(letters: str) -> int:
    """"A" → 1, "aa" → 27; anything but one to three letters is a ValueError."""
    if not 1 <= len(letters) <= 3 or not letters.isascii() or not letters.isalpha():
        raise ValueError(f"'{letters}' is not a valid column name. Column names are from A "
                         "to ZZZ")
    index = 0
    for letter in letters.upper():
        index = index * 26 + _LETTERS.index(letter) + 1
    return index


_RANGE_RE = re.compile(
    r"^[$]?(?P<min_col>[A-Za-z]{1,3})?[$]?(?P<min_row>\d+)?"
    r"(?P<sep>:[$]?(?P<max_col>[A-Za-z]{1,3})?[$]?(?P<max_row>\d+)?)?$")


def range_boundaries(ref: str) -> tuple[int | None, int | None, int | None, int | None]:
    """ "B2:D9" → (2, 2, 4, 9); "A1" → (1, 1, 1, 1); "B:D" and "2:9" leave the rows or the
    columns ``None``."""
    m = _RANGE_RE.match(ref)
    if not m:
        raise ValueError(f"{ref} is not a valid coordinate or range")
    min_col, min_row, sep, max_col, max_row = m.group("min_col", "min_row", "sep",
                                                      "max_col", "max_row")
    if sep:
        cols, rows = (min_col, max_col), (min_row, max_row)
        if not (all(cols + rows) or (all(cols) and not any(rows))
                or (all(rows) and not any(cols))):
            raise ValueError(f"{ref} is not a valid coordinate or range")
    c1 = column_index_from_string(min_col) if min_col is not None else None
    r1 = int(min_row) if min_row is not None else None
    c2 = column_index_from_string(max_col) if max_col is not None else c1
    r2 = int(max_row) if max_row is not None else r1
    return c1, r1, c2, r2


def to_excel(value: datetime | date, epoch: datetime = WINDOWS_EPOCH) -> float:
    """A moment as Excel's serial number: days since the epoch, the time as a fraction.

    Excel counts 29 February 1900, which never was: serials of the first two months of
    1900 (the 1900 system) are one less than the days since 30 December 1899."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    days = (value - epoch).days
    if 0 < days <= 60 and epoch == WINDOWS_EPOCH:
        days -= 1
    return days + (value.hour * 3600 + value.minute * 60 + value.second
                   + value.microsecond / 10**6) / SECS_PER_DAY


#: Excel's built-in number formats that show a date or a time (ECMA-376 §18.8.30); the
#: others of the 0–49 set are numbers, percentages, currencies and text.
BUILTIN_DATE_FORMATS = {
    14: "mm-dd-yy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "m/d/yy h:mm", 45: "mm:ss",
    46: "[h]:mm:ss", 47: "mmss.0",
}
TEXT_FORMAT_ID = 49  # "@"

# Quoted literals and [locale/colour] blocks say nothing about dates; [h], [mm], [ss] do.
_STRIP_RE = re.compile(r'".*?"|\[(?!hh?\]|mm?\]|ss?\])[^\]]*\]')
_DATE_CODE_RE = re.compile(r"(?<![_\\])[dmhysDMHYS]")


def is_date_format(fmt: str | None) -> bool:
    """True when a number format shows its number as a date or a time (its first section
    has d, m, h, y or s outside quotes, brackets and escapes)."""
    if fmt is None:
        return False
    return _DATE_CODE_RE.search(_STRIP_RE.sub("", fmt.split(";")[0])) is not None
