"""Workbook backends that keep the Calls sheet, behind one small interface.

* ``filebook.FileBook`` — the .xlsx file on disk, written at the zip level (Excel closed);
* ``livebook`` — the workbook open in Excel, through xlwings (written separately).

The journal is the source of truth; a book only ever receives dirty rows
(``pz_excel.agent.writer.flush_dirty``). When the book cannot be written (``BookLocked``)
the rows simply stay dirty in the journal and go out with a later batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pz_excel.crm.schema import CallRow
from pz_excel.i18n import Text


class BookLocked(Exception):
    """The workbook is open or locked elsewhere; rows wait in the journal. ``.text``: Text."""

    def __init__(self, text: Text | str, lock_path: str | None = None):
        if isinstance(text, str):  # a backend's plain message (e.g. "Excel is busy: …")
            text = Text(text, text)
        super().__init__(text.en)
        self.text = text
        self.lock_path = lock_path

    def __str__(self) -> str:
        return str(self.text)


class BookUnpatchable(Exception):
    """The workbook cannot be written at the zip level (encrypted, strict OOXML, .xlsb,
    markup we do not understand), and nothing else may rewrite it: rows wait in the
    journal and the user is told once what to do. ``.text``: Text."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text

    def __str__(self) -> str:
        return str(self.text)


@runtime_checkable
class CallsBook(Protocol):
    """What the agent needs from a workbook."""

    description: str

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert rows by Call ID with ONE save; returns rows written; raises BookLocked."""
        ...

    def existing_call_ids(self) -> set[str]: ...

    def close(self) -> None: ...
