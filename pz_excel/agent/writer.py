"""The agent's writer: dirty call rows from the journal into the workbook, in batches."""

from __future__ import annotations

from pz_excel.agent.journal import Journal
from pz_excel.books import CallsBook

#: Rows per batch: one save each, so larger batches amortise the save of a big book.
DEFAULT_BATCH = 5000

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
