"""OS file locks: one agent per extension and workbook (held for the agent's lifetime),
and one writer of a workbook file at a time (held for one save).

A lock (not a pid file) cannot go stale: the OS drops it when the process dies, even on
kill -9, so a restarted agent never has to guess whether the old one is still there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, path: Path):
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for its holder to let go."""
        fh = open(self.path, "a+", encoding="utf-8")
        deadline = time.monotonic() + wait
        while True:
            try:
                _try_lock(fh)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    fh.close()
                    raise AlreadyRunning(str(self.path)) from exc
                time.sleep(0.005)  # a holder's save takes milliseconds
        self._fh = fh

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _try_lock(fh: IO[str]) -> None:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
