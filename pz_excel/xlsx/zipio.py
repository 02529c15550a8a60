"""Zip files at the level of their members: raw copies, and new parts deflated in
segments whose CRCs combine, so a save rewrites only what changed."""

from __future__ import annotations

import os
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    pass


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
CHUNK = 4 << 20

#: A deflate stream's last block: final bit set, fixed Huffman, end of block. Appended to
#: sync-flushed segments, it ends the concatenation as one valid stream.
FINAL_BLOCK = b"\x03\x00"


class Unsupported(Exception):
    """Something the zip-level writer does not handle: the openpyxl path does it."""


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


@dataclass(slots=True)
class Span:
    """Deflated bytes parked in another open file (``segments.Spill``): a save copies them
    file to file, never through memory, so a million-row sheet costs no RAM to write."""

    src: BinaryIO
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The bytes themselves (tests and checks; a save copies them file to file)."""
        self.src.seek(self.offset)
        data = self.src.read(self.length)
        if len(data) != self.length:
            raise OSError("the span's file ends early")
        return data


@dataclass(frozen=True, slots=True)
class DeflatedRun:
    """Consecutive pieces, their CRC and length already combined."""

    crc: int
    size: int
    chunks: Sequence[bytes | Span]

    @classmethod
    def of(cls, packed: Packed) -> DeflatedRun:
        return cls(packed.crc, packed.size, (packed.data,))


@dataclass(slots=True)
class NewPart:
    """A part to write fresh: its runs of deflated pieces."""

    name: str
    runs: list[DeflatedRun]

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

    def chunks(self) -> Iterator[bytes | Span]:
        for run in self.runs:
            yield from run.chunks
        yield FINAL_BLOCK


# ---------------------------------------------------------------------------- zip layout

_EOCD = struct.Struct("<4s4H2LH")
_CDH = struct.Struct("<4s6H3L5H2L")
_LFH = struct.Struct("<4s5H3L2H")
_EOCD_SIG, _CDH_SIG, LOCAL_HEADER_SIG = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
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
        if len(head) < _LFH.size or head[:4] != LOCAL_HEADER_SIG:
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
    plan: list[tuple[int, int] | bytes | Span] = []  # raw ranges of src, bytes, spans
    offset = 0
    for item in order:
        if isinstance(item, Member):
            record = bytearray(item.central)
            struct.pack_into("<L", record, 42, offset)
            centrals.append(bytes(record))
            layout.append(Member(item.name, offset, item.length, bytes(record), item.crc,
                                 item.compressed))
            plan.append((item.offset, item.length))
            offset += item.length
            continue
        raw_name = item.name.encode("utf-8")
        flags = 0 if item.name.isascii() else _UTF8_FLAG
        crc, size, csize = item.crc, item.size, item.compressed_size
        if max(size, csize) >= 0xFFFFFFFF:
            raise Unsupported(f"{item.name} over 4 GB (ZIP64)")
        local = _LFH.pack(LOCAL_HEADER_SIG, 20, flags, zipfile.ZIP_DEFLATED, dos_time,
                          dos_date, crc, csize, size, len(raw_name), 0) + raw_name
        central = _CDH.pack(_CDH_SIG, 20, 20, flags, zipfile.ZIP_DEFLATED, dos_time,
                            dos_date, crc, csize, size, len(raw_name), 0, 0, 0, 0, 0,
                            offset) + raw_name
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


def _run_plan(plan: list[tuple[int, int] | bytes | Span], src: BinaryIO, out: BinaryIO
              ) -> None:
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
        elif isinstance(step, Span):
            if run is not None:
                _copy_range(src, out, *run)
                run = None
            flush_bytes()
            _copy_range(step.src, out, step.offset, step.length)
        else:
            if run is not None:
                _copy_range(src, out, *run)
                run = None
            pending.append(step)
            if sum(map(len, pending)) > CHUNK:
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
        block = src.read(min(length, CHUNK))
        if not block:
            raise zipfile.BadZipFile("workbook ends inside a zip member")
        _write_all(out, block)
        length -= len(block)


