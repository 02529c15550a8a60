"""The request/response state of one connection, sans-IO.

As h11's ``Connection`` and websockets' ``Protocol`` keep a protocol's state apart from
its I/O, a :class:`Session` holds what the protocol needs to remember on one connection
and nothing else: no socket, no thread, no clock of its own (callers pass ``now``).

* **numbering**: request ids count up from an id source that outlives the connection
  (the client shares one across reconnects, so ids never repeat);
* **matching**: a response goes to the request with its ``RequestID``; SDK-style
  connectors always answer ``RequestID 0``, so an answer that matches no pending request
  goes to the *oldest* one. Once the connector has echoed one of our non-zero ids, it is
  known to echo them, and a late answer to a request that timed out is dropped (it would
  otherwise be taken for the answer of the next one);
* **expiry**: a request has a time to live; :meth:`Session.expire` gives the ones past
  it, which then count as timed out (their late answers are recognised);
* **closing**: a close frame or a refused upgrade → the user's text and retry-or-not.

Frames go in (:meth:`Session.receive`), typed results come out; what to send comes out
of :meth:`Session.request` / :meth:`Session.frame`. The caller does the sending.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pz_excel.i18n import Text
from pz_excel.protocol.closing import (
    CloseInfo,
    describe_close,
    describe_http_status,
    parse_close_payload,
)
from pz_excel.protocol.frames import decode_frame, encode_frame
from pz_excel.protocol.login import Transport
from pz_excel.protocol.messages import DecodeError, Event, Request, Response, Unknown

#: Ids of timed-out requests remembered per connection (to drop their late answers).
ABANDONED_KEEP = 64


@dataclass
class PendingRequest:
    """A request sent and not yet answered. ``waiter`` is the caller's own handle for it
    (the client keeps a ``Future`` there); the session never looks at it."""

    request_id: str
    ttl: float | None  # seconds it may wait, as asked
    deadline: float | None  # on the caller's clock; None: waits for ever
    waiter: Any = None


@dataclass(frozen=True)
class Answered:
    """A response and the request it answers."""

    request: PendingRequest
    response: Response


@dataclass(frozen=True)
class Unmatched:
    """A response that answers nothing: no request waits, or (``late``) it answers a
    request that already timed out. Dropped."""

    response: Response
    late: bool = False


@dataclass(frozen=True)
class Closed:
    """The connector closed the connection: its code and reason, what they mean, and the
    text for the user (the meaning, with the code)."""

    code: int
    reason: str
    info: CloseInfo

    @property
    def retry(self) -> bool:
        return self.info.retry

    @property
    def text(self) -> Text:
        code, info = self.code, self.info
        return Text(f"{info.text.en} (code {code})", f"{info.text.ru} (код {code})")


#: What :meth:`Session.receive` gives for each message of a frame.
Received = Event | Answered | Unmatched | DecodeError | Unknown | Request


class Session:
    """The protocol state of one connection. Not thread-safe: the caller serialises."""

    def __init__(
        self,
        transport: Transport = Transport.BASE64,
        *,
        ids: Iterator[int] | None = None,
        keep_abandoned: int = ABANDONED_KEEP,
    ):
        self.transport = transport
        self._ids = ids if ids is not None else itertools.count()
        self._keep_abandoned = keep_abandoned
        self._pending: OrderedDict[str, PendingRequest] = OrderedDict()  # oldest first
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        self._echoes_ids = False

    # ------------------------------------------------------------------ what we know

    @property
    def echoes_ids(self) -> bool:
        """The connector has echoed one of our non-zero request ids."""
        return self._echoes_ids

    @property
    def pending(self) -> tuple[PendingRequest, ...]:
        """Requests waiting for an answer, oldest first."""
        return tuple(self._pending.values())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending request (``None``: nothing can expire)."""
        deadlines = [p.deadline for p in self._pending.values() if p.deadline is not None]
        return min(deadlines, default=None)

    # ------------------------------------------------------------------ sending

    def next_id(self) -> int:
        return next(self._ids)

    def frame(self, xml: str) -> str:
        """Request XML → the text frame to send on this connection's transport."""
        return encode_frame(xml, self.transport)

    def track(
        self,
        request_id: int | str,
        *,
        now: float,
        ttl: float | None,
        waiter: Any = None,
    ) -> PendingRequest:
        """A request with this id was (or is about to be) sent: wait for its answer, until
        ``now + ttl`` (``ttl=None``: without end)."""
        deadline = None if ttl is None else now + ttl
        pending = PendingRequest(str(request_id), ttl, deadline, waiter)
        self._pending[pending.request_id] = pending
        return pending

    def request(
        self,
        build: Callable[[int], str],
        *,
        now: float,
        ttl: float | None,
        waiter: Any = None,
    ) -> tuple[PendingRequest, str]:
        """Number a request, build its XML (``build(request_id)``) and track it; returns
        it with the frame to send."""
        request_id = self.next_id()
        frame = self.frame(build(request_id))
        return self.track(request_id, now=now, ttl=ttl, waiter=waiter), frame

    # ------------------------------------------------------------------ receiving

    def receive(self, frame: str | bytes) -> list[Received]:
        """One text frame in; its messages out, responses matched to their requests."""
        out: list[Received] = []
        for message in decode_frame(frame):
            if isinstance(message, Response):
                out.append(self.answer(message))
            else:
                out.append(message)
        return out

    def answer(self, response: Response) -> Answered | Unmatched:
        """By ``RequestID``; else the oldest pending (SDK-style connectors answer 0)."""
        rid = response.request_id
        pending = self._pending.pop(rid, None)
        if pending is not None:
            if rid != "0":
                self._echoes_ids = True
        elif self._echoes_ids and rid in self._abandoned:
            del self._abandoned[rid]  # a late answer to a timed-out request
            return Unmatched(response, late=True)
        elif self._pending:
            _rid, pending = self._pending.popitem(last=False)
        if pending is None:
            return Unmatched(response)
        return Answered(pending, response)

    # ------------------------------------------------------------------ giving up

    def expire(self, now: float) -> list[PendingRequest]:
        """The requests past their deadline at ``now``; they are no longer pending."""
        expired = [
            p for p in self._pending.values() if p.deadline is not None and p.deadline <= now
        ]
        for p in expired:
            self.abandon(p.request_id)
        return expired

    def abandon(self, request_id: int | str) -> PendingRequest | None:
        """The caller stopped waiting for this request (its own timeout). Returns it, or
        ``None`` if it was no longer pending."""
        rid = str(request_id)
        pending = self._pending.pop(rid, None)
        if pending is not None:
            self._abandoned[rid] = None
            while len(self._abandoned) > self._keep_abandoned:
                self._abandoned.popitem(last=False)
        return pending

    def connection_lost(self) -> list[PendingRequest]:
        """The connection is over: every request still waiting, no longer pending."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending

    # ------------------------------------------------------------------ closing

    @staticmethod
    def closed(payload: bytes) -> Closed:
        """The connector's close frame (its payload) → code, reason and meaning."""
        code, reason = parse_close_payload(payload)
        return Closed(code, reason, describe_close(code, reason))

    @staticmethod
    def refused(status: int) -> CloseInfo:
        """The connector answered the upgrade with this HTTP status instead of 101."""
        return describe_http_status(status)
