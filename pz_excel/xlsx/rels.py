"""A part's relationships (``_rels/<part>.rels``): the one reader of them, for the package
reader (``xlsx/reader.py``), the package model (``xlsx/package.py``) and the Calls writer."""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from pz_excel.xlsx.xmltext import PKG_REL_NS, parse_xml

#: (Id, type, target, target mode): an internal target resolved to a part name
#: (``xl/worksheets/sheet1.xml``), an external one (a hyperlink) as written.
Rel = tuple[str, str, str, str]


def rels_part_of(part: str) -> str:
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


def resolve_target(rels_part: str, target: str) -> str:
    """A relationship's target as a part name (relative to the part the rels belong to)."""
    if target.startswith("/"):
        return target.lstrip("/")
    folder = posixpath.dirname(posixpath.dirname(rels_part))  # …/_rels/x.rels → …
    return posixpath.normpath(posixpath.join(folder, target))


def read_rels(read: Callable[[str], bytes | None], part: str) -> list[Rel]:
    """The relationships of ``part`` (``""``: the package's own), ``[]`` if it has none.
    ``read(part)`` gives a member's bytes or None; bad XML or a DTD raises ``Unsupported``."""
    rels_part = rels_part_of(part)
    data = read(rels_part)
    if data is None:
        return []
    out = []
    for el in parse_xml(data, rels_part).iter(f"{{{PKG_REL_NS}}}Relationship"):
        mode, target = el.get("TargetMode") or "", el.get("Target") or ""
        if mode != "External":
            target = resolve_target(rels_part, target)
        out.append((el.get("Id") or "", el.get("Type") or "", target, mode))
    return out
