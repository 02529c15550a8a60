"""The connector's parts on their own, without a socket: message reassembly and its
limit, why a connection ended, delivery order, the state history."""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time

import pytest
import websocket
from websocket import ABNF

from pz_excel.connector.delivery import Delivery
from pz_excel.connector.dial import PinMismatch, TlsSetupError
from pz_excel.connector.framing import MessageAssembler, sendable_close_code
from pz_excel.connector.lifetime import END_OF_DISPATCH
from pz_excel.connector.outcomes import (
    TLS_HANDSHAKE_FAILED,
    TLS_MISMATCH_REASONS,
    Outcome,
    answer_lost_text,
    classify_open_error,
    classify_session_error,
)
from pz_excel.connector.state import CONNECTED, STOPPED, ConnectionState, StateHistory
from pz_excel.i18n import Text


def frame(opcode: int, data: bytes, fin: bool = True) -> ABNF:
    return ABNF(fin=int(fin), opcode=opcode, data=data)


# --------------------------------------------------------------------------- framing


def test_fragments_are_joined_into_one_message():
    assembler = MessageAssembler()
    assert assembler.feed(frame(ABNF.OPCODE_TEXT, b"ab", fin=False)) is None
    assert assembler.feed(frame(ABNF.OPCODE_CONT, b"cd", fin=False)) is None
    assert assembler.feed(frame(ABNF.OPCODE_CONT, b"ef")) == b"abcdef"
    assert assembler.feed(frame(ABNF.OPCODE_TEXT, b"whole")) == b"whole"


def test_fragments_over_the_limit_are_refused():
    assembler = MessageAssembler(limit=4)
    assembler.feed(frame(ABNF.OPCODE_TEXT, b"abc", fin=False))
    with pytest.raises(websocket.WebSocketProtocolException, match="4-byte limit"):
        assembler.feed(frame(ABNF.OPCODE_CONT, b"de", fin=False))


@pytest.mark.parametrize(
    "frames",
    [
        [frame(ABNF.OPCODE_CONT, b"x")],  # a continuation of nothing
        [frame(ABNF.OPCODE_TEXT, b"a", fin=False), frame(ABNF.OPCODE_TEXT, b"b")],
    ],
)
def test_broken_fragment_sequences_are_protocol_errors(frames):
    assembler = MessageAssembler()
    with pytest.raises(websocket.WebSocketProtocolException):
        for f in frames:
            assembler.feed(f)


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("exc", "retry", "words"),
    [
        (PinMismatch("aa", "bb"), False, "password was not sent"),
        (TlsSetupError(OSError("no file")), False, "cannot set up TLS"),
        (websocket.WebSocketBadStatusException("x", 403), False, "HTTP 403"),
        (websocket.WebSocketBadStatusException("x", 503), True, "HTTP 503"),
        (TimeoutError(), True, "timed out"),
        (ssl.SSLEOFError(), True, "legacy TLS"),
        (ConnectionRefusedError(), True, "refused"),
        (OSError(101, "Network is unreachable"), True, "unreachable"),
    ],
)
def test_open_errors_say_why_and_whether_to_retry(exc, retry, words):
    outcome = classify_open_error(exc, "pbx.example", "ca.pem")
    assert outcome.retry is retry and words in outcome.text.en
    assert not outcome.unexpected


def ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] ({reason.lower()})")
    exc.reason = reason  # what OpenSSL sets on a real one
    return exc


@pytest.mark.parametrize("reason", sorted(TLS_MISMATCH_REASONS))
def test_a_tls_mismatch_is_final_and_names_the_legacy_mode(reason):
    outcome = classify_open_error(ssl_error(reason), "pbx", None)
    assert not outcome.retry and outcome.close is not None
    assert outcome.close.code == TLS_HANDSHAKE_FAILED and outcome.close.text == outcome.text
    assert reason in outcome.text.en and reason in outcome.text.ru
    assert "--legacy-tls --pin-sha256" in outcome.text.en
    assert "--legacy-tls --pin-sha256" in outcome.text.ru
    # Already in the legacy mode: no advice to turn it on, but still final.
    legacy = classify_open_error(ssl_error(reason), "pbx", None, legacy=True)
    assert not legacy.retry and legacy.close is not None
    assert "even in the legacy TLS mode" in legacy.text.en and "--legacy-tls" not in legacy.text.en
    assert "даже в режиме устаревшего TLS" in legacy.text.ru


