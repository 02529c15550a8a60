"""Items of a big part (rows, links, relationships) in segments deflated on their
own: a save recompresses only the segments that changed.

Memory stays flat in the part's size (issue 14, target 3): a clean segment other than the
last is kept neither as items nor as deflated bytes but in a ``Spill`` — an unnamed temp
file — as (offset, length, CRC, size); a save copies it from there into the new workbook
file to file (``zipio.Span``), and an update of an old row reads back that one segment.
Row keys are packed 4-byte arrays, and the segment holding a row is found by bisecting
the segments' first keys (no dict entry per row).
"""

from __future__ import annotations

import bisect
import ctypes
import logging
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pz_excel.i18n import Text
from pz_excel.xlsx.zipio import (
    SEGMENT,
    DeflatedRun,
    Packed,
    Span,
    crc32_combine,
    pack,
    unpack,
)

log = logging.getLogger("pz_excel.books.callspatch")  # said as the Calls writer's

# ---------------------------------------------------------------------------- the spill

#: A spill file is rewritten without its dead bytes (segments deflated again since) once
#: they outweigh the live ones and this floor: an update of an old row leaves one dead copy.
COMPACT_FLOOR = 8 << 20


@dataclass(frozen=True, slots=True)
class Stored:
    """A clean segment parked in a spill file: where, and the CRC-32 and length of its
    decompressed bytes (what ``Packed`` holds, without the data)."""

    crc: int
    size: int
    offset: int
    length: int


class Spill:
    """Deflated segments in an unnamed temp file (gone when closed, or if we die): what a
    million-row sheet would otherwise keep in RAM (~60 MB). Created at the first segment;
    the system temp folder, never the user's folder (nothing of ours appears beside the
    book, nothing there gets synced)."""

    def __init__(self) -> None:
        self._fh: BinaryIO | None = None
        self.end = 0  # bytes written
        self.live = 0  # bytes still referenced by a segment

    def put(self, packed: Packed) -> Stored:
        if self._fh is None:
            self._fh = tempfile.TemporaryFile(prefix="pz-excel-", suffix=".segments",
                                              buffering=0)  # type: ignore[assignment]
        fh = self._fh
        assert fh is not None
        fh.seek(self.end)
        view = memoryview(packed.data)
        while view:
            n = fh.write(view)
            if not n:
                raise OSError("short write to the spill file")
            view = view[n:]
        stored = Stored(packed.crc, packed.size, self.end, len(packed.data))
        self.end += stored.length
        self.live += stored.length
        return stored

    def read(self, stored: Stored) -> Packed:
        assert self._fh is not None
        self._fh.seek(stored.offset)
        data = bytearray()
        while len(data) < stored.length:
            block = self._fh.read(stored.length - len(data))
            if not block:
                raise OSError("the spill file ends early")
            data += block
        return Packed(stored.crc, stored.size, bytes(data))

    def span(self, stored: Stored) -> Span:
        assert self._fh is not None
        return Span(self._fh, stored.offset, stored.length)

    def drop(self, stored: Stored) -> None:
        self.live -= stored.length

    @property
    def wasteful(self) -> bool:
        return self.end - self.live > max(COMPACT_FLOOR, self.live)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.end = self.live = 0

    def __del__(self) -> None:  # a dropped book (FileBook re-reads it) frees its file
        self.close()


def return_freed_memory() -> None:
    """Hand the memory a load freed back to the system. Reading a big sheet peaks at many
    times what is kept (its XML, lists of row offsets); glibc keeps the freed pages of its
    heap behind the few objects that stay, so RSS would sit near the peak (measured: +44
    MB for a 100 k-row log with links, +18 MB once trimmed). Other C libraries and systems
    release large blocks themselves: nothing to do there."""
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl and others: no malloc_trim
        return
    trim(0)


# ---------------------------------------------------------------------------- segments

Splitter = Callable[[bytes], list[bytes]]
Strings = Callable[[set[int]], dict[int, str]]  # shared-string indexes → their text


class _Seg:
    __slots__ = ("items", "keys", "packed", "upto")

    def __init__(self, keys: list | array, items: list[bytes] | None) -> None:
        self.keys = keys  # row numbers: array('I'), 4 bytes each; other keys: a list
        self.items = items  # None while cold: only ``packed`` is kept
        self.packed: Packed | Stored | None = None  # None while dirty; Stored: spilled
        self.upto: tuple[int, int] = (0, 0)  # CRC-32 and length of the blocks up to here


