"""The contacts index kept on disk, so that a restart routes at once instead of parsing.

Building the index from a million-row Contacts sheet takes 7–10 s; mapping this file and
checking its CRC-32 takes 30–110 ms, and the agent answers its first transfer within a
second of starting (issue 14, target 4; figures in docs/performance.md). The file sits
next to the agent's journal (``<journal>.contacts-index``), one per agent, and is rewritten
after each build by the contacts watcher's thread, off the decision path
(``crm/contacts.py``).

What makes a stored index usable is its **stamp**, compared in full before it is trusted:

* the program: the format number below, the package version and a digest of the source
  of ``crm/`` and ``xlsx/`` (what turns cells into keys), so an upgrade that changes how a
  number normalises never reuses an index built the old way;
* the book: its resolved path, and the settings keys depend on (the area code);
* the contacts themselves: CRC-32 and size of the Contacts and Managers sheet parts and of
  the shared strings, read from the zip's central directory (``workbook_fingerprint``), so
  checking costs no parse. Equal CRC-32 and size for different contents is possible in
  principle (about 1 in 4 billion per edit); the running watcher relies on the same check.

A file whose program or book differs, or that is truncated or corrupt (a CRC-32 over the
whole file), is ignored and rebuilt, never trusted. One that differs only in the contacts'
fingerprint is *stale*: the watcher may route from it while it rebuilds (see there).

The layout is made to be read with no per-contact work: the records as one blob with an
offsets array, the integer phone slots sorted in an int64 array (found by bisection) with
each one's record number beside it; everything else (managers, warnings, the few slots
that are text) in a small JSON header. Nothing is unpickled; the file is mapped and used
as it lies (``PackedKeys``, ``PackedRecords``), never copied into objects per contact.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import mmap
import operator
import os
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice, repeat
from pathlib import Path

import pz_excel
from pz_excel.crm.contact_index import ContactIndex, Managers, Record, record_row
from pz_excel.i18n import Text

log = logging.getLogger("pz_excel.crm.index_store")

FORMAT = 1
MAGIC = b"PZXCIDX\x01"
_HEAD = struct.Struct("<8sQ")  # magic, header length
_CRC = struct.Struct("<I")
_INT64 = (-(2**63), 2**63 - 1)
#: Work per step when writing (sorting, joining this many: about a millisecond), and the
#: pause after each, in which a decision waiting for the interpreter lock takes it.
STEP = 1024
MERGE_STEP = 512
PAUSE = 0.0002


@functools.lru_cache(maxsize=1)
def code_stamp() -> str:
    """The program that builds indexes: version, format and the source of crm/ and xlsx/."""
    digest = hashlib.sha256(f"{pz_excel.__version__}/{FORMAT}".encode())
    root = Path(__file__).resolve().parent.parent
    for folder in ("crm", "xlsx"):
        for source in sorted((root / folder).glob("*.py")):
            try:
                digest.update(source.name.encode() + b"\0" + source.read_bytes())
            except OSError:  # an installation without sources: the version still counts
                digest.update(source.name.encode())
    return digest.hexdigest()[:32]


def _stamp_of(fingerprint: tuple | None) -> list | None:
    return None if fingerprint is None else [list(part) for part in fingerprint]


@dataclass(frozen=True)
class Stored:
    index: ContactIndex
    current: bool  # built from the contacts the book holds now (else stale)


class IndexStore:
    """The index file of one agent: ``load`` at start, ``save`` after each build."""

    def __init__(self, path: Path | str, source: Path | str, area_code: str = ""):
        self.path = Path(path)
        self.source = str(Path(source).expanduser().resolve())
        self.area_code = area_code
        self.problem: Text | None = None  # why the file was not used, if it was not

    # ------------------------------------------------------------------ reading

    def load(self, fingerprint: tuple | None) -> Stored | None:
        """The stored index if it was built by this program from this book with these
        settings (``current`` when ``fingerprint``, the book's now, is the one it was built
        from); None, with ``problem`` set, when there is none or it cannot be trusted."""
        self.problem = None
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(_HEAD.size)
                if len(head) < _HEAD.size or _HEAD.unpack(head)[0] != MAGIC:
                    return self._ignored("not an index file", "не файл индекса")
                size = _HEAD.unpack(head)[1]
                header = json.loads(fh.read(min(size, 1 << 30)))
                if not isinstance(header, dict):
                    return self._ignored("bad header", "повреждённый заголовок")
                other = self._other_book(header)
                if other is not None:
                    return self._ignored(*other)
                # Mapped, not read: a million contacts are 140 MB, which read() copies into
                # fresh memory (0.1–0.4 s here); the map uses the page cache as it is. Our
                # saves never write into this file (they replace it), so it holds still.
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            self.problem = Text("no saved index yet", "сохранённого индекса ещё нет")
            return None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return self._ignored(f"unreadable: {exc}", f"не читается: {exc}")
        try:
            index = self._unpack(data, header, _HEAD.size + size)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return self._ignored(f"damaged: {exc}", f"повреждён: {exc}")
        return Stored(index, header["fingerprint"] == _stamp_of(fingerprint))

    def _other_book(self, header: dict) -> tuple[str, str] | None:
        if header.get("code") != code_stamp() or header.get("byteorder") != sys.byteorder:
            return ("built by another program version", "построен другой версией программы")
        if header.get("source") != self.source:
            return ("built from another workbook", "построен по другой книге")
        if header.get("area_code") != self.area_code:
            return ("built with another area code", "построен с другим кодом города")
        return None

    def _ignored(self, en: str, ru: str) -> None:
        self.problem = Text(en, ru)
        log.info("%s", Text(f"saved contacts index {self.path.name} ignored ({en}): rebuilt",
                            f"сохранённый индекс контактов {self.path.name} не использован "
                            f"({ru}): строится заново"))
        return None

    def _unpack(self, data: mmap.mmap, header: dict, at: int) -> ContactIndex:
        if len(data) < at + _CRC.size or (
            zlib.crc32(memoryview(data)[: -_CRC.size]) != _CRC.unpack(data[-_CRC.size :])[0]
        ):
            raise ValueError("checksum mismatch (truncated or overwritten)")
        n, m, blob = int(header["contacts"]), int(header["keys"]), int(header["blob"])
        view = memoryview(data)
        at = _aligned(at)
        offsets = view[at : at + 8 * (n + 1)].cast("q")
        at += 8 * (n + 1)
        keys = view[at : at + 8 * m].cast("q")
        at += 8 * m
        slots = view[at : at + 8 * m].cast("q")
        at += 8 * m
        if at + blob + _CRC.size != len(data) or len(offsets) != n + 1 or len(slots) != m:
            raise ValueError("sections do not add up to the file")
        if n and (offsets[0] != 0 or offsets[n] != blob):
            raise ValueError("record offsets out of range")
        records = PackedRecords(data, at, offsets)
        other = {slot: int(i) for slot, i in header["other"]}
        if any(not 0 <= i < n for i in other.values()):
            raise ValueError("record number out of range")
        managers = Managers()
        managers.update(header["managers"])
        managers.names.update(header["manager_names"])
        return ContactIndex(
            PackedKeys(keys, slots, records, other),
            records,
            managers,
            [Text(en, ru) for en, ru in header["warnings"]],
            source=Path(header["source"]),
            mtime=float(header["mtime"]),
            fingerprint=tuple(tuple(part) for part in header["fingerprint"]),
            build_seconds=float(header["build_seconds"]),
            area_code=self.area_code,
        )

    # ------------------------------------------------------------------ writing

    def save(self, index: ContactIndex, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Write ``index`` (one built from the book's file: it has a fingerprint) atomically,
        temp file then rename. Runs on the watcher's thread in steps of ``STEP`` contacts;
        False if it did not write (nothing to write, cancelled, or the disk refused)."""
        by_key, records = index.packed()
        if not index.fingerprint or not isinstance(records, tuple):
            return False  # unsaved contacts of an open book, or already a stored index
        # One agent per store (its instance lock): a fixed name, so a write cut short by a
        # kill leaves one file behind at most, overwritten by the next save.
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        try:
            offsets, keys, slots, other = _layout(by_key, records, cancelled)
            header = json.dumps({
                "format": FORMAT, "code": code_stamp(), "byteorder": sys.byteorder,
                "source": self.source, "area_code": self.area_code,
                "fingerprint": _stamp_of(index.fingerprint), "mtime": index.mtime,
                "build_seconds": index.build_seconds, "contacts": len(records),
                "keys": len(keys), "blob": offsets[-1], "other": other,
                "managers": dict(index.managers),
                "manager_names": dict(getattr(index.managers, "names", {})),
                "warnings": [[w.en, w.ru] for w in index.warnings],
            }, ensure_ascii=False).encode()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                crc = 0
                head = _HEAD.pack(MAGIC, len(header)) + header
                head += b"\0" * (_aligned(len(head)) - len(head))
                for part in (head, offsets, keys, slots):
                    crc = zlib.crc32(part, crc)
                    fh.write(part)
                for part in _steps(len(records), cancelled):
                    chunk = b"".join(records[part])
                    crc = zlib.crc32(chunk, crc)
                    fh.write(chunk)
                fh.write(_CRC.pack(crc))
            os.replace(tmp, self.path)
            return True
        except _Cancelled:
            pass
        except (OSError, ValueError) as exc:  # a full or read-only disk: the next start parses
            log.warning("%s", Text(f"cannot save the contacts index {self.path}: {exc}",
                                   f"не удалось сохранить индекс контактов {self.path}: {exc}"))
        tmp.unlink(missing_ok=True)
        return False


