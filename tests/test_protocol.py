"""The sans-IO codec against the vendor's own frames, byte for byte."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pz_excel.protocol import codec as p
from tests.captures import b64, client_frames, server_frames


@pytest.mark.parametrize("rec", server_frames(), ids=lambda r: r["decoded"][:40])
def test_every_server_frame_decodes_to_the_right_type_and_fields(rec):
    messages = p.decode_frame(rec["frame"])
    assert len(messages) == 1
    msg = messages[0]
    ref = ET.fromstring(rec["decoded"].strip())
    if ref.tag == "Event":
        assert isinstance(msg, p.Event)
        assert msg.type == int(ref.get("type"))
        assert msg.call_id == ref.get("callID")
        assert dict(msg.attrs) == ref.attrib
        # the server's own encoding is reproduced byte for byte
        assert p.encode_frame(msg.to_xml()) == rec["frame"]
    else:
        assert isinstance(msg, p.Response)
        assert msg.code == int(ref.findtext("Code"))
        assert msg.request_id == ref.findtext("RequestID")
        data = ref.find("Data")
        assert [dict(c.attrib) for c in data.iter("Client")] == [dict(c) for c in msg.clients]
        assert msg.version == (data.findtext("Version") or "")
        inner = "".join(
            p.client_element(
                int(c["id"]), c["ip"], c["type"], c["GUID"], c["Connected"] == "1", c["PhoneNumber"]
            )
            for c in msg.clients
        ) + (p.version_element(msg.version) if msg.version else "")
        xml = p.encode_response(msg.code, msg.request_id, msg.details, inner or None)
        assert p.encode_frame(xml) == rec["frame"]


# Each client frame of the captures, produced by our encoder from plain arguments.
SDK = {"protocol_version": 1}
DIAG = {"protocol_version": 2}
ENCODER_CALLS = [
    lambda: p.call_request("101", "+7 (343) 0112233", 0, **SDK),
    lambda: p.call_request("101", "8&9 <x>", 0, **SDK),
    lambda: p.call_request("101", "Иван", 0, **SDK),
    lambda: p.transfer_request("470667155996673", "101", 0, **SDK),
    lambda: p.transfer_request("470667155996673", "", 0, **SDK),
    lambda: p.transfer_request("470667156520962", "101", 0, **SDK),
    lambda: p.transfer_request("470667156520962", "", 0, **SDK),
    lambda: p.transfer_request("999", "", 0, **SDK),
    lambda: p.encode_request("Bogus", 0, None, empty_data="<Data></Data>", **SDK),
    lambda: p.get_clients_request(0, **DIAG),
    lambda: p.call_request("101", "555", 1, **DIAG),
    lambda: p.transfer_request("101", "555", 2, **DIAG),
    lambda: p.generate_request(
        1, {"From": "73430112233", "Line": "2", "ClientGUID": "*", "System": "info"}, 3, **DIAG
    ),
    lambda: p.generate_request(
        2,
        {
            "From": "73430112233",
            "To": "101",
            "CallID": "1000",
            "Line": "2",
            "ClientGUID": "js",
            "System": "info",
        },
        4,
        **DIAG,
    ),
    lambda: p.generate_request(
        32,
        {
            "From": "73430112233",
            "To": "101",
            "CallID": "470667183259649",
            "Line": " ",
            "ClientGUID": "*",
        },
        5,
        **DIAG,
    ),
    lambda: p.generate_request(
        8,
        {"From": "101", "To": "223322", "CallID": "470667183783938", "ClientGUID": "*"},
        6,
        **DIAG,
    ),
    lambda: p.generate_request(
        16, {"From": "101", "To": "223322", "CallID": "2000", "ClientGUID": "js"}, 7, **DIAG
    ),
    lambda: p.generate_request(
        4,
        {
            "From": "73430112233",
            "To": "101",
            "Start": "1385035625",
            "End": "1385035630",
            "Duration": "5",
            "Record": "http://x/r.mp3",
            "Direction": "0",
            "Line": "2",
            "ClientGUID": "*",
            "CallID": "3000",
        },
        8,
        **DIAG,
    ),
    lambda: p.generate_request(
        128,
        {
            "From": "101",
            "To": "9004445566",
            "Smstext": "0j/rgnc40llqtdgc",
            "ClientGUID": "js",
            "CallID": "77",
        },
        9,
        **DIAG,
    ),
    lambda: p.get_version_request(10, **DIAG),
    lambda: p.simulation_request(True, 11, **DIAG),
    lambda: p.simulation_request(False, 12, **DIAG),
]


def test_every_client_frame_is_reproduced_byte_for_byte():
    frames = client_frames()
    assert len(frames) == len(ENCODER_CALLS)
    for rec, make in zip(frames, ENCODER_CALLS, strict=True):
        xml = make()
        assert xml == rec["decoded"]
        assert p.encode_frame(xml) == rec["frame"]


def test_client_requests_decode_server_side():
    for rec in client_frames():
        [req] = p.decode_frame(rec["frame"])
        assert isinstance(req, p.Request)
        ref = ET.fromstring(rec["decoded"])
        assert req.method == ref.findtext("Method")
        assert req.request_id == ref.findtext("RequestID")
        assert dict(req.fields) == {c.tag: c.text or "" for c in ref.find("Data")}


def test_xml_escaping_reaches_the_server_unescaped():
    [req] = p.decode_frame(p.encode_frame(p.call_request("101", "8&9 <x>")))
    assert req.get("To") == "8&9 <x>"


def test_sms_text_is_base64_utf8():
    [req] = p.decode_frame(p.encode_frame(p.sms_request("101", "79001112233", "Привет & <b>")))
    assert req.method == "Generate" and req.get("Event") == "128"
    assert base64.b64decode(req.get("Smstext")).decode() == "Привет & <b>"


# ------------------------------------------------------------------ connecting


@pytest.mark.parametrize(("password", "cid"), [("~~~", "fn5+"), ("ab", "YWI="),
                                              ("pa+ss/w==", "cGErc3Mvdz09")])
def test_connect_url_sends_cid_as_the_js_sdk_does(password, cid):
    """PROTOCOL.md §1: TestServer 1.1.2 takes CID literally; the JS SDK sends
    '?CID=' + btoa(password). Percent-encoding it (CID=fn5%2B) was refused with 4008."""
    url = p.connect_url(p.ConnectSettings(server="pbx.local", phone="101", password=password))
    assert url.startswith(f"ws://pbx.local:10150/?CID={cid}&")
    assert "%" not in url.split("&")[0]
    assert url.endswith(
        "&CT=excel&GID=101&PhoneNumber=101&BroadcastEventsMask=0&BroadcastGroup="
        "&PzProtocolVersion=2"
    )


def test_a_percent_encoded_cid_is_refused_as_testserver_refuses_it():
    """What TestServer logged: clientID = fn5%2B, decoded = "~~" — not the password."""
    assert p.parse_login("/?CID=fn5%2B&GID=5&PhoneNumber=5", {}).password != "~~~"
    assert p.parse_login("/?CID=fn5+&GID=5&PhoneNumber=5", {}).password == "~~~"


def test_empty_password_gives_empty_cid():
    assert "?CID=&CT=" in p.connect_url(p.ConnectSettings(server="h", phone="1"))


def test_header_form_matches_the_diagnostic_console():
    s = p.ConnectSettings(
        server="localhost:10170",
        phone="",
        guid="diagp",
        client_type="Diagnostic",
        broadcast_mask=65535,
        build_time="1519658000",
    )
    assert p.connect_headers(s) == {
        "BroadcastEventsMask": "65535",
        "BroadcastGroup": "",
        "BuildTime": "1519658000",
        "ClientGUID": "diagp",
        "ClientID": "",
        "ClientType": "Diagnostic",
        "PhoneNumber": "",
        "PzProtocolVersion": "2",
    }


def test_both_login_forms_parse_to_the_same_login():
    s = p.ConnectSettings(server="h", phone="101", password="секрет+/=", client_type="excel")
    path = p.connect_url(s)[len("ws://h:10150") :]
    by_query = p.parse_login(path, {})
    by_header = p.parse_login("/", p.connect_headers(s))
    assert by_query.form == "query" and by_header.form == "header"
    for login in (by_query, by_header):
        assert (login.guid, login.password, login.phone, login.client_type) == (
            "101",
            "секрет+/=",
            "101",
            "excel",
        )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("pbx", "ws://pbx:10150/"),
        ("pbx:8080", "ws://pbx:8080/"),
        ("wss://pbx", "wss://pbx:10150/"),
        ("ws://10.0.0.1:10150/", "ws://10.0.0.1:10150/"),
        ("WSS://Pbx.Example:443/x", "wss://pbx.example:443/x"),
        ("[::1]", "ws://[::1]:10150/"),
    ],
)
def test_server_address_defaults(given, expected):
    assert p.normalize_server_url(given) == expected


@pytest.mark.parametrize("bad", ["", "http://pbx", "ws://", "pbx:notaport"])
def test_bad_server_address_is_a_clear_error(bad):
    with pytest.raises(p.ProtocolError):
        p.normalize_server_url(bad)


def test_password_over_32_characters_is_an_error():
    p.ConnectSettings(server="h", phone="1", password="x" * 32)
    with pytest.raises(p.ProtocolError, match="32"):
        p.ConnectSettings(server="h", phone="1", password="x" * 33)


# ------------------------------------------------------------------ decoding edge cases


def test_raw_xml_transport_and_trailing_nul_newline():
    xml = '<Event type="2" callID="18446744073709551615" from="1" line=" " to="101"/>\n\x00'
    for frame in (xml, b64(xml)):
        [ev] = p.decode_frame(frame)
        assert ev.call_id == "18446744073709551615"  # 64-bit id stays a string
        assert ev.line == "" and ev.to == "101"


def test_several_events_in_one_message_and_unknowns_kept():
    xml = (
        '<Event type="2" callID="1" from="5" to="101" colour="red"/>'
        '<Event type="512" callID="2" future="yes"/><Presence user="101" state="away"/>'
    )
    msgs = p.decode_frame(b64(xml))
    assert [type(m).__name__ for m in msgs] == ["Event", "Event", "Unknown"]
    assert msgs[0].attrs["colour"] == "red"
    assert msgs[1].type == 512 and not msgs[1].known and msgs[1].attrs["future"] == "yes"
    assert msgs[2].tag == "Presence" and msgs[2].attrs["state"] == "away"


def test_wrapped_events_are_collected():
    xml = '<Events><Event type="2" callID="1"/><Event type="32" callID="1"/></Events>'
    assert [m.type for m in p.decode_frame(xml)] == [2, 32]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("!!!not base64", "neither base64 nor XML"),
        (b64("plain text"), "no XML element"),
        (b64("<Event type='1'"), "not well-formed"),
        ("", "empty"),
        ("A" * (p.MAX_FRAME_BYTES + 4), "larger than"),
        (b64('<Event type="x" callID="1"/>'), "numeric type"),
        (base64.b64encode(b"\xff\xfe<x/>").decode(), "UTF-8"),
    ],
)
def test_bad_frames_give_a_decode_error_with_a_reason(frame, reason):
    [err] = p.decode_frame(frame)
    assert isinstance(err, p.DecodeError)
    assert reason in err.reason


def test_xml_bomb_is_refused_without_expansion():
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<Event type="1" callID="&lol2;"/>'
    )
    [err] = p.decode_frame(b64(bomb))
    assert isinstance(err, p.DecodeError) and "DTD" in err.reason


def test_external_entity_is_refused():
    xxe = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Event type="1" callID="&e;"/>'
    [err] = p.decode_frame(xxe)
    assert isinstance(err, p.DecodeError)


# ------------------------------------------------------------------ fuzz: never raises

_SEEDS = [r["frame"] for r in server_frames()] + [r["frame"] for r in client_frames()]
FUZZ_STATS = {"frames": 0}


@st.composite
def mutated_capture_frames(draw):
    frame = draw(st.sampled_from(_SEEDS))
    raw = bytearray(base64.b64decode(frame))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + draw(st.integers(1, 20))]
        elif op == "insert":
            raw[pos:pos] = draw(
                st.sampled_from(
                    [b"<", b">", b'"', b"&", b"&amp;", b"<!DOCTYPE", b"\x00", b"\xd0", b"<Event/>"]
                )
            )
        else:
            raw += raw[: draw(st.integers(0, len(raw)))]
    as_b64 = draw(st.booleans())
    return base64.b64encode(bytes(raw)).decode() if as_b64 else bytes(raw)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400), mutated_capture_frames()))
def test_decoder_never_raises(frame):
    FUZZ_STATS["frames"] += 1
    messages = p.decode_frame(frame)
    assert messages and all(
        isinstance(m, p.Event | p.Response | p.Request | p.Unknown | p.DecodeError)
        for m in messages
    )


# ------------------------------------------------------------------ close codes


@pytest.mark.parametrize("code", range(4001, 4010))
def test_application_close_codes_need_the_user(code):
    info = p.describe_close(code, "x")
    assert not info.retry
    assert info.text.en and info.text.ru and info.text.en != info.text.ru


def test_4009_text_and_network_closes_retry():
    assert "GUID" in p.describe_close(4009).text.en
    for code in (1000, 1001, 1006, 1011, None):
        assert p.describe_close(code).retry
    assert not p.describe_close(4100).retry


@pytest.mark.parametrize("status", [401, 403])
def test_http_auth_refusals_do_not_retry(status):
    info = p.describe_http_status(status)
    assert not info.retry and "пароль" in info.text.ru and "password" in info.text.en
    assert p.describe_http_status(503).retry
