"""Worksheet XML for the sheets we own whole (a new Calls sheet, the Dashboard).

A ``Grid`` says what the sheet holds — values with a style name per cell, column widths,
frozen header rows, page setup, a drawing — and ``worksheet_xml`` writes it in the element
order of ECMA-376's ``CT_Worksheet`` (Excel refuses parts out of order). Text is always an
inline string: never a formula, whatever it starts with, and no shared-strings edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from pz_excel.xlsx.cells import safe_text
from pz_excel.xlsx.refs import WINDOWS_EPOCH, get_column_letter, to_excel
from pz_excel.xlsx.xmltext import MAIN_NS, REL_NS, esc_attr, esc_text

Value = str | int | float | date | datetime | timedelta | None


@dataclass
class Grid:
    """A sheet of ours, cell by cell. Rows and columns are 1-based."""

    cells: dict[tuple[int, int], tuple[Value, str]] = field(default_factory=dict)
    widths: dict[int, float] = field(default_factory=dict)
    heights: dict[int, float] = field(default_factory=dict)  # points, for wrapped headers
    frozen_rows: int = 0  # rows kept at the top while scrolling
    autofilter: str = ""  # e.g. "A1:N1"
    landscape: bool = True
    fit_width: bool = True  # printed one page wide, as many pages tall as it takes
    row_breaks: list[int] = field(default_factory=list)  # a new page after these rows
    drawing_rid: str = ""  # the relationship of the sheet's drawing (charts)
    selected: bool = False

    def put(self, row: int, col: int, value: Value, style: str = "") -> None:
        self.cells[(row, col)] = (value, style)

    def row(self, row: int, values: list[Value], style: str = "", first: int = 1) -> None:
        for i, value in enumerate(values):
            self.put(row, first + i, value, style)

    @property
    def last_row(self) -> int:
        return max((r for r, _c in self.cells), default=1)

    @property
    def last_col(self) -> int:
        return max((c for _r, c in self.cells), default=1)


def serial(value: date | datetime | timedelta, epoch: datetime = WINDOWS_EPOCH) -> str:
    """Excel's number for a date, a moment or a duration (days)."""
    if isinstance(value, timedelta):
        return repr(value.total_seconds() / 86400)
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    elif value.tzinfo is not None:  # Excel has no zones: local wall time
        value = value.astimezone().replace(tzinfo=None)
    number = to_excel(value, epoch)
    return repr(float(number)) if isinstance(number, float) else str(number)


def cell_xml(ref: str, value: Value, style: int, epoch: datetime = WINDOWS_EPOCH) -> str:
    s = f' s="{style}"' if style else ""
    if value is None or value == "":
        return f'<c r="{ref}"{s}/>' if style else ""
    if isinstance(value, str):
        text = safe_text(value)
        space = ' xml:space="preserve"' if text != text.strip() else ""
        return f'<c r="{ref}"{s} t="inlineStr"><is><t{space}>{esc_text(text)}</t></is></c>'
    if isinstance(value, bool):  # a bool is an int: said as Excel's TRUE/FALSE
        return f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (date, datetime, timedelta)):
        return f'<c r="{ref}"{s}><v>{serial(value, epoch)}</v></c>'
    return f'<c r="{ref}"{s}><v>{value!r}</v></c>'


def worksheet_xml(
    grid: Grid, style_of: Callable[[str], int], epoch: datetime = WINDOWS_EPOCH
) -> bytes:
    """The worksheet part for ``grid``; ``style_of(name)`` gives a style's xf index."""
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n',
        f'<worksheet xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">',
    ]
    if grid.fit_width:
        out.append('<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>')
    last = f"{get_column_letter(grid.last_col)}{grid.last_row}"
    out.append(f'<dimension ref="A1:{last}"/>')
    view = '<sheetView workbookViewId="0"' + (' tabSelected="1"' if grid.selected else "")
    if grid.frozen_rows:
        top = f"A{grid.frozen_rows + 1}"
        out.append(
            f'<sheetViews>{view}><pane ySplit="{grid.frozen_rows}" topLeftCell="{top}" '
            'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" '
            f'activeCell="{top}" sqref="{top}"/></sheetView></sheetViews>'
        )
    else:
        out.append(f"<sheetViews>{view}/></sheetViews>")
    out.append('<sheetFormatPr defaultRowHeight="15"/>')
    if grid.widths:
        out.append("<cols>")
        for col in sorted(grid.widths):
            out.append(f'<col min="{col}" max="{col}" width="{grid.widths[col]:.2f}" '
                       'customWidth="1"/>')
        out.append("</cols>")
    out.append("<sheetData>")
    rows: dict[int, list[tuple[int, Value, str]]] = {}
    for (r, c), (value, style) in grid.cells.items():
        rows.setdefault(r, []).append((c, value, style))
    for r in sorted(rows):
        cells = "".join(
            cell_xml(f"{get_column_letter(c)}{r}", value, style_of(style) if style else 0,
                     epoch)
            for c, value, style in sorted(rows[r], key=lambda item: item[0])
        )
        height = grid.heights.get(r)
        tall = f' ht="{height:g}" customHeight="1"' if height else ""
        out.append(f'<row r="{r}"{tall}>{cells}</row>' if cells else "")
    out.append("</sheetData>")
    if grid.autofilter:
        out.append(f'<autoFilter ref="{esc_attr(grid.autofilter)}"/>')
    out.append('<pageMargins left="0.5" right="0.5" top="0.6" bottom="0.6" header="0.3" '
               'footer="0.3"/>')
    orientation = "landscape" if grid.landscape else "portrait"
    fit = ' fitToWidth="1" fitToHeight="0"' if grid.fit_width else ""
    out.append(f'<pageSetup paperSize="9" orientation="{orientation}"{fit}/>')
    if grid.row_breaks:
        breaks = "".join(f'<brk id="{r}" max="16383" man="1"/>' for r in grid.row_breaks)
        n = len(grid.row_breaks)
        out.append(f'<rowBreaks count="{n}" manualBreakCount="{n}">{breaks}</rowBreaks>')
    if grid.drawing_rid:
        out.append(f'<drawing r:id="{esc_attr(grid.drawing_rid)}"/>')
    out.append("</worksheet>")
    return "".join(out).encode("utf-8")
