"""Reading an .xlsx as a stream: the workbook's sheets, the shared strings, and a sheet's
cells a few MB at a time, never a tree of the whole part.

openpyxl needs minutes for a million rows (about 5 min per million in read-only mode), so
the contacts reader streams the sheet XML itself: a zip member is decompressed in 4 MB
chunks cut at the end of an item (``</row>``, ``</si>``); a chunk in the shapes Excel,
openpyxl, LibreOffice and XlsxWriter write is read with one regular expression, anything
else (other attribute orders, rich text, CDATA, namespace prefixes, cells without ``r``)
goes through lxml, one chunk at a time. Row-at-a-time reading of a few columns is in
``xlsx/columns.py``.

Nothing here expands entities or loads a DTD: the regular expressions never interpret
markup, lxml runs with ``resolve_entities=False``, ``no_network=True`` and
``huge_tree=False``, a DOCTYPE is refused, and part and row sizes are bounded.
Errors are ``UserError``s naming the book (bilingual).
"""

from __future__ import annotations

import bisect
import re
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from lxml import etree

from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.rels import read_rels
from pz_excel.xlsx.xmltext import parse_xml, rich_text
from pz_excel.xlsx.zipio import Unsupported

#: Bounds for a hostile or broken file: decompressed size of one sheet or string table,
#: of workbook.xml and relationship parts, and of a single row.
MAX_PART_BYTES = 2 << 30
MAX_SMALL_PART_BYTES = 16 << 20
MAX_ROW_BYTES = 64 << 20
CHUNK_BYTES = 4 << 20
_HEAD_BYTES = 64 << 10

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


# ---------------------------------------------------------------------- text and values


def _unescape_one(raw: str) -> str:
    try:
        return etree.fromstring(f"<a>{raw}</a>".encode(), _PARSER).text or ""
    except etree.XMLSyntaxError:
        return raw  # an undefined entity: keep what is there rather than lose the row


def unescape_many(values: list[str]) -> list[str]:
    """XML-decode many text values (``&amp;``, ``&#1057;``) with few libxml2 calls."""
    joined = _SEP.join(values)
    if "&" not in joined:
        return values
    if len(joined) > _UNESCAPE_BATCH and len(values) > 1:
        half = len(values) // 2
        return unescape_many(values[:half]) + unescape_many(values[half:])
    try:
        parts = (etree.fromstring(f"<a>{joined}</a>".encode(), _PARSER).text or "").split(_SEP)
    except etree.XMLSyntaxError:
        parts = []
    return parts if len(parts) == len(values) else [_unescape_one(v) for v in values]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;") if "&" in text or "<" in text else text


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


def value(kind: str, v: str, sst: Sequence[str]) -> object:
    """A raw cell value (escapes already decoded) as a Python value."""
    if kind == "s":
        try:
            return sst[int(v)]
        except (ValueError, LookupError):
            return None
    if kind in ("n", ""):
        return _number(v) if v else None
    if kind == "b":
        return v == "1"
    return v  # str, e (error text like #N/A), d (ISO date)


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""  # comments and processing instructions
    return tag.rpartition("}")[2].rpartition(":")[2]


def _text_of(el) -> str:  # type: ignore[no-untyped-def]
    """An lxml ``<si>``/``<is>`` through the one rich-text rule (``xmltext.rich_text``)."""
    return rich_text(etree.tostring(el, encoding="utf-8"))


def not_xlsx(name: str, detail: object) -> Text:
    return Text(
        f"cannot read {name}: not an .xlsx workbook, damaged, password-protected or "
        f"being saved right now ({detail})",
        f"не удалось прочитать {name}: это не книга .xlsx, она повреждена, защищена "
        f"паролем или сейчас сохраняется ({detail})",
    )


def _broken(book: str, detail: str) -> Text:
    return Text(
        f"cannot read {book}: {detail}",
        f"не удалось прочитать книгу {book}: {detail}",
    )


