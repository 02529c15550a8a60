"""The Calls sheet's model flat in the log's size (issue 14, target 3): the packed Call ID
index, segments parked in a spill file, on real .xlsx files read back with openpyxl."""

from __future__ import annotations

import gc
import logging
import os
import random
import tempfile
import tracemalloc
from pathlib import Path

from openpyxl import load_workbook

from pz_excel.books.callspatch import CallsPatch
from pz_excel.books.filebook import FileBook
from pz_excel.xlsx import segments
from pz_excel.xlsx.rowindex import MERGE_AT, RowIndex, packed_id
from pz_excel.xlsx.segments import Stored
from tests.test_xlsxpatch import call, crm_book

ODD_IDS = ["0042", "42", "ID-7", "1700000000.123", "555 #2", "555 #3",
           "99999999999999999999999", "18446744073709551615", "18446744073709551616", "0",
           " 77", "٣"]  # Arabic-Indic three: a digit to str.isdigit, never a packed ID


def test_packed_ids_are_only_canonical_decimals_that_fit_64_bits():
    assert packed_id("42") == 42 and packed_id("0") == 0
    assert packed_id("18446744073709551615") == 2**64 - 1
    for text in ("0042", "", "-1", "+1", "1e3", "18446744073709551616", "٣", " 7", "555 #2"):
        assert packed_id(text) is None


def test_row_index_matches_a_dict_for_every_shape_of_id():
    rng = random.Random(14)
    index, model = RowIndex(), {}
    ids = [str(10**12 + i) for i in range(3 * MERGE_AT)]  # a PBX's growing IDs
    late = [str(10**11 + rng.randrange(10**9)) for _ in range(2 * MERGE_AT + 7)]  # older
    order = ids[: MERGE_AT] + late + ids[MERGE_AT:] + ODD_IDS
    for row, key in enumerate(order, start=2):
        index.keep_first(key, row)
        model.setdefault(key, row)
    for key in rng.sample(order, 500):  # a copy of a call further down: the first row wins
        index.keep_first(key, 10**6)
    for key in rng.sample(order, 300):  # updates land on the entry's own row
        index[key] = model[key] = rng.randrange(2, 10**6)
    assert len(index) == len(model) and set(index) == set(model)
    for key, row in model.items():
        assert index.get(key) == row and key in index
    for missing in ("43", "0043", "555 #4", str(10**12 + 10**6), "9"):
        assert index.get(missing) is None and missing not in index


def test_a_restarted_agent_updates_old_calls_of_a_spilled_log_in_place(tmp_path):
    """Numeric IDs (some out of order), aliases and odd IDs over several segments: after a
    restart the oldest calls, parked in the spill file, are rewritten on their own rows."""
    path = crm_book(tmp_path / "crm.xlsx")
    book = FileBook(path)
    numeric = [str(5_000_000_000 + i) for i in range(1_300)]
    numeric[700:710] = [str(4_000_000_000 + i) for i in range(10)]  # a replayed batch
    batches = [numeric[i : i + 400] for i in range(0, len(numeric), 400)]
    batches[1] = batches[1][:200] + ODD_IDS + batches[1][200:]
    for batch in batches:
        book.write_calls([call(cid, duration=1) for cid in batch])
    book.close()
    order = [cid for batch in batches for cid in batch]

    patch = CallsPatch.open(path)  # what a restarted agent holds: cold segments spilled
    cold = patch.rows.segs[:-1]
    assert cold and all(isinstance(s.packed, Stored) and s.items is None for s in cold)
    assert patch.index.get(numeric[0]) == 2 and patch.index.get("0042") != patch.index.get("42")
    del patch

    again = FileBook(path)  # the restart
    touched = [numeric[0], numeric[705], "0042", "555 #2", "99999999999999999999999",
               "٣", numeric[-1]]
    again.write_calls([call(cid, status="missed", duration=99) for cid in touched]
                      + [call("6000000000", duration=7), call("555 #4", duration=7)])
    again.close()
    ws = load_workbook(path)["Calls"]
    got = [ws.cell(r, 1).value for r in range(2, ws.max_row + 1)]
    assert got == [*order, "6000000000", "555 #4"]  # no row moved, none duplicated
    for r, cid in enumerate(got, start=2):
        want = 99 if cid in touched else 7 if cid in ("6000000000", "555 #4") else 1
        assert ws.cell(r, 10).value == want, cid
        assert ws.cell(r, 3).value == ("missed" if cid in touched else "completed")


