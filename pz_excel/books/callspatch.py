"""The Calls sheet written at the zip level: how ``FileBook`` writes a user's workbook.

An .xlsx is a zip of XML parts. Saving calls changes only the Calls worksheet part, its
relationships (hyperlinks), the ``ref`` of its Excel table and, now and then, one style in
styles.xml. Every other part — a million contacts, the shared strings, pictures, macros — is
copied from the old file as it is: local header, compressed bytes and central directory
record, never decompressed. openpyxl instead parses and rewrites every sheet on each save
(10–15 s with a 100 k-row call log; minutes with a big Contacts sheet).

How a save stays cheap:

* the sheet XML is read once and split into a head (up to ``<sheetData>``), one chunk per
  ``<row>`` and a tail; Call ID → row is indexed by header name (EN/RU) with shared strings
  resolved, exactly as ``FileBook`` does;
* rows (and hyperlinks, and relationships) live in segments of a few hundred items. Each
  segment is deflated on its own and ends with a sync flush, so the segments concatenate
  into one valid deflate stream; the part's CRC-32 is combined from the segments' CRCs. A
  save recompresses only the segments that changed (usually the last one), and a segment
  that is clean is kept compressed only (memory stays flat as the log grows);
* a row is rewritten cell by cell for OUR columns only; any other cell (a user's column)
  is kept byte for byte. Text is an inline string (never a formula; sharedStrings.xml is
  never rewritten), dates are serial numbers with a date style, an http(s) recording gets
  a hyperlink. Styles follow FileBook's rules (a new row looks like the row above, "@" on
  phones and IDs, the quote prefix on text Excel would evaluate, the link font) and a style
  the book lacks is added to styles.xml;
* a book without a Calls sheet (or with an empty one) gets ours: a new worksheet part and
  its entries in the package (``package.Package``), written with the first save;
* the new file: unchanged members copied raw (``copy_file_range`` where the OS has it),
  changed parts written fresh — ours, and those other writers put into ``package`` (the
  Dashboard) — then FileBook's fsync + ``os.replace``.

Whatever this module does not understand (namespace prefixes, ZIP64, strict OOXML, a
formula in one of our cells…) raises ``Unsupported`` before anything is written; FileBook
then writes nothing at all (``BookUnpatchable``): no other writer may touch a user's book.
"""

from __future__ import annotations

import itertools
import logging
import os
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lxml import etree
from openpyxl.utils.cell import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH, to_excel

from pz_excel.crm.schema import CALLS, WORDS, CallRow, Column, cell_text, word
from pz_excel.i18n import Text, current_lang
from pz_excel.xlsx.cells import (
    FORMULA_START,
    HEADER_SCAN_ROWS,
    ID_KEYS,
    MAX_SHEET_LINKS,
    TEXT_KINDS,
    is_web_link,
    safe_text,
)
from pz_excel.xlsx.cells import norm as _norm
from pz_excel.xlsx.package import Package, rels_part_of, resolve_target
from pz_excel.xlsx.segments import Blocks, Piece, Splitter, Strings
from pz_excel.xlsx.styles import Styles
from pz_excel.xlsx.xmltext import (
    HYPERLINK_TYPE,
    MAIN_NS,
    PKG_REL_NS,
    REL_NS,
    SML,
    attrs,
    esc_attr,
    esc_text,
    parse_xml,
    rich_text,
    unescape,
    xml_bytes,
)
from pz_excel.xlsx.zipio import (
    CHUNK,
    LEVEL,
    LOCAL_HEADER_SIG,
    MAX_PART,
    MAX_SMALL_PART,
    SEGMENT,
    Member,
    NewPart,
    Run,
    Unsupported,
    pack,
    read_layout,
    write_zip,
)

# Elements that follow <hyperlinks> in a worksheet (ECMA-376 CT_Worksheet order): a new
# <hyperlinks> goes right before the first of them.
log = logging.getLogger("pz_excel.books.callspatch")

_AFTER_HYPERLINKS = frozenset(
    "printOptions pageMargins pageSetup headerFooter rowBreaks colBreaks customProperties "
    "cellWatches ignoredErrors smartTags drawing legacyDrawing legacyDrawingHF drawingHF "
    "picture oleObjects controls webPublishItems tableParts extLst".split()
)


class ChangedOnDisk(Exception):
    """Someone saved the workbook while we were writing ours: read it again and redo."""


class FormulaInOurCell(Unsupported):
    """A formula where the agent writes (Calls is ours): the user is asked to remove it
    rather than have it overwritten, or the workbook's calculation chain go stale."""

    def __init__(self, ref: str):
        super().__init__(ref)
        self.ref = ref


class MissingColumns(Exception):
    """The Calls sheet lacks required headers (FileBook words the user error)."""

    def __init__(self, title: str, missing: list[Column]):
        super().__init__(title)
        self.title = title
        self.missing = missing


# ---------------------------------------------------------------------------- sheet XML

