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

import bisect
import copy
import itertools
import logging
import os
import posixpath
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lxml import etree
from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format
from openpyxl.utils.cell import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH, to_excel

from ..i18n import Text, current_lang
from ..schema import CALLS, WORDS, CallRow, Column, cell_text, word
from .cells import (
    DATE_FORMATS,
    FORMULA_START,
    HEADER_SCAN_ROWS,
    ID_KEYS,
    LINK_COLOR,
    MAX_SHEET_LINKS,
    TEXT_KINDS,
    is_web_link,
    safe_text,
)
from .cells import norm as _norm

if TYPE_CHECKING:
    from .package import Package

log = logging.getLogger("pz_excel.books.xlsxpatch")

#: Deflate level of the parts we write: zlib's default, as Excel and openpyxl use, so the
#: file stays as small as the user's. A save recompresses one or two segments (~4 ms each);
#: level 3 would save that and the one-off 0.4 s at a 100 k-row load, for a file ~15 %
#: larger on every save's copy (``python -m bench``, section "deflate").
LEVEL = 6
#: Items per segment. A save recompresses whole segments: small ones make an append cheap,
#: big ones compress better. 512 rows of the Calls sheet are ~370 KB of XML, ~4 ms at LEVEL.
SEGMENT = 512
#: Refuse parts larger than this (decompressed): far beyond any call log we write.
MAX_PART = 1 << 30
MAX_SMALL_PART = 64 << 20
_CHUNK = 4 << 20

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
HYPERLINK_TYPE = REL_NS + "/hyperlink"
_Q = "{%s}" % MAIN_NS  # noqa: UP031 - a Clark-notation prefix, not formatting
#: A deflate stream's last block: final bit set, fixed Huffman, end of block. Appended to
#: sync-flushed segments, it ends the concatenation as one valid stream.
FINAL_BLOCK = b"\x03\x00"

# Elements that follow <hyperlinks> in a worksheet (ECMA-376 CT_Worksheet order): a new
# <hyperlinks> goes right before the first of them.
_AFTER_HYPERLINKS = frozenset(
    "printOptions pageMargins pageSetup headerFooter rowBreaks colBreaks customProperties "
    "cellWatches ignoredErrors smartTags drawing legacyDrawing legacyDrawingHF drawingHF "
    "picture oleObjects controls webPublishItems tableParts extLst".split()
)

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False
)


class _ChangedOnDisk(Exception):
    """Someone saved the workbook while we were writing ours: read it again and redo."""


class Unsupported(Exception):
    """Something the zip-level writer does not handle: the openpyxl path does it."""


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


# ---------------------------------------------------------------------------- CRC-32

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a·b modulo the CRC-32 polynomial (reflected), as in zlib's crc32_combine."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B) (zlib's algorithm; Python lacks it)."""
    if len2 <= 0:
        return crc1
    p, k = 1 << 31, 3  # x^0; len2 bytes = 8·len2 bits, the table starts at 2^3
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


# ---------------------------------------------------------------------------- deflate


@dataclass(frozen=True, slots=True)
class Packed:
    """One piece of a part: CRC-32 and length of its bytes, and their raw deflate with a
    sync flush (byte aligned, not final): pieces concatenate into one stream."""

    crc: int
    size: int
    data: bytes


def pack(data: bytes, level: int = LEVEL) -> Packed:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return Packed(zlib.crc32(data), len(data), comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))


def unpack(packed: Packed) -> bytes:
    data = zlib.decompressobj(-15).decompress(packed.data)
    if len(data) != packed.size:  # our own bytes: anything else is a bug, not user data
        raise RuntimeError("segment does not decompress to its size")
    return data


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive pieces, their CRC and length already combined."""

    crc: int
    size: int
    chunks: Sequence[bytes]

    @classmethod
    def of(cls, packed: Packed) -> Run:
        return cls(packed.crc, packed.size, (packed.data,))


@dataclass(slots=True)
class NewPart:
    """A part to write fresh: its runs of deflated pieces."""

    name: str
    runs: list[Run]

    @property
    def crc(self) -> int:
        crc = 0
        for run in self.runs:
            crc = crc32_combine(crc, run.crc, run.size)
        return crc

    @property
    def size(self) -> int:
        return sum(r.size for r in self.runs)

    @property
    def compressed_size(self) -> int:
        return sum(len(c) for r in self.runs for c in r.chunks) + len(FINAL_BLOCK)

    def chunks(self) -> Iterator[bytes]:
        for run in self.runs:
            yield from run.chunks
        yield FINAL_BLOCK


