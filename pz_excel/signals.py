"""SIGTERM as a polite stop for the long-running commands (``run``, ``team run``, the test
connector): ``kill`` and service managers stop them as cleanly as Ctrl+C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_sets(event: threading.Event) -> Iterator[threading.Event]:
    """While inside, SIGTERM sets ``event`` instead of killing the process.

    Enter it *before* starting anything that announces itself: a supervisor that sees the
    first "connected" line may stop us at once, and a SIGTERM that arrives before the
    handler is in place ends the process without its clean stop (seen in CI as exit -15).
    Only the main thread may install handlers; elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "SIGTERM"
    ):
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)