class _Cancelled(Exception):
    pass


def _aligned(n: int) -> int:
    return (n + 7) & ~7


def _steps(n: int, cancelled: Callable[[], bool], step: int = STEP) -> Iterator[slice]:
    """Slices of ``step`` items over ``n``, with a pause before each: the lock goes to a
    waiting decision at once, not after the interpreter's 5 ms switch interval."""
    for k in range(0, n, step):
        time.sleep(PAUSE)
        if cancelled():
            raise _Cancelled
        yield slice(k, k + step)


def _layout(
    by_key: Mapping[int | str, Record], records: Sequence[Record], cancelled: Callable[[], bool]
) -> tuple[array, array, array, list]:
    """(offsets, sorted int slots, their record numbers, [[other slot, number]]).

    Each step is a few C calls over ``STEP`` items (about a millisecond): no Python loop
    per contact, no tuple per contact (a million tracked tuples cost a 100 ms garbage
    collection) and no dict of a million (its last resize holds the lock 35 ms). A record's
    number is found from its sheet row (records are in row order, one per row) by bisection;
    a slot and its number travel as one int, ``slot << shift | number``, sorted in runs and
    merged in batches."""
    rows = array("q")
    for part in _steps(len(records), cancelled):
        rows.extend(map(record_row, records[part]))
    shift = max(len(records), 1).bit_length()
    other: list = []
    runs = []
    slots_, values = iter(by_key), iter(by_key.values())  # the same order: an unchanged dict
    for _part in _steps(len(by_key), cancelled):
        keys = list(islice(slots_, STEP))
        wanted = list(map(record_row, islice(values, STEP)))
        found = list(map(bisect_left, repeat(rows), wanted))
        if list(map(rows.__getitem__, found)) != wanted:
            raise ValueError("records are not in sheet-row order")
        try:
            array("q", keys)  # all of them int and in range: the usual case, in C
        except (TypeError, OverflowError):
            text = [j for j, k in enumerate(keys) if not (type(k) is int and _fits(k))]
            other += [[keys[j], found[j]] for j in text]
            keep = set(text)
            keys = [k for j, k in enumerate(keys) if j not in keep]
            found = [f for j, f in enumerate(found) if j not in keep]
        runs.append(sorted(map(operator.or_, map(operator.lshift, keys, repeat(shift)), found)))
    merged = heapq.merge(*runs)
    keys_out, numbers = array("q"), array("q")
    mask = (1 << shift) - 1
    for _part in _steps(sum(map(len, runs)), cancelled, MERGE_STEP):  # Python: smaller
        batch = list(islice(merged, MERGE_STEP))
        keys_out.extend(map(operator.rshift, batch, repeat(shift)))
        numbers.extend(map(operator.and_, batch, repeat(mask)))
    offsets = array("q", [0])
    for part in _steps(len(records), cancelled):
        ends = accumulate(map(len, records[part]), initial=offsets[-1])
        next(ends)  # the initial value: already the last offset
        offsets.extend(ends)
    return offsets, keys_out, numbers, other