# ---------------------------------------------------------------------------- zip layout

_EOCD = struct.Struct("<4s4H2LH")
_CDH = struct.Struct("<4s6H3L5H2L")
_LFH = struct.Struct("<4s5H3L2H")
_EOCD_SIG, _CDH_SIG, _LFH_SIG = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
_DD_SIG, _ZIP64_LOCATOR = b"PK\x07\x08", b"PK\x06\x07"
_UTF8_FLAG, _DD_FLAG, _ENCRYPTED = 0x800, 0x8, 0x1


@dataclass(slots=True)
class Member:
    """One zip member as stored: where its local record is and its central record."""

    name: str
    offset: int  # of the local header
    length: int  # local header + name + extra + data + data descriptor
    central: bytes  # its central directory record, verbatim
    crc: int
    compressed: int


def read_layout(fh: BinaryIO) -> tuple[list[Member], bytes]:
    """Members in central directory order, and the archive comment.

    Refuses (``Unsupported``) what a raw copy cannot keep right: ZIP64, multi-disk, data
    before the first member, encrypted or overlapping members.
    """
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_len = min(size, 65535 + _EOCD.size)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(_EOCD_SIG)
    while pos >= 0:  # the signature may occur inside a comment: the real one fits exactly
        if pos + _EOCD.size <= len(tail):
            comment_len = _EOCD.unpack_from(tail, pos)[7]
            if pos + _EOCD.size + comment_len == len(tail):
                break
        pos = tail.rfind(_EOCD_SIG, 0, pos)
    if pos < 0:
        raise zipfile.BadZipFile("no end of central directory")
    eocd_at = size - tail_len + pos
    _sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack_from(
        tail, pos
    )
    comment = tail[pos + _EOCD.size : pos + _EOCD.size + comment_len]
    if eocd_at >= 20:
        fh.seek(eocd_at - 20)
        if fh.read(4) == _ZIP64_LOCATOR:
            raise Unsupported("ZIP64 archive (over 4 GB or 65535 parts)")
    if 0xFFFF in (n_disk, n_total) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise Unsupported("ZIP64 archive (over 4 GB or 65535 parts)")
    if disk or cd_disk or n_disk != n_total:
        raise Unsupported("multi-disk zip")
    if cd_offset + cd_size != eocd_at:
        raise Unsupported("data before the zip (self-extracting stub?)")
    fh.seek(cd_offset)
    cd = fh.read(cd_size)
    members: list[Member] = []
    at = 0
    for _ in range(n_total):
        if cd[at : at + 4] != _CDH_SIG:
            raise zipfile.BadZipFile("bad central directory")
        fields = _CDH.unpack_from(cd, at)
        flags, _method, crc, csize, usize = fields[3], fields[4], fields[7], fields[8], fields[9]
        nlen, xlen, clen, offset = fields[10], fields[11], fields[12], fields[16]
        end = at + _CDH.size + nlen + xlen + clen
        raw_name = cd[at + _CDH.size : at + _CDH.size + nlen]
        extra = cd[at + _CDH.size + nlen : at + _CDH.size + nlen + xlen]
        if 0xFFFFFFFF in (csize, usize, offset) or _has_extra(extra, 0x0001):
            raise Unsupported("ZIP64 member")
        if flags & _ENCRYPTED:
            raise Unsupported("encrypted zip member")
        name = raw_name.decode("utf-8" if flags & _UTF8_FLAG else "cp437")
        members.append(Member(name, offset, 0, bytes(cd[at:end]), crc, csize))
        at = end
    ordered = sorted(members, key=lambda m: m.offset)
    for i, member in enumerate(ordered):
        fh.seek(member.offset)
        head = fh.read(_LFH.size)
        if len(head) < _LFH.size or head[:4] != _LFH_SIG:
            raise zipfile.BadZipFile(f"bad local header for {member.name}")
        lflags, nlen, xlen = _LFH.unpack(head)[2], _LFH.unpack(head)[9], _LFH.unpack(head)[10]
        data_end = member.offset + _LFH.size + nlen + xlen + member.compressed
        if lflags & _DD_FLAG:
            fh.seek(data_end)
            data_end += 16 if fh.read(4) == _DD_SIG else 12
        limit = ordered[i + 1].offset if i + 1 < len(ordered) else cd_offset
        if data_end > limit:
            raise Unsupported(f"zip member {member.name} overlaps the next one")
        member.length = data_end - member.offset
    return members, comment


