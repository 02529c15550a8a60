"""Phone keys: one key per number whatever the formatting; never an exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pz_excel.crm.phones import display, is_internal, looks_like_phone, normalize, normalize_many

SAME_NUMBER = [
    "+7 (343) 011-22-33",
    "+7 343 011-22-33",
    "+73430112233",
    "83430112233",
    "73430112233",
    "8 343 011 22 33",
    "8 (343) 011-22-33",
    "3430112233",
    " 8-343-011-22-33 ",
    "8\u00a0343\u00a0011\u201122\u201133",  # no-break spaces and dashes, pasted from a site
    "+7 343 011 22 33 доб. 45",  # an extension after the number: the main line is the key
    "tel:+73430112233",
    "+8 343 011 22 33",  # the common "+8" typo
    73430112233,
    73430112233.0,  # what Excel stores for a number typed without an apostrophe
    83430112233.0,
]


@pytest.mark.parametrize("raw", SAME_NUMBER)
def test_all_forms_of_one_russian_number_share_a_key(raw):
    assert normalize(raw) == "73430112233"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("101", "101"),
        (" 101 ", "101"),
        (101, "101"),
        (101.0, "101"),
        ("0101", "0101"),  # compared as it is: a leading zero is part of an extension
        ("123456", "123456"),
        ("8 800 555-35-35", "78005553535"),
        ("+44 20 7946 0958", "442079460958"),
        ("+44 (0)20 7946 0958", "442079460958"),  # the trunk zero in brackets goes
        ("8 10 44 20 7946 0958", "442079460958"),  # Russian international prefix
        ("0044 20 7946 0958", "442079460958"),
        ("+1 650 253 0000", "16502530000"),
        ("+49 30 901820", "4930901820"),
        ("+375 29 123-45-67", "375291234567"),
        ("+7 727 258 2010", "77272582010"),  # Kazakhstan shares +7
    ],
)
def test_internal_and_international_numbers(raw, key):
    assert normalize(raw) == key


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "+",
        "Иван Петров",
        "call me",
        "n/a",
        "-",
        "1",
        "7.5",
        "1-01",
        "12.03.2024",
        "2024-03-12",
        "*100#",
        "+1 234",
        "=A1",
        True,
        False,
        0,
        -73430112233,
        1.5,
        math.nan,
        math.inf,
        -math.inf,
        10**30,
        b"73430112233",
        ["73430112233"],
        "٣٤٣٠١١٢٢٣٣",  # Arabic-Indic digits: not something a PBX sends
        "101 доб. 5",  # an extension of an extension is not a number
        "x" * 10_000,
        "7" * 200,
    ],
)
def test_garbage_is_not_a_number(raw):
    assert normalize(raw) is None
    assert not looks_like_phone(raw)


def test_display_forms():
    assert display("73430112233") == "+7 343 011-22-33"
    assert display("79125554433") == "+7 912 555-44-33"
    assert display("101") == "101"
    assert display("442079460958") == "+44 20 7946 0958"
    assert display(None) == "" and display("") == ""
    assert display("8 (343) 011-22-33") == "+7 343 011-22-33"  # a raw number is tolerated
    assert display("Иван") == "Иван"


def test_looks_like_phone_tells_numbers_from_names():
    assert looks_like_phone("+7 (343) 011-22-33")
    assert looks_like_phone(73430112233.0)
    assert looks_like_phone("101")
    assert not looks_like_phone("Иван Петров")
    assert not looks_like_phone("ООО «Уралмаш»")


def test_is_internal():
    assert is_internal("101") and is_internal("123456")
    assert not is_internal("73430112233") and not is_internal(None) and not is_internal("")


def test_normalize_many_matches_normalize_on_mixed_columns():
    values = [
        *SAME_NUMBER,
        None,
        "",
        "Иван",
        "101",
        "+44 20 7946 0958",
        "+84 912 345 678",
        "8 (0) 12345678",
        "1 234 567 8901",
        101,
        "+3430112233",
        "8\x00343",
    ]
    assert normalize_many(values) == [normalize(v) for v in values]
    assert normalize_many([]) == []
    assert normalize_many(["+7 343 011 22 33"] * 3) == ["73430112233"] * 3
    assert normalize_many(["101", None], region="KZ") == [normalize("101", "KZ"), None]


# ---------------------------------------------------------------------- properties

_SEPARATORS = st.sampled_from(["", " ", "-", ".", " - ", "\u00a0", "  "])


@st.composite
def russian_number(draw):
    """A valid Russian number (10 national digits) written the ways people write it."""
    first = draw(st.sampled_from("3489"))
    rest = draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
    national = first + rest
    area, a, b, c = national[:3], national[3:6], national[6:8], national[8:]
    prefix = draw(st.sampled_from(["+7", "8", "7", "", "+7 ", "8 ", "+ 7"]))
    if prefix == "+ 7":
        prefix = "+7"
    bracket = draw(st.booleans())
    seps = [draw(_SEPARATORS) for _ in range(4)]
    area_part = f"({area})" if bracket else area
    text = f"{prefix}{seps[0]}{area_part}{seps[1]}{a}{seps[2]}{b}{seps[3]}{c}"
    padding = draw(st.sampled_from(["", " ", "\t"]))
    return "7" + national, padding + text + padding


@given(russian_number())
@settings(max_examples=400, deadline=None)
def test_any_formatting_of_a_russian_number_gives_one_key(case):
    key, text = case
    assert normalize(text) == key
    assert normalize(int(key)) == key and normalize(float(key)) == key
    assert normalize(display(key)) == key  # the pretty form reads back


@given(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet="+-() .0123456789", max_size=30),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.none(),
        st.booleans(),
        st.binary(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.decimals(allow_nan=False),
    )
)
@settings(max_examples=500, deadline=None)
@example("+90000000000000")  # found by hypothesis: Turkey's +90, not a Russian 9…
def test_never_raises_and_keys_are_digits(value):
    key = normalize(value)
    assert key is None or (key.isdigit() and key.isascii() and 2 <= len(key) <= 15)
    assert isinstance(display(key), str)
    assert looks_like_phone(value) is (key is not None)
    if key is not None:
        assert normalize(display(key)) == key  # the pretty form reads back
        if len(key) >= 11 or len(key) <= 6:  # Russian, long foreign and internal keys
            assert normalize(key) == key  # read back as they are (short foreign ones need "+")


@given(
    st.lists(
        st.one_of(
            st.text(alphabet="+-() 0123456789", max_size=20),
            russian_number().map(lambda c: c[1]),
            st.none(),
            st.integers(min_value=0, max_value=10**12),
            st.text(max_size=8),
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_normalize_many_is_normalize_of_each(values):
    assert normalize_many(values) == [normalize(v) for v in values]
