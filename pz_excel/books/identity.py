"""Whether two names point to the same workbook file: the one rule for "same workbook".

Used wherever a workbook is matched: the agent a CLI command or a ribbon button talks to
(``pz_excel.agent.api``), and the open Excel book the live backend writes
(``pz_excel.books.livebook``).

The rule: both names are local paths (a OneDrive/SharePoint URL is never a path), ``~`` is
expanded, relative paths are taken from the current folder, symbolic links and ``..`` are
resolved, and the comparison ignores case where the file system does (Windows, and macOS
whose default volumes are case-insensitive).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def is_local_path(name: str | Path) -> bool:
    """A file path, not empty and not a URL (Excel reports cloud books by URL)."""
    text = str(name or "").strip()
    return bool(text) and "://" not in text


def workbook_key(name: str | Path) -> str:
    """The normalised form two names of one workbook share (local paths only)."""
    path = Path(str(name).strip()).expanduser()
    try:
        text = str(path.resolve())
    except (OSError, RuntimeError):  # unreadable folder, symlink loop: compare as written
        text = os.path.abspath(path)
    text = os.path.normcase(text)
    return text.casefold() if sys.platform in ("darwin", "win32") else text


def same_workbook(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same local workbook file."""
    if not (is_local_path(a) and is_local_path(b)):
        return False
    return workbook_key(a) == workbook_key(b)
