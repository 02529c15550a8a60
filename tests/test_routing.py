"""The transfer decision: every rule, with and without a fallback, reasons in both
languages, and the same answers as the linear scan it replaces."""

from __future__ import annotations

import dataclasses

import pytest

from pz_excel.books.template import demo_contacts, write_template
from pz_excel.crm.contacts import build_index, load_index
from pz_excel.crm.routing import Decision, decide, linear_scan_decide

MANAGERS = [("Anna Smirnova", "101"), ("Борис Иванов", "102"), ("Вера Петрова", "103")]
PEOPLE = [
    ("Ivan Petrov", "+7 (343) 011-22-33", "101", "Uralmash"),
    ("Ольга Сидорова", "8 912 555 44 33", " БОРИС  иванов ", "Роза"),
    ("No Owner Ltd", "79120000001", "", "Nobody"),
    ("Ghost", "79120000002", "Petrov", "Ghost Inc"),
    ("Colleague's line", "105", "102", ""),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("routing") / "crm.xlsx"
    return load_index(write_template(path, contacts=PEOPLE, managers=MANAGERS))


def test_owner_by_extension(index):
    d = decide("1", "83430112233", index)
    assert (d.to, d.rule, d.key, d.caller) == (
        "101",
        "owner-extension",
        "73430112233",
        "83430112233",
    )
    assert d.contact.name == "Ivan Petrov" and not d.declined
    assert d.reason.en == "Ivan Petrov (Uralmash, row 2): owner 101"
    assert d.reason.ru == "Ivan Petrov (Uralmash, строка 2): ответственный 101"


def test_owner_by_name_any_case_and_spaces(index):
    d = decide("2", "+7 912 555-44-33", index, me="102")
    assert (d.to, d.rule) == ("102", "owner-name")
    assert d.reason.en == "Ольга Сидорова (Роза, row 3): owner БОРИС  иванов → 102 (this extension)"
    assert "(этот добавочный)" in d.reason.ru


@pytest.mark.parametrize(
    ("caller", "rule", "en", "ru"),
    [
        (
            "79990001122",
            "unknown-caller",
            "+7 999 000-11-22 is not in Contacts",
            "номера +7 999 000-11-22 нет в контактах",
        ),
        ("", "unknown-caller", "no caller number (hidden)", "номер звонящего скрыт"),
        (
            "anonymous",
            "unknown-caller",
            "caller 'anonymous' is not a phone number",
            "звонящий «anonymous» — не номер телефона",
        ),
        (
            "79120000001",
            "no-owner",
            "No Owner Ltd (Nobody, row 4) has no owner",
            "у No Owner Ltd (Nobody, строка 4) не указан ответственный",
        ),
        (
            "79120000002",
            "owner-unresolved",
            "owner 'Petrov' of Ghost (Ghost Inc, row 5) is not in Managers",
            "ответственного «Petrov» для Ghost (Ghost Inc, строка 5) нет в листе «Менеджеры»",
        ),
    ],
)
def test_unroutable_callers_are_declined_or_go_to_the_fallback(index, caller, rule, en, ru):
    d = decide("3", caller, index)
    assert (d.to, d.rule, d.declined) == ("", rule, True)
    assert d.reason.en == f"{en}: declined" and d.reason.ru == f"{ru}: отказ"
    f = decide("3", caller, index, fallback=" 103 ")
    assert (f.to, f.rule) == ("103", "fallback")
    assert f.reason.en == f"{en} → fallback 103"
    assert f.reason.ru == f"{ru} → запасной добавочный 103"
    assert decide("3", caller, index, fallback="103", me="103").reason.en.endswith(
        "(this extension)"
    )
    assert f.contact == d.contact


def test_internal_callers_are_never_sent_to_the_fallback(index):
    d = decide("4", "104", index, fallback="103")
    assert (d.to, d.rule) == ("", "internal")
    assert d.reason.en == "internal call from 104: not routed"
    # …unless the number is a contact of its own: then its owner gets it
    assert decide("5", "105", index, fallback="103").to == "102"


def test_decision_is_immutable(index):
    d = decide("6", "83430112233", index)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.to = "999"  # type: ignore[misc]
    assert isinstance(d, Decision)


def test_linear_scan_gives_the_same_decisions():
    people = demo_contacts(400, MANAGERS, seed=5)
    index = build_index(
        [["Name", "Phone", "Owner", "Company"], *people], [["Owner", "Extension"], *MANAGERS]
    )
    callers = [p[1] for p in people[::37]] + [
        "79990001122",
        "",
        "101",
        "garbage",
        people[3][1].replace(" ", ""),
    ]
    for i, caller in enumerate(callers):
        for fallback in ("", "103"):
            fast = decide(str(i), caller, index, fallback=fallback, me="101")
            slow = linear_scan_decide(str(i), caller, people, MANAGERS, fallback=fallback, me="101")
            assert fast == slow, caller
    owners = {p[2] for p in people}
    assert {"Anna Smirnova", "101", None} & owners  # names, extensions and blanks occur


def test_decide_reads_floats_and_phones_typed_as_numbers():
    index = build_index([["Name", "Phone", "Owner"], ["A", 83430112233.0, 101.0]], [])
    d = decide("7", "+7 343 011 22 33", index)
    assert (d.to, d.rule, d.contact.owner) == ("101", "owner-extension", "101")