def test_the_spill_is_compacted_and_the_book_stays_right(tmp_path, monkeypatch):
    """Updates of old rows leave dead copies in the spill file; past the floor (lowered
    here) it is rewritten with the live segments only, and saves go on from the new one."""
    monkeypatch.setattr(segments, "COMPACT_FLOOR", 0)
    path = crm_book(tmp_path / "crm.xlsx")
    FileBook(path).write_calls([call(str(100 + i), duration=i) for i in range(40)])
    patch = CallsPatch.open(path, segment=4)
    rng = random.Random(6)
    model = {str(100 + i): i for i in range(40)}
    spills = {id(patch.rows.spill)}
    for save in range(12):
        rows = [call(cid, duration=1000 + save) for cid in rng.sample(sorted(model), 3)]
        rows.append(call(str(500 + save), duration=save))
        patch.apply(rows)
        tmp = tmp_path / f"save{save}.xlsx"
        patch.write(tmp, None)
        os.replace(tmp, path)
        patch.committed()
        model.update({r.call_id: r.duration for r in rows})
        spills.add(id(patch.rows.spill))
        assert patch.rows.spill.end - patch.rows.spill.live <= patch.rows.spill.live
    assert len(spills) > 1  # compacted at least once
    ws = load_workbook(path)["Calls"]
    seen = {ws.cell(r, 1).value: ws.cell(r, 10).value for r in range(2, ws.max_row + 1)}
    assert seen == model and ws.max_row == 1 + len(model)


def test_a_loaded_log_holds_no_python_object_per_row(tmp_path):
    """10 k calls: the index and the row keys are packed arrays and the cold segments live
    in the spill file: ~0.2 MB held. The dicts per row of the old model held 2.1 MB."""
    path = crm_book(tmp_path / "crm.xlsx", contacts=1)
    book = FileBook(path)
    for at in range(0, 10_000, 2_500):
        book.write_calls([call(str(7_000_000_000 + i), recording="")
                          for i in range(at, at + 2_500)])
    book.close()
    gc.collect()
    tracemalloc.start()
    try:
        patch = CallsPatch.open(path)
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(patch.index) == 10_000 and patch.index.get("7000009999") == 10_001
    assert held < 700_000, held


def test_the_spill_file_is_not_in_the_books_folder(tmp_path):
    path = crm_book(tmp_path / "crm.xlsx")
    FileBook(path).write_calls([call(str(i)) for i in range(2_000)])
    before = set(Path(tmp_path).iterdir())
    patch = CallsPatch.open(path)
    assert patch.rows.spill.live > 0 and set(Path(tmp_path).iterdir()) == before


def test_a_temp_folder_we_cannot_write_keeps_the_sheet_in_memory(tmp_path, monkeypatch, caplog):
    """A full or missing temp folder costs RAM, never the book: saves go on as before."""
    caplog.set_level(logging.WARNING)
    path = crm_book(tmp_path / "crm.xlsx")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such folder"))
    book = FileBook(path)
    book.write_calls([call(str(i), duration=1) for i in range(1_200)])
    book.write_calls([call("0", duration=5), call("1200", duration=5)])
    book.close()
    assert any("temp folder" in r.getMessage() for r in caplog.records)
    ws = load_workbook(path)["Calls"]
    assert [ws.cell(r, 1).value for r in range(2, ws.max_row + 1)] == [
        str(i) for i in range(1_201)]
    assert ws["J2"].value == 5 and ws["J3"].value == 1 and ws.cell(ws.max_row, 10).value == 5
