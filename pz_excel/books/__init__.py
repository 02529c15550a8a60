"""Workbook backends that keep the Calls sheet, behind one small interface.

* ``filebook.FileBook`` — the .xlsx file on disk, written at the zip level (Excel closed);
* ``livebook`` — the workbook open in Excel, through xlwings (written separately).

The journal is the source of truth; a book only ever receives dirty rows
(``flush_dirty``). When the book cannot be written (``BookLocked``) the rows simply stay
dirty in the journal and go out with a later batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..i18n import Text
from ..schema import CallRow

if TYPE_CHECKING:
    from ..journal import Journal

#: Rows per batch: one save each, so larger batches amortise the save of a big book.
DEFAULT_BATCH = 5000


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


def flush_dirty(journal: Journal, book: CallsBook, max_rows: int = DEFAULT_BATCH) -> int:
    """Write up to ``max_rows`` dirty rows in one batch, then mark them written.

    Marking uses the versions read here: a row that changed while the batch was being
    written stays dirty and goes out with the next batch. ``BookLocked`` and any other
    error propagate with nothing marked, so nothing is lost.
    """
    dirty = journal.dirty_calls(limit=max_rows)
    if not dirty:
        return 0
    written = book.write_calls([row for row, _ in dirty])
    journal.mark_written((row.call_id, version) for row, version in dirty)
    return written
