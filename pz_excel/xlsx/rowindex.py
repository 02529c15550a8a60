"""Call ID → row of a big log, in packed arrays rather than a dict (issue 14, target 3).

A dict of str → int costs ~150 bytes a row (the key string, the int, the hash slot): 150 MB
for a million calls. Call IDs are nearly always decimal numbers that fit 64 bits and grow
with time, so they are kept as a sorted ``array('Q')`` of IDs beside an ``array('I')`` of
rows — 12 bytes a row — and found by bisection. What does not fit that shape stays in
small dicts:

* ``other`` — any ID that is not a plain decimal (letters, a leading zero, a sign, over
  64 bits, the journal's aliases for a reused ID: "123 #2"): its text is the key;
* ``loose`` — numeric IDs that arrived out of order, merged into the arrays in one pass
  once there are enough of them (an insert into the middle of a million-entry array one
  at a time would move 12 MB per call).

The text of an ID is the key: "0123" and "123" are different calls, so only the canonical
form of a number (``str(int(text)) == text``) is packed.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator

_MAX = 1 << 64
#: ``loose`` is merged into the arrays past this many entries (or 1/32 of the arrays).
MERGE_AT = 4096


def packed_id(text: str) -> int | None:
    """The number a call ID is, when its text is exactly that number's decimal form."""
    if not text or len(text) > 20 or not text.isascii() or not text.isdigit():
        return None
    if text[0] == "0" and len(text) > 1:
        return None  # "0123" is not the call "123"
    value = int(text)
    return value if value < _MAX else None


class RowIndex:
    """Call ID (its cell text) → row number. Not thread-safe (FileBook's lock)."""

    __slots__ = ("_ids", "_loose", "_other", "_rows")

    def __init__(self) -> None:
        self._ids = array("Q")
        self._rows = array("I")
        self._loose: dict[int, int] = {}
        self._other: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids) + len(self._loose) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        for n in self._ids:
            yield str(n)
        for n in self._loose:
            yield str(n)
        yield from self._other

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def _at(self, n: int) -> int:
        """Position of ``n`` in the arrays, or -1."""
        i = bisect.bisect_left(self._ids, n)
        return i if i < len(self._ids) and self._ids[i] == n else -1

    def get(self, key: str) -> int | None:
        n = packed_id(key)
        if n is None:
            return self._other.get(key)
        i = self._at(n)
        return self._rows[i] if i >= 0 else self._loose.get(n)

    def __setitem__(self, key: str, row: int) -> None:
        n = packed_id(key)
        if n is None:
            self._other[key] = row
            return
        i = self._at(n)
        if i >= 0:
            self._rows[i] = row
        elif n in self._loose or (self._ids and n < self._ids[-1]):
            self._loose[n] = row
            if len(self._loose) > max(MERGE_AT, len(self._ids) // 32):
                self._merge()
        else:  # the usual case: a newer call, a greater ID
            self._ids.append(n)
            self._rows.append(row)

    def keep_first(self, key: str, row: int) -> None:
        """``row`` for ``key`` unless an earlier row has it: the first row wins over a copy
        further down, in whatever order rows are read."""
        old = self.get(key)
        if old is None or row < old:
            self[key] = row

    def _merge(self) -> None:
        """Fold ``loose`` into the arrays in one pass: slices between the insertion points
        are copied in C, so the cost is one copy of the arrays per ``MERGE_AT`` IDs."""
        ids, rows = array("Q"), array("I")
        start = 0
        for n in sorted(self._loose):
            i = bisect.bisect_left(self._ids, n, start)
            ids.extend(self._ids[start:i])
            rows.extend(self._rows[start:i])
            ids.append(n)
            rows.append(self._loose[n])
            start = i
        ids.extend(self._ids[start:])
        rows.extend(self._rows[start:])
        self._ids, self._rows, self._loose = ids, rows, {}
