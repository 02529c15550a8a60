"""Validate OOXML parts against the ISO/IEC 29500-4:2016 transitional schemas (offline).

``validate(part_name, data)`` returns the schema errors of one package part (``[]`` = valid).
The schema is chosen by the part's root element (namespace and local name), see ``ROOTS``;
``part_name`` only labels the messages. The .xsd files are copies (unchanged) of
``/work/shared/ooxml`` in ``tests/data/ooxml`` -- the 13 ISO files that ``sml.xsd``,
``dml-chart.xsd``, ``dml-spreadsheetDrawing.xsd`` and the two document-properties schemas import
(all by relative ``schemaLocation``), and the two OPC schemas from ECMA-376 Part 2 -- so lxml
loads them without network access and a plain clone runs the tests.

Before validating, the part goes through Markup Compatibility processing (ISO/IEC 29500-3)
as a consumer that understands no extension namespace -- what Excel 2007 would see:

* elements and attributes in a namespace listed by an ``mc:Ignorable`` in scope are removed,
  and the ``mc:*`` attributes themselves are dropped;
* ``mc:AlternateContent`` becomes the content of its first ``mc:Choice`` whose ``Requires``
  namespaces are all understood (in practice never: choices name x14, wps...), else of its
  ``mc:Fallback``, else nothing;
* an ``mc:MustUnderstand`` naming a namespace we do not understand is reported as an error
  (a real consumer must refuse such a part).

``mc:ProcessContent`` is not implemented (an ignorable element is dropped with its content):
neither Excel nor LibreOffice use it in SpreadsheetML parts.

One deliberate relaxation: ``xml:space`` attributes are removed before validating. Excel writes
``<t xml:space="preserve">`` in every shared-string and rich-text run, but sml.xsd types ``t``
as a plain string with no attributes (WordprocessingML declares ``xml:space``, SpreadsheetML
does not); Office's own validator (Open XML SDK) accepts it everywhere too.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).parent / "data" / "ooxml"
_ISO = "ISO-IEC29500-4_2016"
_OPC = "ecma/fourth-edition"

MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
SML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
XDR = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
CHART = "http://schemas.openxmlformats.org/drawingml/2006/chart"
DML = "http://schemas.openxmlformats.org/drawingml/2006/main"
CONTENT_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
EXTENDED_PROPS = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
CUSTOM_PROPS = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"

# Every global element sml.xsd declares: a package may hold any of these parts.
_SML_PARTS = (
    "calcChain comments MapInfo connections pivotCacheDefinition pivotCacheRecords"
    " pivotTableDefinition queryTable sst headers revisions users worksheet chartsheet"
    " dialogsheet metadata singleXmlCells styleSheet externalLink table volTypes workbook"
).split()

# (root namespace, root local name) -> schema file, relative to SCHEMA_DIR
ROOTS: dict[tuple[str, str], str] = {
    **{(SML, name): f"{_ISO}/sml.xsd" for name in _SML_PARTS},
    (XDR, "wsDr"): f"{_ISO}/dml-spreadsheetDrawing.xsd",
    (CHART, "chartSpace"): f"{_ISO}/dml-chart.xsd",
    (DML, "theme"): f"{_ISO}/dml-main.xsd",
    (CONTENT_TYPES, "Types"): f"{_OPC}/opc-contentTypes.xsd",
    (RELATIONSHIPS, "Relationships"): f"{_OPC}/opc-relationships.xsd",
    (EXTENDED_PROPS, "Properties"): f"{_ISO}/shared-documentPropertiesExtended.xsd",
    (CUSTOM_PROPS, "Properties"): f"{_ISO}/shared-documentPropertiesCustom.xsd",
}

# The namespaces the schemas above define: a consumer of exactly these "understands" them.
UNDERSTOOD = {
    SML, XDR, CHART, DML, CONTENT_TYPES, RELATIONSHIPS, EXTENDED_PROPS, CUSTOM_PROPS,
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://schemas.openxmlformats.org/officeDocument/2006/sharedTypes",
    "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes",
    "http://schemas.openxmlformats.org/drawingml/2006/chartDrawing",
    "http://schemas.openxmlformats.org/drawingml/2006/diagram",
    "http://schemas.openxmlformats.org/drawingml/2006/picture",
    "http://schemas.openxmlformats.org/drawingml/2006/lockedCanvas",
}


class UnknownRootError(ValueError):
    """The part's root element is not one we have a schema for."""


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    return etree.fromstring(data, parser)