class Blocks:
    """Keyed items (bytes) of a part, in segments deflated on their own.

    ``ordered``: keys are row numbers, kept sorted (a new one goes in its place) in packed
    arrays, and found by bisection; otherwise new items are appended and a dict finds them
    (links and relationships: at most Excel's 65 530 links a sheet). A key of ``None``
    marks an item that is not ours (kept as is).
    """

    def __init__(self, split: Splitter, *, ordered: bool, segment: int = SEGMENT) -> None:
        self.split = split
        self.ordered = ordered
        self.segment = segment
        self.segs: list[_Seg] = []
        self.where: dict[object, _Seg] = {}  # unordered only
        self.spill = Spill()
        self._spill_failed = False
        self._firsts: list[int] | None = None  # ordered: each segment's first key (cache)
        self._stale_from = 0  # segments from here on need their ``upto`` recomputed

    def _new_keys(self, keys: list) -> list | array:
        return array("I", keys) if self.ordered else list(keys)

    def _changed(self, seg: _Seg) -> None:
        if isinstance(seg.packed, Stored):
            self.spill.drop(seg.packed)
        seg.packed = None
        self._stale_from = min(self._stale_from, self.segs.index(seg))

    def _reset(self) -> None:
        self.spill.close()
        self.segs, self.where, self._firsts, self._stale_from = [], {}, None, 0

    def _add(self, seg: _Seg) -> None:
        self.segs.append(seg)
        if not self.ordered:
            for key in seg.keys:
                if key is not None:
                    self.where.setdefault(key, seg)

    def load(self, keys: list, items: list[bytes]) -> None:
        self._reset()
        for at in range(0, len(items), self.segment):
            self._add(_Seg(self._new_keys(keys[at : at + self.segment]),
                           items[at : at + self.segment]))

    def load_packed(self, keys: list, data: bytes, bounds: list[int], level: int) -> None:
        """Items ``data[bounds[i]:bounds[i + 1]]``, deflated a segment at a time straight from
        ``data`` into the spill: never copied one by one, cold from the start, and no
        segment kept in memory."""
        self._reset()
        for at in range(0, len(keys), self.segment):
            stop = min(at + self.segment, len(keys))
            seg = _Seg(self._new_keys(keys[at:stop]), None)
            seg.packed = self._park(pack(data[bounds[at] : bounds[stop]], level))
            self._add(seg)

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self.segs)

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def _find(self, key: object) -> _Seg | None:
        if not self.ordered:
            return self.where.get(key)
        if self._firsts is None:
            self._firsts = [s.keys[0] if s.keys else 0 for s in self.segs]
        i = bisect.bisect_right(self._firsts, key) - 1  # type: ignore[call-overload]
        if i < 0:
            return None
        keys = self.segs[i].keys
        at = bisect.bisect_left(keys, key)  # type: ignore[call-overload]
        return self.segs[i] if at < len(keys) and keys[at] == key else None

    def _hot(self, seg: _Seg) -> list[bytes]:
        if seg.items is None:
            packed = seg.packed
            assert packed is not None
            if isinstance(packed, Stored):
                packed = self.spill.read(packed)
            data = unpack(packed)
            if zlib.crc32(data) != packed.crc:  # a spill file is ours: a bug or a bad disk
                raise RuntimeError("segment does not match its CRC")
            items = self.split(data)
            if len(items) != len(seg.keys):
                raise RuntimeError("segment does not split into its items")
            seg.items = items
        return seg.items

    def get(self, key: object) -> bytes | None:
        seg = self._find(key)
        if seg is None:
            return None
        return self._hot(seg)[self._pos(seg, key)]

    def _pos(self, seg: _Seg, key: object) -> int:
        if self.ordered:
            return bisect.bisect_left(seg.keys, key)  # type: ignore[call-overload]
        return seg.keys.index(key)

    def set(self, key: object, item: bytes) -> None:
        seg = self._find(key)
        if seg is not None:
            self._hot(seg)[self._pos(seg, key)] = item
            self._changed(seg)
            return
        if not self.segs:
            self._add(_Seg(self._new_keys([]), []))
            self._firsts = None
        if self.ordered and self.segs[-1].keys and key < self.segs[-1].keys[-1]:  # type: ignore[operator]
            firsts = [s.keys[0] if s.keys else 0 for s in self.segs]
            si = max(0, bisect.bisect_right(firsts, key) - 1)  # type: ignore[call-overload]
            seg = self.segs[si]
            items = self._hot(seg)
            at = bisect.bisect_left(seg.keys, key)  # type: ignore[call-overload]
        else:
            seg = self.segs[-1]
            if len(seg.keys) >= self.segment:
                seg = _Seg(self._new_keys([]), [])
                self.segs.append(seg)
            items = self._hot(seg)
            at = len(seg.keys)
        seg.keys.insert(at, key)  # type: ignore[arg-type]
        items.insert(at, item)
        self._changed(seg)
        if at == 0:
            self._firsts = None  # a segment's first key changed (or a new segment)
        if not self.ordered:
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
        self._firsts = None
        if not self.ordered:
            for key in second.keys:
                if key is not None:
                    self.where[key] = second

    def remove(self, key: object) -> None:
        seg = self._find(key)
        if seg is None:
            return
        self.where.pop(key, None)
        items = self._hot(seg)
        at = self._pos(seg, key)
        del seg.keys[at], items[at]
        self._changed(seg)
        self._firsts = None
        if not seg.keys and len(self.segs) > 1:
            self.segs.remove(seg)

    def keys(self) -> Iterator[object]:
        for seg in self.segs:
            yield from seg.keys

    def run(self, level: int) -> DeflatedRun:
        """All segments, deflated; only changed ones are compressed again, and CRCs are
        combined from the first change on (an append touches the last segment only).
        Spilled segments go out as spans of the spill file, adjacent ones merged."""
        crc, size = self.segs[self._stale_from - 1].upto if self._stale_from else (0, 0)
        chunks: list[bytes | Span] = []
        for i, seg in enumerate(self.segs):
            if seg.packed is None:
                seg.packed = pack(b"".join(self._hot(seg)), level)
            if i >= self._stale_from:
                crc = crc32_combine(crc, seg.packed.crc, seg.packed.size)
                size += seg.packed.size
                seg.upto = (crc, size)
            if isinstance(seg.packed, Packed):
                chunks.append(seg.packed.data)
                continue
            last = chunks[-1] if chunks else None
            if isinstance(last, Span) and last.offset + last.length == seg.packed.offset:
                last.length += seg.packed.length
            else:
                chunks.append(self.spill.span(seg.packed))
        self._stale_from = len(self.segs)
        if self.segs:
            crc, size = self.segs[-1].upto
        return DeflatedRun(crc, size, chunks)

    def cool(self) -> None:
        """Park clean segments in the spill, keeping neither their items nor their
        deflated bytes; the last one (appends) stays at hand. Called after a save, when
        no span of the spill is in use: the spill is compacted here if it must be."""
        for seg in self.segs[:-1]:
            if isinstance(seg.packed, Packed):
                seg.packed = self._park(seg.packed)
            if seg.packed is not None:
                seg.items = None
        if self.spill.wasteful:
            self._compact()

    def _park(self, packed: Packed) -> Packed | Stored:
        """``packed`` into the spill; if the temp folder cannot take it (full, read-only)
        it stays in memory as before: more RAM, never a book refused for our temp file."""
        if not self._spill_failed:
            try:
                return self.spill.put(packed)
            except OSError as exc:
                self._spill_failed = True
                log.warning("%s", Text(
                    f"cannot write to the temp folder ({exc}): the Calls sheet stays in memory",
                    f"не удаётся писать во временную папку ({exc}): лист звонков остаётся "
                    "в памяти"))
        return packed

    def _compact(self) -> None:
        """The live segments into a new spill file; all or nothing (a failure keeps the
        old file, which still serves: the next save tries again)."""
        fresh = Spill()
        try:
            moved = [(seg, fresh.put(self.spill.read(seg.packed))) for seg in self.segs
                     if isinstance(seg.packed, Stored)]
        except OSError as exc:
            fresh.close()
            log.debug("spill compaction failed: %s", exc)
            return
        for seg, stored in moved:
            seg.packed = stored
        self.spill.close()
        self.spill = fresh

    def close(self) -> None:
        """Release the spill file now rather than when garbage-collected."""
        self.spill.close()

    @property
    def dirty(self) -> bool:
        return any(seg.packed is None for seg in self.segs)


class CachedDeflate:
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