def test_other_tls_failures_are_final_too():
    other = classify_open_error(ssl_error("TLSV1_ALERT_INTERNAL_ERROR"), "pbx", None)
    assert not other.retry and "legacy TLS mode" in other.text.en
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    outcome = classify_open_error(untrusted, "pbx", None)
    assert not outcome.retry and "not trusted (self-signed certificate)" in outcome.text.en
    assert outcome.close is not None and outcome.close.code == TLS_HANDSHAKE_FAILED
    pin = classify_open_error(PinMismatch("aa", "bb"), "pbx", None)
    assert pin.close is not None and pin.close.code == TLS_HANDSHAKE_FAILED
    wrong = classify_open_error(ssl_error("WRONG_VERSION_NUMBER"), "pbx", None)
    assert "use ws://" in wrong.text.en and "укажите ws://" in wrong.text.ru


@pytest.mark.parametrize(
    ("code", "sendable"),
    [
        (1000, True),
        (1001, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1011, True),
        (1015, False),
        (2000, False),
        (3000, True),
        (4009, True),
        (5000, False),
    ],
)
def test_close_codes_that_a_frame_may_carry(code, sendable):
    assert sendable_close_code(code) is sendable


def test_a_refused_connect_takes_the_fast_lane():
    assert classify_open_error(ConnectionRefusedError(), "h", None).refused


def test_a_bug_is_flagged_as_unexpected():
    assert classify_open_error(KeyError("x"), "h", None).unexpected
    assert classify_session_error(KeyError("x")).unexpected
    assert not classify_session_error(OSError("reset")).unexpected


def test_session_errors_carry_a_close_code():
    protocol_error = classify_session_error(websocket.WebSocketProtocolException("bad"))
    assert protocol_error.close is not None and protocol_error.close.code == 1002
    lost = classify_session_error(ConnectionResetError())
    assert lost.retry and lost.close is not None and lost.close.code == 1006


def test_a_lost_answer_says_whether_the_user_stopped():
    assert "stopped" in answer_lost_text(Outcome(Text("x", "x"), False, by_user=True)).en
    lost = answer_lost_text(Outcome(Text("gone", "нет"), True))
    assert lost.en == "connection lost before the answer came: gone"


# --------------------------------------------------------------------------- delivery


def test_delivery_in_order_and_a_failing_callback_does_not_stop_it(caplog):
    log = logging.getLogger("pz_excel.connector.client")
    errors: list[object] = []
    delivery = Delivery(log, errors.append)
    seen: list[object] = []

    def broken(_payload: object) -> None:
        raise RuntimeError("subscriber bug")

    delivery.add("event", broken)
    remove = delivery.add("event", seen.append)
    delivery.add("state", seen.append)
    items: queue.SimpleQueue = queue.SimpleQueue()
    for item in [("event", 1), ("state", "s"), ("decode_error", "e"), ("event", 2)]:
        items.put(item)
    items.put(END_OF_DISPATCH)
    delivery.run(items)
    assert seen == [1, "s", 2] and errors == ["e"]
    assert "subscriber bug" in caplog.text
    remove()
    items.put(("event", 3))
    items.put(END_OF_DISPATCH)
    delivery.run(items)
    assert seen == [1, "s", 2]


# --------------------------------------------------------------------------- states


def test_a_waiter_misses_no_short_lived_state():
    lock = threading.Lock()
    history = StateHistory(lock, ConnectionState(STOPPED, Text("s", "s")))
    up = ConnectionState(CONNECTED, Text("c", "c"))
    got: list[ConnectionState | None] = []
    waiter = threading.Thread(target=lambda: got.append(history.wait(lambda s: s.connected, 5)))
    waiter.start()
    time.sleep(0.05)
    with lock:  # up and down again before the waiter wakes
        history.set(up)
        history.set(ConnectionState(STOPPED, Text("s", "s")))
    waiter.join(5)
    assert got == [up] and history.current.kind == STOPPED
    assert history.wait(lambda s: s.kind == "retrying", 0.05) is None
