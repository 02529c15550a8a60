"""The local API's worker threads (``agent/api.py``): started on demand, reused, bounded.

Their own module so the HTTP server that uses them stays small; the team API
(``team/api.py``) serves through the same server, so through these too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pz_excel.agent.api")


class Workers:
    """Daemon threads that serve connections: started on demand, reused, bounded.

    Starting a thread costs about as much as serving a request (and more on a busy machine),
    so threads are reused, and they are started by a helper thread so that the accept loop
    never waits for one: a burst is served by whichever workers are free first. Idle
    workers end after ``linger`` seconds. Invariant, under the lock: workers waiting for a
    job + ``_wanted`` == ``_idle`` + jobs queued - ``_owed``.
    """

    def __init__(self, limit: int, linger: float = 30.0):
        self._limit = limit
        self._linger = linger
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Condition()
        self._idle = 0  # waiting workers no job is promised to
        self._wanted = 0  # workers asked of the starter, not started yet
        self._owed = 0  # jobs queued when no more workers may start: the next free one
        self._threads: set[threading.Thread] = set()
        self._starter: threading.Thread | None = None
        self._started = 0
        self._stopping = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) + self._wanted < self._limit and not self._stopping:
                if self._starter is None:
                    starter = threading.Thread(
                        target=self._start_workers, name="pz-api-starter", daemon=True
                    )
                    starter.start()  # may raise: then nothing was promised or queued
                    self._starter = starter
                self._wanted += 1
                self._lock.notify()
            else:
                self._owed += 1
            self._jobs.put((fn, args))

    def _start_workers(self) -> None:
        while True:
            with self._lock:
                while not self._wanted and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                self._wanted -= 1
                self._started += 1
                thread = threading.Thread(
                    target=self._run, name=f"pz-api-conn-{self._started}", daemon=True
                )
                self._threads.add(thread)
            try:
                thread.start()
            except RuntimeError as exc:  # out of threads: the job waits for a free worker
                log.warning("API: cannot start a worker thread (%s)", exc)
                with self._lock:
                    self._threads.discard(thread)
                    self._owed += 1

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._jobs.get(timeout=self._linger)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # a spare: no job is promised to it
                        self._idle -= 1
                        self._threads.discard(me)
                        return
                continue
            if job is None:  # stop
                with self._lock:
                    self._threads.discard(me)
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # a worker outlives any one connection
                log.error("API worker failed", exc_info=True)
            with self._lock:
                if self._owed:
                    self._owed -= 1
                else:
                    self._idle += 1

    def stop(self, timeout: float) -> None:
        """Let queued and running jobs finish (up to ``timeout`` seconds), then end."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            starter = self._starter
        if starter is not None:
            starter.join(timeout)
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)  # after every queued job
        for thread in threads:
            if thread is not threading.current_thread():  # a handler may stop the API
                thread.join(max(0.0, deadline - time.monotonic()))
