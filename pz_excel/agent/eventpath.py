"""The way of an event from the socket to the journal, and a caller's answer.

1. The connector's reading thread hands each message that holds events to ``on_frame``,
   which decides its transfer requests (a few dictionary lookups) and stores the message
   **as received** with those decisions in the journal — one commit, shared by the
   messages read back to back with it (group commit: a replay of thousands of calls costs
   a few commits) — before anything else: a kill -9 after that loses none of its events.
   Then:
2. the transfers are sent at once from that thread (a caller waits for one commit, and
   never behind a backlog of call history); logging them and their answers happens on a
   lane of their own (``pz-transfers``);
3. the other events go to a bounded queue for ``pz-events``, which applies them (log and
   call row in one transaction, marking the message applied with its last event). When
   the queue is full, a message's events are not queued at all: they are in the journal
   already, and ``pz-events`` applies them from there once it has caught up. Memory stays
   bounded under a flood, and a clean stop under load discards nothing.

At start-up the messages a killed agent stored but never applied are applied first (by
``pz-events``, while the connection is already up: a backlog never delays it). When
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
from typing import Any

from pz_excel.agent.inbox import Inbox
from pz_excel.agent.journal import Journal
from pz_excel.protocol import codec as protocol

log = logging.getLogger("pz_excel.agent.eventpath")

#: Events that may wait in memory for ``pz-events``; past this they wait in the journal.
QUEUE_BOUND = 20_000
#: Messages read back to back that are stored in one commit (see ``on_frame``); a kill
#: loses at most these, read but not stored — as it loses what the socket still holds.
GROUP = 256

Apply = Callable[[protocol.Event, "int | None"], None]
#: A transfer request's decision, and the journal entry that records it: (kind, payload).
Decide = Callable[[protocol.Event], tuple[Any, tuple[str, dict]]]


class EventPath:
    """``on_frame`` runs on the connector's reading thread, with ``decide(event)`` and
    ``send(event, decision)`` for transfer requests; ``apply(event, frame)`` and
    ``answered(event, decision, sent)`` run on this object's two threads."""

    def __init__(self, journal: Journal, inbox: Inbox, *, apply: Apply, decide: Decide,
                 send: Callable[[protocol.Event, Any], Any],
                 answered: Callable[[protocol.Event, Any, Any], None],
                 bound: int = QUEUE_BOUND) -> None:
        self._journal = journal
        self._inbox = inbox
        self._apply = apply
        self._decide = decide
        self._send = send
        self._answered = answered
        self._bound = bound
        self._urgent: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._group: list[tuple[str, list, list[protocol.Event]]] = []  # read, not stored yet
        self._group_lock = threading.Lock()
        self._queue: deque[tuple[protocol.Event, int | None]] = deque()
        self._ready = threading.Condition()
        self._behind_to = 0  # stored messages up to this seq may have events not queued
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.caught_up = 0  # messages applied from the journal rather than from memory
        self._start_backlog = 0  # stored before this start, not applied: pz-events' first job

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the lanes; ``pz-events`` first applies what a previous run stored but never
        applied (up to the newest message stored before this start), then what comes in —
        in the background: a killed agent's backlog must not keep the connector waiting
        (a team server taking over after its leader died connects at once)."""
        self._start_backlog = self._journal.last_frame()
        for name, target in (("pz-transfers", self._transfers), ("pz-events", self._events)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: what is still queued is in the journal and applied at the next start
        (what was read but not stored yet is stored first)."""
        self.flush()
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
        """A message as received. One with a transfer request is stored at once (with the
        messages read just before it: one commit) and answered; others wait to be stored
        together until the socket has nothing more ready (``flush``, the connector's idle
        hook) or ``GROUP`` of them came in a row. So a burst — the connector replaying
        thousands of calls after a reconnect — costs a few commits, and a caller's request
        behind it waits for one commit, not thousands. Nothing is acted on before it is
        stored."""
        rest = [e for e in events if e.type != protocol.EventType.TRANSFER_REQUEST]
        decided = []
        for event in events:
            if event.type == protocol.EventType.TRANSFER_REQUEST:
                try:
                    decided.append((event, *self._decide(event)))
                except Exception:  # one bad request must not lose the message
                    log.exception("transfer request %s not decided", event.call_id)
        with self._group_lock:
            self._group.append((raw, decided, rest))
            due = bool(decided) or len(self._group) >= GROUP
        if due:
            self.flush()

    def flush(self) -> None:
        """Store the messages read so far in one commit, then answer and queue them."""
        with self._group_lock:
            group, self._group = self._group, []
        if not group:
            return
        journal = self._journal
        items = [(raw, [(event, entry) for event, _decision, entry in decided], not rest)
                 for raw, decided, rest in group]
        stored, seqs = self._inbox.store(lambda: journal.record_frames(items))
        for _raw, decided, _rest in group:  # stored (or waiting): the callers' answers
            for event, decision, _entry in decided:
                try:
                    self._urgent.put((event, decision, self._send(event, decision)))
                except Exception:
                    log.exception("transfer request %s not answered", event.call_id)
        if not stored:  # waits in the inbox: its events go from the journal once it is in
            if any(rest for _raw, _decided, rest in group):
                self._inbox.store(self._behind_latest)
            return
        with self._ready:
            for seq, (_raw, _decided, rest) in zip(seqs, group, strict=True):
                if not rest:
                    continue
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
            item = self._urgent.get()
            if item is None:
                return
            try:
                self._answered(*item)
            except Exception:  # one bad request must not stop the lane
                log.exception("transfer request %s: logging its answer failed", item[0].call_id)

    def _events(self) -> None:
        if self._start_backlog:
            try:
                self._catch_up(self._start_backlog)
            except Exception:  # the journal keeps them: the next start tries again
                log.exception("applying the previous run's stored messages failed")
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

    def _catch_up(self, up_to: int | None) -> None:
        """Apply stored messages that are not applied yet (up to seq ``up_to``). Their
        transfer requests were stored with the message, with the decision; the caller was
        answered then (or is long gone), so they are not answered again."""
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
                if not rest:
                    self._inbox.store(lambda s=seq: journal.frame_applied(s))
                for i, event in enumerate(rest):
                    self._apply_one(event, seq if i == len(rest) - 1 else None)
                self.caught_up += 1
