"""xlsx/refs.py restates a few of openpyxl's rules so the agent need not import openpyxl:
here each is checked against openpyxl itself, over every column and many references,
moments and number formats."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE as OPX_ILLEGAL
from openpyxl.styles.numbers import BUILTIN_FORMATS
from openpyxl.styles.numbers import is_date_format as opx_is_date
from openpyxl.utils.cell import column_index_from_string as opx_index
from openpyxl.utils.cell import get_column_letter as opx_letter
from openpyxl.utils.cell import range_boundaries as opx_bounds
from openpyxl.utils.datetime import MAC_EPOCH as OPX_MAC
from openpyxl.utils.datetime import WINDOWS_EPOCH as OPX_WIN
from openpyxl.utils.datetime import to_excel as opx_to_excel

from pz_excel.xlsx import refs


def outcome(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return ValueError


def test_every_column_both_ways():
    for i in range(1, refs.MAX_COLUMN + 1):
        letters = refs.get_column_letter(i)
        assert letters == opx_letter(i)
        assert refs.column_index_from_string(letters) == i == opx_index(letters)
        assert refs.column_index_from_string(letters.lower()) == i
    for bad in (0, -1, refs.MAX_COLUMN + 1):
        assert outcome(refs.get_column_letter, bad) is outcome(opx_letter, bad) is ValueError
    for bad in ("", "AAAA", "A1", "Ж", "$A", "1"):
        assert outcome(refs.column_index_from_string, bad) is ValueError
        assert outcome(opx_index, bad) is ValueError


@pytest.mark.parametrize("ref", [
    "A1", "$A$1", "B2:D9", "$B$2:$D$9", "b2:d9", "XFD1048576", "A:C", "$A:$C", "2:9",
    "$2:$9", "A1:A1", "C", "7", "A1:B", "A:9", "AAAA1", "A0", "", ":", "A1:", "1A", "A1 ",
    "ZZZ1:ZZZ2", "A1:XFD1048576",
])
def test_ranges_read_as_openpyxl_reads_them(ref):
    assert outcome(refs.range_boundaries, ref) == outcome(opx_bounds, ref)


def test_serial_dates_in_both_date_systems():
    assert (refs.WINDOWS_EPOCH, refs.MAC_EPOCH) == (OPX_WIN, OPX_MAC)
    rnd = random.Random(14)
    moments = [datetime(1900, 1, 1), datetime(1900, 2, 28, 23, 59), datetime(1900, 3, 1),
               datetime(1899, 12, 31, 12), datetime(1904, 1, 1), datetime(2026, 11, 29, 9, 5, 7,
                                                                          123456)]
    moments += [datetime(1900, 1, 1) + timedelta(seconds=rnd.randrange(0, 200 * 365 * 86400),
                                                 microseconds=rnd.randrange(10**6))
                for _ in range(2000)]
    for when in moments:
        for epoch in (refs.WINDOWS_EPOCH, refs.MAC_EPOCH):
            assert refs.to_excel(when, epoch) == opx_to_excel(when, epoch), (when, epoch)
    assert refs.to_excel(date(2024, 3, 1)) == opx_to_excel(date(2024, 3, 1))


def test_which_formats_show_a_date():
    assert refs.BUILTIN_DATE_FORMATS == {
        i: f for i, f in BUILTIN_FORMATS.items() if opx_is_date(f)}
    custom = ["General", "0.00", "@", "yyyy-mm-dd hh:mm:ss", "dd.mm.yyyy", '"d"0', "[Red]0",
              "[$-419]dd mmmm yyyy", "[h]:mm", "[mm]:ss", "0_);(0)", r"\d0", "_d0",
              "#,##0;[Red]-#,##0;d", "mm:ss.0", '"Date: "0', "[BLUE]yyyy", None]
    for fmt in [*BUILTIN_FORMATS.values(), *custom]:
        assert refs.is_date_format(fmt) == opx_is_date(fmt), fmt


def test_the_same_characters_are_illegal():
    text = "".join(chr(i) for i in range(0x3000))
    assert refs.ILLEGAL_CHARACTERS_RE.sub("", text) == OPX_ILLEGAL.sub("", text)
