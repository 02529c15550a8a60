"""The sans-IO session, driven by the vendor's captured frames (as h11 tests its state
machine): numbering, matching by id, the RequestID-0 rule, expiry, late answers, closes.
No socket, no thread, no clock: time is the ``now`` the test passes."""

from __future__ import annotations

import itertools
import re
import struct

import pytest

from pz_excel.protocol import codec as p
from pz_excel.protocol.session import (
    ABANDONED_KEEP,
    Answered,
    Closed,
    PendingRequest,
    Session,
    Unmatched,
)
from tests.captures import DIAGNOSTIC, TESTSERVER, b64, lines


def sdk_frames(client: str, direction: str) -> list[dict]:
    """One SDK client's frames of the TestServer capture, in order."""
    return [
        x
        for x in lines(TESTSERVER)
        if x.get("client") == client and x.get("dir") == direction and "decoded" in x
    ]


def diag_frames(who: str) -> list[dict]:
    """The Diagnostic console's text frames (client or server), in order."""
    return [x for x in lines(DIAGNOSTIC) if x.get("who") == who and x.get("op") == 1]


def answer(request_id: str | int, code: int = 0) -> str:
    return b64(p.encode_response(code, request_id))


def track(session: Session, count: int, now: float = 0.0, ttl: float | None = 10.0):
    return [session.track(session.next_id(), now=now, ttl=ttl) for _ in range(count)]


def only(results: list) -> Answered | Unmatched:
    assert len(results) == 1
    return results[0]


# --------------------------------------------------------------------------- numbering


def test_ids_count_up_from_zero():
    session = Session()
    assert [session.next_id() for _ in range(4)] == [0, 1, 2, 3]


def test_sessions_sharing_an_id_source_never_repeat_an_id():
    ids = itertools.count()
    first, second = Session(ids=ids), Session(ids=ids)  # a reconnect: a new session
    assert [first.next_id(), first.next_id(), second.next_id()] == [0, 1, 2]


def test_request_numbers_frames_and_tracks_byte_exact_with_the_diagnostic_console():
    """Diagnostic 1.1.2 numbers its requests 0, 1, 2…: so does the session, and each
    frame is the console's own, byte for byte."""
    session = Session(p.Transport.BASE64)
    for rec in diag_frames("client"):
        xml = rec["decoded"]
        wanted_id = re.search(r"<RequestID>(\d+)</RequestID>", xml).group(1)
        pending, frame = session.request(
            lambda rid, xml=xml: re.sub(r"<RequestID>\d+<", f"<RequestID>{rid}<", xml),
            now=0.0,
            ttl=None,
        )
        assert pending.request_id == wanted_id
        assert frame == rec["frame"]
    assert [x.request_id for x in session.pending] == [str(i) for i in range(13)]


def test_request_frames_follow_the_transport():
    raw = Session(p.Transport.RAW)
    _pending, frame = raw.request(lambda rid: p.get_version_request(rid), now=0.0, ttl=1.0)
    assert frame == p.get_version_request(0)
    sdk = Session(p.Transport.BASE64)
    first = sdk_frames("101", "send")[0]
    _pending, frame = sdk.request(
        lambda rid: p.call_request("101", "+7 (343) 0112233", rid), now=0.0, ttl=1.0
    )
    assert frame == first["frame"]


def test_track_takes_the_waiter_and_the_deadline():
    session = Session()
    waiter = object()
    pending = session.track(7, now=100.0, ttl=2.5, waiter=waiter)
    assert pending == PendingRequest("7", 2.5, 102.5, waiter)
    assert session.track(8, now=100.0, ttl=None).deadline is None


# --------------------------------------------------------------------------- matching


def test_an_echoing_connector_answers_each_request_by_its_id():
    """The Diagnostic capture, replayed: every response finds its own request, events
    pass through in order."""
    session = Session()
    pending = track(session, 13, ttl=None)
    answered, events = [], []
    for rec in diag_frames("server"):
        for item in session.receive(rec["frame"]):
            if isinstance(item, p.Event):
                events.append(item)
            else:
                assert isinstance(item, Answered), item
                assert item.request.request_id == item.response.request_id
                answered.append(item.request)
    assert answered == pending
    assert len(events) == 10 and all(e.known for e in events)
    assert session.echoes_ids and session.pending == ()


def test_the_request_id_0_rule_gives_each_answer_to_the_oldest_request():
    """SDK-style connectors answer RequestID 0 whatever we sent (TestServer capture):
    three calls numbered 0, 1, 2 are answered in the order they were sent."""
    session = Session()
    calls = track(session, 3)
    responses = sdk_frames("101", "recv")[:3]
    got = [only(session.receive(rec["frame"])) for rec in responses]
    assert [g.request for g in got] == calls
    assert all(g.response.request_id == "0" for g in got)
    assert not session.echoes_ids  # an answer 0 to our request 0 proves nothing


def test_an_answer_with_an_unknown_id_goes_to_the_oldest_request():
    session = Session()
    first, _second = track(session, 2)
    result = only(session.receive(answer(99)))
    assert isinstance(result, Answered) and result.request is first


def test_an_answer_with_nothing_pending_is_unmatched():
    session = Session()
    result = only(session.receive(sdk_frames("101", "recv")[0]["frame"]))
    assert result == Unmatched(result.response, late=False)


def test_an_exact_id_wins_over_the_oldest():
    session = Session()
    _first, second = track(session, 2)
    result = only(session.receive(answer(1)))
    assert result.request is second and session.echoes_ids


