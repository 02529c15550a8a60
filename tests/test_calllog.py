"""Events → call rows: lifecycles, missed vs late, out-of-order and replayed events."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pz_excel.agent.calllog import CallMapper, apply, local_time
from pz_excel.crm.schema import CallRow
from pz_excel.protocol.codec import Event

NOW = datetime(2024, 3, 1, 9, 30, 15, 123456)
UTC = timezone.utc
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
CONTACTS = {"73430112233": ("Ivan Petrov", "Anna Smirnova")}


def ev(etype: int, call_id: str = "100", **attrs: str) -> Event:
    data = {"type": str(etype), "callID": call_id}
    data.update({("from" if k == "from_" else k): v for k, v in attrs.items()})
    return Event(etype, call_id, data)


def history(call_id="100", frm="73430112233", to="101", start=T0, dur=42, direction="0", **kw):
    return ev(4, call_id, from_=frm, to=to, start=str(start), end=str(start + dur),
              duration=str(dur), direction=direction, **kw)


def run(events, row=None, now=NOW):
    mapper = CallMapper(lookup=CONTACTS.get, tz=UTC, clock=lambda: now)
    for event in events:
        row = mapper(row, event)
    return row


def test_incoming_lifecycle_ring_answer_complete():
    ring = run([ev(2, from_="73430112233", to="101", line=" ")])
    assert (ring.direction, ring.status) == ("incoming", "ringing")
    assert (ring.client_phone, ring.extension, ring.line) == ("73430112233", "101", "")
    assert ring.start == NOW.replace(microsecond=0)  # ring time: the sheet shows seconds
    assert (ring.contact, ring.owner) == ("Ivan Petrov", "Anna Smirnova")

    answered = run([ev(32, from_="73430112233", to="101")], row=ring)
    assert answered.status == "answered" and answered.start == ring.start

    done = run([history(record="http://rec.example/100.mp3", line="L1")], row=answered)
    assert (done.status, done.duration, done.late) == ("completed", 42, False)
    assert done.start == datetime(2023, 11, 14, 22, 13, 20)  # the connector's time wins
    assert done.end - done.start == timedelta(seconds=42)
    assert (done.recording, done.line) == ("http://rec.example/100.mp3", "L1")
    assert ring.status == "ringing"  # rows are values: apply() never mutates its input


def test_outgoing_lifecycle_dial_answer_complete():
    dial = run([ev(8, "200", from_="101", to="73430112233")])
    assert (dial.direction, dial.status) == ("outgoing", "dialing")
    assert (dial.client_phone, dial.extension) == ("73430112233", "101")
    assert dial.contact == "Ivan Petrov"
    answered = run([ev(16, "200", from_="101", to="73430112233")], row=dial)
    assert answered.status == "answered"
    done = run([history("200", frm="101", to="73430112233", dur=0, direction="1")], row=answered)
    # an outgoing call nobody answered is not a *missed* call
    assert (done.direction, done.status, done.client_phone) == (
        "outgoing",
        "completed",
        "73430112233",
    )


def test_missed_is_incoming_with_zero_duration_and_not_late():
    row = run([ev(2, from_="79990001122", to="101"), history(frm="79990001122", dur=0)])
    assert (row.status, row.duration, row.late) == ("missed", 0, False)
    assert row.contact == "" and row.owner == ""  # unknown caller


def test_missing_duration_is_not_evidence_of_a_missed_call():
    event = ev(4, from_="73430112233", to="101", direction="0", start=str(T0))
    assert run([event]).status == "completed"


def test_late_replay_is_marked_late_and_merges_into_the_ringing_row():
    ring = run([ev(2, from_="73430112233", to="101")])
    replay = history(dur=30, missed="1", missedFinal="1")
    row = run([replay], row=ring)
    assert row.late is True and row.status == "completed"  # late ≠ unanswered
    assert row.call_id == ring.call_id and row.duration == 30


def test_replay_of_a_call_we_already_logged_live_changes_nothing():
    live = run([history(record=" ")])
    again = run([history(record=" ", missed="1")], row=live)
    assert again == live and again.late is False


def test_late_history_for_an_unknown_call_makes_one_late_row():
    row = run([history(frm="79990001122", dur=0, missed="1")])
    assert (row.status, row.late) == ("missed", True)


def test_out_of_order_ring_and_answer_never_downgrade_a_completed_row():
    done = run([history(line=" ")])
    row = run([ev(32, from_="73430112233", to="101", line="L7"),
               ev(2, from_="73430112233", to="101")], row=done)
    assert row.status == "completed" and row.start == done.start
    assert row.line == "L7"  # a field still empty may be filled by the straggler


@pytest.mark.parametrize("etype", [1, 128, 256, 64, 999])
def test_other_event_types_make_no_row(etype):
    event = ev(etype, from_="73430112233", to="101", system="x", smstext="aGk=")
    assert run([event]) is None
    row = CallRow("100", "incoming", "ringing")
    assert run([event], row=row) is row


def test_event_without_call_id_is_ignored():
    assert run([ev(2, "", from_="73430112233", to="101")]) is None


def test_bad_times_fall_back_sensibly():
    no_start = ev(4, from_="1", to="101", end=str(T0 + 10), duration="10", direction="0")
    row = run([no_start])
    assert row.start == datetime(2023, 11, 14, 22, 13, 20) and row.duration == 10
    junk = ev(4, from_="1", to="101", start="soon", end="0", duration="-5", direction="0")
    row = run([junk])
    assert row.start == NOW.replace(microsecond=0) and row.end is None and row.duration is None
    assert local_time(10**20) is None and local_time(0) is None


def test_times_are_local_naive_in_the_given_zone():
    plus5 = timezone(timedelta(hours=5))  # Yekaterinburg
    assert local_time(T0, plus5) == datetime(2023, 11, 15, 3, 13, 20)
    assert local_time(T0, plus5).tzinfo is None
    assert local_time(T0) == datetime.fromtimestamp(T0)  # machine zone by default


def test_a_failing_contact_lookup_does_not_lose_the_row():
    def broken(number):
        raise RuntimeError("contacts sheet half-read")

    row = apply(None, ev(2, from_="73430112233", to="101"), now=NOW, lookup=broken)
    assert row.status == "ringing" and row.contact == ""


def test_contact_found_later_fills_the_row_and_a_vanished_one_is_kept():
    row = apply(None, ev(2, from_="73430112233", to="101"), now=NOW, lookup=None)
    assert row.contact == ""
    row = apply(row, ev(32, from_="73430112233", to="101"), now=NOW, lookup=CONTACTS.get)
    assert row.contact == "Ivan Petrov"
    row = apply(row, history(), now=NOW, lookup=lambda n: None)
    assert row.contact == "Ivan Petrov"


@given(st.permutations([0, 1, 2]), st.booleans())
def test_any_order_of_one_call_ends_in_the_same_final_row(order, answered_call):
    events = [
        ev(2, from_="73430112233", to="101"),
        ev(32, from_="73430112233", to="101"),
        history(dur=42 if answered_call else 0, record="http://r/1.mp3"),
    ]
    expected = run([events[2]])
    got = run([events[i] for i in order])
    assert got.status == expected.status == ("completed" if answered_call else "missed")
    for name in ("start", "end", "duration", "client_phone", "extension", "recording"):
        assert getattr(got, name) == getattr(expected, name)


def test_replaying_a_whole_history_twice_is_idempotent():
    calls = [history(str(i), start=T0 + i, dur=i % 3) for i in range(20)]
    rows: dict[str, CallRow] = {}
    for event in itertools.chain(calls, [ev(4, c.call_id, **{**c.attrs, "missed": "1"})
                                         for c in calls]):
        rows[event.call_id] = run([event], row=rows.get(event.call_id))
    assert len(rows) == 20
    assert all(not r.late for r in rows.values())
