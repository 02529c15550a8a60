"""The way of an event from the socket to the journal, and a caller's answer.

1. The connector's reading thread hands each message that holds events to ``on_frame``,
   which stores it **as received** in the journal (one commit) before anything else: a
   kill -9 after that loses none of its events. Then:
2. transfer requests go to a lane of their own (``pz-transfers``): a caller never waits
   behind a backlog of call history;
3. the other events go to a bounded queue for ``pz-events``, which applies them (log and
   call row in one transaction, marking the message applied with its last event). When
   the queue is full, a message's events are not queued at all: they are in the journal
   already, and ``pz-events`` applies them from there once it has caught up. Memory stays
   bounded under a flood, and a clean stop under load discards nothing.

At start-up the messages a killed agent stored but never applied are applied first. When
the journal cannot be written (disk full) the message waits in the agent's inbox instead;
its events are applied from the journal once it is in, and transfer requests are answered
meanwhile all the same.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable

from pz_excel.agent.inbox import Inbox
from pz_excel.agent.journal import Journal
from pz_excel.protocol import codec as protocol

log = logging.getLogger("pz_excel.agent.eventpath")

#: Events that may wait in memory for ``pz-events``; past this they wait in the journal.
QUEUE_BOUND = 20_000

Apply = Callable[[protocol.Event, "int | None"], None]


class EventPath:
    """``on_frame`` runs on the connector's reading thread; ``apply(event, frame)`` and
    ``answer(event)`` run on this object's two threads."""

    def __init__(self, journal: Journal, inbox: Inbox, *, apply: Apply,
                 answer: Callable[[protocol.Event], None], bound: int = QUEUE_BOUND) -> None:
        self._journal = journal
        self._inbox = inbox
        self._apply = apply
        self._answer = answer
        self._bound = bound
        self._urgent: queue.SimpleQueue[protocol.Event | None] = queue.SimpleQueue()
        self._queue: deque[tuple[protocol.Event, int | None]] = deque()
        self._ready = threading.Condition()
        self._behind_to = 0  # stored messages up to this seq may have events not queued
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.caught_up = 0  # messages applied from the journal rather than from memory

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Apply what a previous run stored but never applied, then start the lanes."""
        self._catch_up(None, startup=True)
        for name, target in (("pz-transfers", self._transfers), ("pz-events", self._events)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: what is still queued is in the journal and applied at the next start."""
        self._stopping.set()
        self._urgent.put(None)
        with self._ready:
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ reading thread

    def on_frame(self, raw: str, events: list[protocol.Event]) -> None:
        journal = self._journal
        stored, seq = self._inbox.store(lambda: journal.record_frame(raw))
        rest = [e for e in events if e.type != protocol.EventType.TRANSFER_REQUEST]
        for event in events:
            if event.type == protocol.EventType.TRANSFER_REQUEST:
                self._urgent.put(event)
        if not stored:  # waits in the inbox: its events go from the journal once it is in
            self._inbox.store(self._behind_latest)
            return
        if not rest:
            self._inbox.store(lambda: journal.frame_applied(seq))
            return
        with self._ready:
            if len(self._queue) + len(rest) > self._bound:
                self._behind_to = max(self._behind_to, seq)  # applied from the journal
            else:
                for i, event in enumerate(rest):
                    self._queue.append((event, seq if i == len(rest) - 1 else None))
            self._ready.notify()

    def _behind_latest(self) -> None:
        """A message stored late (from the inbox): the journal has it, apply from there."""
        with self._ready:
            self._behind_to = 1 << 62
            self._ready.notify()

    # ------------------------------------------------------------------ the lanes

    def _transfers(self) -> None:
        while True:
            event = self._urgent.get()
            if event is None:
                return
            try:
                self._answer(event)
            except Exception:  # one bad request must not stop the lane
                log.exception("transfer request %s not answered", event.call_id)

    def _events(self) -> None:
        while not self._stopping.is_set():
            with self._ready:
                while not self._queue and not self._behind_to and not self._stopping.is_set():
                    self._ready.wait(1.0)
                item = self._queue.popleft() if self._queue else None
                behind = self._behind_to if item is None else 0
                if behind:
                    self._behind_to = 0
            if self._stopping.is_set():
                return
            try:
                if item is not None:
                    self._apply_one(*item)
                elif behind:
                    self._catch_up(behind)
            except Exception:  # the lane must outlive any surprise; the journal has it all
                log.exception("applying events failed; they stay in the journal")
                with self._ready:
                    self._behind_to = max(self._behind_to, behind)

    def _apply_one(self, event: protocol.Event, frame: int | None) -> None:
        try:
            self._apply(event, frame)
        except Exception:  # the event is in the journal; a mapping bug must not stop the lane
            log.exception("event %s of call %s not applied", event.type, event.call_id)

    def _catch_up(self, up_to: int | None, startup: bool = False) -> None:
        """Apply stored messages that are not applied yet (up to seq ``up_to``). At start-
        up their transfer requests are only logged: the caller is long gone."""
        after = 0  # each message once per pass, even if its events wait in the inbox
        journal = self._journal
        while not self._stopping.is_set():
            try:
                frames = journal.open_frames(after, up_to)
            except Exception:  # the journal unreadable: try again with the next message
                log.exception("stored messages could not be read back")
                return
            if not frames:
                return
            for seq, raw in frames:
                after = seq
                events = [m for m in protocol.decode_frame(raw) if isinstance(m, protocol.Event)]
                rest = [e for e in events if e.type != protocol.EventType.TRANSFER_REQUEST]
                if startup:
                    for event in events:
                        if event.type == protocol.EventType.TRANSFER_REQUEST:
                            self._inbox.store(lambda e=event: journal.record_event(e))
                if not rest:
                    self._inbox.store(lambda s=seq: journal.frame_applied(s))
                for i, event in enumerate(rest):
                    self._apply_one(event, seq if i == len(rest) - 1 else None)
                self.caught_up += 1
