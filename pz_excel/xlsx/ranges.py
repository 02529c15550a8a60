"""A worksheet's ranges that follow its rows: the Excel tables, the filter and the
dimension grown over new rows, and the rows a merged header spans. For zip-level writers
(``books/callspatch.py``), on the sheet's XML as bytes and the tables' parsed parts."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from pz_excel.xlsx.refs import get_column_letter, range_boundaries
from pz_excel.xlsx.segments import CachedDeflate
from pz_excel.xlsx.sheetrows import DIMENSION, REF_ATTR, top_level
from pz_excel.xlsx.xmltext import SML

log = logging.getLogger("pz_excel.books.callspatch")  # said as the Calls writer's


@dataclass
class TablePart:
    """An Excel table of the sheet (``xl/tables/tableN.xml``), parsed; ``dirty``: changed."""

    part: str
    root: etree._Element
    dirty: bool = False


def merged_below(tail: bytes, header: int) -> int:
    """The last row of the header block: a header cell merged down over two rows (a common
    two-line header) makes both rows the header's, never a data row's. ``tail``: the sheet
    XML after ``</sheetData>`` (where ``<mergeCells>`` is)."""
    end = header
    found = re.search(rb"<mergeCells\b.*?</mergeCells>", tail, re.S)
    for m in REF_ATTR.finditer(found.group(0) if found else b""):
        try:
            _c1, top, _c2, bottom = range_boundaries(m.group(2).decode())
        except (TypeError, ValueError):
            continue
        if top is not None and bottom is not None and top <= header <= bottom:
            end = max(end, bottom)
    return end


def extend_ranges(tables: Sequence[TablePart], head: CachedDeflate, tail_pre: CachedDeflate,
                  header_row: int, key_col: int, width: int, last: int) -> None:
    """Grow the sheet's Excel tables (those whose header is ``header_row`` and that hold
    column ``key_col``), its filter and its dimension (at least ``width`` columns wide) down
    to row ``last``. ``head``: the sheet XML up to ``<sheetData>``; ``tail_pre``: from
    ``</sheetData>`` to the hyperlinks."""
    for table in tables:
        root = table.root
        try:
            min_col, min_row, max_col, max_row = range_boundaries(root.get("ref") or "")
        except (TypeError, ValueError):
            continue
        if min_row != header_row or not (min_col <= key_col <= max_col):
            continue
        if int(root.get("totalsRowCount") or 0):
            log.warning("table %s has a totals row: not extended", root.get("displayName"))
            continue
        if last > max_row:
            ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{last}"
            root.set("ref", ref)
            auto = root.find(SML + "autoFilter")
            if auto is not None:
                auto.set("ref", ref)  # must match the table, or Excel "repairs" it
            table.dirty = True
    pre = tail_pre.data
    for name, start, _end in top_level(pre, len(b"</sheetData>"), len(pre)):
        if name != "autoFilter":
            continue
        tag_end = pre.index(b">", start) + 1
        m = REF_ATTR.search(pre, start, tag_end)
        if m is None:
            break
        try:
            min_col, min_row, max_col, max_row = range_boundaries(m.group(2).decode())
        except (TypeError, ValueError):
            break
        if min_row == header_row and last > max_row:
            ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{last}"
            tail_pre.data = pre[: m.start(2)] + ref.encode() + pre[m.end(2) :]
        break
    data = head.data
    dim = DIMENSION.search(data)
    if dim is not None:
        try:
            min_col, min_row, max_col, max_row = range_boundaries(dim.group(2).decode())
        except (TypeError, ValueError):
            return
        max_col = max(max_col or 1, width)
        max_row = max(max_row or 1, last)
        first = f"{get_column_letter(min_col or 1)}{min_row or 1}"
        ref = f"{first}:{get_column_letter(max_col)}{max_row}"
        head.data = data[: dim.start(2)] + ref.encode() + data[dim.end(2) :]
