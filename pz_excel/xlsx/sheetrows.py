"""Worksheet XML as bytes, for writers that change a few rows of a big sheet and keep
everything else byte for byte (``books/callspatch.py``): rows split without a tree, a row's
cells, a cell's value and style, the top-level elements of a stretch of XML.

Whatever is not in the shapes Excel, openpyxl and LibreOffice write is refused with
``Unsupported`` (the caller then writes nothing) rather than guessed at.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from pz_excel.xlsx.refs import column_index_from_string
from pz_excel.xlsx.segments import Splitter
from pz_excel.xlsx.xmltext import rich_text, unescape
from pz_excel.xlsx.zipio import Unsupported

# Elements that follow <hyperlinks> in a worksheet (ECMA-376 CT_Worksheet order): a new
# <hyperlinks> goes right before the first of them.
AFTER_HYPERLINKS = frozenset(
    "printOptions pageMargins pageSetup headerFooter rowBreaks colBreaks customProperties "
    "cellWatches ignoredErrors smartTags drawing legacyDrawing legacyDrawingHF drawingHF "
    "picture oleObjects controls webPublishItems tableParts extLst".split()
)


_ROW = re.compile(rb'<row r="([0-9]+)"[^>]*?(?:/>|>.*?</row>)', re.S)
_ROW_OPEN = re.compile(rb'<row r="')
_ROW_START = re.compile(rb"<row\b[^>]*?(/?)>")
CELL = re.compile(rb'<c r="([A-Z]{1,3})[0-9]+"([^>]*?)(?:/>|>(.*?)</c>)', re.S)
_CELL_START = re.compile(rb"<c[\s>/]")
HAS_VALUE = re.compile(rb"<(?:v|is|f)\b")
_STYLE_ATTR = re.compile(rb'\ss="([0-9]+)"')
TYPE_ATTR = re.compile(rb'\st="([a-zA-Z]+)"')
_V = re.compile(rb"<v(?:\s[^>]*)?>(.*?)</v>", re.S)
_IS = re.compile(rb"<is(?:\s[^>]*)?>(.*?)</is>", re.S)
SPANS = re.compile(rb'\sspans="[^"]*"')
DIMENSION = re.compile(rb'(<dimension\b[^>]*?\sref=")([^"]*)(")')
_TAG = re.compile(rb"<(/?)([A-Za-z_][\w.:-]*)\b[^>]*?(/?)>", re.S)
_LINK = re.compile(rb"<hyperlink\b[^>]*?(?:/>|>.*?</hyperlink>)", re.S)
_REL = re.compile(rb"<Relationship\b[^>]*?(?:/>|>\s*</Relationship>)", re.S)
REF_ATTR = re.compile(rb'(\sref=")([^"]*)(")')
ID_ATTR = re.compile(rb'\sId="([^"]*)"')
TYPE_TABLE = re.compile(rb'\sType="[^"]*/table"')


def _splitter(pattern: re.Pattern[bytes], what: str, empty: bool = False) -> Splitter:
    """Elements of one kind, back to back; anything else between them is refused.
    ``empty``: they are usually ``<x …/>``, split at ``/>`` when all of them are."""
    start = b"<" + what.encode() + b" "

    def split(data: bytes) -> list[bytes]:
        if empty:
            pieces = data.split(b"/>")
            if not pieces.pop() and all(p.startswith(start) and b">" not in p for p in pieces):
                return [p + b"/>" for p in pieces]
        items: list[bytes] = []
        pos = 0
        for m in pattern.finditer(data):
            if data[pos : m.start()].strip():
                raise Unsupported(f"unexpected markup between {what} elements")
            items.append(m.group(0))
            pos = m.end()
        if data[pos:].strip():
            raise Unsupported(f"unexpected markup after the {what} elements")
        return items

    return split


split_rows = _splitter(_ROW, "row")
split_links = _splitter(_LINK, "hyperlink", empty=True)
split_rels = _splitter(_REL, "Relationship", empty=True)


def row_bounds(data: bytes, pos: int, end: int) -> tuple[list[int], list[int]] | None:
    """Row numbers and offsets of sheetData's rows (``bounds[i]`` to ``bounds[i + 1]``) when
    they sit back to back as ``<row r="N" …>…</row>``, as Excel, openpyxl and this module
    write them; None for anything else (``rows_of`` then takes the careful way)."""
    starts = [m.start() for m in _ROW_OPEN.finditer(data, pos, end)]
    if not starts:
        return ([], [end]) if not data[pos:end].strip() else None
    if starts[0] != pos or data.count(b"<row ", pos, end) != len(starts):
        return None
    bounds = [*starts, end]
    if any(data[b - 6 : b] != b"</row>" for b in bounds[1:]):
        return None  # whitespace between rows, or <row …/>
    keys = [int(data[s + 8 : data.index(b'"', s + 8)]) for s in starts]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise Unsupported("rows out of order")
    return keys, bounds


def rows_of(body: bytes) -> tuple[list[int], list[bytes]]:
    """sheetData's rows: (row numbers, row XML). Every row must carry its number."""
    pieces = body.split(b"</row>")
    tail = pieces.pop()
    if (
        not tail.strip()
        and body.count(b"<row ") == len(pieces)
        and all(p.startswith(b'<row r="') for p in pieces)
        and b"/>" not in b"".join(p[: p.find(b">") + 1] for p in pieces)  # no <row …/>
    ):
        items = [p + b"</row>" for p in pieces]
        keys = [int(p[8 : p.index(b'"', 8)]) for p in pieces]
    else:  # whitespace between rows, <row …/>: the careful way
        items = split_rows(body)
        keys = [int(_ROW.match(item).group(1)) for item in items]  # type: ignore[union-attr]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise Unsupported("rows out of order")
    return keys, items


