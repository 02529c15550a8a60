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
  save recompresses only the segments that changed (usually the last one). A clean
  segment is parked in a temp file (``segments.Spill``) and copied from there into each new
  file, and Call ID → row is packed arrays (``xlsx.rowindex``): memory stays flat as the
  log grows (docs/performance.md, "Target 3");
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

import logging
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pz_excel.crm.schema import CALLS, WORDS, CallRow, Column, cell_text, word
from pz_excel.i18n import Text, UserError, current_lang
from pz_excel.xlsx.cells import (
    HEADER_SCAN_ROWS,
    ID_KEYS,
    MAX_SHEET_LINKS,
    TEXT_KINDS,
    is_web_link,
    safe_text,
)
from pz_excel.xlsx.cells import norm as _norm
from pz_excel.xlsx.header import HeaderNotFound, find_header
from pz_excel.xlsx.package import Package
from pz_excel.xlsx.ranges import TablePart, extend_ranges, merged_below
from pz_excel.xlsx.reader import shared_strings
from pz_excel.xlsx.refs import (
    MAC_EPOCH,
    WINDOWS_EPOCH,
    column_index_from_string,
    get_column_letter,
    to_excel,
)
from pz_excel.xlsx.rels import read_rels, rels_part_of
from pz_excel.xlsx.rowindex import RowIndex
from pz_excel.xlsx.segments import Blocks, CachedDeflate, Strings, return_freed_memory
from pz_excel.xlsx.sheetlinks import CellValue, SheetLinks
from pz_excel.xlsx.sheetrows import (
    CELL,
    HAS_VALUE,
    SPANS,
    TYPE_ATTR,
    cell_style,
    cell_value,
    has_values,
    restyle,
    row_bounds,
    row_cells,
    rows_of,
    split_links,
    split_rows,
)
from pz_excel.xlsx.styles import Styles
from pz_excel.xlsx.xmltext import (
    MAIN_NS,
    REL_NS,
    SML,
    esc_text,
    parse_xml,
    xml_bytes,
)
from pz_excel.xlsx.zipio import (
    LEVEL,
    LOCAL_HEADER_SIG,
    MAX_PART,
    MAX_SMALL_PART,
    SEGMENT,
    DeflatedRun,
    Member,
    NewPart,
    Unsupported,
    pack,
    read_layout,
    write_zip,
)

log = logging.getLogger("pz_excel.books.callspatch")


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


# ---------------------------------------------------------------------------- the book


@dataclass
class _Package:
    """Where things are in the zip."""

    members: list[Member]
    comment: bytes
    by_name: dict[str, str] = field(default_factory=dict)  # lower-case → as stored


