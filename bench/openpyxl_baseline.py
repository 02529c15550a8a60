"""The baseline the zip-level writer is measured against: the Calls sheet written the way
the tutorials do it, through openpyxl, which loads the whole workbook and saves the whole
workbook again on every write.

Benchmark code, not product code: the agent never saves a user's workbook this way. It is
kept honest — the same columns and values as ``FileBook`` (``schema.CALLS``, found by
header in either language), rows upserted by Call ID, an atomic save (temp file in the same
folder, fsync, ``os.replace``) — and minimal: no lock files, no re-read of a book changed
on disk by someone else, no Excel table extended, no styles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pz_excel.crm.schema import CALLS, WORDS, CallRow, cell_text, word

HEADER_ROWS = 10  # the header may sit below a title, as FileBook allows
_ID_NAMES = CALLS.column("call_id").names
_WORDED = {"direction", "status"}


class OpenpyxlBook:
    """A ``CallsBook`` through openpyxl: load once, then one whole-book save per
    ``write_calls``."""

    kind = "file"

    def __init__(self, path: Path | str) -> None:
        from openpyxl import load_workbook

        self.path = Path(path)
        self.description = f"file {self.path} (openpyxl baseline)"
        keep_vba = self.path.suffix.lower() in (".xlsm", ".xltm")
        self._wb: Any = load_workbook(self.path, keep_vba=keep_vba)
        self._ws, header_row, self._cols, self.lang = self._find_calls()
        id_col = self._cols["call_id"]
        self._index: dict[str, int] = {}
        self._next = header_row + 1
        for r, (value,) in enumerate(self._ws.iter_rows(min_row=header_row + 1, min_col=id_col,
                                                        max_col=id_col, values_only=True),
                                     start=header_row + 1):
            if value is not None and str(value).strip():
                self._index[cell_text(value)] = r
                self._next = r + 1

    def _find_calls(self) -> tuple[Any, int, dict[str, int], str]:
        """The sheet with a "Call ID"/"ID звонка" header in its first rows, and our columns
        by header name (either language)."""
        for ws in self._wb.worksheets:
            rows = ws.iter_rows(min_row=1, max_row=HEADER_ROWS, values_only=True)
            for r, values in enumerate(rows, start=1):
                texts = [cell_text(v) for v in values]
                if not any(t in _ID_NAMES for t in texts):
                    continue
                cols: dict[str, int] = {}
                for col in CALLS.columns:
                    for c, t in enumerate(texts, start=1):
                        if t.casefold() in (col.en.casefold(), col.ru.casefold()):
                            cols[col.key] = c
                            break
                missing = [col.en for col in CALLS.columns if col.required
                           and col.key not in cols]
                if missing:
                    raise ValueError(f"sheet {ws.title}: no column(s) {missing}")
                lang = "ru" if texts[cols["call_id"] - 1] == CALLS.column("call_id").ru else "en"
                return ws, r, cols, lang
        raise ValueError(f"{self.path.name}: no Calls sheet (no “Call ID” header)")

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert ``rows`` by Call ID, then save the whole book once."""
        if not rows:
            return 0
        ws = self._ws
        for row in rows:
            r = self._index.get(row.call_id)
            if r is None:
                r = self._index[row.call_id] = self._next
                self._next += 1
            for key, value in row.values().items():
                c = self._cols.get(key)
                if c is None:
                    continue
                if key in _WORDED and value in WORDS:
                    value = word(str(value), self.lang)
                elif key == "late":
                    value = word("yes" if value else "no", self.lang)
                elif value == "":
                    value = None
                cell = ws.cell(row=r, column=c, value=value)
                if isinstance(value, str) and value.startswith("="):
                    cell.data_type = "s"  # caller IDs and names are never formulas
                if key == "recording" and isinstance(value, str) and value.startswith("http"):
                    cell.hyperlink = value
        self._save()
        return len(rows)

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.openpyxl-saving{self.path.suffix}")
        try:
            self._wb.save(tmp)
            with open(tmp, "r+b") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def existing_call_ids(self) -> set[str]:
        return set(self._index)

    def close(self) -> None:
        self._wb = self._ws = None
