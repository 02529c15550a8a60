"""Cell formats of styles.xml, found or added the way a cell assignment would."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from lxml import etree

from pz_excel.xlsx.cells import (
    DATE_FORMATS,
    LINK_COLOR,
)
from pz_excel.xlsx.refs import BUILTIN_DATE_FORMATS, is_date_format
from pz_excel.xlsx.xmltext import SML, parse_xml, xml_bytes
from pz_excel.xlsx.zipio import Unsupported

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------- styles


class Styles:
    """Cell formats of styles.xml: find the format FileBook would give a cell, adding it
    (and its font or number format) when the workbook has none like it."""

    BOOL_ATTRS = frozenset(
        ("quotePrefix", "pivotButton", "applyNumberFormat", "applyFont", "applyFill",
         "applyBorder", "applyAlignment", "applyProtection")
    )

    def __init__(self, part: str, data: bytes, lang: str) -> None:
        self.part = part
        self.lang = lang
        self.root = parse_xml(data, part)
        if self.root.tag != SML + "styleSheet":
            raise Unsupported(f"{part} is not a SpreadsheetML style sheet")
        self.numfmts = {int(el.get("numFmtId")): el.get("formatCode") or ""
                        for el in self.root.iter(SML + "numFmt")}
        fonts, xfs = self.root.find(SML + "fonts"), self.root.find(SML + "cellXfs")
        if fonts is None or xfs is None or not len(xfs):
            raise Unsupported(f"{part} has no fonts or cell formats")
        self.fonts_el, self.xfs_el = fonts, xfs
        self.fonts = list(fonts.iterchildren(SML + "font"))
        self.xfs = list(xfs.iterchildren(SML + "xf"))
        self.font_keys: dict[bytes, int] = {}
        for i, el in enumerate(self.fonts):
            self.font_keys.setdefault(self._key(el), i)
        self.xf_keys: dict[bytes, int] = {}
        for i, el in enumerate(self.xfs):
            self.xf_keys.setdefault(self._key(el), i)
        self.memo: dict[tuple, int] = {}
        self.dirty = False

    @classmethod
    def _key(cls, el: etree._Element) -> bytes:
        """What makes two formats the same: attributes (booleans normalised) and children."""
        items = []
        for name, value in sorted(el.attrib.items()):
            if name in cls.BOOL_ATTRS:
                if value in ("0", "false"):
                    continue
                value = "1"
            items.append(f"{name}={value}")
        children = b"".join(etree.tostring(c, method="c14n") for c in el)
        return "\x00".join(items).encode() + b"\x00" + children

    def xf(self, s: int) -> etree._Element:
        if not 0 <= s < len(self.xfs):
            raise Unsupported(f"cell style {s} is not in {self.part}")
        return self.xfs[s]

    def number_format(self, s: int) -> str:
        fmt_id = int(self.xf(s).get("numFmtId") or 0)
        # a built-in format that shows no date reads as "General": all we ask is "a date?"
        return self.numfmts.get(fmt_id, BUILTIN_DATE_FORMATS.get(fmt_id, "General"))

    def derive(self, s: int, *, text_format: bool = False, date: bool = False,
               quote: bool | None = None, link: bool | None = None) -> int:
        """The format FileBook's cell assignments would leave on a cell of format ``s``."""
        key = (s, text_format, date, quote, link)
        found = self.memo.get(key)
        if found is not None:
            return found
        base = self.xf(s)
        el = copy.deepcopy(base)
        if text_format:
            self._set(el, "numFmtId", "49", "applyNumberFormat")  # builtin "@"
        if date and not is_date_format(self.number_format(s)):
            self._set(el, "numFmtId", str(self._numfmt_id(DATE_FORMATS.get(
                self.lang, DATE_FORMATS["en"]))), "applyNumberFormat")
        if quote is not None:
            if quote:
                el.set("quotePrefix", "1")
            elif "quotePrefix" in el.attrib:
                del el.attrib["quotePrefix"]
        if link is not None:
            font_id = int(el.get("fontId") or 0)
            new_font = self._link_font(font_id, link)
            if new_font != font_id:
                self._set(el, "fontId", str(new_font), "applyFont")
        result = self._add(self.xf_keys, self.xfs, self.xfs_el, el) if self._key(el) != \
            self._key(base) else s
        self.memo[key] = result
        return result

    @staticmethod
    def _set(el: etree._Element, name: str, value: str, apply: str) -> None:
        if el.get(name) != value:
            el.set(name, value)
            el.set(apply, "1")

    def _add(self, keys: dict[bytes, int], items: list[etree._Element],
             parent: etree._Element, el: etree._Element) -> int:
        key = self._key(el)
        found = keys.get(key)
        if found is not None:
            return found
        if len(items) >= 64000:
            raise Unsupported(f"{self.part}: too many cell formats")
        items[-1].addnext(el)
        items.append(el)
        keys[key] = len(items) - 1
        parent.set("count", str(len(items)))
        self.dirty = True
        return len(items) - 1

    def _numfmt_id(self, code: str) -> int:
        for fmt_id, known in self.numfmts.items():
            if known == code:
                return fmt_id
        fmt_id = max([163, *self.numfmts]) + 1
        numfmts = self.root.find(SML + "numFmts")
        if numfmts is None:
            numfmts = etree.Element(SML + "numFmts")
            self.root.insert(0, numfmts)
        etree.SubElement(numfmts, SML + "numFmt", numFmtId=str(fmt_id), formatCode=code)
        numfmts.set("count", str(len(numfmts)))
        self.numfmts[fmt_id] = code
        self.dirty = True
        return fmt_id

    def _link_font(self, font_id: int, link: bool) -> int:
        """FileBook's fonts: the link look (name, size, bold, italic kept; underline, blue),
        or, for a cell that lost its link, the plain look if it had the link one."""
        if not 0 <= font_id < len(self.fonts):
            raise Unsupported(f"font {font_id} is not in {self.part}")
        font = self.fonts[font_id]

        def val(tag: str) -> str | None:
            child = font.find(SML + tag)
            return None if child is None else child.get("val", "")

        def flag(tag: str) -> bool:
            v = val(tag)
            return v is not None and v not in ("0", "false")

        underline = val("u")
        color = font.find(SML + "color")
        rgb = color.get("rgb") if color is not None else None
        link_look = underline in ("", "single") and isinstance(rgb, str) and \
            rgb[-6:].upper() == LINK_COLOR
        if not link and not link_look:
            return font_id
        new = etree.Element(SML + "font")
        for tag in ("b", "i"):
            if flag(tag):
                etree.SubElement(new, SML + tag)
        if link:
            etree.SubElement(new, SML + "u", val="single")
        if val("sz"):
            etree.SubElement(new, SML + "sz", val=val("sz") or "")
        if link:
            etree.SubElement(new, SML + "color", rgb="FF" + LINK_COLOR)
        if val("name"):
            etree.SubElement(new, SML + "name", val=val("name") or "")
        return self._add(self.font_keys, self.fonts, self.fonts_el, new)

    def make(self, *, bold: bool = False, size: float | None = None, fill: str = "",
             number_format: str = "", wrap: bool = False) -> int:
        """A format for the sheets we own whole (Dashboard, a new Calls sheet): the book's
        default font — named and sized, so no viewer falls back to a serif — made bold or
        bigger, an optional solid ``fill`` (RRGGBB) and number format."""
        key = ("make", bold, size, fill, number_format, wrap)
        found = self.memo.get(key)
        if found is not None:
            return found
        font = copy.deepcopy(self.fonts[0])
        for child in list(font):
            if child.tag in (SML + "b", SML + "sz") or (size and child.tag == SML + "scheme"):
                font.remove(child)
        if bold:
            font.insert(0, etree.Element(SML + "b"))
        base_size = self.fonts[0].find(SML + "sz")
        sz = size or (float(base_size.get("val") or 11) if base_size is not None else 11)
        etree.SubElement(font, SML + "sz", val=f"{sz:g}")
        if font.find(SML + "name") is None:
            etree.SubElement(font, SML + "name", val="Calibri")
        xf = etree.Element(SML + "xf", numFmtId="0", fontId="0", fillId="0", borderId="0",
                           xfId="0")
        self._set(xf, "fontId", str(self._add(self.font_keys, self.fonts, self.fonts_el,
                                              font)), "applyFont")
        if fill:
            self._set(xf, "fillId", str(self._fill(fill)), "applyFill")
        if number_format:
            fmt_id = {"General": 0, "@": 49}.get(number_format)
            if fmt_id is None:
                fmt_id = self._numfmt_id(number_format)
            self._set(xf, "numFmtId", str(fmt_id), "applyNumberFormat")
        if wrap:
            etree.SubElement(xf, SML + "alignment", wrapText="1", vertical="center")
            xf.set("applyAlignment", "1")
        result = self._add(self.xf_keys, self.xfs, self.xfs_el, xf)
        self.memo[key] = result
        return result

    def _fill(self, rgb: str) -> int:
        fills = self.root.find(SML + "fills")
        if fills is None:  # CT_Stylesheet order: numFmts, fonts, fills, …
            fills = etree.Element(SML + "fills")
            self.fonts_el.addnext(fills)
            for pattern in ("none", "gray125"):  # the two fills every reader expects first
                fill = etree.SubElement(fills, SML + "fill")
                etree.SubElement(fill, SML + "patternFill", patternType=pattern)
        items = list(fills.iterchildren(SML + "fill"))
        keys = {self._key(el): i for i, el in reversed(list(enumerate(items)))}
        fill = etree.Element(SML + "fill")
        pattern = etree.SubElement(fill, SML + "patternFill", patternType="solid")
        etree.SubElement(pattern, SML + "fgColor", rgb="FF" + rgb.upper())
        etree.SubElement(pattern, SML + "bgColor", indexed="64")
        return self._add(keys, items, fills, fill)

    def xml(self) -> bytes:
        return xml_bytes(self.root)


