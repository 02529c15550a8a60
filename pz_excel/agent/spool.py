"""The journal's front door: connector messages appended to a plain file before a caller's
transfer request is answered; the journal's SQLite commit follows the answer.

Why: the commit (three inserts and a WAL write, ~0.3 ms on an idle machine, more when
``pz-events`` holds the connection) stood between every caller and the answer. One
``write()`` to an open file costs a few microseconds and keeps the same promise the commit
kept at ``synchronous=NORMAL``: what was written survives the process being killed (the
kernel has it); a power cut may lose the last writes of either. So "stored before acted on"
holds, and the caller waits for one write, not for SQLite.

The file (``<journal>-spool``) starts with a header naming its *generation*; each record is
``<length, crc32>`` + JSON ``{"raw", "decided": [[call ID, kind, payload], ...], "applied"}``
(a transfer request's decision, by the request's call ID). The
journal commits a record's messages together with a mark (generation, end offset) in one
transaction, so a replay after a crash never stores a message twice. Once everything
written is committed the file is cut back to a fresh header (a new generation): it stays a
few kilobytes. A record cut short (a crash mid-write, a full disk) ends the replay: it was
never acted on, since the answer follows a complete write.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

MAGIC = b"PZSPOOL1"
_HEADER = len(MAGIC) + 16 + 1  # magic, generation (16 hex digits), newline
_RECORD = struct.Struct("<II")  # payload length, crc32 of the payload

#: One message: (raw, [(request's call ID, kind, payload), ...], all its events handled).
Entry = tuple[str, list[tuple[str, str, dict]], bool]


class Spool:
    """Append-only, one writer (the connector's reading thread; a lock for the commit side)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # O_BINARY: Windows would otherwise turn every "\n" written into "\r\n".
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o600)
        try:
            head = self._read_locked(_HEADER)
            if len(head) == _HEADER and head.startswith(MAGIC) and head.endswith(b"\n"):
                self.generation = head[len(MAGIC):-1].decode("ascii")
            else:  # new, or no valid header: nothing in it can be read back anyway
                self._fresh_locked()
            self._size = os.fstat(self._fd).st_size
            self._committed = _HEADER
        except BaseException:
            os.close(self._fd)
            raise

    # ------------------------------------------------------------------ the reading thread

    def append(self, entries: Sequence[Entry]) -> tuple[str, int]:
        """Write the messages as one ``write()``; (generation, end offset) to commit with
        them. Raises ``OSError`` (a full disk): then nothing of them is in the file."""
        buf = b"".join(_record(entry) for entry in entries)
        with self._lock:
            written = os.write(self._fd, buf)
            if written != len(buf):  # a short write (disk full): take it back
                os.ftruncate(self._fd, self._size)
                raise OSError(28, f"no space left on the device (spool {self.path})")
            self._size += written
            return self.generation, self._size

    # ------------------------------------------------------------------ the commit side

    def committed(self, generation: str, end: int) -> None:
        """The journal holds everything up to ``end``: when that is all of it, start over."""
        with self._lock:
            if generation != self.generation:
                return
            self._committed = max(self._committed, end)
            if self._committed >= self._size:
                self._fresh_locked()

    def pending(self, mark: tuple[str, int] | None) -> tuple[list[Entry], int]:
        """Records not covered by the journal's ``mark`` (its last committed generation and
        offset), and the offset they end at; stops at the first damaged record."""
        with self._lock:
            data = self._read_locked(self._size)
        return _records(data, mark)

    def reset(self) -> None:
        """Start over (everything readable is in the journal; a damaged tail goes too)."""
        with self._lock:
            self._fresh_locked()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _read_locked(self, size: int) -> bytes:
        """The file's first ``size`` bytes (no ``os.pread``: Windows has none; appends go to
        the end whatever the position, O_APPEND)."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks, left = [], size
        while left > 0:
            chunk = os.read(self._fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _fresh_locked(self) -> None:
        """Cut the file back to a header with a new generation (all of it is committed)."""
        self.generation = secrets.token_hex(8)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, MAGIC + self.generation.encode("ascii") + b"\n")
        self._size = self._committed = _HEADER


def peek(path: Path, mark: tuple[str, int] | None) -> list[Entry]:
    """What a stopped agent's spool holds past the journal's ``mark``, the file untouched
    (a check after a kill -9: those messages were stored, the next start commits them)."""
    try:
        return _records(path.read_bytes(), mark)[0]
    except FileNotFoundError:
        return []


def _records(data: bytes, mark: tuple[str, int] | None) -> tuple[list[Entry], int]:
    head = data[:_HEADER]
    if len(head) != _HEADER or not head.startswith(MAGIC):
        return [], _HEADER
    generation = head[len(MAGIC):-1].decode("ascii")
    skip = mark[1] if mark is not None and mark[0] == generation else _HEADER
    entries: list[Entry] = []
    at = end = _HEADER
    while at + _RECORD.size <= len(data):
        length, crc = _RECORD.unpack_from(data, at)
        body = data[at + _RECORD.size:at + _RECORD.size + length]
        if len(body) != length or zlib.crc32(body) != crc:
            break  # cut short: never acted on (the answer follows a complete write)
        at += _RECORD.size + length
        if at > skip:
            item = json.loads(body)
            entries.append((item["raw"], [tuple(d) for d in item["decided"]],
                            bool(item["applied"])))
            end = at
    return entries, max(end, skip)


def _record(entry: Entry) -> bytes:
    raw, decided, applied = entry
    body = json.dumps({"raw": raw, "decided": decided, "applied": applied},
                      ensure_ascii=False, default=str).encode("utf-8")
    return _RECORD.pack(len(body), zlib.crc32(body)) + body


def spool_path(journal: Path) -> Path:
    return Path(f"{journal}-spool")

