"""Where a table's header row is: the one rule for every reader and writer of our sheets
(the contacts reader, the Calls writer, and the live-Excel paths).

The header row is the first, among the first ``HEADER_SCAN_ROWS`` rows that have a value
(a title or a note may sit above it; empty rows do not count), that holds every required
header. A header is found by its name in either language, compared with
``xlsx.cells.norm``: case and runs of spaces do not matter (``call  id`` is ``Call ID``).

The wanted names are plain data (this layer knows nothing of the CRM's sheets):
``crm.schema.Sheet.header_names`` and ``.required`` give them for our sheets.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from pz_excel.xlsx.cells import HEADER_SCAN_ROWS, norm

C = TypeVar("C", bound=Hashable)  # a column: an index (0- or 1-based, the caller's) or letters


class HeaderNotFound(Exception):
    """No row of the first ones holds every required header. ``missing``: the required
    keys absent from the row that came closest (all of them if no row had any)."""

    def __init__(self, missing: list[str]):
        super().__init__(", ".join(missing))
        self.missing = missing


def find_header(
    rows: Iterable[tuple[int, Mapping[C, object]]],
    names: Mapping[str, tuple[str, str]],
    required: Sequence[str],
) -> tuple[int, dict[str, C], str | None]:
    """(header row, {key: column}, language) of a sheet.

    ``rows``: the sheet's first rows as (row number, {column: value}), in order (more may
    be given, a generator is read only as far as needed); ``names``: key → (English,
    Russian) header; ``required``: the keys the header must hold. A key found twice takes
    its leftmost column. The language is the one most of the row's headers are in, None on
    a tie. Raises ``HeaderNotFound``.
    """
    wanted: dict[str, tuple[str, str]] = {}
    for key, (en, ru) in names.items():
        wanted.setdefault(norm(en), (key, "en"))
        wanted.setdefault(norm(ru), (key, "ru"))
    best: list[str] | None = None
    seen = 0
    for rownum, cells in rows:
        if not cells:
            continue  # an empty row is not one of the first rows
        if seen >= HEADER_SCAN_ROWS:
            break
        seen += 1
        found: dict[str, C] = {}
        langs = {"en": 0, "ru": 0}
        for col in sorted(cells):  # type: ignore[type-var]
            text = cells[col]
            hit = wanted.get(norm(text)) if isinstance(text, str) else None
            if hit is not None and hit[0] not in found:
                found[hit[0]] = col
                langs[hit[1]] += 1
        missing = [key for key in required if key not in found]
        if not missing:
            lang = None if langs["en"] == langs["ru"] else max(langs, key=langs.__getitem__)
            return rownum, found, lang
        if best is None or len(missing) < len(best):
            best = missing
    raise HeaderNotFound(best if best is not None else list(required))