_ROW = re.compile(rb'<row r="([0-9]+)"[^>]*?(?:/>|>.*?</row>)', re.S)
_ROW_OPEN = re.compile(rb'<row r="')
_ROW_START = re.compile(rb"<row\b[^>]*?(/?)>")
_CELL = re.compile(rb'<c r="([A-Z]{1,3})[0-9]+"([^>]*?)(?:/>|>(.*?)</c>)', re.S)
_CELL_START = re.compile(rb"<c[\s>/]")
_HAS_VALUE = re.compile(rb"<(?:v|is|f)\b")
_STYLE_ATTR = re.compile(rb'\ss="([0-9]+)"')
_TYPE_ATTR = re.compile(rb'\st="([a-zA-Z]+)"')
_V = re.compile(rb"<v(?:\s[^>]*)?>(.*?)</v>", re.S)
_IS = re.compile(rb"<is(?:\s[^>]*)?>(.*?)</is>", re.S)
_SPANS = re.compile(rb'\sspans="[^"]*"')
_DIMENSION = re.compile(rb'(<dimension\b[^>]*?\sref=")([^"]*)(")')
_TAG = re.compile(rb"<(/?)([A-Za-z_][\w.:-]*)\b[^>]*?(/?)>", re.S)
_LINK = re.compile(rb"<hyperlink\b[^>]*?(?:/>|>.*?</hyperlink>)", re.S)
_REL = re.compile(rb"<Relationship\b[^>]*?(?:/>|>\s*</Relationship>)", re.S)
_REF_ATTR = re.compile(rb'(\sref=")([^"]*)(")')
_ID_ATTR = re.compile(rb'\sId="([^"]*)"')
_TYPE_TABLE = re.compile(rb'\sType="[^"]*/table"')


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


_split_rows = _splitter(_ROW, "row")
_split_links = _splitter(_LINK, "hyperlink", empty=True)
_split_rels = _splitter(_REL, "Relationship", empty=True)


def _row_bounds(data: bytes, pos: int, end: int) -> tuple[list[int], list[int]] | None:
    """Row numbers and offsets of sheetData's rows (``bounds[i]`` to ``bounds[i + 1]``) when
    they sit back to back as ``<row r="N" …>…</row>``, as Excel, openpyxl and this module
    write them; None for anything else (``_rows_of`` then takes the careful way)."""
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


def _rows_of(body: bytes) -> tuple[list[int], list[bytes]]:
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
        items = _split_rows(body)
        keys = [int(_ROW.match(item).group(1)) for item in items]  # type: ignore[union-attr]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise Unsupported("rows out of order")
    return keys, items


def _cell_value(ctype: bytes, inner: bytes | None) -> tuple[str, object]:
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


def _row_cells(row: bytes) -> tuple[bytes, list[tuple[int, bytes]], bytes]:
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
    for m in _CELL.finditer(body):
        rest.append(body[pos : m.start()])
        cells.append((column_index_from_string(m.group(1).decode()), m.group(0)))
        pos = m.end()
    rest.append(body[pos:])
    other = b"".join(rest).strip()
    if _CELL_START.search(other):
        raise Unsupported("a cell without a reference")
    return start.group(0), cells, other


def _cell_style(cell: bytes) -> int:
    head = cell[: cell.index(b">") + 1]
    m = _STYLE_ATTR.search(head)
    return int(m.group(1)) if m else 0


def _restyle(cell: bytes, style: int) -> bytes:
    """The same cell with style ``style`` (value and everything else unchanged)."""
    end = cell.index(b">")
    if cell[end - 1 : end] == b"/":
        end -= 1
    head, rest = cell[:end], cell[end:]
    head = _STYLE_ATTR.sub(b"", head)
    if style:
        head += b' s="%d"' % style
    return head + rest


def _top_level(xml: bytes, start: int, stop: int) -> Iterator[tuple[str, int, int]]:
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


# ---------------------------------------------------------------------------- the book


@dataclass
class _Table:
    part: str
    root: etree._Element
    dirty: bool = False


@dataclass
class _Cell:
    """What we write into one of our cells."""

    kind: str  # "t" text, "n" number, "" nothing
    value: str = ""
    style: int = 0


@dataclass
class _Package:
    """Where things are in the zip."""

    members: list[Member]
    comment: bytes
    by_name: dict[str, str] = field(default_factory=dict)  # lower-case → as stored


