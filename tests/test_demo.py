"""``pz-excel demo`` end to end, as a new user runs it, also piped (``demo | cat``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook


def run_demo(tmp_path: Path, lang: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PZ_LANG"] = lang
    done = subprocess.run(
        [sys.executable, "-m", "pz_excel", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,  # a pipe: no terminal, so 80 columns
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_demo_piped_fits_80_columns_and_breaks_no_word(tmp_path, lang) -> None:
    out = run_demo(tmp_path, lang)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Every table row's right border is there: nothing was cropped.
    table = [line for line in lines if line.startswith(("│", "┃"))]
    assert table and all(line.rstrip().endswith(("│", "┃")) for line in table)
    # Words read back from the book appear whole in the output: no word broken in two.
    book = tmp_path / "demo" / "pz-excel-demo.xlsx"
    wb = load_workbook(book, read_only=True)
    calls = list(
        wb.worksheets[
            [ws.title for ws in wb.worksheets].index("Звонки" if lang == "ru" else "Calls")
        ].iter_rows(values_only=True)
    )
    wb.close()
    header = list(calls[0])
    shown_columns = [
        header.index(h)
        for h in (("Контакт", "Ответственный") if lang == "ru" else ("Contact", "Owner"))
    ]
    words = {
        word
        for row in calls[1:]
        for i in shown_columns
        if isinstance(row[i], str)
        for word in row[i].split()
    }
    cells = " ".join(part.strip() for line in table for part in line.strip("│┃").split("│"))
    shown = set(re.split(r"\s+", cells))
    call_ids = {str(row[0]) for row in calls[1:]}
    assert call_ids <= shown
    names = {w for w in words if w.isalpha() and len(w) > 8}  # long words break first
    assert names and names <= shown
    end = "Готово за" if lang == "ru" else "Done in"
    assert any(line.startswith(end) for line in lines)
