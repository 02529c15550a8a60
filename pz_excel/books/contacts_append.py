"""One new row at the end of the Contacts sheet, written at the zip level.

``pz-excel contact add`` goes through the agent, which saves the book the way it saves
Calls rows (``FileBook.write_parts``: read, edit, temp file, fsync, atomic rename, under
the book's writer lock). What changes: the Contacts worksheet part (the new row, its
``<dimension>`` and ``<autoFilter>``), the ``ref`` of the Excel table the header heads,
and styles.xml only when the phone cell needs a text format the book lacks. Every other
member of the zip is copied as it is by ``CallsPatch.write``.

The sheet is read with the one rule for headers (``xlsx.header.find_header``, either
language, any column order); the row goes below the last row holding anything and looks
like the row above it (its cell formats), as a new Calls row does. Text is written as an
inline string, never a formula. Markup we do not understand raises ``Unsupported``:
FileBook then writes nothing (``BookUnpatchable``).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass

from pz_excel.books.callspatch import CallsPatch
from pz_excel.crm.contact_build import columns_missing, sheet_missing
from pz_excel.crm.schema import CONTACTS
from pz_excel.i18n import UserError
from pz_excel.xlsx.cells import HEADER_SCAN_ROWS
from pz_excel.xlsx.header import HeaderNotFound, find_header
from pz_excel.xlsx.ranges import TablePart, extend_ranges, merged_below
from pz_excel.xlsx.reader import shared_strings
from pz_excel.xlsx.refs import column_index_from_string, get_column_letter
from pz_excel.xlsx.segments import CachedDeflate
from pz_excel.xlsx.sheetlinks import CellValue
from pz_excel.xlsx.sheetrows import (
    CELL,
    HAS_VALUE,
    SPANS,
    TYPE_ATTR,
    cell_style,
    cell_value,
    restyle,
    row_cells,
    rows_of,
)
from pz_excel.xlsx.xmltext import MAIN_NS, esc_text, parse_xml, xml_bytes
from pz_excel.xlsx.zipio import Unsupported

_SHEET_DATA = re.compile(rb"<sheetData\b[^>]*?(/?)>")
_ROOT = re.compile(rb"<([A-Za-z_][\w.-]*:)?worksheet\b[^>]*>")
_TABLE_REL = "/table"


@dataclass
class ContactAppend:
    """A ``FileBook.write_parts`` writer: ``ContactAppend(name, phone, owner)(patch)``
    puts the row into the package; ``row`` is its sheet row once it has run."""

    name: str
    phone: str
    owner: str
    row: int = 0

    def __call__(self, patch: CallsPatch) -> None:
        pkg = patch.package
        assert pkg is not None and patch.styles is not None
        entry = pkg.find(CONTACTS.names)
        if entry is None:
            raise UserError(sheet_missing(CONTACTS, patch.path.name))
        data = pkg.read(entry.part)
        if data is None:
            raise Unsupported(f"{entry.part} is missing")
        head, keys, rows, tail = _split(data)
        strings = _strings(patch, rows[:HEADER_SCAN_ROWS * 4])
        header, cols = _header(keys, rows, strings, entry.title, patch.path.name)
        header_end = merged_below(tail, header)
        last = header_end
        for n, row in zip(reversed(keys), reversed(rows), strict=True):
            if n <= header_end:
                break
            if HAS_VALUE.search(row):  # anything a user wrote below counts: never overwritten
                last = n
                break
        r = self.row = last + 1
        above = rows[keys.index(last)] if last > header_end and last in keys else None
        existing = rows[keys.index(r)] if r in keys else None
        new_row = self._row(patch, r, cols, above, existing)
        if existing is not None:
            rows[keys.index(r)] = new_row
        else:
            at = next((i for i, n in enumerate(keys) if n > r), len(keys))
            keys.insert(at, r)
            rows.insert(at, new_row)
        tables = [TablePart(t, parse_xml(raw, t)) for _rid, kind, t in pkg.relationships(
            entry.part) if kind.endswith(_TABLE_REL) and (raw := pkg.read(t)) is not None]
        head_c, tail_c = CachedDeflate(head), CachedDeflate(tail)
        width = max(cols.values())
        extend_ranges(tables, head_c, tail_c, header, cols["phone"], width, r)
        pkg.put(entry.part, head_c.data + b"".join(rows) + tail_c.data)
        for table in tables:
            if table.dirty:
                pkg.put(table.part, xml_bytes(table.root))

    def _row(self, patch: CallsPatch, r: int, cols: dict[str, int], above: bytes | None,
             existing: bytes | None) -> bytes:
        """The new row: the formats of the row above (as a new Calls row), our three
        cells as inline strings, the phone with the text format Excel keeps numbers in."""
        styles = patch.styles
        assert styles is not None
        if existing is not None:
            start, cell_list, other = row_cells(existing)
            start = SPANS.sub(b"", start)  # a hint only: dropped rather than left wrong
        else:
            start, cell_list, other = b'<row r="%d">' % r, [], b""
        cells = dict(cell_list)
        for col, cell in row_cells(above)[1] if above is not None else ():
            style = cell_style(cell)
            if style and col not in cells:
                cells[col] = b'<c r="%s%d" s="%d"/>' % (get_column_letter(col).encode(), r, style)
            elif style:
                cells[col] = restyle(cells[col], style)
        for key, value in (("name", self.name), ("phone", self.phone), ("owner", self.owner)):
            idx = cols[key]
            old = cells.get(idx)
            style = cell_style(old) if old is not None else 0
            if key == "phone":
                style = styles.derive(style, text_format=True)
            cell = patch.text_cell(value, style)
            cells[idx] = _cell_xml(f"{get_column_letter(idx)}{r}", cell)
        return b"".join([start, *(cells[c] for c in sorted(cells)), other, b"</row>"])


def _cell_xml(ref: str, cell: CellValue) -> bytes:
    style = f' s="{cell.style}"' if cell.style else ""
    if cell.kind != "t":
        return f'<c r="{ref}"{style}/>'.encode()
    space = ' xml:space="preserve"' if cell.value != cell.value.strip() else ""
    text = esc_text(cell.value)
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{text}</t></is></c>'.encode()


def _split(data: bytes) -> tuple[bytes, list[int], list[bytes], bytes]:
    """(up to ``<sheetData>``, row numbers, row XML, from ``</sheetData>``); refuses what
    the Calls writer refuses (a prefixed or foreign root, comments among the rows)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    root = _ROOT.search(data)
    if root is None or root.group(1) or f'xmlns="{MAIN_NS}"'.encode() not in root.group(0):
        raise Unsupported("Contacts: worksheet XML with a namespace prefix")
    start = _SHEET_DATA.search(data, root.end())
    if start is None:
        raise Unsupported("Contacts: no <sheetData>")
    if start.group(1):  # <sheetData/>: no header either, find_header says so
        return data[: start.start()] + b"<sheetData>", [], [], b"</sheetData>" + data[
            start.end():]
    stop = data.find(b"</sheetData>", start.end())
    if stop < 0:
        raise Unsupported("Contacts: no </sheetData>")
    body = data[start.end() : stop]
    for marker in (b"<!--", b"<![CDATA[", b"<?"):
        if marker in body:
            raise Unsupported("Contacts: comments or CDATA among the rows")
    keys, rows = rows_of(body) if body.strip() else ([], [])
    return data[: start.end()], keys, list(rows), data[stop:]