class CallsPatch:
    """The Calls sheet of one workbook, parsed for zip-level writes. Not thread-safe:
    FileBook serialises calls under its lock."""

    def __init__(self, path: Path, *, level: int = LEVEL, segment: int = SEGMENT) -> None:
        self.path = path
        self.level = level
        self.segment = segment
        self.lang = "en"
        self.title = ""
        self.header_row = 1
        self.header_end = 1  # the header's last row: merged header cells may span several
        self.cols: dict[str, int] = {}
        self.width = 0
        self.index: dict[str, int] = {}
        self.last_row = 0
        self.epoch = WINDOWS_EPOCH
        self.rows = Blocks(_split_rows, ordered=True, segment=segment)
        self.links = Blocks(_split_links, ordered=False, segment=segment)
        self.rels: Blocks | None = None
        self.head = Piece(b"")
        self.tail_pre = Piece(b"")  # </sheetData> … up to where <hyperlinks> goes
        self.tail_post = Piece(b"")  # … from there to the end
        self.rels_head = Piece(b"")
        self.rels_tail = Piece(b"")
        self.rel_prefix: str | None = None
        self.styles: Styles | None = None
        self.tables: list[_Table] = []
        self.table_parts: list[str] = []
        self.sheet_part = ""
        self.rels_part = ""
        self.styles_part = ""
        self.rels_new = False
        self.created = False  # the Calls sheet is new (or was empty): ours from the start
        self.links_full = False  # Excel's limit of links on a sheet reached (said once)
        self.package: Package | None = None  # content types, workbook.xml, its rels, app.xml
        self._pkg: _Package | None = None
        self._next_layout: list[Member] | None = None
        self._rid = 0

    # ------------------------------------------------------------------ reading

    @classmethod
    def open(cls, path: Path, lang: str | None = None, **kw: int) -> CallsPatch:
        """Parse ``path``. Raises Unsupported, MissingColumns, zipfile.BadZipFile, OSError."""
        book = cls(path, **kw)
        with open(path, "rb") as fh:
            members, comment = read_layout(fh)
            with zipfile.ZipFile(fh) as zf:
                book._read(zf, members, comment, lang)
        return book

    def _read(self, zf: zipfile.ZipFile, members: list[Member], comment: bytes,
              lang: str | None) -> None:  # fmt: skip
        pkg = _Package(members, comment, {m.name.lower(): m.name for m in members})
        self._pkg = pkg

        def read(part: str, limit: int = MAX_SMALL_PART) -> bytes | None:
            name = pkg.by_name.get(part.lower())
            if name is None:
                return None
            info = zf.getinfo(name)
            if info.file_size > limit:
                raise Unsupported(f"{part} is too large")
            return zf.read(info)

        if read("[Content_Types].xml") is None:
            raise Unsupported("no [Content_Types].xml")
        main = next((t for _i, kind, t, _m in self._rels(read, "") if kind.endswith(
            "/officeDocument")), None)  # fmt: skip
        if main is None or read(main) is None:
            raise Unsupported("no workbook part")
        self.package = package = Package(read, set(pkg.by_name), main)
        wb = package.workbook
        if wb.tag != SML + "workbook":
            raise Unsupported("not a SpreadsheetML workbook (strict OOXML?)")
        pr = wb.find(SML + "workbookPr")
        if pr is not None and pr.get("date1904") in ("1", "true"):
            self.epoch = MAC_EPOCH
        wb_rels = {rid: (kind, target) for rid, kind, target, _m in self._rels(read, main)}
        self.styles_part = next((t for k, t in wb_rels.values() if k.endswith("/styles")), "")
        styles = read(self.styles_part) if self.styles_part else None
        if styles is None:
            raise Unsupported("no styles part")
        sheet = package.find(CALLS.names)
        if sheet is not None and not wb_rels.get(sheet.rid, ("",))[0].endswith("/worksheet"):
            raise Unsupported("the Calls sheet is not a worksheet")
        sst_part = next((t for k, t in wb_rels.values() if k.endswith("/sharedStrings")), None)
        data = read(sheet.part, MAX_PART) if sheet is not None else None
        if sheet is not None and data is None:
            raise Unsupported(f"{sheet.part} is missing")
        if sheet is None or not _has_values(data):  # type: ignore[arg-type]
            # No Calls sheet, or an empty one: ours to make (a new part, or the empty one's)
            self.lang = _book_lang(package, lang)
            self.styles = Styles(self.styles_part, styles, self.lang)
            if sheet is None:
                sheet = package.add_sheet(CALLS.title(self.lang),
                                          package.free_name("xl/worksheets/sheet{}.xml"))
            package.set_print_titles(sheet, "$1:$1")
            data = self._new_sheet_xml()
            self.created = True
        self.title, self.sheet_part = sheet.title, sheet.part
        self.rels_part = rels_part_of(self.sheet_part)
        self._parse_sheet(data, lambda wanted: _shared_strings(zf, pkg, sst_part, wanted), lang)
        del data  # the decompressed part: tens of MB, not needed any more
        if self.styles is None:
            self.styles = Styles(self.styles_part, styles, self.lang)
        self._parse_rels(None if self.created else read(self.rels_part, MAX_PART))
        for table_part in self.table_parts:
            raw = read(table_part)
            if raw is not None:
                self.tables.append(_Table(table_part, parse_xml(raw, table_part)))
        self.prime()
        package.rebind(self._member)

    def _new_sheet_xml(self) -> bytes:
        """A Calls sheet of ours: headers, widths, a frozen header row, a filter, and a
        page setup that prints it landscape, one page wide, the header on every page."""
        from pz_excel.xlsx.sheetxml import Grid, worksheet_xml

        assert self.styles is not None
        grid = Grid(frozen_rows=1)
        for i, col in enumerate(CALLS.columns, start=1):
            grid.put(1, i, col.header(self.lang), "head")
            grid.widths[i] = col.width
        grid.autofilter = f"A1:{get_column_letter(len(CALLS.columns))}1"
        head = self.styles.make(bold=True)
        return worksheet_xml(grid, lambda _name: head, self.epoch)

    def _member(self, part: str) -> bytes | None:
        """A small part of the workbook as it is on disk now (FileBook has checked that
        the file is the one we parsed)."""
        assert self._pkg is not None
        name = self._pkg.by_name.get(part.lower())
        if name is None:
            return None
        with zipfile.ZipFile(self.path) as zf:
            info = zf.getinfo(name)
            if info.file_size > MAX_SMALL_PART:
                raise Unsupported(f"{part} is too large")
            return zf.read(info)

    @staticmethod
    def _rels(read: Callable[[str], bytes | None], part: str
              ) -> list[tuple[str, str, str, str]]:  # fmt: skip
        """(Id, type, resolved target, mode) of a part's relationships."""
        folder, name = posixpath.split(part)
        rels_part = posixpath.join(folder, "_rels", name + ".rels")
        data = read(rels_part)
        if data is None:
            return []
        out = []
        for el in parse_xml(data, rels_part).iter(f"{{{PKG_REL_NS}}}Relationship"):
            mode, target = el.get("TargetMode") or "", el.get("Target") or ""
            if mode != "External":
                target = resolve_target(rels_part, target)
            out.append((el.get("Id") or "", el.get("Type") or "", target, mode))
        return out

    def _parse_sheet(self, data: bytes, strings: Strings, lang: str | None) -> None:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        decl = re.match(rb"\s*<\?xml[^>]*\?>", data)
        if decl and re.search(rb'encoding=["\'](?!utf-?8["\'])', decl.group(0), re.I):
            raise Unsupported("sheet XML not in UTF-8")
        root = re.search(rb"<([A-Za-z_][\w.-]*:)?worksheet\b[^>]*>", data)
        if root is None or root.group(1) or b"<!DOCTYPE" in data[: root.start()]:
            raise Unsupported("worksheet XML with a namespace prefix or a DTD")
        if f'xmlns="{MAIN_NS}"'.encode() not in root.group(0):
            raise Unsupported("worksheet not in the SpreadsheetML namespace")
        prefix = re.search(rb'xmlns:([\w.-]+)="' + REL_NS.encode() + rb'"', root.group(0))
        self.rel_prefix = prefix.group(1).decode() if prefix else None
        start = re.compile(rb"<sheetData\b[^>]*?(/?)>").search(data, root.end())
        if start is None or start.group(1):
            raise Unsupported("empty Calls sheet")
        stop = data.find(b"</sheetData>", start.end())
        if stop < 0:
            raise Unsupported("no </sheetData>")
        pos = start.end()
        for marker in (b"<!--", b"<![CDATA[", b"<?"):
            if data.find(marker, pos, stop) >= 0:
                raise Unsupported("comments, CDATA or processing instructions in sheetData")
        if data.count(b"<c ", pos, stop) != data.count(b'<c r="', pos, stop) or re.compile(
            rb"<c[>/\t\r\n]"
        ).search(data, pos, stop):
            raise Unsupported("cells without a leading reference")
        self.head.data = data[:pos]
        self._split_tail(data[stop:])
        found = _row_bounds(data, pos, stop)
        if found is not None:  # the usual case: rows packed straight from the part
            keys, bounds = found
            top = sum(1 for k in keys if k <= HEADER_SCAN_ROWS)
            self._find_header(keys[:top], [data[bounds[i] : bounds[i + 1]] for i in
                                            range(top)], strings, lang)  # fmt: skip
            self._index(data, pos, stop, keys, lambda i: data[bounds[i] : bounds[i + 1]],
                        strings)  # fmt: skip
            self.rows.load_packed(keys, data, bounds, self.level)
            return
        body = data[pos:stop]
        keys, items = _rows_of(body)
        self._find_header(keys, items, strings, lang)
        self._index(body, 0, len(body), keys, items.__getitem__, strings)
        self.rows.load(keys, items)

    def _find_header(
        self, keys: list[int], items: list[bytes], strings: Strings, lang: str | None
    ) -> None:
        """FileBook's rule: the first row (of the first 10) with a Call ID header."""
        top: list[tuple[int, int, str, object]] = []
        for n, row in zip(keys, items, strict=True):
            if n > HEADER_SCAN_ROWS:
                break
            for m in _CELL.finditer(row):
                ctype = _TYPE_ATTR.search(m.group(2))
                kind, value = _cell_value(ctype.group(1) if ctype else b"", m.group(3))
                if value is not None:
                    top.append((n, column_index_from_string(m.group(1).decode()), kind, value))
        looked = strings({v for _n, _c, k, v in top if k == "s"})  # type: ignore[misc]
        cells = [(n, c, looked.get(v, "") if k == "s" else v)  # type: ignore[call-overload]
                 for n, c, k, v in top]  # fmt: skip
        wanted = {}
        for col in CALLS.columns:
            wanted[_norm(col.en)] = (col.key, "en")
            wanted[_norm(col.ru)] = (col.key, "ru")
        id_names = {_norm(n) for n in CALLS.column("call_id").names}
        header = next((n for n, _c, v in cells if isinstance(v, str) and _norm(v) in id_names),
                      None)  # fmt: skip
        if header is None:
            raise MissingColumns(self.title, [c for c in CALLS.columns if c.required])
        langs = {"en": 0, "ru": 0}
        for n, c, v in cells:
            if n != header:
                continue
            self.width = max(self.width, c)
            hit = wanted.get(_norm(v)) if isinstance(v, str) else None
            if hit is not None and hit[0] not in self.cols:
                self.cols[hit[0]] = c
                langs[hit[1]] += 1
        missing = [c for c in CALLS.columns if c.required and c.key not in self.cols]
        if missing:
            raise MissingColumns(self.title, missing)
        if langs["ru"] != langs["en"]:
            self.lang = "ru" if langs["ru"] > langs["en"] else "en"
        else:
            self.lang = lang or current_lang()
        self.header_row = header
        self.header_end = self._merged_below(header)

    def _merged_below(self, header: int) -> int:
        """The last row of the header block: a header cell merged down over two rows
        (a common two-line header) makes both rows the header's, never a call's."""
        end = header
        found = re.search(rb"<mergeCells\b.*?</mergeCells>", self.tail_pre.data, re.S)
        for m in _REF_ATTR.finditer(found.group(0) if found else b""):
            try:
                _c1, top, _c2, bottom = range_boundaries(m.group(2).decode())
            except (TypeError, ValueError):
                continue
            if top is not None and bottom is not None and top <= header <= bottom:
                end = max(end, bottom)
        return end

    def _index(self, data: bytes, pos: int, end: int, keys: list[int],
               row_at: Callable[[int], bytes], strings: Strings) -> None:  # fmt: skip
        """Call ID → row (the first row wins over a copy) and the last used row, from the
        rows in ``data[pos:end]`` (``row_at(i)``: the i-th row's XML)."""
        last = self.header_end
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] <= self.header_end:
                break
            if _HAS_VALUE.search(row_at(i)):
                last = keys[i]  # anything the user wrote below counts: never overwrite it
                break
        letters = get_column_letter(self.cols["call_id"]).encode()
        cell = re.compile(rb'<c r="%s([0-9]+)"([^>]*?)(?:/>|>(.*?)</c>)' % letters, re.S)
        ids: list[tuple[int, str, object]] = []
        for n_raw, cattrs, inner in cell.findall(data, pos, end):
            n = int(n_raw)
            if n <= self.header_end or not inner:
                continue
            ctype = _TYPE_ATTR.search(cattrs)
            kind, value = _cell_value(ctype.group(1) if ctype else b"", inner)
            if value is not None and kind != "f":
                ids.append((n, kind, value))
        looked = strings({v for _n, k, v in ids if k == "s"})  # type: ignore[misc]
        for n, kind, value in ids:
            key = cell_text(looked.get(value) if kind == "s" else value)  # type: ignore[call-overload]
            if key:
                self.index.setdefault(key, n)
        self.last_row = last

    def _split_tail(self, tail: bytes) -> None:
        """</sheetData>… → before <hyperlinks>, the links, after them."""
        links_at = None
        insert_at = None
        # <hyperlinks> only ever sits at the top level (extensions are prefixed): found
        # directly, so its 100 k children are not walked tag by tag
        found = re.search(rb"<hyperlinks\b[^>]*?(/?)>", tail)
        if found is not None:
            close = tail.find(b"</hyperlinks>", found.end())
            if found.group(1):
                links_at = (found.start(), found.end(), b"")
            elif close >= 0:
                end = close + len(b"</hyperlinks>")
                links_at = (found.start(), end, tail[found.end() : close])
            else:
                raise Unsupported("no </hyperlinks>")
        else:
            for name, start, _end in _top_level(tail, len(b"</sheetData>"), len(tail)):
                if name in _AFTER_HYPERLINKS:
                    insert_at = start
                    break
        if links_at is not None:
            start, end, inner = links_at
            items = _split_links(inner)
            keys: list[object] = []
            seen: set[str] = set()
            for item in items:
                m = _REF_ATTR.search(item, 0, item.index(b">"))
                ref = unescape(m.group(2)) if m else ""
                keys.append(ref if ref and ref not in seen else None)
                seen.add(ref)
            self.links.load(keys, items)
            self.tail_pre.data, self.tail_post.data = tail[:start], tail[end:]
        else:
            if insert_at is None:
                insert_at = tail.rfind(b"</worksheet>")
                if insert_at < 0:
                    raise Unsupported("no </worksheet>")
            self.tail_pre.data, self.tail_post.data = tail[:insert_at], tail[insert_at:]

    def _parse_rels(self, data: bytes | None) -> None:
        self.rels = Blocks(_split_rels, ordered=False, segment=self.segment)
        if data is None:
            self.rels_new = True
            self.rels_head.data = (
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                b'<Relationships xmlns="%s">' % PKG_REL_NS.encode()
            )
            self.rels_tail.data = b"</Relationships>"
            return
        root = re.search(rb"<Relationships\b[^>]*?(/?)>", data)
        if root is None or PKG_REL_NS.encode() not in root.group(0):
            raise Unsupported(f"{self.rels_part}: unexpected XML")
        if root.group(1):  # <Relationships …/>
            self.rels_head.data = data[: root.end() - 2] + b">"
            self.rels_tail.data = b"</Relationships>" + data[root.end() :]
            return
        stop = data.rfind(b"</Relationships>")
        if stop < 0:
            raise Unsupported(f"{self.rels_part}: unexpected XML")
        self.rels_head.data, self.rels_tail.data = data[: root.end()], data[stop:]
        items = _split_rels(data[root.end() : stop])
        keys: list[object] = []
        for item in items:
            m = _ID_ATTR.search(item)
            rid = unescape(m.group(1)) if m else ""
            keys.append(rid or None)
            if rid.startswith("rId") and rid[3:].isdigit():
                self._rid = max(self._rid, int(rid[3:]))
            if _TYPE_TABLE.search(item):
                found = attrs(item)
                if found.get("TargetMode") != "External":
                    self.table_parts.append(resolve_target(self.rels_part, found.get("Target", "")))
        self.rels.load(keys, items)

    # ------------------------------------------------------------------ writing rows

    def apply(self, rows: Sequence[CallRow]) -> None:
        """Upsert ``rows`` by Call ID in memory (FileBook's ``_apply``)."""
        grew = False
        for row in rows:
            key = safe_text(row.call_id)  # as the cell holds it (Excel's length limit)
            r = self.index.get(key)
            new = r is None
            if r is None:
                self.last_row += 1
                r = self.last_row
                grew = True
            self._write_row(r, row, new)
            if new:
                self.index[key] = r
        if grew:
            self._extend_ranges()

    def _write_row(self, r: int, row: CallRow, new: bool) -> None:
        assert self.styles is not None
        existing = self.rows.get(r)
        if existing is not None:
            start, cell_list, other = _row_cells(existing)
            start = _SPANS.sub(b"", start)  # a hint only: dropped rather than left wrong
        else:
            start, cell_list, other = b'<row r="%d">' % r, [], b""
        cells = dict(cell_list)
        if new and r - 1 > self.header_end:  # a new row looks like the one above it
            above = self.rows.get(r - 1)
            if above is not None:
                for col, cell in _row_cells(above)[1]:
                    style = _cell_style(cell)
                    if col <= self.width and style:
                        mine = cells.get(col)
                        cells[col] = _restyle(mine, style) if mine is not None else (
                            b'<c r="%s%d" s="%d"/>' % (get_column_letter(col).encode(), r,
                                                        style))  # fmt: skip
        for col in CALLS.columns:
            idx = self.cols.get(col.key)
            if idx is None:
                continue
            ref = f"{get_column_letter(idx)}{r}"
            old = cells.get(idx)
            if old is not None and re.search(rb"<f\b", old):
                raise FormulaInOurCell(ref)
            style = _cell_style(old) if old is not None else 0
            cell = self._cell(col, getattr(row, col.key), style, ref)
            if cell.kind == "t":
                text = esc_text(cell.value)
                space = ' xml:space="preserve"' if cell.value != cell.value.strip() else ""
                body = (f'<c r="{ref}"{_s(cell.style)} t="inlineStr"><is><t{space}>{text}</t>'
                        "</is></c>")  # fmt: skip
            elif cell.kind == "n":
                body = f'<c r="{ref}"{_s(cell.style)}><v>{cell.value}</v></c>'
            elif cell.style:
                body = f'<c r="{ref}"{_s(cell.style)}/>'
            else:
                cells.pop(idx, None)
                continue
            cells[idx] = body.encode()
        out = [start, *(cells[c] for c in sorted(cells)), other, b"</row>"]
        self.rows.set(r, b"".join(out))

    def _cell(self, col: Column, value: object, style: int, ref: str) -> _Cell:
        """The value and format of one of our cells: FileBook's ``_write_row`` rules."""
        styles = self.styles
        assert styles is not None
        if col.key in ("direction", "status"):
            return self._text(word(value, self.lang) if value in WORDS else str(value or ""),
                              style)  # type: ignore[arg-type]  # fmt: skip
        if col.kind == "bool":
            return self._text(word("yes", self.lang) if value else "", style)
        if col.kind == "datetime":
            if value is None:
                return _Cell("", style=style)
            assert isinstance(value, datetime)
            if value.tzinfo is not None:  # Excel has no zones: local wall time
                value = value.astimezone().replace(tzinfo=None)
            serial = to_excel(value, self.epoch)
            return _Cell("n", repr(float(serial)) if isinstance(serial, float) else str(serial),
                         styles.derive(style, date=True))  # fmt: skip
        if col.kind == "int":
            if value is None:
                return _Cell("", style=style)
            return _Cell("n", str(int(value)), style)  # type: ignore[call-overload]
        if col.kind == "url":
            return self._recording(str(value or ""), style, ref)
        if col.kind in TEXT_KINDS or col.key in ID_KEYS:
            return self._text(str(value or ""), styles.derive(style, text_format=True))
        return self._text(str(value or ""), style)

    def _text(self, value: str, style: int) -> _Cell:
        """``set_text``: a string, never a formula; the quote prefix when Excel would
        evaluate it. An empty text clears the value and leaves the format."""
        assert self.styles is not None
        text = safe_text(value or "")
        if not text:
            return _Cell("", style=style)
        return _Cell("t", text, self.styles.derive(style, quote=text.startswith(FORMULA_START)))

    def _recording(self, url: str, style: int, ref: str) -> _Cell:
        assert self.styles is not None and self.rels is not None
        cell = self._text(url, style)
        old_link = self.links.get(ref)
        old_target = self._link_target(old_link) if old_link is not None else None
        # Past Excel's limit of links on a sheet a new recording stays plain text (said
        # once in the log): a file with more links is one Excel must "repair".
        room = old_link is not None or len(self.links) < MAX_SHEET_LINKS
        if is_web_link(url) and not room and not self.links_full:
            self.links_full = True
            log.warning("%s", Text(
                f"the Calls sheet holds {MAX_SHEET_LINKS} recording links, the most Excel keeps "
                "on one sheet: newer recordings are written as plain text. Rename the sheet "
                "(e.g. “Calls 2026”) to start a new Calls sheet with links again",
                f"на листе звонков {MAX_SHEET_LINKS} ссылок на записи — больше Excel на одном "
                "листе не хранит: новые записи пишутся простым текстом. Переименуйте лист "
                "(например, «Звонки 2026»), и начнётся новый лист звонков со ссылками",
            ))  # fmt: skip
        if is_web_link(url) and room:
            if old_link is None or old_target != url:
                self._set_link(ref, url, old_link)
                cell.style = self.styles.derive(cell.style, link=True)
        else:
            if old_link is not None:
                self._drop_link(ref, old_link)
            cell.style = self.styles.derive(cell.style, link=False)
        return cell

    def _link_rid(self, link: bytes) -> str | None:
        found = attrs(link[: link.index(b">") + 1])
        return next((v for k, v in found.items() if k.endswith(":id")), None)

    def _link_target(self, link: bytes) -> str | None:
        assert self.rels is not None
        rid = self._link_rid(link)
        rel = self.rels.get(rid) if rid else None
        return attrs(rel).get("Target") if rel is not None else None

    def _set_link(self, ref: str, url: str, old_link: bytes | None) -> None:
        assert self.rels is not None
        rid = self._link_rid(old_link) if old_link is not None else None
        if rid is None or rid not in self.rels:
            self._rid += 1
            while f"rId{self._rid}" in self.rels:
                self._rid += 1
            rid = f"rId{self._rid}"
        self.rels.set(rid, (
            f'<Relationship Id="{rid}" Type="{HYPERLINK_TYPE}" Target="{esc_attr(url)}" '
            'TargetMode="External"/>').encode())  # fmt: skip
        if self.rel_prefix:
            link = f'<hyperlink ref="{ref}" {self.rel_prefix}:id="{rid}"/>'
        else:
            link = f'<hyperlink xmlns:r="{REL_NS}" ref="{ref}" r:id="{rid}"/>'
        self.links.set(ref, link.encode())

    def _drop_link(self, ref: str, old_link: bytes) -> None:
        assert self.rels is not None
        rid = self._link_rid(old_link)
        self.links.remove(ref)
        rel = self.rels.get(rid) if rid is not None else None
        # Excel and openpyxl give every hyperlink a relationship of its own
        if rel is not None and attrs(rel).get("Type") == HYPERLINK_TYPE:
            self.rels.remove(rid)

    def _extend_ranges(self) -> None:
        """Grow the sheet's Excel tables, its filter and its dimension over new rows."""
        last = self.last_row
        id_col = self.cols["call_id"]
        for table in self.tables:
            root = table.root
            try:
                min_col, min_row, max_col, max_row = range_boundaries(root.get("ref") or "")
            except (TypeError, ValueError):
                continue
            if min_row != self.header_row or not (min_col <= id_col <= max_col):
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
        pre = self.tail_pre.data
        for name, start, _end in _top_level(pre, len(b"</sheetData>"), len(pre)):
            if name != "autoFilter":
                continue
            tag_end = pre.index(b">", start) + 1
            m = _REF_ATTR.search(pre, start, tag_end)
            if m is None:
                break
            try:
                min_col, min_row, max_col, max_row = range_boundaries(m.group(2).decode())
            except (TypeError, ValueError):
                break
            if min_row == self.header_row and last > max_row:
                ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{last}"
                self.tail_pre.data = pre[: m.start(2)] + ref.encode() + pre[m.end(2) :]
            break
        head = self.head.data
        dim = _DIMENSION.search(head)
        if dim is not None:
            try:
                min_col, min_row, max_col, max_row = range_boundaries(dim.group(2).decode())
            except (TypeError, ValueError):
                return
            max_col = max(max_col or 1, self.width, max(self.cols.values()))
            max_row = max(max_row or 1, last)
            first = f"{get_column_letter(min_col or 1)}{min_row or 1}"
            ref = f"{first}:{get_column_letter(max_col)}{max_row}"
            self.head.data = head[: dim.start(2)] + ref.encode() + head[dim.end(2) :]

    def prime(self) -> None:
        """Deflate every segment now (once, at load) and keep them compressed only: the
        first save is then as cheap as the others, and memory is released early."""
        for blocks in (self.rows, self.links, self.rels):
            if blocks is not None:
                blocks.run(self.level)
                blocks.cool()

    # ------------------------------------------------------------------ saving

    def write(self, tmp: Path, stamp: tuple[int, int, int] | None) -> None:
        """The whole new workbook at ``tmp`` (FileBook fsyncs and renames it).

        ``stamp`` is FileBook's (mtime, size, inode) of the file we parsed: the source is
        checked against it once opened, so its raw bytes are the ones we indexed. Parts
        other writers put into ``package`` (the Dashboard) go into the same file.
        """
        assert self._pkg is not None and self.rels is not None and self.styles is not None
        assert self.package is not None
        fresh: dict[str, NewPart] = {}
        level = self.level
        sheet = [Run.of(self.head.packed(level)), self.rows.run(level),
                 Run.of(self.tail_pre.packed(level))]  # fmt: skip
        if len(self.links):
            sheet += [Run.of(pack(b"<hyperlinks>", level)), self.links.run(level),
                      Run.of(pack(b"</hyperlinks>", level))]  # fmt: skip
        sheet.append(Run.of(self.tail_post.packed(level)))
        fresh[self._stored(self.sheet_part)] = NewPart(self._stored(self.sheet_part), sheet)
        if self.rels.dirty or self.rels_head.dirty or self.rels_tail.dirty:
            if self.rels_new and not len(self.rels):
                pass  # nothing to relate: no new part
            else:
                if self.rels_new:
                    self.package.ensure_rels_default()
                name = self._stored(self.rels_part)
                fresh[name] = NewPart(name, [Run.of(self.rels_head.packed(level)),
                                             self.rels.run(level),
                                             Run.of(self.rels_tail.packed(level))])  # fmt: skip
        if self.styles.dirty:
            name = self._stored(self.styles_part)
            fresh[name] = NewPart(name, [Run.of(pack(self.styles.xml(), level))])
        for table in self.tables:
            if table.dirty:
                name = self._stored(table.part)
                fresh[name] = NewPart(name, [Run.of(pack(xml_bytes(table.root), level))])
        for part, data in self.package.fresh().items():
            name = self._stored(part)
            fresh[name] = NewPart(name, [Run.of(pack(data, level))])
        removed = {self._stored(p) for p in self.package.removed()}
        with open(self.path, "rb") as src:
            st = os.fstat(src.fileno())
            if stamp is not None and (st.st_mtime_ns, st.st_size, st.st_ino) != stamp:
                raise ChangedOnDisk
            for member in self._pkg.members:  # cheap guard: the parsed layout is this file
                if member.name not in fresh:
                    src.seek(member.offset)
                    if src.read(4) != LOCAL_HEADER_SIG:
                        raise ChangedOnDisk
            self._next_layout = write_zip(tmp, src, self._pkg.members, fresh,
                                          self._pkg.comment, removed)  # fmt: skip

    def _stored(self, part: str) -> str:
        assert self._pkg is not None
        return self._pkg.by_name.get(part.lower(), part)

    def committed(self) -> None:
        """The file we wrote is now the workbook: it is the source of the next raw copies."""
        assert self._pkg is not None and self.styles is not None
        if self._next_layout is not None:
            self._pkg.members = self._next_layout
            self._pkg.by_name = {m.name.lower(): m.name for m in self._next_layout}
            self._next_layout = None
        if self.package is not None:
            self.package.committed(set(self._pkg.by_name))
        self.created = False
        self.styles.dirty = False
        self.rels_new = self.rels_new and not len(self.rels or ())
        for table in self.tables:
            table.dirty = False
        self.rows.cool()
        self.links.cool()
        if self.rels is not None:
            self.rels.cool()