def _schema_path(root: etree._Element) -> str:
    qname = etree.QName(root)
    key = (qname.namespace or "", qname.localname)
    if key not in ROOTS:
        raise UnknownRootError(
            f"no schema for root element {{{key[0]}}}{key[1]}; known roots: "
            + ", ".join(sorted(f"{ns.rsplit('/', 1)[-1]}:{n}" for ns, n in ROOTS))
        )
    return ROOTS[key]


def supported(data: bytes) -> bool:
    """True if ``validate`` knows a schema for this part's root element."""
    try:
        _schema_path(_parse(data))
    except UnknownRootError:
        return False
    return True


@functools.cache
def schema(relative_path: str) -> etree.XMLSchema:
    """The compiled schema (once per process: sml.xsd with its imports takes ~0.3 s)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / relative_path), parser))


def _namespaces(element: etree._Element, attribute: str) -> set[str]:
    """Namespaces named (by prefix) in an attribute of ``element``; an undeclared prefix maps
    to a non-URI so that it never counts as understood."""
    prefixes = (element.get(attribute) or "").split()
    return {element.nsmap.get(p, f"undeclared prefix {p!r}") for p in prefixes}


def _mce(element: etree._Element, ignorable: set[str], errors: list[str]) -> None:
    """Markup Compatibility processing of ``element``'s attributes and subtree, in place."""
    ignorable = ignorable | _namespaces(element, f"{{{MC}}}Ignorable")
    for ns in sorted(_namespaces(element, f"{{{MC}}}MustUnderstand") - UNDERSTOOD):
        errors.append(f"mc:MustUnderstand names {ns}, which this consumer does not understand")
    for name in list(element.attrib):
        ns = etree.QName(name).namespace
        if ns == MC or ns in ignorable or name == XML_SPACE:
            del element.attrib[name]
    for child in list(element):
        if not isinstance(child.tag, str):  # comments, processing instructions
            continue
        qname = etree.QName(child)
        if qname.namespace in ignorable:
            element.remove(child)
        elif qname.namespace == MC and qname.localname == "AlternateContent":
            chosen = next(
                (
                    branch
                    for branch in child
                    if branch.tag == f"{{{MC}}}Choice"
                    and _namespaces(branch, "Requires") <= UNDERSTOOD  # unqualified attribute
                ),
                child.find(f"{{{MC}}}Fallback"),
            )
            position = element.index(child)
            element.remove(child)
            for offset, grandchild in enumerate(list(chosen) if chosen is not None else []):
                element.insert(position + offset, grandchild)
                _mce(grandchild, ignorable, errors)
        else:
            _mce(child, ignorable, errors)


def validate(part_name: str, data: bytes) -> list[str]:
    """Schema errors of one part as ``"part:line: message"`` strings; ``[]`` if valid.

    Raises ``UnknownRootError`` for a root element with no schema in ``ROOTS`` and
    ``lxml.etree.XMLSyntaxError`` for data that is not well-formed XML.
    """
    root = _parse(data)
    xsd = schema(_schema_path(root))
    mce_errors: list[str] = []
    _mce(root, set(), mce_errors)  # in place; elements keep their source line numbers
    errors = [f"{part_name}: {message}" for message in mce_errors]
    if not xsd.validate(root):
        errors += [f"{part_name}:{e.line}: {e.message}" for e in xsd.error_log]
    return errors
