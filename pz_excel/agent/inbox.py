"""Journal first, but never at the caller's cost: what could not be stored yet waits here.

The agent stores every event before it acts on it. When the journal cannot be written —
the disk is full, the file system went read-only, the disk is failing — the caller must
still be answered: the transfer is sent, and the store waits in memory, in order, bounded,
and is retried by the writer thread until it goes through. Once anything waits, later
stores queue behind it, so the journal keeps the order in which events arrived.

What is promised (docs/reliability.md): up to ``LIMIT`` stores wait (about 1 KB each);
past that, new ones are counted as lost and said in the log — the one case where an event
read from the connector is not kept. The user is told plainly while anything waits: the
log, ``pz-excel status`` and the ribbon's Status say "N events waiting to be saved: …".
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from pz_excel.agent.sqldb import storage_errors
from pz_excel.i18n import Text

log = logging.getLogger("pz_excel.agent.inbox")

#: Stores that may wait in memory while the journal cannot be written.
LIMIT = 100_000
# What a failing store raises (SQLite's "database or disk is full", "disk I/O error",
# "attempt to write a readonly database", the OS's own, PostgreSQL's once loaded) is
# ``sqldb.storage_errors()``, which each ``except`` below evaluates when an exception
# reaches it.

Store = Callable[[], Any]


class Inbox:
    """Runs stores now when it can, later (in order) when it cannot."""

    def __init__(self, limit: int = LIMIT, on_stored: Callable[[Any], None] | None = None,
                 on_failing: Callable[[Text], None] | None = None):
        self.limit = limit
        self._on_failing = on_failing  # told once per episode (the agent shows a toast)
        self._waiting: deque[Store] = deque()
        self._lock = threading.Lock()
        self._on_stored = on_stored  # told each late store's result (a changed call row)
        self.error: str = ""  # why the journal refuses, while anything waits
        self.lost = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def store(self, fn: Store) -> tuple[bool, Any]:
        """Run ``fn`` (a journal write) now: (True, its result); or keep it for later:
        (False, None)."""
        with self._lock:
            if not self._waiting:
                try:
                    return True, fn()
                except storage_errors() as exc:
                    self._failing(exc)
            if len(self._waiting) >= self.limit:
                self.lost += 1
                if self.lost == 1 or self.lost % 1000 == 0:
                    log.error("%s", Text(
                        f"{self.lost} events lost: {self.limit} already wait to be saved "
                        f"({self.error})",
                        f"потеряно событий: {self.lost} — сохранения уже ждут {self.limit} "
                        f"({self.error})"))
                return False, None
            self._waiting.append(fn)
            return False, None

    def retry(self) -> int:
        """Store what waits, in order, until one fails again. Returns how many went in.
        The lock is taken per store, so a caller's new store never waits behind the lot."""
        done = 0
        while True:
            with self._lock:
                if not self._waiting:
                    break
                try:
                    result = self._waiting[0]()
                except storage_errors() as exc:
                    self.error = _reason(exc)
                    return done
                self._waiting.popleft()
            done += 1
            if self._on_stored is not None:
                self._on_stored(result)
        if done:
            log.warning("%s", Text(f"journal writable again: {done} waiting events saved",
                                   f"журнал снова доступен: сохранено событий: {done}"))
            self.error = ""
        return done

    def status(self) -> Text | None:
        """What the user should know, or None when all is stored."""
        n = len(self._waiting)
        if not n and not self.lost:
            return None
        lost_en = f"; {self.lost} lost" if self.lost else ""
        lost_ru = f"; потеряно: {self.lost}" if self.lost else ""
        return Text(f"{n} events waiting to be saved: {self.error}{lost_en}",
                    f"событий ждут сохранения: {n} — {self.error}{lost_ru}")

    def _failing(self, exc: BaseException) -> None:
        self.error = _reason(exc)
        text = Text(
            f"the journal cannot be written ({self.error}): calls are still answered, and "
            "events wait in memory until it can be written again",
            f"журнал не записывается ({self.error}): звонки по-прежнему обрабатываются, "
            "события ждут в памяти, пока запись не станет возможной")
        log.error("%s", text)
        if self._on_failing is not None:
            try:
                self._on_failing(text)
            except Exception:  # telling the user must not lose the event
                log.debug("could not tell the user", exc_info=True)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "full" in text.lower() or getattr(exc, "errno", None) == 28:  # ENOSPC
        return "disk full"
    return text