class CallsPatch(SheetLinks):
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
        self.index = RowIndex()  # packed arrays: 12 bytes a call, not a dict entry's ~150
        self.last_row = 0
        self.epoch = WINDOWS_EPOCH
        self.rows = Blocks(split_rows, ordered=True, segment=segment)
        self.links = Blocks(split_links, ordered=False, segment=segment)
        self.rels: Blocks | None = None
        self.head = CachedDeflate(b"")
        self.tail_pre = CachedDeflate(b"")  # </sheetData> … up to where <hyperlinks> goes
        self.tail_post = CachedDeflate(b"")  # … from there to the end
        self.rels_head = CachedDeflate(b"")
        self.rels_tail = CachedDeflate(b"")
        self.rel_prefix: str | None = None
        self.styles: Styles | None = None
        self.tables: list[TablePart] = []
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
        return_freed_memory()  # the load's peak is gone: let RSS show what is kept
        return book

    def _read(self, zf: zipfile.ZipFile, members: list[Member], comment: bytes,
              lang: str | None) -> None:
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
        main = next((t for _i, kind, t, _m in read_rels(read, "") if kind.endswith(
            "/officeDocument")), None)
        if main is None or read(main) is None:
            raise Unsupported("no workbook part")
        self.package = package = Package(read, set(pkg.by_name), main)
        wb = package.workbook
        if wb.tag != SML + "workbook":
            raise Unsupported("not a SpreadsheetML workbook (strict OOXML?)")
        pr = wb.find(SML + "workbookPr")
        if pr is not None and pr.get("date1904") in ("1", "true"):
            self.epoch = MAC_EPOCH
        wb_rels = {rid: (kind, target) for rid, kind, target, _m in read_rels(read, main)}
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
        if sheet is None or not has_values(data):  # type: ignore[arg-type]
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
        self._parse_sheet(data, lambda wanted: _shared_strings(zf, pkg, sst_part, self.path.name,
                                                                  wanted), lang)
        del data  # the decompressed part: tens of MB, not needed any more
        if self.styles is None:
            self.styles = Styles(self.styles_part, styles, self.lang)
        self.parse_rels(None if self.created else read(self.rels_part, MAX_PART))
        for table_part in self.table_parts:
            raw = read(table_part)
            if raw is not None:
                self.tables.append(TablePart(table_part, parse_xml(raw, table_part)))
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
        self.split_tail(data[stop:])
        found = row_bounds(data, pos, stop)
        if found is not None:  # the usual case: rows packed straight from the part
            keys, bounds = found
            self._find_header(keys, lambda i: data[bounds[i] : bounds[i + 1]], strings, lang)
            self._index(data, pos, stop, keys, lambda i: data[bounds[i] : bounds[i + 1]],
                        strings)
            self.rows.load_packed(keys, data, bounds, self.level)
            return
        body = data[pos:stop]
        keys, items = rows_of(body)
        self._find_header(keys, items.__getitem__, strings, lang)
        self._index(body, 0, len(body), keys, items.__getitem__, strings)
        self.rows.load(keys, items)

    def _find_header(self, keys: list[int], row_at: Callable[[int], bytes], strings: Strings,
                     lang: str | None) -> None:
        """The header row by the one rule (``xlsx.header.find_header``), from the first
        rows that have a value (``row_at(i)``: the i-th row's XML); the sheet's language is
        the one most headers are in (a tie: ``lang``, else the user's)."""
        top: list[tuple[int, list[tuple[int, str, object]]]] = []
        for i, n in enumerate(keys):
            cells = []
            for m in CELL.finditer(row_at(i)):
                ctype = TYPE_ATTR.search(m.group(2))
                kind, value = cell_value(ctype.group(1) if ctype else b"", m.group(3))
                if value is not None:
                    cells.append((column_index_from_string(m.group(1).decode()), kind, value))
            if cells:
                top.append((n, cells))
                if len(top) == HEADER_SCAN_ROWS:
                    break
        looked = strings({v for _n, cells in top for _c, k, v in cells if k == "s"})  # type: ignore[misc]
        rows = [(n, {c: looked.get(v, "") if k == "s" else v for c, k, v in cells})  # type: ignore[call-overload]
                for n, cells in top]
        try:
            header, self.cols, found = find_header(rows, CALLS.header_names, CALLS.required)
        except HeaderNotFound as exc:
            raise MissingColumns(self.title, [CALLS.column(k) for k in exc.missing]) from None
        self.width = max(c for n, cells in rows if n == header for c in cells)
        self.lang = found or lang or current_lang()
        self.header_row = header
        self.header_end = merged_below(self.tail_pre.data, header)

    def _index(self, data: bytes, pos: int, end: int, keys: list[int],
               row_at: Callable[[int], bytes], strings: Strings) -> None:
        """Call ID → row (the first row wins over a copy) and the last used row, from the
        rows in ``data[pos:end]`` (``row_at(i)``: the i-th row's XML)."""
        last = self.header_end
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] <= self.header_end:
                break
            if HAS_VALUE.search(row_at(i)):
                last = keys[i]  # anything the user wrote below counts: never overwrite it
                break
        letters = get_column_letter(self.cols["call_id"]).encode()
        cell = re.compile(rb'<c r="%s([0-9]+)"([^>]*?)(?:/>|>(.*?)</c>)' % letters, re.S)
        # One match at a time, straight into the packed index: a list of every ID first
        # would peak at ~200 MB for a million rows. Only shared-string IDs wait for the
        # table (looked up in one pass); keep_first makes the order of the two irrelevant.
        shared: list[tuple[int, int]] = []
        for m in cell.finditer(data, pos, end):
            n = int(m.group(1))
            if n <= self.header_end or not m.group(3):
                continue
            ctype = TYPE_ATTR.search(m.group(2))
            kind, value = cell_value(ctype.group(1) if ctype else b"", m.group(3))
            if value is None or kind == "f":
                continue
            if kind == "s":
                shared.append((n, value))  # type: ignore[arg-type]
                continue
            key = cell_text(value)
            if key:
                self.index.keep_first(key, n)
        looked = strings({v for _n, v in shared})
        for n, value in shared:
            key = cell_text(looked.get(value))
            if key:
                self.index.keep_first(key, n)
        self.last_row = last

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
            width = max(self.width, *self.cols.values())
            extend_ranges(self.tables, self.head, self.tail_pre, self.header_row,
                          self.cols["call_id"], width, self.last_row)

    def _write_row(self, r: int, row: CallRow, new: bool) -> None:
        assert self.styles is not None
        existing = self.rows.get(r)
        if existing is not None:
            start, cell_list, other = row_cells(existing)
            start = SPANS.sub(b"", start)  # a hint only: dropped rather than left wrong
        else:
            start, cell_list, other = b'<row r="%d">' % r, [], b""
        cells = dict(cell_list)
        if new and r - 1 > self.header_end:  # a new row looks like the one above it
            above = self.rows.get(r - 1)
            if above is not None:
                for col, cell in row_cells(above)[1]:
                    style = cell_style(cell)
                    if col <= self.width and style:
                        mine = cells.get(col)
                        cells[col] = restyle(mine, style) if mine is not None else (
                            b'<c r="%s%d" s="%d"/>' % (get_column_letter(col).encode(), r,
                                                        style))
        for col in CALLS.columns:
            idx = self.cols.get(col.key)
            if idx is None:
                continue
            ref = f"{get_column_letter(idx)}{r}"
            old = cells.get(idx)
            if old is not None and re.search(rb"<f\b", old):
                raise FormulaInOurCell(ref)
            style = cell_style(old) if old is not None else 0
            cell = self._cell(col, getattr(row, col.key), style, ref)
            if cell.kind == "t":
                text = esc_text(cell.value)
                space = ' xml:space="preserve"' if cell.value != cell.value.strip() else ""
                body = (f'<c r="{ref}"{_s(cell.style)} t="inlineStr"><is><t{space}>{text}</t>'
                        "</is></c>")
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

    def _cell(self, col: Column, value: object, style: int, ref: str) -> CellValue:
        """The value and format of one of our cells: FileBook's ``_write_row`` rules."""
        styles = self.styles
        assert styles is not None
        if col.key in ("direction", "status"):
            return self.text_cell(word(value, self.lang) if value in WORDS else str(value or ""),
                              style)  # type: ignore[arg-type]
        if col.kind == "bool":
            return self.text_cell(word("yes", self.lang) if value else "", style)
        if col.kind == "datetime":
            if value is None:
                return CellValue("", style=style)
            assert isinstance(value, datetime)
            if value.tzinfo is not None:  # Excel has no zones: local wall time
                value = value.astimezone().replace(tzinfo=None)
            serial = to_excel(value, self.epoch)
            return CellValue("n", repr(float(serial)) if isinstance(serial, float) else str(serial),
                         styles.derive(style, date=True))
        if col.kind == "int":
            if value is None:
                return CellValue("", style=style)
            return CellValue("n", str(int(value)), style)  # type: ignore[call-overload]
        if col.kind == "url":
            return self._recording(str(value or ""), style, ref)
        if col.kind in TEXT_KINDS or col.key in ID_KEYS:
            return self.text_cell(str(value or ""), styles.derive(style, text_format=True))
        return self.text_cell(str(value or ""), style)

    def _recording(self, url: str, style: int, ref: str) -> CellValue:
        assert self.styles is not None and self.rels is not None
        cell = self.text_cell(url, style)
        old_link = self.links.get(ref)
        old_target = self.link_target(old_link) if old_link is not None else None
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
            ))
        if is_web_link(url) and room:
            if old_link is None or old_target != url:
                self.set_link(ref, url, old_link)
                cell.style = self.styles.derive(cell.style, link=True)
        else:
            if old_link is not None:
                self.drop_link(ref, old_link)
            cell.style = self.styles.derive(cell.style, link=False)
        return cell

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
        sheet = [DeflatedRun.of(self.head.packed(level)), self.rows.run(level),
                 DeflatedRun.of(self.tail_pre.packed(level))]
        if len(self.links):
            sheet += [DeflatedRun.of(pack(b"<hyperlinks>", level)), self.links.run(level),
                      DeflatedRun.of(pack(b"</hyperlinks>", level))]
        sheet.append(DeflatedRun.of(self.tail_post.packed(level)))
        fresh[self._stored(self.sheet_part)] = NewPart(self._stored(self.sheet_part), sheet)
        if self.rels.dirty or self.rels_head.dirty or self.rels_tail.dirty:
            if self.rels_new and not len(self.rels):
                pass  # nothing to relate: no new part
            else:
                if self.rels_new:
                    self.package.ensure_rels_default()
                name = self._stored(self.rels_part)
                fresh[name] = NewPart(name, [DeflatedRun.of(self.rels_head.packed(level)),
                                             self.rels.run(level),
                                             DeflatedRun.of(self.rels_tail.packed(level))])
        if self.styles.dirty:
            name = self._stored(self.styles_part)
            fresh[name] = NewPart(name, [DeflatedRun.of(pack(self.styles.xml(), level))])
        for table in self.tables:
            if table.dirty:
                name = self._stored(table.part)
                fresh[name] = NewPart(name, [DeflatedRun.of(pack(xml_bytes(table.root), level))])
        for part, data in self.package.fresh().items():
            name = self._stored(part)
            fresh[name] = NewPart(name, [DeflatedRun.of(pack(data, level))])
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
                                          self._pkg.comment, removed)

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


def _shared_strings(zf: zipfile.ZipFile, pkg: _Package, part: str | None, book: str,
                    wanted: set[int]) -> dict[int, str]:
    """Only the shared strings we need (``xlsx.reader.shared_strings`` stops after the
    last of them: a big book's table has millions)."""
    name = pkg.by_name.get(part.lower()) if wanted and part is not None else None
    if name is None:
        return {}
    try:
        table = shared_strings(zf, zf.getinfo(name), book, wanted)
    except UserError as exc:  # a table we cannot read: FileBook leaves the book alone
        raise Unsupported(f"shared strings: {exc.text.en}") from None
    return {i: table[i] for i in wanted if i < len(table)}
