"""The package parts a sheet of ours touches, edited at the zip level.

Adding the Calls or Dashboard sheet to a user's workbook changes four shared parts and
nothing else: ``[Content_Types].xml`` (an Override per new part), ``xl/workbook.xml`` (a
``<sheet>`` entry, and the print titles' defined name), the workbook's relationships, and
``docProps/app.xml`` (the sheet titles Explorer shows). Each is parsed with lxml, edited in
place and serialised again: every element and attribute we do not touch (extensions,
``mc:Ignorable`` namespaces, defined names, views) is kept as it was. All other members of
the zip are copied byte for byte by ``zipio.write_zip``.

A ``Package`` is a model in memory: ``fresh()`` gives the parts to write, ``removed()`` the
members to leave out; ``committed()`` is called once the new file is the workbook.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from pz_excel.xlsx.rels import read_rels, rels_part_of, resolve_target
from pz_excel.xlsx.xmltext import CT_NS, MAIN_NS, PKG_REL_NS, REL_NS, parse_xml, xml_bytes
from pz_excel.xlsx.zipio import Unsupported

CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_DRAWING = "application/vnd.openxmlformats-officedocument.drawing+xml"
CT_CHART = "application/vnd.openxmlformats-officedocument.drawingml.chart+xml"
REL_WORKSHEET = REL_NS + "/worksheet"
REL_DRAWING = REL_NS + "/drawing"
REL_CHART = REL_NS + "/chart"
VT_NS = "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"
APP_NS = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
PRINT_TITLES = "_xlnm.Print_Titles"

SML = "{%s}" % MAIN_NS  # noqa: UP031 - a Clark-notation prefix
_R = "{%s}" % REL_NS  # noqa: UP031
_P = "{%s}" % PKG_REL_NS  # noqa: UP031
_C = "{%s}" % CT_NS  # noqa: UP031
_V = "{%s}" % VT_NS  # noqa: UP031
_A = "{%s}" % APP_NS  # noqa: UP031

#: Characters Excel refuses in a sheet name, and its length limit.
_BAD_TITLE = re.compile(r"[\[\]:*?/\\]")


@dataclass
class SheetEntry:
    """One ``<sheet>`` of workbook.xml: its title, part, position (localSheetId)."""

    title: str
    part: str
    rid: str
    index: int


def quote_title(title: str) -> str:
    """A sheet name as formulas and defined names write it: 'Calls', 'Звонки 2026'."""
    return "'" + title.replace("'", "''") + "'"


class Package:
    """See the module docstring. ``read(part)`` gives a member's bytes (None if absent)."""

    def __init__(self, read: Callable[[str], bytes | None], names: set[str], main: str) -> None:
        self._read = read
        self._names = {n.lower() for n in names}  # members of the source zip
        self.main = main
        self.main_rels = rels_part_of(main)
        types = read("[Content_Types].xml")
        wb, wb_rels = read(main), read(self.main_rels)
        if types is None or wb is None or wb_rels is None:
            raise Unsupported("no content types, workbook part or workbook relationships")
        self.types = parse_xml(types, "[Content_Types].xml")
        self.workbook = parse_xml(wb, main)
        self.wb_rels = parse_xml(wb_rels, self.main_rels)
        app = read("docProps/app.xml")
        self.app = parse_xml(app, "docProps/app.xml") if app is not None else None
        self._dirty: set[str] = set()  # which of the four to write
        self._parts: dict[str, tuple[str, bytes]] = {}  # lower-case → (name, bytes) put
        self._removed: set[str] = set()

    # ------------------------------------------------------------------ reading

    def exists(self, part: str) -> bool:
        low = part.lower()
        return low in self._parts or (low in self._names and low not in self._removed)

    def read(self, part: str) -> bytes | None:
        low = part.lower()
        if low in self._parts:
            return self._parts[low][1]
        if low in self._removed:
            return None
        return self._read(part)

    def sheets(self) -> list[SheetEntry]:
        targets = {
            el.get("Id"): resolve_target(self.main_rels, el.get("Target") or "")
            for el in self.wb_rels.iter(_P + "Relationship")
            if el.get("TargetMode") != "External"
        }
        out = []
        for i, el in enumerate(self.workbook.iter(SML + "sheet")):
            rid = el.get(_R + "id") or ""
            out.append(SheetEntry(el.get("name") or "", targets.get(rid, ""), rid, i))
        return out

    def find(self, titles: tuple[str, ...]) -> SheetEntry | None:
        """The first sheet whose title is one of ``titles`` (case and spaces folded)."""
        wanted = {" ".join(t.split()).casefold() for t in titles}
        return next(
            (s for s in self.sheets() if " ".join(s.title.split()).casefold() in wanted), None
        )

    def relationships(self, part: str) -> list[tuple[str, str, str]]:
        """(Id, Type, resolved target) of a part's internal relationships."""
        return [(rid, kind, target) for rid, kind, target, mode in read_rels(self.read, part)
                if mode != "External"]

    def free_name(self, pattern: str) -> str:
        """The first ``pattern.format(n)`` (n = 1, 2, …) that no member uses."""
        n = 1
        while self.exists(pattern.format(n)):
            n += 1
        return pattern.format(n)

    # ------------------------------------------------------------------ editing

    def put(self, part: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``part`` (new or replacing ours); ``content_type`` adds its Override."""
        self._parts[part.lower()] = (part, data)
        self._removed.discard(part.lower())
        if content_type is not None:
            self._override(part, content_type)

    def remove(self, part: str) -> None:
        low = part.lower()
        self._parts.pop(low, None)
        if low in self._names:
            self._removed.add(low)
        for el in list(self.types.iter(_C + "Override")):
            if (el.get("PartName") or "").lstrip("/").lower() == low:
                el.getparent().remove(el)
                self._dirty.add("types")

    def _override(self, part: str, content_type: str) -> None:
        name = "/" + part
        for el in self.types.iter(_C + "Override"):
            if (el.get("PartName") or "").lower() == name.lower():
                if el.get("ContentType") != content_type:
                    el.set("ContentType", content_type)
                    self._dirty.add("types")
                return
        etree.SubElement(self.types, _C + "Override", PartName=name, ContentType=content_type)
        self._dirty.add("types")

    def ensure_rels_default(self) -> None:
        """A new ``.rels`` part needs the Default every workbook has; added if missing."""
        for el in self.types.iter(_C + "Default"):
            if (el.get("Extension") or "").lower() == "rels":
                return
        first = self.types.find(_C + "Override")
        el = etree.Element(
            _C + "Default",
            Extension="rels",
            ContentType="application/vnd.openxmlformats-package.relationships+xml",
        )
        if first is not None:
            first.addprevious(el)  # Defaults first, as every producer writes them
        else:
            self.types.append(el)
        self._dirty.add("types")

    def add_sheet(self, title: str, part: str) -> SheetEntry:
        """A new last sheet ``title`` whose worksheet is ``part`` (written with ``put``)."""
        if _BAD_TITLE.search(title) or not 0 < len(title) <= 31:
            raise ValueError(f"not a sheet title: {title!r}")
        ids = [el.get("Id") or "" for el in self.wb_rels.iter(_P + "Relationship")]
        n = len(ids) + 1
        while f"rId{n}" in ids:
            n += 1
        rid = f"rId{n}"
        target = posixpath.relpath(part, posixpath.dirname(self.main))
        etree.SubElement(self.wb_rels, _P + "Relationship", Id=rid, Type=REL_WORKSHEET,
                         Target=target)
        sheets = self.workbook.find(SML + "sheets")
        if sheets is None:
            raise Unsupported("workbook.xml has no <sheets>")
        sheet_id = 1 + max((int(el.get("sheetId") or 0) for el in sheets), default=0)
        el = etree.SubElement(sheets, SML + "sheet", name=title, sheetId=str(sheet_id))
        el.set(_R + "id", rid)
        self._override(part, CT_WORKSHEET)
        self._app_title(None, title)
        self._dirty.update(("workbook", "wb_rels"))
        return SheetEntry(title, part, rid, len(sheets) - 1)

    def rename_sheet(self, entry: SheetEntry, title: str) -> None:
        for el in self.workbook.iter(SML + "sheet"):
            if el.get(_R + "id") == entry.rid:
                el.set("name", title)
        old = quote_title(entry.title)
        for el in self.workbook.iter(SML + "definedName"):  # our print titles, if any
            if el.text and (old + "!") in el.text:
                el.text = el.text.replace(old + "!", quote_title(title) + "!")
        self._app_title(entry.title, title)
        entry.title = title
        self._dirty.add("workbook")

    def set_print_titles(self, entry: SheetEntry, rows: str) -> None:
        """``rows`` like ``$1:$1`` repeated at the top of each printed page of ``entry``."""
        names = self.workbook.find(SML + "definedNames")
        if names is None:
            names = etree.Element(SML + "definedNames")
            # CT_Workbook order: … sheets, functionGroups, externalReferences, definedNames
            after = None
            for tag in ("sheets", "functionGroups", "externalReferences"):
                found = self.workbook.find(SML + tag)
                if found is not None:
                    after = found
            if after is None:
                raise Unsupported("workbook.xml has no <sheets>")
            after.addnext(names)
        for el in names.iterchildren(SML + "definedName"):
            if el.get("name") == PRINT_TITLES and el.get("localSheetId") == str(entry.index):
                return  # the user's (or ours from before): kept
        el = etree.SubElement(names, SML + "definedName", name=PRINT_TITLES,
                              localSheetId=str(entry.index))
        el.text = f"{quote_title(entry.title)}!{rows}"
        self._dirty.add("workbook")

    def _app_title(self, old: str | None, new: str) -> None:
        """docProps/app.xml lists the worksheets' titles; kept in step when it is the
        usual shape (a Worksheets heading pair), else left alone: it is only metadata."""
        if self.app is None:
            return
        titles = self.app.find(f"{_A}TitlesOfParts/{_V}vector")
        pairs = self.app.find(f"{_A}HeadingPairs/{_V}vector")
        if titles is None or pairs is None:
            return
        items = list(titles)
        if old is not None:
            for el in items:
                if el.text == old:
                    el.text = new
                    self._dirty.add("app")
            return
        variants = list(pairs)
        at = 0
        for i in range(0, len(variants) - 1, 2):
            name = variants[i].find(_V + "lpstr")
            count = variants[i + 1].find(_V + "i4")
            if name is None or count is None or not (count.text or "").isdigit():
                return
            if name.text in ("Worksheets", "Листы", "Лист"):
                n = int(count.text or 0)
                if at + n > len(items):
                    return
                el = etree.Element(_V + "lpstr")
                el.text = new
                if at + n > 0:
                    items[at + n - 1].addnext(el)
                else:
                    titles.insert(0, el)
                count.text = str(n + 1)
                titles.set("size", str(len(items) + 1))
                self._dirty.add("app")
                return
            at += int(count.text or 0)

    # ------------------------------------------------------------------ writing

    def fresh(self) -> dict[str, bytes]:
        """Every part to write: the package parts we changed and the parts put."""
        out = dict(self._parts.values())
        for key, part, root in (
            ("types", "[Content_Types].xml", self.types),
            ("workbook", self.main, self.workbook),
            ("wb_rels", self.main_rels, self.wb_rels),
            ("app", "docProps/app.xml", self.app),
        ):
            if key in self._dirty and root is not None:
                out[part] = xml_bytes(root)
        return out

    def removed(self) -> set[str]:
        return set(self._removed)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty or self._parts or self._removed)

    def rebind(self, read: Callable[[str], bytes | None]) -> None:
        """Read members through ``read`` from now on (the file, once parsing is done)."""
        self._read = read

    def committed(self, names: set[str]) -> None:
        """The new file, with these members, is the workbook: what we read from now on."""
        self._names = {n.lower() for n in names}
        self._dirty.clear()
        self._parts.clear()
        self._removed.clear()


def new_rels(rels: list[tuple[str, str, str]]) -> bytes:
    """A ``.rels`` part: (Id, Type, Target relative to the part's folder)."""
    root = etree.Element(_P + "Relationships", nsmap={None: PKG_REL_NS})
    for rid, kind, target in rels:
        etree.SubElement(root, _P + "Relationship", Id=rid, Type=kind, Target=target)
    return xml_bytes(root)
