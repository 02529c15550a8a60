"""Workbook backends that keep the Calls sheet, behind one small interface.

* ``filebook.FileBook`` — the .xlsx file on disk, written at the zip level (Excel closed);
* ``livebook`` — the workbook open in Excel, through xlwings (written separately).

The journal is the source of truth; a book only ever receives dirty rows
(``pz_excel.agent.writer.flush_dirty``). When the book cannot be written (``BookLocked``)
the rows simply stay dirty in the journal and go out with a later batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

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

    def __reduce__(self):  # whole, across the book process's pipe (bookproc)
        return type(self), (self.text, self.lock_path)

    def __str__(self) -> str:
        return str(self.text)


class BookUnpatchable(Exception):
    """The workbook cannot be written at the zip level (encrypted, strict OOXML, .xlsb,
    markup we do not understand), and nothing else may rewrite it: rows wait in the
    journal and the user is told once what to do. ``.text``: Text."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text

    def __reduce__(self):  # whole, across the book process's pipe (bookproc)
        return type(self), (self.text,)

    def __str__(self) -> str:
        return str(self.text)


@runtime_checkable
class CallsBook(Protocol):
    """Everything the agent asks of a workbook: no ``getattr`` probes, one interface that
    the file (``FileBook``), the open book (``LiveBook``) and their switch implement."""

    kind: str  # "file" or "live"
    description: str

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        """Upsert rows by Call ID with ONE save; returns rows written; raises BookLocked."""
        ...

    def write_parts(self, writer: Callable[[Any], None]) -> bool:
        """Our other parts (the Dashboard) in one save; False if this book cannot now."""
        ...

    def existing_call_ids(self) -> set[str]: ...

    def prepare(self) -> None:
        """At start-up: a missing Calls sheet is added now, before the first call."""
        ...

    def take_recreated(self) -> bool:
        """True once after the Calls sheet was (re)created: all calls are written again."""
        ...

    def take_handed_back(self) -> list[str]:
        """Call IDs the open book had that Excel closed without saving: written again."""
        ...

    def screen_pop(self, text: str, contact_row: int | None) -> None: ...

    def read_live_contacts(self) -> tuple[list[list], list[list]] | None:
        """(Contacts rows, Managers rows) of the open book; None when it is not open."""
        ...

    def close(self) -> None: ...


class BookDefaults:
    """What a book that is only a file has nothing to do for (mixin)."""

    kind = "file"

    def write_parts(self, writer: Callable[[Any], None]) -> bool:
        return False

    def prepare(self) -> None:
        return None

    def take_recreated(self) -> bool:
        return False

    def take_handed_back(self) -> list[str]:
        return []

    def screen_pop(self, text: str, contact_row: int | None) -> None:
        return None

    def read_live_contacts(self) -> tuple[list[list], list[list]] | None:
        return None
