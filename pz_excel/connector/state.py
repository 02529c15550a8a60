"""What the connection is doing, as the user sees it, and the error a request fails with."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pz_excel.i18n import Text
from pz_excel.protocol.closing import CloseInfo

CONNECTING = "connecting"
CONNECTED = "connected"
RETRYING = "retrying"
STOPPED = "stopped"


@dataclass(frozen=True)
class ConnectionState:
    """What the connection is doing, as shown to the user."""

    kind: str  # "connecting" | "connected" | "retrying" | "stopped"
    text: Text
    retry_in: float | None = None
    close: CloseInfo | None = None
    since: float = 0.0  # time.time()

    @property
    def connected(self) -> bool:
        return self.kind == CONNECTED


class ConnectorError(Exception):
    """A request could not be answered: not connected, timed out, connection lost, stopped."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text

    def __str__(self) -> str:
        return str(self.text)



class StateHistory:
    """The current state and the last 64, so a waiter misses no short-lived state.
    ``lock`` is the owner's: hold it to call :meth:`set`; :meth:`wait` takes it."""

    def __init__(self, lock: threading.Lock, first: ConnectionState):
        self._cond = threading.Condition(lock)
        self.current = first
        self._seq = 0
        self._history: deque[tuple[int, ConnectionState]] = deque(maxlen=64)

    def set(self, state: ConnectionState) -> None:
        self.current = state
        self._seq += 1
        self._history.append((self._seq, state))
        self._cond.notify_all()

    def wait(
        self, predicate: Callable[[ConnectionState], bool], timeout: float
    ) -> ConnectionState | None:
        """The first state (the current one or any later) that satisfies ``predicate``;
        ``None`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if predicate(self.current):
                return self.current
            seen = self._seq
            while True:
                for seq, st in self._history:
                    if seq > seen and predicate(st):
                        return st
                seen = self._seq
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


def not_connected_text(state: ConnectionState) -> Text:
    """Why a request failed at once: the connection's state says."""
    return Text(
        f"not connected to the connector ({state.text.en})",
        f"нет соединения с коннектором ({state.text.ru})",
    )


def timed_out_text(timeout: float) -> Text:
    return Text(
        f"no answer from the connector within {timeout:g} s",
        f"коннектор не ответил за {timeout:g} с",
    )
