"""Items of a big part (rows, links, relationships) in segments deflated on their
own: a save recompresses only the segments that changed."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pz_excel.xlsx.zipio import SEGMENT, DeflatedRun, Packed, crc32_combine, pack, unpack

if TYPE_CHECKING:
    pass


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

    def run(self, level: int) -> DeflatedRun:
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
        return DeflatedRun(crc, size, [seg.packed.data for seg in self.segs if seg.packed])

    def cool(self) -> None:
        """Keep clean segments compressed only; the last one (appends) stays at hand."""
        for seg in self.segs[:-1]:
            if seg.packed is not None:
                seg.items = None

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


