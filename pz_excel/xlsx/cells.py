"""What may go into a cell of ours, and how our columns are found: one place for both the
zip-level writer and the sheets we create."""

from __future__ import annotations

from urllib.parse import urlsplit

from pz_excel.xlsx.refs import ILLEGAL_CHARACTERS_RE

#: Characters that make Excel (or a CSV export opened in it) evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_CELL_TEXT = 32767  # Excel's limit for a cell
MAX_LINK = 2079  # Excel's limit for a hyperlink address
#: Excel keeps at most 65,530 hyperlinks on a sheet and "repairs" a file with more; we stop
#: short of it (a recording past this is written as plain text, see books/callspatch.py).
MAX_SHEET_LINKS = 65_000
HEADER_SCAN_ROWS = 10  # a title or a note may sit above the header row
DATE_FORMATS = {"en": "yyyy-mm-dd hh:mm:ss", "ru": "dd.mm.yyyy hh:mm:ss"}
TEXT_KINDS = ("phone",)
ID_KEYS = ("call_id",)
LINK_COLOR = "0563C1"  # Excel's hyperlink blue


def norm(text: object) -> str:
    """A header or sheet name compared the way a person reads it: case and runs of
    spaces do not matter."""
    return " ".join(str(text).split()).casefold() if text is not None else ""


def safe_text(value: str) -> str:
    """Text a cell can hold: no XML-illegal control characters, within Excel's limit."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:MAX_CELL_TEXT]


def is_web_link(value: str) -> bool:
    """Only plain http(s) addresses become hyperlinks (never file:, javascript:, ftp:)."""
    if not value or len(value) > MAX_LINK or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
