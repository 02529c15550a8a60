"""Local numbers and the area code (issue 13, item 2): with an area code set, a 5–7-digit
number that completes it to 10 national digits is that city's number, for contacts and
callers alike; short extensions stay extensions; without an area code nothing is guessed.
The end-to-end part runs a real agent on our loopback test connector and a real .xlsx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pz_excel.agent.api import ApiClient
from pz_excel.agent.lifecycle import Agent, AgentConfig
from pz_excel.books.settings import read_settings_sheet
from pz_excel.books.template import write_template
from pz_excel.crm import phones
from pz_excel.crm.contacts import load_index
from pz_excel.crm.routing import decide
from pz_excel.excel import udf_logic
from pz_excel.i18n import UserError
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ the rule (crm/phones.py)


@pytest.mark.parametrize("raw", ["555-00-00", "5550000", 5550000, 5550000.0, "555 00 00"])
def test_seven_digits_with_a_three_digit_code_are_the_citys(raw):
    assert phones.normalize(raw, area_code="343") == "73435550000"


def test_six_digits_with_a_four_digit_code_and_five_with_a_five_digit_one():
    assert phones.normalize("55-00-00", area_code="3452") == "73452550000"
    assert phones.normalize("550000", area_code="3452") == "73452550000"
    assert phones.normalize("5-00-00", area_code="34922") == "73492250000"


@pytest.mark.parametrize("ext", ["101", "12", "1234", "12345", "123456"])
def test_extensions_that_do_not_complete_the_code_stay_extensions(ext):
    assert phones.normalize(ext, area_code="343") == ext
    assert phones.normalize(ext) == ext


@pytest.mark.parametrize(
    "full", ["+73435550000", "83435550000", "73435550000", "3435550000", "+7 (912) 555-44-33"]
)
def test_full_numbers_are_unchanged_by_an_area_code(full):
    assert phones.normalize(full, area_code="343") == phones.normalize(full)
    assert phones.normalize(full, area_code="4951") == phones.normalize(full)


def test_without_an_area_code_nothing_is_guessed():
    assert phones.normalize("555-00-00") is None
    assert phones.normalize("5550000") is None
    assert phones.normalize_many(["555-00-00", "83430112233"]) == [None, "73430112233"]
    assert phones.normalize_many(["555-00-00", "83430112233"], area_code="343") == [
        "73435550000",
        "73430112233",
    ]


def test_a_length_that_does_not_complete_the_code_is_a_mismatch():
    assert phones.normalize("555-00-00", area_code="3452") is None  # 4 + 7 = 11 digits
    assert phones.local_mismatch("555-00-00", "3452") == (7, 6)
    assert phones.local_mismatch("555-00-00", "343") is None  # it matched
    assert phones.local_mismatch("12345", "343") is None  # an extension, not a mismatch
    assert phones.local_mismatch("555-00-00", "") is None


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("343", "343"),
        (" (343) ", "343"),
        ("+7 3452", "3452"),
        ("8 (343)", "343"),
        ("8142", "8142"),
        (343.0, "343"),
        ("", ""),
    ],
)
def test_area_code_setting_accepts(given, code):
    assert phones.parse_area_code(given) == code


@pytest.mark.parametrize("bad", ["34", "834300", "abc", "8343a", "043"])
def test_area_code_setting_refuses_with_a_clear_line(bad):
    with pytest.raises(UserError) as exc:
        phones.parse_area_code(bad)
    assert "area code" in exc.value.text.en and "код города" in exc.value.text.ru


# ------------------------------------------------------------------ contacts and routing

MANAGERS = [("Anna Smirnova", "101"), ("Boris Ivanov", "102")]
CONTACTS = [
    ("Local Shop", "555-00-00", "101", "Shop"),
    ("Branch", "+7 (343) 011-22-33", "102", "Branch"),
]


def test_contacts_and_callers_use_the_same_area_code(tmp_path):
    book = write_template(tmp_path / "crm.xlsx", contacts=CONTACTS, managers=MANAGERS)
    plain = load_index(book)
    assert any("'555-00-00' is not a phone number" in w.en for w in plain.warnings)
    assert decide("1", "5550000", plain).declined  # as before: no guessing
    index = load_index(book, area_code="343")
    assert not any("555-00-00" in w.en for w in index.warnings)
    for caller in ("5550000", "+73435550000", "83435550000"):
        d = decide("1", caller, index)
        assert (d.to, d.key, d.contact.name) == ("101", "73435550000", "Local Shop")
    assert decide("2", "101", index).rule == "internal"  # an extension stays one
    other = load_index(book, area_code="3452")
    warning = next(w for w in other.warnings if "555-00-00" in w.en)
    assert "has 7 digits" in warning.en and "area code 3452 has 6" in warning.en
    assert "7 цифр" in warning.ru and "с кодом 3452 их 6" in warning.ru


# ------------------------------------------------------------------ end to end


def test_a_local_caller_id_is_routed_to_the_owner_of_a_local_contact(tmp_path, server):
    book = write_template(
        tmp_path / "crm.xlsx",
        contacts=CONTACTS,
        managers=MANAGERS,
        settings={"area_code": "343"},
    )
    assert read_settings_sheet(book)["area_code"] == "343"  # the template's Settings row
    cfg = AgentConfig(
        workbook=book,
        server=server.url,
        phone="102",
        save_interval=0.1,
        lang="en",
        area_code="343",
    )
    agent = Agent(cfg).start()
    try:
        wait_until(lambda: agent.client.state.kind == "connected", 10, "agent connected")
        for call_id, caller in (("9001", "5550000"), ("9002", "+73435550000")):
            server.generate(1, {"From": caller, "CallID": call_id})
            wait_until(lambda c=call_id: server.transfers.get(c) == "101", 5, "transfer won")
        client = ApiClient.discover(phone="102")
        found = client.get("/lookup", number="555-00-00")
        assert found["key"] == "73435550000" and found["extension"] == "101"
        assert client.get("/status")["area_code"] == "343"
        link = udf_logic.AgentLink()  # the worksheet functions, as Excel calls them
        assert udf_logic.pz_normalize("555-00-00", link=link) == "+7 343 555-00-00"
        assert udf_logic.pz_owner("555-00-00", link=link) == "101"  # Owner cell: 101
        assert udf_logic.pz_normalize("abc", link=link) == "not a phone number"
    finally:
        agent.stop()


def test_run_reads_the_area_code_from_settings_and_refuses_a_bad_one(tmp_path):
    from pz_excel.cli.agent_cmd import build_config

    book = write_template(tmp_path / "crm.xlsx", settings={"area_code": "(343)"})
    cfg = build_config(book, "ws://127.0.0.1:1", "101", None, None, None, None)
    assert cfg.area_code == "343"
    cfg = build_config(book, "ws://127.0.0.1:1", "101", None, None, None, None, area_code="3452")
    assert cfg.area_code == "3452"  # --area-code wins over the sheet
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pz_excel",
            "run",
            "-w",
            str(book),
            "-s",
            "ws://127.0.0.1:1",
            "-p",
            "101",
            "--area-code",
            "34x",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=_env(),
    )
    assert done.returncode == 2 and "area code '34x' is not valid" in done.stderr


def test_init_writes_the_area_code(tmp_path):
    book = tmp_path / "new.xlsx"
    done = subprocess.run(
        [sys.executable, "-m", "pz_excel", "init", str(book), "--area-code", "343"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert read_settings_sheet(book)["area_code"] == "343"
    bad = subprocess.run(
        [sys.executable, "-m", "pz_excel", "init", str(tmp_path / "b.xlsx"), "--area-code", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=_env(),
    )
    assert bad.returncode == 2 and not (tmp_path / "b.xlsx").exists()


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PZ_LANG": "en"}


def test_the_ribbon_dials_a_bare_city_number_with_the_area_code() -> None:
    """Call selected: a cell holding 555-00-00 is that city's number once Settings has the
    area code (the rule of crm.phones, as for contacts and callers), refused without."""
    import pytest

    from pz_excel.excel.number_pick import pick_number
    from pz_excel.i18n import UserError

    selection = [("Notes", 2, 2, "555-00-00")]
    pick = pick_number(selection, lambda sheet, row: [], area_code="343")
    assert pick is not None and pick.number == "73435550000"
    assert pick.to_dial == "555-00-00"  # dialled as typed: the PBX knows its own city
    with pytest.raises(UserError):
        pick_number(selection, lambda sheet, row: [])