# ---------------------------------------------------------------------- streaming


class Frame:
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


def chunks(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, book: str, container: str | None, item: str
) -> Iterator[tuple[str, Frame]]:
    """Decoded text of whole ``<item>`` elements of the member ``info``, a few MB at a
    time, from inside ``<container>`` (or the root element if ``container`` is None).
    ``book`` names the workbook in errors."""
    part = info.filename
    if info.file_size > MAX_PART_BYTES:
        raise UserError(_broken(book, f"{part} is larger than {MAX_PART_BYTES >> 20} MB"))
    try:
        with zf.open(info) as stream:
            yield from _chunks(stream, book, part, container, item)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise UserError(not_xlsx(book, exc)) from None


def _chunks(
    stream: IO[bytes], book: str, part: str, container: str | None, item: str
) -> Iterator[tuple[str, Frame]]:
    buf = stream.read(CHUNK_BYTES)
    while len(buf) < _HEAD_BYTES:  # the prolog and root start tag, whole
        more = stream.read(CHUNK_BYTES)
        if not more:
            break
        buf += more
    # Prolog: encoding, no DTD, the root start tag (its namespace declarations are
    # needed to parse chunks on their own).
    if buf.startswith(b"\xef\xbb\xbf"):
        buf = buf[3:]
    enc = _ENCODING.match(buf)
    if enc and enc.group(1).lower().replace(b"-", b"") != b"utf8":
        raise UserError(_broken(book, f"{part} is not UTF-8; save it again in Excel"))
    pos = 0
    while True:
        m = _PROLOG_SKIP.match(buf, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    if buf[pos:].lstrip().startswith(b"<!DOCTYPE"):
        raise UserError(_broken(book, f"{part} has a DTD (refused for safety)"))
    root = _ROOT_TAG.search(buf, pos)
    if root is None:
        raise UserError(_broken(book, f"{part} has no root element"))
    prefix = (root.group(1) or b"").decode()
    frame = Frame(root.group(0).decode(), prefix, root.group(2).decode(), container)
    if root.group(0).endswith(b"/>"):
        return
    pos = root.end()
    if container is not None:
        start = re.compile(rb"<" + re.escape(prefix.encode() + container.encode()) + rb"\b[^>]*>")
        while True:
            m = start.search(buf, pos)
            if m is not None:
                break
            if len(buf) > MAX_ROW_BYTES:
                return  # no <sheetData> in the first 64 MB: nothing to read
            more = stream.read(CHUNK_BYTES)
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
            yield _decode(buf[:stop], book, part), frame
            return
        cut = buf.rfind(end_item)
        if cut >= 0:
            cut += len(end_item)
            yield _decode(buf[:cut], book, part), frame
            buf = buf[cut:]
        elif len(buf) > MAX_ROW_BYTES:
            raise UserError(
                _broken(book, f"{part}: an element is larger than {MAX_ROW_BYTES >> 20} MB")
            )
        more = stream.read(CHUNK_BYTES)
        if not more:
            raise UserError(_broken(book, f"{part} ends unexpectedly"))
        buf += more


def _decode(data: bytes, book: str, part: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(_broken(book, f"{part} is not valid UTF-8")) from None


def _parse_chunk(text: str, frame: Frame, book: str, part: str):  # type: ignore[no-untyped-def]
    try:
        return etree.fromstring(frame.wrap(text), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise UserError(_broken(book, f"{part}: {exc}")) from None


# ---------------------------------------------------------------------- shared strings


def shared_strings(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, book: str, wanted: Collection[int] | None = None
) -> list[str]:
    """The shared-string table, by index. With ``wanted``, only those strings are decoded
    (the others are ``""``) and reading stops after the highest one: the Calls writer needs
    a few header and ID strings from a table that may hold millions."""
    out: list[str] = []
    top = max(wanted, default=-1) if wanted is not None else None
    if top == -1:
        return out
    marks = sorted(wanted) if wanted is not None else []
    for text, frame in chunks(zf, info, book, None, "si"):
        base = len(out)
        if not frame.prefix:
            if wanted is not None:
                # A chunk holding none of the wanted strings is only counted: Excel puts a
                # small sheet's strings after a million contacts', and decoding those to
                # throw them away was most of a warm start.
                n = text.count("<si")
                at = bisect.bisect_left(marks, base)
                if at == len(marks) or marks[at] >= base + n:
                    out.extend([""] * n)
                    if len(out) > top:  # type: ignore[operator]
                        break
                    continue
            found = _SI.findall(text)
            if len(found) == text.count("<si"):
                if wanted is not None:
                    found = [v if base + i in wanted else "" for i, v in enumerate(found)]
                out.extend(unescape_many(found) if "&" in text else found)
                if top is not None and len(out) > top:
                    break
                continue
        root = _parse_chunk(text, frame, book, info.filename)
        items = [si for si in root if _local(si.tag) == "si"]
        if wanted is not None:
            out.extend(_text_of(si) if base + i in wanted else "" for i, si in enumerate(items))
        else:
            out.extend(map(_text_of, items))
        if top is not None and len(out) > top:
            break
    if top is not None:
        del out[top + 1 :]  # the rest of the last chunk read
    return out


# ---------------------------------------------------------------------- the book


class Book:
    """Just enough of an .xlsx (a zip of XML parts) to stream sheets and the strings."""

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
            raise UserError(not_xlsx(self.name, exc)) from None
        try:
            self.members = {info.filename.lower(): info for info in self.zf.infolist()}
            self.sheets, self.sst_part = self._workbook()
        except BaseException:
            self.zf.close()
            raise
        self._sst: list[str] | None = None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> Book:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- package structure

    def _info(self, part: str) -> zipfile.ZipInfo | None:
        return self.members.get(part.lstrip("/").lower())

    def _small(self, part: str) -> bytes | None:
        info = self._info(part)
        if info is None:
            return None
        if info.file_size > MAX_SMALL_PART_BYTES:
            raise UserError(self._broken(f"{part} is too large"))
        try:
            return self.zf.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, zlib.error) as exc:
            raise UserError(self._broken(f"{part}: {exc}")) from None

    def _workbook(self) -> tuple[list[tuple[str, str]], str | None]:
        try:
            main = next(
                (t for _i, kind, t, _m in read_rels(self._small, "")
                 if kind.endswith("/officeDocument")),
                "xl/workbook.xml",
            )
            data = self._small(main)
            if data is None:
                raise UserError(not_xlsx(self.name, "no workbook part"))
            root = parse_xml(data, main)
            rels = read_rels(self._small, main)
        except Unsupported as exc:
            raise UserError(self._broken(str(exc))) from None
        by_id = {rid: target for rid, kind, target, _m in rels if kind.endswith("/worksheet")}
        sheets = []
        for el in root.iter():
            if _local(el.tag) == "sheet":
                rid = next((el.get(a) for a in _R_ID if el.get(a)), None)
                if rid in by_id:
                    sheets.append((el.get("name") or "", by_id[rid]))
        sst = next((t for _i, kind, t, _m in rels if kind.endswith("/sharedStrings")), None)
        return sheets, sst

    def find_sheet(self, names: Iterable[str]) -> tuple[str, str] | None:
        """(title as in the book, part) of the first worksheet with one of ``names``
        (case and surrounding spaces do not matter)."""
        wanted = {n.casefold() for n in names}
        return next(
            ((title, part) for title, part in self.sheets if title.strip().casefold() in wanted),
            None,
        )

    def fingerprint(self, parts: Iterable[str | None]) -> tuple:
        """(member, CRC-32, size) of the parts: equal when their contents are."""
        out = []
        for part in parts:
            info = self._info(part) if part else None
            if info is not None:
                out.append((info.filename, info.CRC, info.file_size))
        return tuple(out)

    def _broken(self, detail: str) -> Text:
        return _broken(self.name, detail)

    # -- streaming

    def chunks(self, part: str, container: str | None, item: str) -> Iterator[tuple[str, Frame]]:
        info = self._info(part)
        if info is None:
            raise UserError(self._broken(f"{part} is missing"))
        return chunks(self.zf, info, self.name, container, item)

    def strings(self, wanted: Collection[int]) -> Sequence[str]:
        """The shared strings at ``wanted`` (by index; the others may be ""): the whole
        table when it was read already, else only those decoded (a small sheet's cells)."""
        if self._sst is not None:
            return self._sst
        info = self._info(self.sst_part) if self.sst_part else None
        return shared_strings(self.zf, info, self.name, wanted) if info is not None else []

    def shared_strings(self) -> list[str]:
        if self._sst is None:
            info = self._info(self.sst_part) if self.sst_part else None
            self._sst = shared_strings(self.zf, info, self.name) if info is not None else []
        return self._sst

    def cells(self, text: str, frame: Frame, part: str) -> list[tuple[str, str, str, str, str]]:
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
        self, text: str, frame: Frame, part: str
    ) -> list[tuple[str, str, str, str, str]]:
        root = _parse_chunk(text, frame, self.name, part)
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
                    text_ = _text_of(inline) if inline is not None else ""
                    out.append((letters, str(rownum), kind, "", _escape(text_)))
                    continue
                v = next((x.text for x in c if _local(x.tag) == "v"), None)
                if v is None:
                    continue  # a formula without a cached value, or an empty styled cell
                out.append((letters, str(rownum), kind, _escape(v) if kind == "str" else v, ""))
        return out


# ---------------------------------------------------------------------- whole rows


def _decoded(cells: list[tuple[str, str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """(letters, row, type, text) with the text XML-decoded, for the generic path."""
    texts = unescape_many(
        [inline if kind == "inlineStr" else v for _, _, kind, v, inline in cells]
    )
    return [(c[0], c[1], c[2], t) for c, t in zip(cells, texts, strict=True)]


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


def all_rows(
    book: Book, part: str, limit: int | None = None
) -> list[tuple[int, dict[int, object]]]:
    """Every cell of a (small) sheet as (row, {0-based column: value}), rows without a
    value left out: for the header search and Managers, or only the first ``limit`` rows.
    Its shared strings are looked up after the cells are read: only those are decoded."""
    raw: list[tuple[int, list[tuple[int, str, str]]]] = []
    for letters, rownum, kind, v in _small_sheet_cells(book, part, limit):
        if not raw or raw[-1][0] != rownum:
            raw.append((rownum, []))
        raw[-1][1].append((col_index(letters), kind, v))
    wanted = {int(v) for _r, cells in raw for _c, kind, v in cells
              if kind == "s" and v.isdigit()}
    sst = book.strings(wanted) if wanted else []
    return [(rownum, {c: v if kind == "inlineStr" else value(kind, v, sst)
                      for c, kind, v in cells}) for rownum, cells in raw]


def _small_sheet_cells(book: Book, part: str, limit: int | None
                       ) -> Iterator[tuple[str, int, str, str]]:
    """(letters, row, type, text) of the cells with a value, in the first ``limit`` rows."""
    rows = 0
    last = -1
    for text, frame in book.chunks(part, "sheetData", "row"):
        for piece in _pieces(text, limit):
            for letters, rn, kind, v in _decoded(book.cells(piece, frame, part)):
                if not v:
                    continue
                rownum = int(rn)
                if rownum != last:
                    if limit is not None and rows >= limit:
                        return
                    rows, last = rows + 1, rownum
                yield letters, rownum, kind, v
            if limit is not None and rows >= limit:
                return