def test_error_codes_are_answers_too():
    session = Session()
    (call,) = track(session, 1)
    bogus = sdk_frames("102", "recv")[-1]  # Code 2: the method Bogus is unknown
    result = only(session.receive(bogus["frame"]))
    assert result.request is call and result.response.code == 2 and not result.response.ok


def test_events_and_garbage_pass_through_untouched():
    session = Session()
    track(session, 1)
    frame = b64(
        p.encode_event(2, "1", {"from": "7343", "to": "101"})
        + p.encode_response(0, 0)
        + "<Mystery a='1'/>"
    )
    event, answered, unknown = session.receive(frame)
    assert isinstance(event, p.Event) and isinstance(answered, Answered)
    assert isinstance(unknown, p.Unknown) and unknown.tag == "Mystery"
    (error,) = session.receive("not base64 !")
    assert isinstance(error, p.DecodeError) and error.raw == "not base64 !"


# --------------------------------------------------------------------------- expiry


def test_requests_expire_at_their_deadline_and_not_before():
    session = Session()
    short = session.track(session.next_id(), now=0.0, ttl=1.0)
    long = session.track(session.next_id(), now=0.0, ttl=5.0)
    endless = session.track(session.next_id(), now=0.0, ttl=None)
    assert session.next_deadline == 1.0
    assert session.expire(0.999) == []
    assert session.expire(1.0) == [short]
    assert session.next_deadline == 5.0
    assert session.expire(100.0) == [long]
    assert session.pending == (endless,) and session.next_deadline is None


def test_a_late_answer_is_dropped_once_the_connector_is_known_to_echo_ids():
    session = Session()
    first, second, third = track(session, 3, ttl=1.0)
    assert only(session.receive(answer(0))).request is first
    assert only(session.receive(answer(1))).request is second  # it echoes ids
    assert session.expire(2.0) == [third]
    fourth = session.track(session.next_id(), now=2.0, ttl=1.0)
    late = only(session.receive(answer(2)))  # the answer to the timed-out third
    assert late == Unmatched(late.response, late=True)
    assert session.pending == (fourth,)  # not taken for the fourth's answer
    assert only(session.receive(answer(3))).request is fourth


def test_a_late_answer_0_goes_to_the_next_request_when_ids_are_not_echoed():
    """An SDK-style connector's answers can't be told apart: a late one is taken by the
    oldest request still waiting (what the SDKs do)."""
    session = Session()
    first, second = track(session, 2, ttl=1.0)
    session.abandon(first.request_id)  # the caller gave up on it
    assert only(session.receive(answer(0))).request is second


def test_abandon_only_what_is_pending():
    session = Session()
    (req,) = track(session, 1)
    assert session.abandon(req.request_id) is req
    assert session.abandon(req.request_id) is None
    assert session.abandon("nope") is None


def test_timed_out_ids_are_remembered_within_a_bound():
    session = Session(keep_abandoned=2)
    track(session, 1)  # request 0
    assert only(session.receive(answer(0))).request.request_id == "0"
    session.track(5, now=0.0, ttl=None)
    session.receive(answer(5))  # now known to echo
    old = track(session, 3, ttl=1.0)  # ids 1, 2, 3
    assert session.expire(1.0) == old
    waiting = session.track(9, now=1.0, ttl=None)
    # id 1 was forgotten (only the last 2 are kept): its answer is taken as "oldest"
    assert only(session.receive(answer(1))).request is waiting
    assert ABANDONED_KEEP == 64


def test_a_lost_connection_hands_back_every_waiting_request():
    session = Session()
    requests = track(session, 3)
    assert session.connection_lost() == requests
    assert session.pending == () and session.connection_lost() == []


# --------------------------------------------------------------------------- closing


@pytest.mark.parametrize("code", range(4001, 4010))
def test_licence_and_login_closes_are_final(code):
    closed = Session.closed(struct.pack("!H", code))
    assert closed.code == code and not closed.retry
    assert closed.info.text == p.CLOSE_CODES[code]
    assert closed.text.en == f"{p.CLOSE_CODES[code].en} (code {code})"
    assert closed.text.ru == f"{p.CLOSE_CODES[code].ru} (код {code})"


def test_the_captured_4009_close_keeps_its_reason():
    rec = next(x for x in lines(TESTSERVER) if x.get("dir") == "close")
    payload = struct.pack("!H", rec["code"]) + rec["reason"].encode()
    closed = Session.closed(payload)
    assert closed == Closed(4009, "User with the same GUID is connected", closed.info)
    assert not closed.retry and "GUID" in closed.text.en


def test_a_normal_close_is_retried():
    closed = Session.closed(struct.pack("!H", 1000))
    assert closed.retry and closed.text.en == "connection closed by the connector (code 1000)"


def test_a_close_without_a_status_is_1005_and_retried():
    closed = Session.closed(b"")
    assert (closed.code, closed.reason, closed.retry) == (1005, "", True)


def test_an_unknown_application_close_is_final():
    closed = Session.closed(struct.pack("!H", 4321) + b"go away")
    assert not closed.retry and "4321" in closed.text.en and "go away" in closed.text.en


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_login_is_final(status):
    info = Session.refused(status)
    assert (info.code, info.retry, info.http) == (status, False, True)
    assert "wrong password" in info.text.en


def test_other_refused_upgrades():
    assert not Session.refused(404).retry
    assert Session.refused(503).retry
