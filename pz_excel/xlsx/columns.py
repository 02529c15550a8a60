"""A few columns of a big sheet, read a chunk of rows at a time (the contacts reader's
fast path; see ``xlsx/reader.py`` for the streaming).

Once the header is known, one regular-expression match per row takes the needed cells in
the shapes Excel, openpyxl, LibreOffice and XlsxWriter write, and a chunk with anything
else goes cell by cell (through lxml if need be). Values are then decoded a column at a
time: escapes by libxml2 in one call, shared strings looked up, repeated values decoded
once. About 10 s and 400 MB for a million contacts (``python -m bench.bench_routing``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from pz_excel.xlsx.reader import Book, Frame, col_letters, unescape_many, value

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


class ColumnPlan:
    """How to pull the columns ``fields`` (keys of ``cols``: key → 0-based column; a
    field not in ``cols`` reads as empty) out of a chunk of rows below row ``header``."""

    def __init__(self, cols: dict[str, int], fields: Sequence[str], header: int):
        self.header = header
        self.fields = tuple(fields)
        needed = sorted((cols[key], pos) for pos, key in enumerate(self.fields) if key in cols)
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

    def rows(self, book: Book, text: str, frame: Frame, part: str) -> list[Sequence[str]]:
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
            return unescape_many(list(raws))  # type: ignore[arg-type]
        # Owners, companies: decode each distinct value once; equal cells share one string.
        distinct = list(dict.fromkeys(raws))
        decoded = dict(zip(distinct, unescape_many(distinct), strict=True))
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
            out.append(value(kind, v, sst))
    if escaped:
        for i, text in zip(escaped, unescape_many([out[i] for i in escaped]), strict=True):  # type: ignore[misc]
            out[i] = text
    return out


def read_columns(
    book: Book, part: str, plan: ColumnPlan
) -> Iterator[tuple[list[int], list[list[object]]]]:
    """Per chunk: the row numbers below the header and one list of values per field."""
    sst = book.shared_strings()
    for text, frame in book.chunks(part, "sheetData", "row"):
        rows = plan.rows(book, text, frame, part)
        if rows and int(rows[0][0]) <= plan.header:
            rows = [r for r in rows if int(r[0]) > plan.header]
        if not rows:
            continue
        cols = list(zip(*rows, strict=True))  # transposed in C
        fields: list[list[object]] = [[None] * len(rows) for _ in plan.fields]
        for j, pos in enumerate(plan.positions):
            fields[pos] = _decode_cells(cols[1 + 2 * j], cols[2 + 2 * j], sst)
        yield list(map(int, cols[0])), fields
