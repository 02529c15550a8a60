"""How the test connector answers requests, as TestServer 1.1.2 does (PROTOCOL.md §2, §3, §6).

By default it is exactly as strict as the vendor's server: ``Code`` 2 for an unknown method,
a ``Call`` without ``To`` or with empty ``Data``, a request without ``RequestID``, a
``Generate`` of a type it does not know (256), raw XML over ``ws://`` and base64 over
``wss://``; ``Simulation on`` is acknowledged but plays nothing; a taken transfer gets no
type-2 ring. What production connectors do beyond it (simulated call progress, the ring
after a taken transfer) is played only with ``production_like``: a test that passes against
the default passes against the vendor's server too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pz_excel.protocol import codec as protocol
from pz_excel.tools.testserver_state import Session

#: Event types a ``Generate`` request may ask for (TestServer 1.1.2 answered 256 with Code 2).
GENERATE_TYPES = frozenset({1, 2, 4, 8, 16, 32, 128})
BAD_REQUEST = 2
SIMULATED_DURATION = 4  # seconds of talk in simulated calls (production_like)
SIMULATION_TASK = "pz-simulation"  # name of simulation tasks: cancelled at stop()

Answer = tuple[int, "str | None", "Callable[[], None] | None"]


def wrong_transport(frame: str | bytes, raw: bool) -> bool:
    """A request in the other transport's framing: raw XML over ``ws://`` or base64 over
    ``wss://``. TestServer 1.1.2 decodes it, and answers ``Code`` 2 (PROTOCOL.md §2-3)."""
    head = frame[:64] if isinstance(frame, str) else bytes(frame[:64]).decode("latin-1")
    is_xml = head.lstrip("\r\n\t \x00\ufeff").startswith("<")
    return is_xml != raw


class RequestsMixin:
    """The request side of :class:`~pz_excel.tools.testserver.ServerThread` (state and
    routing live there; this class reads and writes it under the server's lock)."""

    production_like: bool
    version: str
    transfers: dict[str, str]
    simulate_delay: float
    _clients: dict[str, Any]
    _pending: Any
    _simulate: bool

    # provided by ServerThread
    def _log(self, line: str) -> None: ...  # pragma: no cover
    def _emit_fields(self, event_type: int, fields: Any) -> Any: ...  # pragma: no cover
    def _spawn(self, coro: Any, name: str = "") -> None: ...  # pragma: no cover
    def _play(self, steps: list[tuple[int, dict[str, str]]]) -> Any: ...  # pragma: no cover
    def _new_call_id(self) -> str: ...  # pragma: no cover
    def set_simulation(self, on: bool) -> None: ...  # pragma: no cover

    def _on_frame(self, session: Session, frame: str | bytes) -> None:
        mismatched = wrong_transport(frame, session.transport is protocol.Transport.RAW)
        for message in protocol.decode_frame(frame):
            if not isinstance(message, protocol.Request):
                # Garbage, or XML that is no request: the vendor ignores it, no answer.
                self._log(f"Request can't be decoded (GUID = {session.guid})")
                continue
            if mismatched:
                self._log(f"Request in the wrong framing (GUID = {session.guid})")
                code, data, after = BAD_REQUEST, None, None
            else:
                code, data, after = self._dispatch(session, message)
            session.send(protocol.encode_response(code, message.request_id, data_xml=data))
            if after is not None:
                after()

    def _dispatch(self, session: Session, req: protocol.Request) -> Answer:
        """(code, response data XML, what to do once the response is queued)."""
        method = req.method
        if not req.request_id:
            self._log(f"Bad request: no RequestID, method = {method!r} (GUID = {session.guid})")
            return BAD_REQUEST, None, None
        if method == "GetClients":
            data = "".join(
                protocol.client_element(
                    c.index, c.ip, c.client_type, c.guid, c.session is not None, c.phone
                )
                for c in self._clients.values()
            )
            return 0, data, None
        if method == "GetVersion":
            return 0, protocol.version_element(self.version), None
        if method == "Simulation":
            self.set_simulation(req.get("Mode").strip().lower() == "on")
            return 0, None, None
        if method == "Call":
            if not req.fields or not req.get("To").strip():
                self._log(f"Bad Call request: no To (GUID = {session.guid})")
                return BAD_REQUEST, None, None
            return 0, None, self._call_request(req.get("From"), req.get("To"))
        if method == "Transfer":
            return 0, None, self._transfer(session, req.get("CallID").strip(), req.get("To"))
        if method == "Generate":
            return self._generate(req)
        self._log(f"Unknown method: {method!r} (GUID = {session.guid})")
        return BAD_REQUEST, None, None

    def _generate(self, req: protocol.Request) -> Answer:
        try:
            event_type = int(req.get("Event").strip())
        except ValueError:
            event_type = 0
        if event_type not in GENERATE_TYPES:
            self._log(f"Bad Generate request: Event = {req.get('Event')!r}")
            return BAD_REQUEST, None, None
        self._emit_fields(event_type, req.fields)
        return 0, None, None

    def _call_request(self, src: str, dst: str) -> Callable[[], None] | None:
        self._log(f"Call event from CRM: src = {src}, dst = {dst}")
        if not (self._simulate and self.production_like):
            return None  # TestServer 1.1.2 played nothing, even with Simulation on
        call_id = self._new_call_id()
        now = int(time.time())
        base = {"From": src, "To": dst, "CallID": call_id}
        history = {
            **base,
            "Direction": "1",
            "Start": str(now),
            "End": str(now + SIMULATED_DURATION),
            "Duration": str(SIMULATED_DURATION),
        }
        steps = [(8, base), (16, base), (4, history)]
        return lambda: self._spawn(self._play(steps), SIMULATION_TASK)

    def _transfer(self, session: Session, call_id: str, dst: str) -> Callable[[], None] | None:
        dst = dst.strip()
        pending = self._pending.get(call_id)
        if pending is None:
            self._log(f"Transfer event from CRM: callID = {call_id}, dst = {dst} (unknown call)")
            return None
        if pending.winner is not None:
            self._log(
                f"Transfer answer ignored: callID = {call_id}, dst = {dst}, "
                f"already transferred to {pending.winner}"
            )
            return None
        if not dst:
            pending.declined.add(session.guid)
            self._log(f"Transfer declined by CRM: callID = {call_id}, GUID = {session.guid}")
            if pending.asked and pending.asked <= pending.declined:
                self._log(f"Transfer: nobody took the call, callID = {call_id}")
            return None
        pending.winner = dst
        self.transfers[call_id] = dst
        self._log(f"Transfer event from CRM: callID = {call_id}, dst = {dst}")
        if not self.production_like:
            return None  # TestServer 1.1.2 sends no type-2 ring after a taken transfer
        base = {"From": pending.caller, "To": dst, "CallID": call_id, "Line": pending.line}
        if pending.system:
            base["System"] = pending.system
        simulate = self._simulate

        def ring() -> None:
            self._emit_fields(2, base)
            if simulate:
                now = int(time.time())
                history = {
                    **base,
                    "Direction": "0",
                    "Start": str(now),
                    "End": str(now + SIMULATED_DURATION),
                    "Duration": str(SIMULATED_DURATION),
                }
                self._spawn(self._play([(32, base), (4, history)]), SIMULATION_TASK)

        return ring
