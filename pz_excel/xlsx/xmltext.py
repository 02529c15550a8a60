"""XML text of OOXML parts: namespaces, safe parsing, escaping, attribute and
rich-text reading, without building trees for big parts."""

from __future__ import annotations

import re

from lxml import etree

from pz_excel.xlsx.zipio import Unsupported

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
HYPERLINK_TYPE = REL_NS + "/hyperlink"
SML = "{%s}" % MAIN_NS  # noqa: UP031 - a Clark-notation prefix, not formatting

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False
)


# ---------------------------------------------------------------------------- XML bits

_ATTR = re.compile(rb'([\w:.-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')
_ENTITY = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _entity(m: re.Match[str]) -> str:
    name = m.group(1)
    if name[0] == "#":
        return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))
    return _NAMED[name]


def unescape(raw: bytes) -> str:
    text = raw.decode("utf-8")
    return _ENTITY.sub(_entity, text) if "&" in text else text


def attrs(tag: bytes) -> dict[str, str]:
    """Attributes of one start tag, unescaped."""
    return {m.group(1).decode(): unescape(m.group(2) if m.group(2) is not None else m.group(3))
            for m in _ATTR.finditer(tag)}


_ESC_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ESC_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                           "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})


def esc_text(text: str) -> str:
    return text.translate(_ESC_TEXT)


def esc_attr(text: str) -> str:
    return text.translate(_ESC_ATTR)


# A namespace prefix (``<x:t>``) is allowed: lxml serialises a prefixed part that way.
_P = rb"(?:[A-Za-z_][\w.-]*:)?"
_T_TEXT = re.compile(rb"<" + _P + rb"t(?:\s[^>]*)?(?<!/)>(.*?)</" + _P + rb"t>|<" + _P
                     + rb"t(?:\s[^>]*)?/>", re.S)  # an empty <t …/> is not an opening tag
_PHONETIC = re.compile(rb"<(" + _P + rb")rPh\b(?:[^>]*/>|.*?</\1rPh>)", re.S)


SIMPLE_T = re.compile(rb"<t(?: xml:space=\"preserve\")?>([^<]*)</t>")


def rich_text(inner: bytes) -> str:
    """The text of an ``<si>`` or ``<is>`` (its content, or the whole element): its
    ``<t>`` runs, plain or in rich-text runs ``<r>``, phonetic runs ``<rPh>`` left out.
    The one rule for both .xlsx readers (the contacts reader's lxml path serialises the
    element and comes here)."""
    simple = SIMPLE_T.fullmatch(inner)
    if simple is not None:  # one plain run: what Excel, openpyxl and we write
        return unescape(simple.group(1))
    if b"rPh" in inner:
        inner = _PHONETIC.sub(b"", inner)
    return "".join(unescape(m.group(1) or b"") for m in _T_TEXT.finditer(inner))


def parse_xml(data: bytes, part: str) -> etree._Element:
    if b"<!DOCTYPE" in data[:4096]:
        raise Unsupported(f"{part} has a DTD")
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise Unsupported(f"{part}: {exc}") from exc


def xml_bytes(root: etree._Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + etree.tostring(
        root, encoding="UTF-8"
    )


