"""Live while Excel has the workbook open, the file otherwise — with a loss-free hand-over.

While the book is open in Excel, rows go into the open book through xlwings (the file is
locked by Excel anyway). When Excel closes it, the file takes over. A user may close Excel
*without saving*: rows written live then never reached the file. So at every hand-over
back to the file, the calls written live are checked against the file, and the ones it
lacks are handed back to the caller to be marked dirty again — never lost, and never
doubled, since both backends upsert by Call ID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pz_excel.crm.schema import CallRow

log = logging.getLogger("pz_excel.books")


class SwitchingBook:
    """A CallsBook that routes each batch to the live book or the file."""

    def __init__(
        self,
        path: Path,
        file_factory: Callable[[], Any],
        *,
        live_probe: Callable[[Path], bool] | None = None,
        live_factory: Callable[[Path], Any] | None = None,
    ):
        self.path = path
        self._file_factory = file_factory
        self._file: Any = None
        self._live: Any = None
        self._live_ids: set[str] = set()
        if live_probe is None or live_factory is None:
            from pz_excel.books import livebook

            live_probe = live_probe or livebook.is_open_in_excel
            live_factory = live_factory or (lambda p: livebook.LiveBook(p))
        self._probe = live_probe
        self._live_factory = live_factory
        self.handed_back: list[str] = []  # call ids the file lacked after Excel closed

    @property
    def kind(self) -> str:
        return "excel" if self._live is not None else "file"

    @property
    def description(self) -> str:
        book = self._live if self._live is not None else self._file
        return getattr(book, "description", str(self.path))

    @property
    def file(self) -> Any:
        if self._file is None:
            self._file = self._file_factory()
        return self._file

    def _current(self) -> Any:
        open_in_excel = False
        try:
            open_in_excel = self._probe(self.path)
        except Exception as exc:  # noqa: BLE001 - a probe failure means "use the file"
            log.debug("Excel probe failed: %s", exc)
        if open_in_excel:
            if self._live is None:
                self._live = self._live_factory(self.path)
                log.info("workbook open in Excel: writing rows live")
            return self._live
        if self._live is not None:
            self._hand_over_to_file()
        return self.file

    def _hand_over_to_file(self) -> None:
        live, self._live = self._live, None
        try:
            live.close()
        except Exception as exc:  # noqa: BLE001 - Excel may already be gone
            log.debug("closing the live book: %s", exc)
        if self._file is not None:
            self._file.close()  # the file changed under us (Excel saved it): start afresh
            self._file = None
        missing = self._live_ids - self.file.existing_call_ids()
        self._live_ids.clear()
        if missing:
            log.info(
                "Excel closed without saving %d call rows: writing them to the file", len(missing)
            )
            self.handed_back.extend(sorted(missing))

    def take_handed_back(self) -> list[str]:
        ids, self.handed_back = self.handed_back, []
        return ids

    def write_calls(self, rows: Sequence[CallRow]) -> int:
        book = self._current()
        written = book.write_calls(rows)
        if book is self._live:
            self._live_ids.update(r.call_id for r in rows)
        return written

    def existing_call_ids(self) -> set[str]:
        return self._current().existing_call_ids()

    def take_recreated(self) -> bool:
        return self._file is not None and self._file.take_recreated()

    def write_parts(self, writer: Callable[[Any], None]) -> bool:
        """Our other parts (the Dashboard) go into the file only: while Excel has the book
        open the file is Excel's, and they wait until it is closed. True if written."""
        book = self._current()
        if book is self._live:
            return False
        book.write_parts(writer)
        return True

    def prepare(self) -> None:
        """At start-up: give the file its Calls sheet now, unless Excel has the book."""
        book = self._current()
        if book is not self._live:
            book.ensure_calls_sheet()

    def screen_pop(self, text: str, contact_row: int | None) -> None:
        """Highlight the caller's Contacts row and show ``text`` in Excel's status bar."""
        if self._live is None:
            return
        if contact_row:
            self._live.highlight_contact(contact_row)
        self._live.status_bar(text)

    def read_live_contacts(self) -> tuple[list[list], list[list]] | None:
        """(Contacts rows, Managers rows) from the open book, or None when not live."""
        if self._live is None:
            return None
        from pz_excel.crm.schema import CONTACTS, MANAGERS

        return self._live.read_table(CONTACTS.names), self._live.read_table(MANAGERS.names)

    def close(self) -> None:
        for book in (self._live, self._file):
            if book is not None:
                try:
                    book.close()
                except Exception as exc:  # noqa: BLE001 - closing must not hide a real error
                    log.debug("closing a book: %s", exc)
        self._live = self._file = None
