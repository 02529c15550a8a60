"""The way of an event from the socket to the journal, and a caller's answer.

1. The connector's reading thread hands each message that holds events to ``on_frame``,
   which decides its transfer requests (a few dictionary lookups) and stores the message
   **as received** with those decisions — appended to the journal's spool (``spool.py``:
   one ``write()``, the promise of a WAL commit at a fraction of its cost), shared by the
   messages read back to back with it — before anything else: a kill -9 after that loses
   none of its events. Then:
2. the transfers are sent at once from that thread (a caller waits for one write, never
   for SQLite nor behind a backlog of call history), and the same messages are committed
   to the journal (group commit: a replay of thousands of calls costs a few commits; the
   spool's mark in the same commit). Without a spool (a PostgreSQL journal, a full disk)
   the commit comes first, as the answer's condition. Logging the transfers and their
   answers happens on a lane of their own (``pz-transfers``);
3. the other events go to a bounded queue for ``pz-events``, which applies them (log and
   call row in one transaction, marking the message applied with its last event). When
   the queue is full, a message's events are not queued at all: they are in the journal
   already, and ``pz-events`` applies them from there once it has caught up. Memory stays
   bounded under a flood, and a clean stop under load discards nothing.

At start-up what a killed agent left in the spool goes into the journal, and the messages
it stored but never applied are applied first (by
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
from pz_excel.agent.spool import Spool, spool_path
from pz_excel.protocol import codec as protocol

log = logging.getLogger("pz_excel.agent.eventpath")

#: Events that may wait in memory for ``pz-events``; past this they wait in the journal.
QUEUE_BOUND = 20_000
#: How long the reading thread waits for a commit-first store (no spool) behind pz-store.
STORE_WAIT = 30.0
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
        self._to_store: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._group: list[tuple[str, list, list[protocol.Event]]] = []  # read, not stored yet
        self._group_lock = threading.Lock()
        self._queue: deque[tuple[protocol.Event, int | None]] = deque()
        self._ready = threading.Condition()
        self._behind_to = 0  # stored messages up to this seq may have events not queued
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.caught_up = 0  # messages applied from the journal rather than from memory
        self._start_backlog = 0  # stored before this start, not applied: pz-events' first job
        self._spool: Spool | None = None
        self._spool_failing = False  # said once per spell of a full disk

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the lanes; ``pz-events`` first applies what a previous run stored but never
        applied (up to the newest message stored before this start), then what comes in —
        in the background: a killed agent's backlog must not keep the connector waiting
        (a team server taking over after its leader died connects at once)."""
        self._open_spool()
        self._start_backlog = self._journal.last_frame()
        lanes = (("pz-store", self._store), ("pz-transfers", self._transfers),
                 ("pz-events", self._events))
        for name, target in lanes:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: what is still queued is in the journal and applied at the next start
        (what was read but not stored yet is stored first)."""
        self.flush()
        self._to_store.put(None)  # what was read is committed before the lanes stop
        if self._threads:
            self._threads[0].join(timeout)
        self._stopping.set()
        self._urgent.put(None)
        with self._ready:
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        if self._spool is not None:
            self._spool.close()

    def _open_spool(self) -> None:
        """The spool next to a journal file, after what a killed run left in it is in the
        journal. If that cannot be done now (a full disk), this run goes without it, and
        the file is left alone for the next start: newer marks must never pass over it."""
        path = self._journal.path
        if path is None:
            return  # a database server's journal: committed before the answer, as before
        try:
            spool = Spool(spool_path(path))
        except OSError as exc:
            log.warning("no spool for %s (%s): answers wait for the journal's commit",
                        path, exc)
            return
        try:
            entries, end = spool.pending(self._journal.spool_mark())
            if entries and self._journal.fresh:  # the journal was moved away: not its own
                log.warning("%d messages in %s belong to a journal no longer there: "
                            "not stored", len(entries), spool.path)
                entries = []
            if entries:
                self._journal.record_frames([_from_spool(e) for e in entries],
                                            mark=(spool.generation, end))
                log.info("%d messages from the spool stored in the journal", len(entries))
            spool.reset()  # all of it is in the journal now (a damaged tail goes too)
        except Exception:  # kept for the next start; this run goes without
            log.exception("the spool %s could not be stored in the journal", spool.path)
            spool.close()
            return
        self._spool = spool

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
        """Store the messages read so far (spool), answer their callers, and hand them to
        ``pz-store`` for the journal's commit; without a spool, the commit comes first."""
        with self._group_lock:
            group, self._group = self._group, []
        if not group:
            return
        items = [(raw, [(event, entry) for event, _decision, entry in decided], not rest)
                 for raw, decided, rest in group]
        mark = self._spooled(group)
        if mark is None:  # no spool: committed (after what pz-store holds) before answering
            done = threading.Event()
            self._to_store.put((group, items, None, [], done))
            done.wait(STORE_WAIT)
        answers = []
        for _raw, decided, _rest in group:  # stored (or waiting): the callers' answers
            for event, decision, _entry in decided:
                try:
                    answers.append((event, decision, self._send(event, decision)))
                except Exception:
                    log.exception("transfer request %s not answered", event.call_id)
        if mark is not None:
            self._to_store.put((group, items, mark, answers, None))
        else:
            for answer in answers:
                self._urgent.put(answer)

    def _store(self) -> None:
        """``pz-store``: the journal's commits, off the reading thread (after the answers:
        on a two-core machine a commit beside the connector's read of our answer slowed
        it). What came meanwhile goes in one commit, in arrival order."""
        while True:
            batch = [self._to_store.get()]
            while True:
                try:
                    batch.append(self._to_store.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            batch = [b for b in batch if b is not None]
            while batch:  # spooled runs in one commit; a commit-first group on its own
                run = [batch.pop(0)]
                while batch and run[-1][2] is not None and batch[0][2] is not None:
                    run.append(batch.pop(0))
                try:
                    self._commit(run)
                except Exception:  # the lane must outlive any surprise: the spool has it
                    log.exception("messages not committed to the journal")
                finally:
                    for *_rest, done in run:
                        if done is not None:
                            done.set()
            if stop:
                return

    def _commit(self, run: list[tuple]) -> None:
        journal, spool = self._journal, self._spool
        group = [g for entry in run for g in entry[0]]
        items = [i for entry in run for i in entry[1]]
        mark = run[-1][2]

        def commit() -> list[int]:
            seqs = journal.record_frames(items, mark=mark)
            if mark is not None and spool is not None:
                spool.committed(*mark)
            return seqs

        stored, seqs = self._inbox.store(commit)
        for entry in run:  # the logging of the answers, once they are stored
            for answer in entry[3]:
                self._urgent.put(answer)
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

    def _spooled(self, group: list[tuple[str, list, list[protocol.Event]]]
                 ) -> tuple[str, int] | None:
        """Append the group to the spool: (generation, end) to commit it with; None when
        there is no spool or the write failed (then the commit comes first, as before)."""
        spool = self._spool
        if spool is None:
            return None
        try:
            mark = spool.append([
                (raw, [(event.call_id, *entry) for event, _decision, entry in decided],
                 not rest) for raw, decided, rest in group])
        except OSError as exc:
            if not self._spool_failing:
                log.warning("spool not written (%s): answers wait for the journal", exc)
            self._spool_failing = True
            return None
        self._spool_failing = False
        return mark

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


def _from_spool(entry: tuple[str, list, bool]) -> tuple[str, list, bool]:
    """A spool record as ``Journal.record_frames`` takes it: each decision with its transfer
    request (found again in the message by its call ID)."""
    raw, decided, applied = entry
    requests = {e.call_id: e for e in protocol.decode_frame(raw)
                if isinstance(e, protocol.Event)
                and e.type == protocol.EventType.TRANSFER_REQUEST}
    return raw, [(requests[call_id], (kind, payload)) for call_id, kind, payload in decided
                 if call_id in requests], applied