def cell_value(ctype: bytes, inner: bytes | None) -> tuple[str, object]:
    """(kind, raw value) of a cell: kind "s" gives a shared-string index to look up."""
    if inner is None:
        return "", None
    if b"<f" in inner and re.search(rb"<f\b", inner):
        return "f", "="  # a formula: a value for "is the row used", never an ID or header
    if ctype == b"inlineStr":
        m = _IS.search(inner)
        return ("t", rich_text(m.group(1))) if m else ("", None)
    m = _V.search(inner)
    if m is None:
        return "", None
    raw = m.group(1)
    if ctype == b"s":
        return "s", int(raw)
    if ctype in (b"str", b"e", b"d"):
        return "t", unescape(raw)
    if ctype == b"b":
        return "b", raw.strip() == b"1"
    text = raw.decode().strip()
    try:
        return "n", int(text)
    except ValueError:
        try:
            return "n", float(text)
        except ValueError:
            return "t", text


def row_cells(row: bytes) -> tuple[bytes, list[tuple[int, bytes]], bytes]:
    """A row chunk → (start tag, [(column, cell bytes)], what follows the cells)."""
    start = _ROW_START.match(row)
    if start is None:
        raise Unsupported("a row without a start tag")
    if start.group(1):  # <row …/>
        return row[: start.end() - 2] + b">", [], b""
    body = row[start.end() : len(row) - len(b"</row>")]
    cells: list[tuple[int, bytes]] = []
    rest: list[bytes] = []
    pos = 0
    for m in CELL.finditer(body):
        rest.append(body[pos : m.start()])
        cells.append((column_index_from_string(m.group(1).decode()), m.group(0)))
        pos = m.end()
    rest.append(body[pos:])
    other = b"".join(rest).strip()
    if _CELL_START.search(other):
        raise Unsupported("a cell without a reference")
    return start.group(0), cells, other


def cell_style(cell: bytes) -> int:
    head = cell[: cell.index(b">") + 1]
    m = _STYLE_ATTR.search(head)
    return int(m.group(1)) if m else 0


def restyle(cell: bytes, style: int) -> bytes:
    """The same cell with style ``style`` (value and everything else unchanged)."""
    end = cell.index(b">")
    if cell[end - 1 : end] == b"/":
        end -= 1
    head, rest = cell[:end], cell[end:]
    head = _STYLE_ATTR.sub(b"", head)
    if style:
        head += b' s="%d"' % style
    return head + rest


def top_level(xml: bytes, start: int, stop: int) -> Iterator[tuple[str, int, int]]:
    """(name, start, end) of the elements directly inside ``xml[start:stop]``."""
    depth, opened, name = 0, 0, ""
    for m in _TAG.finditer(xml, start, stop):
        closing, tag, empty = m.group(1), m.group(2).decode(), m.group(3)
        if closing:
            depth -= 1
            if depth == 0:
                yield name, opened, m.end()
        elif empty:
            if depth == 0:
                yield tag, m.start(), m.end()
        else:
            if depth == 0:
                name, opened = tag, m.start()
            depth += 1



def has_values(sheet_xml: bytes) -> bool:
    """Does the worksheet hold any value (a header at least)?"""
    start = sheet_xml.find(b"<sheetData")
    stop = sheet_xml.find(b"</sheetData>", start)
    return start >= 0 and stop >= 0 and HAS_VALUE.search(sheet_xml, start, stop) is not None