def _has_extra(extra: bytes, tag: int) -> bool:
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<2H", extra, at)
        if kind == tag:
            return True
        at += 4 + size
    return False


def _dos_time(when: float) -> tuple[int, int]:
    t = time.localtime(when)
    year = max(1980, min(t.tm_year, 2107))
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), (
        ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    )


def write_zip(
    out_path: Path,
    src: BinaryIO,
    members: Sequence[Member],
    fresh: dict[str, NewPart],
    comment: bytes,
    removed: set[str] | None = None,
) -> list[Member]:
    """A new zip at ``out_path``: members of ``src`` copied raw, those named in ``fresh``
    written from their pieces (in place; new names at the end), those in ``removed`` left
    out. Returns the new layout."""
    names = {m.name for m in members}
    gone = removed or set()
    order: list[Member | NewPart] = [fresh.get(m.name, m) for m in members if m.name not in gone]
    order += [part for name, part in fresh.items() if name not in names]
    if len(order) >= 0xFFFF:
        raise Unsupported("more than 65535 parts (ZIP64)")
    dos_time, dos_date = _dos_time(time.time())
    layout: list[Member] = []
    centrals: list[bytes] = []
    plan: list[tuple[int, int] | bytes] = []  # raw ranges of src, or bytes to write
    offset = 0
    for item in order:
        if isinstance(item, Member):
            record = bytearray(item.central)
            struct.pack_into("<L", record, 42, offset)
            centrals.append(bytes(record))
            layout.append(Member(item.name, offset, item.length, bytes(record), item.crc,
                                 item.compressed))  # fmt: skip
            plan.append((item.offset, item.length))
            offset += item.length
            continue
        raw_name = item.name.encode("utf-8")
        flags = 0 if item.name.isascii() else _UTF8_FLAG
        crc, size, csize = item.crc, item.size, item.compressed_size
        if max(size, csize) >= 0xFFFFFFFF:
            raise Unsupported(f"{item.name} over 4 GB (ZIP64)")
        local = _LFH.pack(_LFH_SIG, 20, flags, zipfile.ZIP_DEFLATED, dos_time, dos_date, crc,
                          csize, size, len(raw_name), 0) + raw_name  # fmt: skip
        central = _CDH.pack(_CDH_SIG, 20, 20, flags, zipfile.ZIP_DEFLATED, dos_time,
                            dos_date, crc, csize, size, len(raw_name), 0, 0, 0, 0, 0,
                            offset) + raw_name  # fmt: skip
        centrals.append(central)
        layout.append(Member(item.name, offset, len(local) + csize, central, crc, csize))
        plan.append(local)
        plan.extend(item.chunks())
        offset += len(local) + csize
    cd = b"".join(centrals)
    if offset + len(cd) >= 0xFFFFFFFF:
        raise Unsupported("workbook over 4 GB (ZIP64)")
    eocd = _EOCD.pack(_EOCD_SIG, 0, 0, len(order), len(order), len(cd), offset, len(comment))
    plan.append(cd + eocd + comment)
    with open(out_path, "xb", buffering=0) as out:
        _run_plan(plan, src, out)
    return layout


def _run_plan(plan: list[tuple[int, int] | bytes], src: BinaryIO, out: BinaryIO) -> None:
    pending: list[bytes] = []
    run: tuple[int, int] | None = None  # adjacent raw ranges are copied in one go

    def flush_bytes() -> None:
        if pending:
            _write_all(out, b"".join(pending))
            pending.clear()

    for step in plan:
        if isinstance(step, tuple):
            if run is not None and run[0] + run[1] == step[0]:
                run = (run[0], run[1] + step[1])
                continue
            if run is not None:
                _copy_range(src, out, *run)
            flush_bytes()
            run = step
        else:
            if run is not None:
                _copy_range(src, out, *run)
                run = None
            pending.append(step)
            if sum(map(len, pending)) > _CHUNK:
                flush_bytes()
    if run is not None:
        _copy_range(src, out, *run)
    flush_bytes()


def _write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        if not n:
            raise OSError("short write")
        view = view[n:]


