"""Who hears what the connection brings: callbacks by kind (events, states, unknown
elements, decode errors), called on one delivery thread in arrival order, so a slow
subscriber never delays the socket. A callback that raises is logged; the others run."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from pz_excel.connector.lifetime import END_OF_DISPATCH

#: The kinds of item a dispatch queue carries, as ``(kind, payload)``.
KINDS = ("event", "state", "message", "decode_error")


class Delivery:
    """The callbacks of one client, by kind. Adding and removing is thread-safe."""

    def __init__(self, log: logging.Logger, on_decode_error: Callable[[Any], None] | None):
        self._log = log  # the client's: its log lines keep one name
        self._lock = threading.Lock()
        self._fns: dict[str, tuple[Callable[[Any], None], ...]] = dict.fromkeys(KINDS, ())
        if on_decode_error is not None:
            self._fns["decode_error"] = (on_decode_error,)

    def add(self, kind: str, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``fn`` for every item of ``kind``. Returns the function that stops it."""
        with self._lock:
            self._fns[kind] = (*self._fns[kind], fn)

        def remove() -> None:
            with self._lock:
                fns = list(self._fns[kind])
                if fn in fns:
                    fns.remove(fn)
                    self._fns[kind] = tuple(fns)

        return remove

    def run(self, items: queue.SimpleQueue[Any]) -> None:
        """Deliver ``(kind, payload)`` items until ``END_OF_DISPATCH``."""
        while True:
            item = items.get()
            if item is END_OF_DISPATCH:
                return
            kind, payload = item
            for fn in self._fns[kind]:
                try:
                    fn(payload)
                except Exception:  # noqa: BLE001 - one bug must not stop delivery
                    self._log.exception("connector %s callback %r failed", kind, fn)
