"""``pz-excel sms`` (issue 12): an SMS through the running agent (``Generate`` 128 with a
call ID of ours) and its status from type-256 events. Real agent on our loopback test
connector, a second real client watching what the connector emits, the CLI as a real
process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pz_excel.agent.api import ApiClient
from pz_excel.agent.sms import MAX_TEXT, status_of
from pz_excel.books.template import write_template
from pz_excel.connector.client import ConnectorClient
from pz_excel.i18n import UserError
from pz_excel.protocol import codec as protocol
from tests.conftest import wait_until
from tests.test_agent import start_agent

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Привет & <b>, ваш заказ готов"


@pytest.fixture
def agent(tmp_path, server):
    a = start_agent(write_template(tmp_path / "crm.xlsx", lang="en"), server, area_code="343")
    yield a
    a.stop()


@pytest.fixture
def sms_seen(server):
    """The type-128 events the connector emits for extension 101 (a second client of
    that extension with its own GUID sees them as the agent does)."""
    seen: list[protocol.Event] = []
    watcher = ConnectorClient(protocol.ConnectSettings(server=server.url, phone="101",
                                                       guid="watcher"))
    watcher.subscribe(lambda e: seen.append(e) if e.type == 128 else None)
    watcher.start()
    assert watcher.wait_connected(10)
    yield seen
    watcher.stop()


def cli(*args: str, lang: str = "en") -> subprocess.Popen:
    env = {**os.environ, "PZ_LANG": lang}  # PZ_EXCEL_HOME: this test's, from conftest
    return subprocess.Popen([sys.executable, "-m", "pz_excel", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", cwd=ROOT,
                            env=env)


def sent_sms(seen: list[protocol.Event]) -> protocol.Event:
    return wait_until(lambda: seen[-1] if seen else None, 10, "the SMS request")  # type: ignore[return-value]


@pytest.mark.parametrize(("result", "word", "code"), [("1", "sent", 0), ("7", "failed", 1)])
def test_sms_is_sent_with_our_call_id_and_its_status_followed(agent, server, sms_seen,
                                                              result, word, code):
    book = agent.config.workbook
    proc = cli("sms", "8 912 555-44-33", TEXT, "-w", str(book), "--timeout", "30")
    event = sent_sms(sms_seen)
    # the request: Generate 128 from our extension, the text in base64 UTF-8, our call ID
    assert event.from_ == "101" and event.to == "+79125554433"
    assert base64.b64decode(event.smstext).decode("utf-8") == TEXT
    call_id = event.call_id
    api = ApiClient.discover(workbook=book)
    assert api.get("/sms", call_id=call_id)["status"] == "sending"
    server.generate(256, {"To": "101", "CallID": call_id, "Result": "0"})
    server.generate(256, {"To": "101", "CallID": "1", "Result": "1"})  # not ours: ignored
    server.generate(256, {"To": "101", "CallID": call_id, "Result": result})
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == code, err
    lines = out.splitlines()
    assert lines[0] == f"SMS to +79125554433 (ID {call_id}): sending…"
    assert lines[1].startswith(word)
    assert api.get("/sms", call_id=call_id)["status"] == word
    assert api.get("/sms", call_id="42")["status"] == "unknown"


def test_no_wait_and_timeout_while_still_sending(agent, sms_seen):
    book = str(agent.config.workbook)
    quick = cli("sms", "+7 912 555-44-33", "hi", "-w", book, "--no-wait", lang="ru")
    out, err = quick.communicate(timeout=40)
    assert quick.returncode == 0, err
    assert out.strip().endswith("отправляется…") and len(out.splitlines()) == 1
    waited = cli("sms", "+7 912 555-44-33", "hi", "-w", book, "--timeout", "0.5")
    out, err = waited.communicate(timeout=40)
    assert waited.returncode == 0, err
    assert "still sending after 0.5 s" in out


def test_refused_before_anything_is_sent(agent, sms_seen):
    api = ApiClient.discover(workbook=agent.config.workbook)

    def refused(to: str, text: str) -> str:
        with pytest.raises(UserError) as exc:
            api.post("/sms", {"to": to, "text": text})
        return exc.value.text.en

    assert "empty" in refused("+79125554433", "   ")
    assert f"at most {MAX_TEXT}" in refused("+79125554433", "x" * (MAX_TEXT + 1))
    assert "not a phone number" in refused("call me", "hi")
    assert "area code 343" in refused("555-00-0", "hi")
    assert "internal extension" in refused("102", "hi")
    done = cli("sms", "", "hi", "-w", str(agent.config.workbook), lang="ru")
    _out, err = done.communicate(timeout=40)
    assert done.returncode == 2 and "не указан номер телефона" in err and "Traceback" not in err
    # a local number with the area code is sent in full; 1000 characters are fine
    api.post("/sms", {"to": "555-00-00", "text": "я" * MAX_TEXT})
    assert sent_sms(sms_seen).to == "+73435550000"
    assert len(sms_seen) == 1


def test_status_words():
    assert [status_of(r) for r in ("0", "1", "2", "", " 1 ")] == [
        "sending", "sent", "failed", "failed", "sent"]


def test_the_end_of_an_sms_is_told_once() -> None:
    """The ribbon's Send SMS does not wait: the agent tells the user (toast, log) when the
    SMS is sent or failed, once, and not for a late "sending" or another call ID."""
    from pz_excel.agent.sms import SmsTracker
    from pz_excel.protocol.codec import Event

    ended: list[tuple[str, str, str]] = []
    tracker = SmsTracker(on_done=lambda *args: ended.append(args))
    tracker.track("5", "+79125554433")

    def status(call_id: str, result: str) -> None:
        tracker.on_event(Event(256, call_id, {"type": "256", "callID": call_id,
                                              "to": "101", "result": result}))

    status("5", "0")
    status("6", "1")
    assert ended == []
    status("5", "1")
    status("5", "0")
    status("5", "2")
    assert ended == [("5", "+79125554433", "sent")]