def _copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` of src to out's position: in the kernel where it
    can (``copy_file_range``, Linux), else through a buffer."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        try:
            while length > 0:
                n = copy_range(src.fileno(), out.fileno(), length, offset)
                if n <= 0:
                    break
                offset += n
                length -= n
        except OSError:  # another filesystem, a kernel without it: the portable way below
            pass
    src.seek(offset)
    while length > 0:
        block = src.read(min(length, _CHUNK))
        if not block:
            raise zipfile.BadZipFile("workbook ends inside a zip member")
        _write_all(out, block)
        length -= len(block)


# ---------------------------------------------------------------------------- XML bits

_ATTR = re.compile(rb'([\w:.-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
_ENTITY = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _entity(m: re.Match[str]) -> str:
    name = m.group(1)
    if name[0] == "#":
        return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))
    return _NAMED[name]


def unescape(raw: bytes) -> str:
    text = raw.decode("utf-8")
    return _ENTITY.sub(_entity, text) if "&" in text else text


def attrs(tag: bytes) -> dict[str, str]:
    """Attributes of one start tag, unescaped."""
    return {m.group(1).decode(): unescape(m.group(2) if m.group(2) is not None else m.group(3))
            for m in _ATTR.finditer(tag)}  # fmt: skip


_ESC_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ESC_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                           "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})  # fmt: skip


def esc_text(text: str) -> str:
    return text.translate(_ESC_TEXT)


def esc_attr(text: str) -> str:
    return text.translate(_ESC_ATTR)


_T_TEXT = re.compile(rb"<t(?:\s[^>]*)?>(.*?)</t>|<t(?:\s[^>]*)?/>", re.S)
_PHONETIC = re.compile(rb"<rPh\b.*?</rPh>", re.S)


def rich_text(inner: bytes) -> str:
    """The text of an ``<si>`` or ``<is>``: its ``<t>`` runs, phonetic runs left out."""
    simple = _SIMPLE_T.fullmatch(inner)
    if simple is not None:  # one plain run: what Excel, openpyxl and we write
        return unescape(simple.group(1))
    if b"<rPh" in inner:
        inner = _PHONETIC.sub(b"", inner)
    return "".join(unescape(m.group(1) or b"") for m in _T_TEXT.finditer(inner))


def _safe_xml(data: bytes, part: str) -> etree._Element:
    if b"<!DOCTYPE" in data[:4096]:
        raise Unsupported(f"{part} has a DTD")
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise Unsupported(f"{part}: {exc}") from exc


def _to_xml(root: etree._Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + etree.tostring(
        root, encoding="UTF-8"
    )


# ---------------------------------------------------------------------------- segments

Splitter = Callable[[bytes], list[bytes]]
Strings = Callable[[set[int]], dict[int, str]]  # shared-string indexes → their text


class _Seg:
    __slots__ = ("items", "keys", "packed", "upto")

    def __init__(self, keys: list, items: list[bytes] | None) -> None:
        self.keys = keys
        self.items = items  # None while cold: only ``packed`` is kept
        self.packed: Packed | None = None  # None while dirty
        self.upto: tuple[int, int] = (0, 0)  # CRC-32 and length of the blocks up to here


class Blocks:
    """Keyed items (bytes) of a part, in segments deflated on their own.

    ``ordered``: keys are row numbers, kept sorted (a new one goes in its place); otherwise
    new items are appended. A key of ``None`` marks an item that is not ours (kept as is).
    """

    def __init__(self, split: Splitter, *, ordered: bool, segment: int = SEGMENT) -> None:
        self.split = split
        self.ordered = ordered
        self.segment = segment
        self.segs: list[_Seg] = []
        self.where: dict[object, _Seg] = {}
        self._stale_from = 0  # segments from here on need their ``upto`` recomputed

    def _changed(self, seg: _Seg) -> None:
        seg.packed = None
        self._stale_from = min(self._stale_from, self.segs.index(seg))

    def load(self, keys: list, items: list[bytes]) -> None:
        self.segs, self.where, self._stale_from = [], {}, 0
        for at in range(0, len(items), self.segment):
            seg = _Seg(keys[at : at + self.segment], items[at : at + self.segment])
            self.segs.append(seg)
            for key in seg.keys:
                if key is not None:
                    self.where.setdefault(key, seg)

    def load_packed(self, keys: list, data: bytes, bounds: list[int], level: int) -> None:
        """Items ``data[bounds[i]:bounds[i + 1]]``, deflated a segment at a time straight from
        ``data``: never copied one by one, and cold from the start."""
        self.segs, self.where, self._stale_from = [], {}, 0
        for at in range(0, len(keys), self.segment):
            stop = min(at + self.segment, len(keys))
            seg = _Seg(keys[at:stop], None)
            seg.packed = pack(data[bounds[at] : bounds[stop]], level)
            self.segs.append(seg)
            for key in seg.keys:
                if key is not None:
                    self.where.setdefault(key, seg)

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self.segs)

    def __contains__(self, key: object) -> bool:
        return key in self.where

    def _hot(self, seg: _Seg) -> list[bytes]:
        if seg.items is None:
            assert seg.packed is not None
            items = self.split(unpack(seg.packed))
            if len(items) != len(seg.keys):
                raise RuntimeError("segment does not split into its items")
            seg.items = items
        return seg.items

    def get(self, key: object) -> bytes | None:
        seg = self.where.get(key)
        if seg is None:
            return None
        return self._hot(seg)[self._pos(seg, key)]

    def _pos(self, seg: _Seg, key: object) -> int:
        if self.ordered:
            return bisect.bisect_left(seg.keys, key)
        return seg.keys.index(key)

    def set(self, key: object, item: bytes) -> None:
        seg = self.where.get(key)
        if seg is not None:
            self._hot(seg)[self._pos(seg, key)] = item
            self._changed(seg)
            return
        if not self.segs:
            seg = _Seg([], [])
            self.segs.append(seg)
        if self.ordered and self.segs[-1].keys and key < self.segs[-1].keys[-1]:  # type: ignore[operator]
            firsts = [s.keys[0] if s.keys else 0 for s in self.segs]
            seg = self.segs[max(0, bisect.bisect_right(firsts, key) - 1)]
            items = self._hot(seg)
            at = bisect.bisect_left(seg.keys, key)
        else:
            seg = self.segs[-1]
            if len(seg.keys) >= self.segment:
                seg = _Seg([], [])
                self.segs.append(seg)
            items = self._hot(seg)
            at = len(seg.keys)
        seg.keys.insert(at, key)
        items.insert(at, item)
        self._changed(seg)
        self.where[key] = seg
        if len(seg.keys) > 2 * self.segment:
            self._split(seg)

    def _split(self, seg: _Seg) -> None:
        half = len(seg.keys) // 2
        items = self._hot(seg)
        second = _Seg(seg.keys[half:], items[half:])
        seg.keys, seg.items = seg.keys[:half], items[:half]
        self._changed(seg)
        self.segs.insert(self.segs.index(seg) + 1, second)
        for key in second.keys:
            if key is not None:
                self.where[key] = second

    def remove(self, key: object) -> None:
        seg = self.where.pop(key, None)
        if seg is None:
            return
        items = self._hot(seg)
        at = self._pos(seg, key)
        del seg.keys[at], items[at]
        self._changed(seg)
        if not seg.keys and len(self.segs) > 1:
            self.segs.remove(seg)

    def keys(self) -> Iterator[object]:
        for seg in self.segs:
            yield from seg.keys

    def last_key(self) -> object:
        for seg in reversed(self.segs):
            if seg.keys:
                return seg.keys[-1]
        return None

    def run(self, level: int) -> Run:
        """All segments, deflated; only changed ones are compressed again, and CRCs are
        combined from the first change on (an append touches the last segment only)."""
        crc, size = self.segs[self._stale_from - 1].upto if self._stale_from else (0, 0)
        for i, seg in enumerate(self.segs):
            if seg.packed is None:
                seg.packed = pack(b"".join(self._hot(seg)), level)
            if i >= self._stale_from:
                crc = crc32_combine(crc, seg.packed.crc, seg.packed.size)
                size += seg.packed.size
                seg.upto = (crc, size)
        self._stale_from = len(self.segs)
        if self.segs:
            crc, size = self.segs[-1].upto
        return Run(crc, size, [seg.packed.data for seg in self.segs if seg.packed])

    def cool(self) -> None:
        """Keep clean segments compressed only; the last one (appends) stays at hand."""
        for seg in self.segs[:-1]:
            if seg.packed is not None:
                seg.items = None

    @property
    def dirty(self) -> bool:
        return any(seg.packed is None for seg in self.segs)


class Piece:
    """A small piece of a part (head, tail) with its deflate cached until it changes."""

    __slots__ = ("_data", "_packed")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._packed: Packed | None = None

    @property
    def data(self) -> bytes:
        return self._data

    @data.setter
    def data(self, value: bytes) -> None:
        if value != self._data:
            self._data, self._packed = value, None

    def packed(self, level: int) -> Packed:
        if self._packed is None:
            self._packed = pack(self._data, level)
        return self._packed

    @property
    def dirty(self) -> bool:
        return self._packed is None


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
_SIMPLE_T = re.compile(rb"<t(?: xml:space=\"preserve\")?>([^<]*)</t>")


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


# ---------------------------------------------------------------------------- styles


class Styles:
    """Cell formats of styles.xml: find the format FileBook would give a cell, adding it
    (and its font or number format) when the workbook has none like it."""

    BOOL_ATTRS = frozenset(
        ("quotePrefix", "pivotButton", "applyNumberFormat", "applyFont", "applyFill",
         "applyBorder", "applyAlignment", "applyProtection")
    )  # fmt: skip

    def __init__(self, part: str, data: bytes, lang: str) -> None:
        self.part = part
        self.lang = lang
        self.root = _safe_xml(data, part)
        if self.root.tag != _Q + "styleSheet":
            raise Unsupported(f"{part} is not a SpreadsheetML style sheet")
        self.numfmts = {int(el.get("numFmtId")): el.get("formatCode") or ""
                        for el in self.root.iter(_Q + "numFmt")}  # fmt: skip
        fonts, xfs = self.root.find(_Q + "fonts"), self.root.find(_Q + "cellXfs")
        if fonts is None or xfs is None or not len(xfs):
            raise Unsupported(f"{part} has no fonts or cell formats")
        self.fonts_el, self.xfs_el = fonts, xfs
        self.fonts = list(fonts.iterchildren(_Q + "font"))
        self.xfs = list(xfs.iterchildren(_Q + "xf"))
        self.font_keys: dict[bytes, int] = {}
        for i, el in enumerate(self.fonts):
            self.font_keys.setdefault(self._key(el), i)
        self.xf_keys: dict[bytes, int] = {}
        for i, el in enumerate(self.xfs):
            self.xf_keys.setdefault(self._key(el), i)
        self.memo: dict[tuple, int] = {}
        self.dirty = False

    @classmethod
    def _key(cls, el: etree._Element) -> bytes:
        """What makes two formats the same: attributes (booleans normalised) and children."""
        items = []
        for name, value in sorted(el.attrib.items()):
            if name in cls.BOOL_ATTRS:
                if value in ("0", "false"):
                    continue
                value = "1"
            items.append(f"{name}={value}")
        children = b"".join(etree.tostring(c, method="c14n") for c in el)
        return "\x00".join(items).encode() + b"\x00" + children

    def xf(self, s: int) -> etree._Element:
        if not 0 <= s < len(self.xfs):
            raise Unsupported(f"cell style {s} is not in {self.part}")
        return self.xfs[s]

    def number_format(self, s: int) -> str:
        fmt_id = int(self.xf(s).get("numFmtId") or 0)
        return self.numfmts.get(fmt_id, BUILTIN_FORMATS.get(fmt_id, "General"))

    def derive(self, s: int, *, text_format: bool = False, date: bool = False,
               quote: bool | None = None, link: bool | None = None) -> int:  # fmt: skip
        """The format FileBook's cell assignments would leave on a cell of format ``s``."""
        key = (s, text_format, date, quote, link)
        found = self.memo.get(key)
        if found is not None:
            return found
        base = self.xf(s)
        el = copy.deepcopy(base)
        if text_format:
            self._set(el, "numFmtId", "49", "applyNumberFormat")  # builtin "@"
        if date and not is_date_format(self.number_format(s)):
            self._set(el, "numFmtId", str(self._numfmt_id(DATE_FORMATS.get(
                self.lang, DATE_FORMATS["en"]))), "applyNumberFormat")  # fmt: skip
        if quote is not None:
            if quote:
                el.set("quotePrefix", "1")
            elif "quotePrefix" in el.attrib:
                del el.attrib["quotePrefix"]
        if link is not None:
            font_id = int(el.get("fontId") or 0)
            new_font = self._link_font(font_id, link)
            if new_font != font_id:
                self._set(el, "fontId", str(new_font), "applyFont")
        result = self._add(self.xf_keys, self.xfs, self.xfs_el, el) if self._key(el) != \
            self._key(base) else s  # fmt: skip
        self.memo[key] = result
        return result

    @staticmethod
    def _set(el: etree._Element, name: str, value: str, apply: str) -> None:
        if el.get(name) != value:
            el.set(name, value)
            el.set(apply, "1")

    def _add(self, keys: dict[bytes, int], items: list[etree._Element],
             parent: etree._Element, el: etree._Element) -> int:  # fmt: skip
        key = self._key(el)
        found = keys.get(key)
        if found is not None:
            return found
        if len(items) >= 64000:
            raise Unsupported(f"{self.part}: too many cell formats")
        items[-1].addnext(el)
        items.append(el)
        keys[key] = len(items) - 1
        parent.set("count", str(len(items)))
        self.dirty = True
        return len(items) - 1

    def _numfmt_id(self, code: str) -> int:
        for fmt_id, known in self.numfmts.items():
            if known == code:
                return fmt_id
        fmt_id = max([163, *self.numfmts]) + 1
        numfmts = self.root.find(_Q + "numFmts")
        if numfmts is None:
            numfmts = etree.Element(_Q + "numFmts")
            self.root.insert(0, numfmts)
        etree.SubElement(numfmts, _Q + "numFmt", numFmtId=str(fmt_id), formatCode=code)
        numfmts.set("count", str(len(numfmts)))
        self.numfmts[fmt_id] = code
        self.dirty = True
        return fmt_id

    def _link_font(self, font_id: int, link: bool) -> int:
        """FileBook's fonts: the link look (name, size, bold, italic kept; underline, blue),
        or, for a cell that lost its link, the plain look if it had the link one."""
        if not 0 <= font_id < len(self.fonts):
            raise Unsupported(f"font {font_id} is not in {self.part}")
        font = self.fonts[font_id]

        def val(tag: str) -> str | None:
            child = font.find(_Q + tag)
            return None if child is None else child.get("val", "")

        def flag(tag: str) -> bool:
            v = val(tag)
            return v is not None and v not in ("0", "false")

        underline = val("u")
        color = font.find(_Q + "color")
        rgb = color.get("rgb") if color is not None else None
        link_look = underline in ("", "single") and isinstance(rgb, str) and \
            rgb[-6:].upper() == LINK_COLOR  # fmt: skip
        if not link and not link_look:
            return font_id
        new = etree.Element(_Q + "font")
        for tag in ("b", "i"):
            if flag(tag):
                etree.SubElement(new, _Q + tag)
        if link:
            etree.SubElement(new, _Q + "u", val="single")
        if val("sz"):
            etree.SubElement(new, _Q + "sz", val=val("sz") or "")
        if link:
            etree.SubElement(new, _Q + "color", rgb="FF" + LINK_COLOR)
        if val("name"):
            etree.SubElement(new, _Q + "name", val=val("name") or "")
        return self._add(self.font_keys, self.fonts, self.fonts_el, new)

    def make(self, *, bold: bool = False, size: float | None = None, fill: str = "",
             number_format: str = "", wrap: bool = False) -> int:  # fmt: skip
        """A format for the sheets we own whole (Dashboard, a new Calls sheet): the book's
        default font — named and sized, so no viewer falls back to a serif — made bold or
        bigger, an optional solid ``fill`` (RRGGBB) and number format."""
        key = ("make", bold, size, fill, number_format, wrap)
        found = self.memo.get(key)
        if found is not None:
            return found
        font = copy.deepcopy(self.fonts[0])
        for child in list(font):
            if child.tag in (_Q + "b", _Q + "sz") or (size and child.tag == _Q + "scheme"):
                font.remove(child)
        if bold:
            font.insert(0, etree.Element(_Q + "b"))
        base_size = self.fonts[0].find(_Q + "sz")
        sz = size or (float(base_size.get("val") or 11) if base_size is not None else 11)
        etree.SubElement(font, _Q + "sz", val=f"{sz:g}")
        if font.find(_Q + "name") is None:
            etree.SubElement(font, _Q + "name", val="Calibri")
        xf = etree.Element(_Q + "xf", numFmtId="0", fontId="0", fillId="0", borderId="0",
                           xfId="0")  # fmt: skip
        self._set(xf, "fontId", str(self._add(self.font_keys, self.fonts, self.fonts_el,
                                              font)), "applyFont")  # fmt: skip
        if fill:
            self._set(xf, "fillId", str(self._fill(fill)), "applyFill")
        if number_format:
            fmt_id = {"General": 0, "@": 49}.get(number_format)
            if fmt_id is None:
                fmt_id = self._numfmt_id(number_format)
            self._set(xf, "numFmtId", str(fmt_id), "applyNumberFormat")
        if wrap:
            etree.SubElement(xf, _Q + "alignment", wrapText="1", vertical="center")
            xf.set("applyAlignment", "1")
        result = self._add(self.xf_keys, self.xfs, self.xfs_el, xf)
        self.memo[key] = result
        return result

    def _fill(self, rgb: str) -> int:
        fills = self.root.find(_Q + "fills")
        if fills is None:  # CT_Stylesheet order: numFmts, fonts, fills, …
            fills = etree.Element(_Q + "fills")
            self.fonts_el.addnext(fills)
            for pattern in ("none", "gray125"):  # the two fills every reader expects first
                fill = etree.SubElement(fills, _Q + "fill")
                etree.SubElement(fill, _Q + "patternFill", patternType=pattern)
        items = list(fills.iterchildren(_Q + "fill"))
        keys = {self._key(el): i for i, el in reversed(list(enumerate(items)))}
        fill = etree.Element(_Q + "fill")
        pattern = etree.SubElement(fill, _Q + "patternFill", patternType="solid")
        etree.SubElement(pattern, _Q + "fgColor", rgb="FF" + rgb.upper())
        etree.SubElement(pattern, _Q + "bgColor", indexed="64")
        return self._add(keys, items, fills, fill)

    def xml(self) -> bytes:
        return _to_xml(self.root)


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
        from .package import Package, rels_part_of  # built on this module's zip code

        self.package = package = Package(read, set(pkg.by_name), main)
        wb = package.workbook
        if wb.tag != _Q + "workbook":
            raise Unsupported("not a SpreadsheetML workbook (strict OOXML?)")
        pr = wb.find(_Q + "workbookPr")
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
                self.tables.append(_Table(table_part, _safe_xml(raw, table_part)))
        self.prime()
        package.rebind(self._member)

    def _new_sheet_xml(self) -> bytes:
        """A Calls sheet of ours: headers, widths, a frozen header row, a filter, and a
        page setup that prints it landscape, one page wide, the header on every page."""
        from .sheetxml import Grid, worksheet_xml

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
        for el in _safe_xml(data, rels_part).iter(f"{{{PKG_REL_NS}}}Relationship"):
            mode, target = el.get("TargetMode") or "", el.get("Target") or ""
            if mode != "External":
                target = _resolve(rels_part, target)
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
                    self.table_parts.append(_resolve(self.rels_part, found.get("Target", "")))
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
                auto = root.find(_Q + "autoFilter")
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
                fresh[name] = NewPart(name, [Run.of(pack(_to_xml(table.root), level))])
        for part, data in self.package.fresh().items():
            name = self._stored(part)
            fresh[name] = NewPart(name, [Run.of(pack(data, level))])
        removed = {self._stored(p) for p in self.package.removed()}
        with open(self.path, "rb") as src:
            st = os.fstat(src.fileno())
            if stamp is not None and (st.st_mtime_ns, st.st_size, st.st_ino) != stamp:
                raise _ChangedOnDisk
            for member in self._pkg.members:  # cheap guard: the parsed layout is this file
                if member.name not in fresh:
                    src.seek(member.offset)
                    if src.read(4) != _LFH_SIG:
                        raise _ChangedOnDisk
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
    from ..schema import CONTACTS, MANAGERS, SETTINGS

    titles = {_norm(s.title) for s in package.sheets()}
    ru = sum(_norm(s.ru) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
    en = sum(_norm(s.en) in titles for s in (CONTACTS, MANAGERS, SETTINGS))
    if ru != en:
        return "ru" if ru > en else "en"
    return default or current_lang()


def _resolve(rels_part: str, target: str) -> str:
    """A relationship's target as a part name (relative to the part the rels belong to)."""
    if target.startswith("/"):
        return target.lstrip("/")
    folder = posixpath.dirname(posixpath.dirname(rels_part))  # …/_rels/x.rels → …
    return posixpath.normpath(posixpath.join(folder, target))


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
            block = stream.read(_CHUNK)
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