def _strings(patch: CallsPatch, rows: list[bytes]) -> dict[int, str]:
    """The shared strings the first rows use (the header may be in the table)."""
    wanted = set()
    for row in rows:
        for m in CELL.finditer(row):
            ctype = TYPE_ATTR.search(m.group(2))
            kind, value = cell_value(ctype.group(1) if ctype else b"", m.group(3))
            if kind == "s":
                wanted.add(value)
    pkg = patch.package
    assert pkg is not None
    part = next((t for _i, kind, t in pkg.relationships(pkg.main)
                 if kind.endswith("/sharedStrings")), None)
    if not wanted or part is None:
        return {}
    with zipfile.ZipFile(patch.path) as zf:
        name = next((n for n in zf.namelist() if n.lower() == part.lower()), None)
        if name is None:
            return {}
        try:  # streamed, and only up to the highest index wanted
            table = shared_strings(zf, zf.getinfo(name), patch.path.name, wanted)
        except UserError as exc:
            raise Unsupported(f"shared strings: {exc.text.en}") from None
    return {i: table[i] for i in wanted if isinstance(i, int) and i < len(table)}


def _header(keys: list[int], rows: list[bytes], strings: dict[int, str], title: str,
            book: str) -> tuple[int, dict[str, int]]:
    """(header row, {column key: column number}) by ``find_header``."""
    found: list[tuple[int, dict[int, object]]] = []
    for n, row in zip(keys, rows, strict=True):
        cells: dict[int, object] = {}
        for m in CELL.finditer(row):
            ctype = TYPE_ATTR.search(m.group(2))
            kind, value = cell_value(ctype.group(1) if ctype else b"", m.group(3))
            if value is not None:
                col = column_index_from_string(m.group(1).decode())
                cells[col] = strings.get(value, "") if kind == "s" else value  # type: ignore[call-overload]
        if cells:
            found.append((n, cells))
            if len(found) == HEADER_SCAN_ROWS:
                break
    try:
        header, cols, _lang = find_header(found, CONTACTS.header_names, CONTACTS.required)
    except HeaderNotFound as exc:
        raise UserError(columns_missing([CONTACTS.column(k) for k in exc.missing], title,
                                        book)) from None
    return header, cols