def _fits(slot: int) -> bool:
    return _INT64[0] <= slot <= _INT64[1]


class PackedRecords(Sequence):  # type: ignore[type-arg]
    """The records of a stored index, sliced out of the file's bytes on demand."""

    __slots__ = ("_base", "_data", "_offsets")

    def __init__(self, data: mmap.mmap | bytes, base: int, offsets: memoryview):
        self._data, self._base, self._offsets = data, base, offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def parts(self) -> tuple[mmap.mmap | bytes, int, memoryview]:
        """(the file's bytes, where the blob starts, the records' offsets in it)."""
        return self._data, self._base, self._offsets

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("record number out of range")
        base, offsets = self._base, self._offsets
        return self._data[base + offsets[i] : base + offsets[i + 1]]

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))


class PackedKeys(Mapping):  # type: ignore[type-arg]
    """Phone slot → record of a stored index: sorted int64 slots found by bisection
    (well under a microsecond at a million), text slots in a small dict. ``get`` is on
    every decision's path, so it slices the record itself rather than call through
    ``PackedRecords``."""

    __slots__ = (
        "_base",
        "_count",
        "_data",
        "_keys",
        "_offsets",
        "_other",
        "_records",
        "_slots",
    )

    def __init__(self, keys: memoryview, slots: memoryview, records: PackedRecords,
                 other: dict[int | str, int]):
        self._keys, self._count, self._slots, self._other = keys, len(keys), slots, other
        self._records = records
        self._data, self._base, self._offsets = records.parts()

    def get(self, slot, default=None):  # type: ignore[no-untyped-def, override]
        if type(slot) is int:
            keys = self._keys
            i = bisect_left(keys, slot)
            if i < self._count and keys[i] == slot:
                j, base, offsets = self._slots[i], self._base, self._offsets
                return self._data[base + offsets[j] : base + offsets[j + 1]]
        i = self._other.get(slot) if self._other else None
        return default if i is None else self._records[i]

    def __getitem__(self, slot: int | str) -> Record:
        record = self.get(slot)
        if record is None:
            raise KeyError(slot)
        return record

    def __contains__(self, slot: object) -> bool:
        return self.get(slot) is not None

    def __len__(self) -> int:
        return len(self._keys) + len(self._other)

    def __iter__(self) -> Iterator[int | str]:
        yield from self._keys
        yield from self._other
