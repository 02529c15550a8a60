"""A worksheet's hyperlinks and relationships held as segments for zip-level writes, and
a text cell by Excel's rules (never a formula): the sheet-level half of the Calls writer
(``books/callspatch.py``'s ``CallsPatch`` is built on ``SheetLinks``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pz_excel.xlsx.cells import FORMULA_START, safe_text
from pz_excel.xlsx.rels import resolve_target
from pz_excel.xlsx.segments import Blocks, CachedDeflate
from pz_excel.xlsx.sheetrows import (
    AFTER_HYPERLINKS,
    ID_ATTR,
    REF_ATTR,
    TYPE_TABLE,
    split_links,
    split_rels,
    top_level,
)
from pz_excel.xlsx.styles import Styles
from pz_excel.xlsx.xmltext import HYPERLINK_TYPE, PKG_REL_NS, REL_NS, attrs, esc_attr, unescape
from pz_excel.xlsx.zipio import Unsupported


@dataclass
class CellValue:
    """What we write into one of our cells."""

    kind: str  # "t" text, "n" number, "" nothing
    value: str = ""
    style: int = 0




class SheetLinks:
    """The sheet's hyperlinks (``links``: ref → ``<hyperlink>``) and relationships
    (``rels``: Id → ``<Relationship>``); the subclass sets the attributes up."""

    segment: int
    styles: Styles | None
    links: Blocks
    rels: Blocks | None
    rels_head: CachedDeflate
    rels_tail: CachedDeflate
    rel_prefix: str | None
    rels_part: str
    rels_new: bool
    table_parts: list[str]
    tail_pre: CachedDeflate
    tail_post: CachedDeflate
    _rid: int

    def split_tail(self, tail: bytes) -> None:
        """</sheetData>… → before <hyperlinks>, the links, after them."""
        links_at = None
        insert_at = None
        # <hyperlinks> only ever sits at the top level (extensions are prefixed): found
        # directly, so its 100 k children are not walked tag by tag
        found = re.search(rb"<hyperlinks\b[^>]*?(/?)>", tail)
        if found is not None:
            close = tail.find(b"</hyperlinks>", found.end())
            if found.group(1):
                links_at = (found.start(), found.end(), b"")
            elif close >= 0:
                end = close + len(b"</hyperlinks>")
                links_at = (found.start(), end, tail[found.end() : close])
            else:
                raise Unsupported("no </hyperlinks>")
        else:
            for name, start, _end in top_level(tail, len(b"</sheetData>"), len(tail)):
                if name in AFTER_HYPERLINKS:
                    insert_at = start
                    break
        if links_at is not None:
            start, end, inner = links_at
            items = split_links(inner)
            keys: list[object] = []
            seen: set[str] = set()
            for item in items:
                m = REF_ATTR.search(item, 0, item.index(b">"))
                ref = unescape(m.group(2)) if m else ""
                keys.append(ref if ref and ref not in seen else None)
                seen.add(ref)
            self.links.load(keys, items)
            self.tail_pre.data, self.tail_post.data = tail[:start], tail[end:]
        else:
            if insert_at is None:
                insert_at = tail.rfind(b"</worksheet>")
                if insert_at < 0:
                    raise Unsupported("no </worksheet>")
            self.tail_pre.data, self.tail_post.data = tail[:insert_at], tail[insert_at:]

    def parse_rels(self, data: bytes | None) -> None:
        self.rels = Blocks(split_rels, ordered=False, segment=self.segment)
        if data is None:
            self.rels_new = True
            self.rels_head.data = (
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                b'<Relationships xmlns="%s">' % PKG_REL_NS.encode()
            )
            self.rels_tail.data = b"</Relationships>"
            return
        root = re.search(rb"<Relationships\b[^>]*?(/?)>", data)
        if root is None or PKG_REL_NS.encode() not in root.group(0):
            raise Unsupported(f"{self.rels_part}: unexpected XML")
        if root.group(1):  # <Relationships …/>
            self.rels_head.data = data[: root.end() - 2] + b">"
            self.rels_tail.data = b"</Relationships>" + data[root.end() :]
            return
        stop = data.rfind(b"</Relationships>")
        if stop < 0:
            raise Unsupported(f"{self.rels_part}: unexpected XML")
        self.rels_head.data, self.rels_tail.data = data[: root.end()], data[stop:]
        items = split_rels(data[root.end() : stop])
        keys: list[object] = []
        for item in items:
            m = ID_ATTR.search(item)
            rid = unescape(m.group(1)) if m else ""
            keys.append(rid or None)
            if rid.startswith("rId") and rid[3:].isdigit():
                self._rid = max(self._rid, int(rid[3:]))
            if TYPE_TABLE.search(item):
                found = attrs(item)
                if found.get("TargetMode") != "External":
                    self.table_parts.append(resolve_target(self.rels_part, found.get("Target", "")))
        self.rels.load(keys, items)

    def text_cell(self, value: str, style: int) -> CellValue:
        """``set_text``: a string, never a formula; the quote prefix when Excel would
        evaluate it. An empty text clears the value and leaves the format."""
        assert self.styles is not None
        text = safe_text(value or "")
        if not text:
            return CellValue("", style=style)
        return CellValue("t", text, self.styles.derive(style, quote=text.startswith(FORMULA_START)))

    def _link_rid(self, link: bytes) -> str | None:
        found = attrs(link[: link.index(b">") + 1])
        return next((v for k, v in found.items() if k.endswith(":id")), None)

    def link_target(self, link: bytes) -> str | None:
        assert self.rels is not None
        rid = self._link_rid(link)
        rel = self.rels.get(rid) if rid else None
        return attrs(rel).get("Target") if rel is not None else None

    def set_link(self, ref: str, url: str, old_link: bytes | None) -> None:
        assert self.rels is not None
        rid = self._link_rid(old_link) if old_link is not None else None
        if rid is None or rid not in self.rels:
            self._rid += 1
            while f"rId{self._rid}" in self.rels:
                self._rid += 1
            rid = f"rId{self._rid}"
        self.rels.set(rid, (
            f'<Relationship Id="{rid}" Type="{HYPERLINK_TYPE}" Target="{esc_attr(url)}" '
            'TargetMode="External"/>').encode())
        if self.rel_prefix:
            link = f'<hyperlink ref="{ref}" {self.rel_prefix}:id="{rid}"/>'
        else:
            link = f'<hyperlink xmlns:r="{REL_NS}" ref="{ref}" r:id="{rid}"/>'
        self.links.set(ref, link.encode())

    def drop_link(self, ref: str, old_link: bytes) -> None:
        assert self.rels is not None
        rid = self._link_rid(old_link)
        self.links.remove(ref)
        rel = self.rels.get(rid) if rid is not None else None
        # Excel and openpyxl give every hyperlink a relationship of its own
        if rel is not None and attrs(rel).get("Type") == HYPERLINK_TYPE:
            self.rels.remove(rid)