def _has_values(sheet_xml: bytes) -> bool:
    """Does the worksheet hold any value (a header at least)?"""
    start = sheet_xml.find(b"<sheetData")
    stop = sheet_xml.find(b"</sheetData>", start)
    return start >= 0 and stop >= 0 and _HAS_VALUE.search(sheet_xml, start, stop) is not None


def _book_lang(package: Package, default: str | None) -> str:
    """The language of a new sheet of ours: the one the book's other sheets speak."""
    from pz_excel.crm.schema import CONTACTS, MANAGERS, SETTINGS

    titles = {_norm(s.title) for s in package.sheets()}
    ru = sum(_norm(s.ru) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
    en = sum(_norm(s.en) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
    if ru != en:
        return "ru" if ru > en else "en"
    return default or current_lang()



def _s(style: int) -> str:
    return f' s="{style}"' if style else ""


def _shared_strings(zf: zipfile.ZipFile, pkg: _Package, part: str | None,
                    wanted: set[int]) -> dict[int, str]:  # fmt: skip
    """Only the shared strings we need, streamed (a big book's table has millions)."""
    if not wanted or part is None:
        return {}
    name = pkg.by_name.get(part.lower())
    if name is None:
        return {}
    info = zf.getinfo(name)
    if info.file_size > MAX_PART:
        raise Unsupported("shared strings too large")
    found: dict[int, str] = {}
    top = max(wanted)
    index = 0
    rest = b""
    started = False
    with zf.open(info) as stream:
        while index <= top:
            block = stream.read(CHUNK)
            data = rest + block
            if not started:
                root = re.search(rb"<([\w.-]+:)?sst\b[^>]*>", data)
                if root is None:
                    if not block:
                        break
                    rest = data
                    continue
                if root.group(1):
                    raise Unsupported("shared strings with a namespace prefix")
                data = data[root.end() :]
                started = True
            if b"<si/>" in data:
                raise Unsupported("empty shared-string items")
            parts = data.split(b"</si>")
            rest = parts.pop()
            for i, chunk in enumerate(parts, start=index):
                if i in wanted:
                    at = chunk.find(b"<si")
                    found[i] = rich_text(chunk[chunk.index(b">", at) + 1 :])
            index += len(parts)
            if not block:
                break
    return found
