"""Test support: "kitchen sink" workbooks made by LibreOffice, and LibreOffice helpers.

Real users' books carry much more than cells: pictures, text boxes, sparklines, validation,
conditional formats, comments, names, filters, custom properties, VBA. Our writer must carry all
of it over untouched, so the tests need such a book -- made by an office suite, not by the code
under test or by openpyxl. ``build_kitchen_sink`` writes a flat ODF spreadsheet (``.fods``, XML
written here) and has LibreOffice headless convert it with the "Calc MS Excel 2007 XML" filter;
``build_xlsm`` turns that into a macro-enabled book with a real VBA project.

What LibreOffice 7.4 makes of each feature (checked by ``check_kitchen_sink`` on every build):

=================================  ===========================================================
feature (in the .fods)             in the .xlsx
=================================  ===========================================================
PNG in ``table:shapes``            ``xl/drawings/drawing1.xml`` ``xdr:pic`` + ``xl/media/*.png``
text box (``draw:frame`` with      the same drawing, ``xdr:sp`` with ``cNvSpPr txBox="1"`` and
``draw:text-box``)                 ``xdr:txBody`` (what Excel's Insert > Text Box makes)
rectangle (``draw:custom-shape``)  the same drawing, ``xdr:sp`` with ``prstGeom rect`` and text
sparklines (``calcext:sparkline-   Managers sheet ``extLst/ext/x14:sparklineGroups``
groups``, LibreOffice >= 7.4)
list validation on Owner           Contacts sheet ``dataValidations``
``calcext:conditional-formats``    ``conditionalFormatting`` (cell rule on Contacts, colour
                                   scale on Managers)
``office:annotation``              ``xl/comments*.xml`` + ``xl/drawings/vmlDrawing*.vml``
``table:named-expressions``        ``definedNames`` in ``xl/workbook.xml``
named database range with          an Excel table: ``xl/tables/table1.xml`` (with its own
filter buttons (Managers A1:H4)    ``autoFilter``), ``tableParts`` in the Managers sheet
``meta:user-defined``              ``docProps/custom.xml``
``text:a`` in a cell               a ``hyperlinks`` entry with an external relationship
``=SUM(...)`` (Managers "Total")   a formula cell with its cached value
(``build_xlsm`` only)              ``xl/vbaProject.bin`` + its content type and relationship
=================================  ===========================================================

Nothing asked for was out of reach of LibreOffice 7.4.7. Sparklines needed no macro: it reads
``calcext:sparkline-groups`` (the form it writes itself, learnt by converting an Excel-made
sparkline to .fods) and exports x14 ones. The VBA project is not made by LibreOffice but added
by a zip rewrite, see ``build_xlsm``.

Where the result differs from an Excel-made book: no ``xl/theme``, no ``calcChain.xml``, no
``x14ac``/``mc:Ignorable`` markup, Overrides for the ``.rels`` parts in ``[Content_Types].xml``
(valid, unusual), comments with a legacy VML drawing (as Excel does too).

Books are cached per process by (folder, lang): a build is one LibreOffice start, ~1.2 s here
(the .xlsm then adds ~0.1 s). Treat the returned files as read-only: copy before writing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from lxml import etree

SOFFICE_MISSING = "LibreOffice (soffice) is not installed: apt-get install libreoffice-calc-nogui"
XLSX_FILTER = "xlsx:Calc MS Excel 2007 XML"


def soffice() -> str | None:
    """Path of LibreOffice's ``soffice`` (or ``libreoffice``) launcher, None if not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


needs_soffice = pytest.mark.skipif(soffice() is None, reason=SOFFICE_MISSING)


def run_soffice(
    args: Sequence[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run LibreOffice headless with ``args`` under a throwaway user profile.

    A fresh profile means no first-start dialogs, no lock on the user's own profile and no
    clash with another soffice running at the same time (pytest-xdist workers). The launcher
    runs in its own process group; on timeout the whole group (oosplash + soffice.bin) is
    killed and ``subprocess.TimeoutExpired`` raised, so a stuck conversion never hangs a test.
    """
    exe = soffice()
    if exe is None:
        raise RuntimeError(SOFFICE_MISSING)
    with tempfile.TemporaryDirectory(
        prefix="pz-lo-profile-", ignore_cleanup_errors=True
    ) as profile:
        cmd = [
            exe,
            f"-env:UserInstallation={Path(profile).as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            *args,
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # it may have just ended
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)  # the killed group closes the pipes
            raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _convert(source: Path, target_format: str, out_dir: Path, expected: Path) -> Path:
    """``soffice --convert-to``; the converted file, or RuntimeError with soffice's output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    expected.unlink(missing_ok=True)  # never mistake an old result for a new one
    proc = run_soffice(
        ["--convert-to", target_format, "--outdir", str(out_dir), str(source)], cwd=out_dir
    )
    if proc.returncode != 0 or not expected.is_file() or expected.stat().st_size == 0:
        raise RuntimeError(
            f"LibreOffice did not convert {source.name} to {expected.name}"
            f" (exit {proc.returncode}):\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return expected


def to_pdf(book: Path, out_dir: Path) -> Path:
    """Print ``book`` to PDF with LibreOffice headless: ``out_dir/<stem>.pdf``."""
    pdf = _convert(book, "pdf", out_dir, out_dir / (book.stem + ".pdf"))
    if not pdf.read_bytes().startswith(b"%PDF-"):
        raise RuntimeError(f"{pdf} is not a PDF")
    return pdf


# -- zip helpers -----------------------------------------------------------------------------------


def zip_members(path: Path) -> dict[str, bytes]:
    """Member name -> decompressed bytes."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def raw_members(path: Path) -> dict[str, bytes]:
    """Member name -> ``method (2 bytes LE) + CRC-32 (4 bytes LE) + compressed data`` as stored.

    Equal values mean the member was copied byte for byte (not re-compressed). Timestamps and
    extra fields are left out: rewriting a zip may legitimately change those.
    """
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = fh.read(30)
            if header[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: no local header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            data = fh.read(info.compress_size)
            out[info.filename] = struct.pack("<HI", info.compress_type, info.CRC) + data
    return out


# -- the book's content ----------------------------------------------------------------------------

TITLES = {
    "en": {"contacts": "Contacts", "managers": "Managers"},
    "ru": {"contacts": "Контакты", "managers": "Менеджеры"},
}
CONTACT_HEADERS = {
    "en": ("Name", "Phone", "Owner", "Company", "Notes"),
    "ru": ("Имя", "Телефон", "Ответственный", "Компания", "Заметки"),
}
MANAGER_HEADERS = {
    "en": ("Owner", "Extension", "Mon", "Tue", "Wed", "Thu", "Fri", "Total", "Trend"),
    "ru": ("Ответственный", "Добавочный", "Пн", "Вт", "Ср", "Чт", "Пт", "Всего", "Тренд"),
}
# (owner, extension, calls Mon..Fri)
MANAGERS = (
    ("Anna Smirnova", 101, (5, 8, 3, 9, 7)),
    ("Boris Petrov", 102, (2, 4, 6, 5, 8)),
    ("Ольга Иванова", 103, (7, 6, 9, 4, 5)),
)
_FIRST = ("Ivan", "Maria", "Pavel", "Elena", "Sergey", "Дмитрий", "Nina", "Oleg", "Yulia", "Igor")
_LAST = ("Kuznetsov", "Popova", "Sokolov", "Lebedeva", "Kozlov", "Новиков", "Morozova")
_COMPANIES = ("Uralmash", "Ekat Trade", "ООО Ромашка", "", "Sverdlovsk Steel")


def contact_rows() -> list[tuple[str, str, str | int, str, str]]:
    """The 20 Contacts rows: Owner is a manager's name, an extension typed as text, or an
    extension typed as a number (as users do)."""
    rows = []
    for i in range(20):
        name = f"{_FIRST[i % len(_FIRST)]} {_LAST[i % len(_LAST)]}"
        if i % 5 == 4:
            phone = f"8 (912) {400 + i:03d}-{10 + i:02d}-{50 + i:02d}"
        else:
            phone = f"+7 343 {i:03d}-{22 + i:02d}-{33 + i:02d}"
        owner: str | int
        if i % 4 == 3:
            owner = "101"
        elif i % 7 == 6:
            owner = 102
        else:
            owner = MANAGERS[i % len(MANAGERS)][0]
        notes = "" if i % 3 else f"call back before {9 + i % 8}:00"
        rows.append((name, phone, owner, _COMPANIES[i % len(_COMPANIES)], notes))
    return rows


def tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A small RGB gradient PNG, made with zlib and struct only."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# -- the flat ODF document -------------------------------------------------------------------------

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "fo": "urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
    "dc": "http://purl.org/dc/elements/1.1/",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
    "of": "urn:oasis:names:tc:opendocument:xmlns:of:1.2",
    "calcext": "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0",
}

CUSTOM_PROPERTIES = {"PZ Fixture": "kitchen sink", "PZ Build": 7, "PZ Reviewed": True}
DEFINED_NAMES = ("ContactPhones", "ManagerExtensions")
COMMENT_TEXT = "VIP: call from the director's line"
TEXT_BOX_TEXT = "Call these people back today"
SHAPE_TEXT = "Callback queue"
NOTE_LINK = "https://crm.example.com/contacts/1"


def _cell(value: str | int | float | bool, style: str = "", inner: str = "") -> str:
    """One ``table:table-cell``; ``inner`` goes before the paragraph (annotations)."""
    attr = f' table:style-name="{style}"' if style else ""
    if value == "" and not inner:
        return f"<table:table-cell{attr}/>"
    if isinstance(value, str) and value.startswith("="):  # a formula, OpenFormula syntax
        return (
            f"<table:table-cell{attr} table:formula={quoteattr('of:' + value)}"
            f' office:value-type="float">{inner}</table:table-cell>'
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (
            f'<table:table-cell{attr} office:value-type="float" office:value="{value}">'
            f"{inner}<text:p>{value}</text:p></table:table-cell>"
        )
    return (
        f'<table:table-cell{attr} office:value-type="string">{inner}'
        f"<text:p>{escape(str(value))}</text:p></table:table-cell>"
    )


def _row(cells: Sequence[str]) -> str:
    return "<table:table-row>" + "".join(cells) + "</table:table-row>"


def kitchen_sink_fods(lang: str = "en") -> str:
    """The flat ODF spreadsheet that LibreOffice turns into the kitchen-sink .xlsx."""
    contacts, managers = TITLES[lang]["contacts"], TITLES[lang]["managers"]
    qc, qm = f"'{contacts}'", f"'{managers}'"  # quoted sheet names, for ranges
    png = base64.b64encode(tiny_png()).decode("ascii")

    meta = "".join(
        f"<meta:user-defined meta:name={quoteattr(name)} meta:value-type="
        + (
            f'"boolean">{str(value).lower()}'
            if isinstance(value, bool)
            else f'"float">{value}'
            if isinstance(value, int)
            else f'"string">{escape(value)}'
        )
        + "</meta:user-defined>"
        for name, value in CUSTOM_PROPERTIES.items()
    )

    shapes = (
        "<table:shapes>"
        '<draw:frame draw:name="Logo" draw:z-index="0" svg:width="1.2cm" svg:height="1.2cm"'
        ' svg:x="24cm" svg:y="0.5cm">'
        f"<draw:image><office:binary-data>{png}</office:binary-data></draw:image>"
        "</draw:frame>"
        '<draw:frame draw:name="CallBackNote" draw:z-index="1" svg:width="6cm"'
        ' svg:height="1.5cm" svg:x="24cm" svg:y="2.5cm">'
        f"<draw:text-box><text:p>{escape(TEXT_BOX_TEXT)}</text:p></draw:text-box>"
        "</draw:frame>"
        '<draw:custom-shape draw:name="QueueShape" draw:z-index="2" svg:width="4cm"'
        ' svg:height="1.5cm" svg:x="24cm" svg:y="4.5cm">'
        f"<text:p>{escape(SHAPE_TEXT)}</text:p>"
        '<draw:enhanced-geometry svg:viewBox="0 0 21600 21600" draw:type="rectangle"'
        ' draw:enhanced-path="M 0 0 L 21600 0 21600 21600 0 21600 0 0 Z N"/>'
        "</draw:custom-shape>"
        "</table:shapes>"
    )
    contact_rows_xml = [_row([_cell(h, "ceHead") for h in CONTACT_HEADERS[lang]])]
    for i, (name, phone, owner, company, notes) in enumerate(contact_rows()):
        annotation = ""
        if i == 0:
            annotation = (
                "<office:annotation><dc:creator>Kitchen Sink</dc:creator>"
                f"<text:p>{escape(COMMENT_TEXT)}</text:p></office:annotation>"
            )
        owner_cell = _cell(owner).replace(
            "<table:table-cell", '<table:table-cell table:content-validation-name="OwnerList"', 1
        )
        if i == 0:
            notes_cell = (
                '<table:table-cell office:value-type="string"><text:p>'
                f'<text:a xlink:href="{NOTE_LINK}" xlink:type="simple">CRM card</text:a>'
                "</text:p></table:table-cell>"
            )
        else:
            notes_cell = _cell(notes)
        contact_rows_xml.append(
            _row(
                [
                    _cell(name, inner=annotation),
                    _cell(phone),
                    owner_cell,
                    _cell(company),
                    notes_cell,
                ]
            )
        )
    n_contacts = len(contact_rows_xml)

    manager_rows_xml = [_row([_cell(h, "ceHead") for h in MANAGER_HEADERS[lang]])]
    for r, (owner, ext, calls) in enumerate(MANAGERS, start=2):
        manager_rows_xml.append(
            _row(
                [
                    _cell(owner),
                    _cell(ext),
                    *(_cell(c) for c in calls),
                    _cell(f"=SUM([.C{r}:.G{r}])"),
                    _cell(""),
                ]
            )
        )
    sparklines = "".join(
        f'<calcext:sparkline calcext:cell-address="{qm}.I{r}"'
        f' calcext:data-range="{qm}.C{r}:{qm}.G{r}"/>'
        for r in range(2, 2 + len(MANAGERS))
    )
    last_mgr = 1 + len(MANAGERS)

    ns = " ".join(f'xmlns:{p}="{uri}"' for p, uri in _NS.items())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document {ns} office:version="1.3"
 office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:meta><dc:title>PZ kitchen sink</dc:title>{meta}</office:meta>
<office:styles>
 <style:style style:name="Default" style:family="table-cell"/>
 <style:style style:name="PZHighlight" style:family="table-cell" style:parent-style-name="Default">
  <style:table-cell-properties fo:background-color="#ffe699"/>
 </style:style>
</office:styles>
<office:automatic-styles>
 <style:style style:name="coWide" style:family="table-column">
  <style:table-column-properties style:column-width="4.5cm"/>
 </style:style>
 <style:style style:name="coNarrow" style:family="table-column">
  <style:table-column-properties style:column-width="2cm"/>
 </style:style>
 <style:style style:name="ceHead" style:family="table-cell" style:parent-style-name="Default">
  <style:text-properties fo:font-weight="bold"/>
 </style:style>
</office:automatic-styles>
<office:body><office:spreadsheet>
<table:content-validations>
 <table:content-validation table:name="OwnerList" table:allow-empty-cell="true"
  table:condition="of:cell-content-is-in-list([${qm}.$A$2:.$A${last_mgr}])"
  table:display-list="unsorted" table:base-cell-address="{qc}.C2">
  <table:help-message table:title="Owner" table:display="true">
   <text:p>A manager's name or an extension</text:p></table:help-message>
  <table:error-message table:message-type="information" table:display="true">
   <text:p>Not in Managers: the value is kept</text:p></table:error-message>
 </table:content-validation>
</table:content-validations>
<table:table table:name="{escape(contacts)}">
 {shapes}
 <table:table-column table:style-name="coWide" table:number-columns-repeated="5"/>
 {"".join(contact_rows_xml)}
 <calcext:conditional-formats>
  <calcext:conditional-format calcext:target-range-address="{qc}.B2:{qc}.B{n_contacts}">
   <calcext:condition calcext:apply-style-name="PZHighlight"
    calcext:value="begins-with(&quot;8 &quot;)" calcext:base-cell-address="{qc}.B2"/>
  </calcext:conditional-format>
 </calcext:conditional-formats>
</table:table>
<table:table table:name="{escape(managers)}">
 <table:table-column table:style-name="coWide" table:number-columns-repeated="2"/>
 <table:table-column table:style-name="coNarrow" table:number-columns-repeated="7"/>
 {"".join(manager_rows_xml)}
 <calcext:conditional-formats>
  <calcext:conditional-format calcext:target-range-address="{qm}.C2:{qm}.G{last_mgr}">
   <calcext:color-scale>
    <calcext:color-scale-entry calcext:value="0" calcext:type="minimum" calcext:color="#f8696b"/>
    <calcext:color-scale-entry calcext:value="0" calcext:type="maximum" calcext:color="#63be7b"/>
   </calcext:color-scale>
  </calcext:conditional-format>
 </calcext:conditional-formats>
 <calcext:sparkline-groups>
  <calcext:sparkline-group calcext:id="{{6C8B5F3A-1D2E-4F60-9A7B-0C1D2E3F4A5B}}"
   calcext:type="line" calcext:line-width="1pt" calcext:display-empty-cells-as="gap"
   calcext:markers="true" calcext:high="true" calcext:min-axis-type="individual"
   calcext:max-axis-type="individual" calcext:color-series="#376092"
   calcext:color-high="#00b050">
   <calcext:sparklines>{sparklines}</calcext:sparklines>
  </calcext:sparkline-group>
 </calcext:sparkline-groups>
</table:table>
<table:named-expressions>
 <table:named-range table:name="{DEFINED_NAMES[0]}" table:base-cell-address="${qc}.$A$1"
  table:cell-range-address="${qc}.$B$2:.$B${n_contacts}"/>
 <table:named-range table:name="{DEFINED_NAMES[1]}" table:base-cell-address="${qm}.$A$1"
  table:cell-range-address="${qm}.$B$2:.$B${last_mgr}"/>
</table:named-expressions>
<table:database-ranges>
 <table:database-range table:name="ManagersTable" table:display-filter-buttons="true"
  table:target-range-address="{qm}.A1:{qm}.H{last_mgr}" table:contains-header="true"/>
</table:database-ranges>
</office:spreadsheet></office:body>
</office:document>
"""


# -- building and checking -------------------------------------------------------------------------

SML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
CT = "http://schemas.openxmlformats.org/package/2006/content-types"
XDR = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
X14 = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/main"
VBA_REL_TYPE = "http://schemas.microsoft.com/office/2006/relationships/vbaProject"
XLSM_MAIN = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
VBA_CONTENT_TYPE = "application/vnd.ms-office.vbaProject"
VBA_MODULE = "PZKitchenSink"
VBA_SOURCE = """Attribute VB_Name = "PZKitchenSink"
Option Explicit

' Kitchen-sink test macro: a writer must carry the VBA project over untouched.
Public Function PZKitchenSinkAnswer() As Long
    PZKitchenSinkAnswer = 42
End Function

Public Sub PZKitchenSinkHello()
    MsgBox "Hello from the kitchen sink: " & PZKitchenSinkAnswer()
End Sub
"""

_BUILT: dict[tuple[Path, str, str], Path] = {}


def _xml(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def _serial(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _resolve_part(base_part: str, target: str) -> str:
    """A relationship target relative to ``base_part``'s folder -> package part name."""
    if target.startswith("/"):
        return target.lstrip("/")
    parts = base_part.split("/")[:-1]
    for step in target.split("/"):
        if step == "..":
            parts.pop()
        elif step not in ("", "."):
            parts.append(step)
    return "/".join(parts)


def rels_of(members: dict[str, bytes], part: str) -> dict[str, tuple[str, str]]:
    """Relationships of ``part``: Id -> (Type, resolved target part or external URL)."""
    folder, _, name = part.rpartition("/")
    rels_name = f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"
    if rels_name not in members:
        return {}
    out = {}
    for rel in _xml(members[rels_name]):
        target = rel.get("Target", "")
        if rel.get("TargetMode") != "External":
            target = _resolve_part(part, target)
        out[rel.get("Id", "")] = (rel.get("Type", ""), target)
    return out


def sheet_parts(members: dict[str, bytes]) -> dict[str, str]:
    """Sheet title -> worksheet part name, in workbook order."""
    rels = rels_of(members, "xl/workbook.xml")
    book = _xml(members["xl/workbook.xml"])
    return {
        sheet.get("name", ""): rels[sheet.get(f"{{{DOC_RELS}}}id", "")][1]
        for sheet in book.iter(f"{{{SML}}}sheet")
    }


def check_kitchen_sink(book: Path, lang: str = "en") -> None:
    """Assert that ``book`` carries every kitchen-sink feature; one AssertionError lists all
    that are missing (a LibreOffice upgrade that drops one must fail loudly, not quietly)."""
    members = zip_members(book)
    sheets = sheet_parts(members)
    contacts = sheets.get(TITLES[lang]["contacts"], "")
    managers = sheets.get(TITLES[lang]["managers"], "")
    missing: list[str] = []

    def need(ok: object, what: str) -> None:
        if not ok:
            missing.append(what)

    need(contacts in members and managers in members, f"sheets {TITLES[lang]} (have {sheets})")
    if missing:
        raise AssertionError(f"{book.name}: " + "; ".join(missing))
    c_sheet, m_sheet = _xml(members[contacts]), _xml(members[managers])
    c_rels = rels_of(members, contacts)

    drawings = [t for typ, t in c_rels.values() if typ == f"{DOC_RELS}/drawing"]
    drawing = _xml(members[drawings[0]]) if drawings else etree.Element("none")
    need(drawing.find(f".//{{{XDR}}}pic") is not None, "a picture (xdr:pic) on Contacts")
    shapes = {
        "".join(sp.itertext()): sp.find(f"{{{XDR}}}nvSpPr/{{{XDR}}}cNvSpPr")
        for sp in drawing.iter(f"{{{XDR}}}sp")
    }
    box = shapes.get(TEXT_BOX_TEXT)
    need(box is not None and box.get("txBox") == "1", "a text box (xdr:sp txBox=1) on Contacts")
    need(SHAPE_TEXT in shapes, "a rectangle shape with text (xdr:sp) on Contacts")
    need(any(n.startswith("xl/media/") and n.endswith(".png") for n in members), "the PNG")
    need(
        len(m_sheet.findall(f"{{{SML}}}extLst/{{{SML}}}ext/{{{X14}}}sparklineGroups")) == 1,
        "x14:sparklineGroups in the Managers sheet's extLst",
    )
    need(c_sheet.find(f"{{{SML}}}dataValidations") is not None, "dataValidations on Contacts")
    need(
        c_sheet.find(f"{{{SML}}}conditionalFormatting") is not None
        and m_sheet.find(f"{{{SML}}}conditionalFormatting") is not None,
        "conditionalFormatting on both sheets",
    )
    comments = [t for typ, t in c_rels.values() if typ == f"{DOC_RELS}/comments"]
    comment_text = "".join(_xml(members[comments[0]]).itertext()) if comments else ""
    need(COMMENT_TEXT in comment_text, "a comments part for Contacts")
    need(c_sheet.find(f"{{{SML}}}hyperlinks") is not None, "a hyperlink on Contacts")
    names = {n.get("name") for n in _xml(members["xl/workbook.xml"]).iter(f"{{{SML}}}definedName")}
    need(set(DEFINED_NAMES) <= names, f"definedNames {DEFINED_NAMES} in xl/workbook.xml")
    tables = [t for typ, t in rels_of(members, managers).values() if typ == f"{DOC_RELS}/table"]
    need(tables and tables[0] in members, "a table part (xl/tables/*.xml) on Managers")
    custom = members.get("docProps/custom.xml", b"")
    need(all(n.encode() in custom for n in CUSTOM_PROPERTIES), "docProps/custom.xml")
    if missing:
        raise AssertionError(f"{book.name} lacks: " + "; ".join(missing))


def build_kitchen_sink(folder: Path, lang: str = "en") -> Path:
    """``folder/kitchen-sink-<lang>.xlsx`` made by LibreOffice (see the module docstring);
    cached per process by (folder, lang). Raises if a feature did not make it."""
    folder = Path(folder).resolve()
    key = (folder, lang, "xlsx")
    if key in _BUILT and _BUILT[key].is_file():
        return _BUILT[key]
    folder.mkdir(parents=True, exist_ok=True)
    fods = folder / f"kitchen-sink-{lang}.fods"
    fods.write_text(kitchen_sink_fods(lang), encoding="utf-8")
    xlsx = _convert(fods, XLSX_FILTER, folder, folder / f"kitchen-sink-{lang}.xlsx")
    check_kitchen_sink(xlsx, lang)
    _BUILT[key] = xlsx
    return xlsx


def kitchen_sink_vba_project() -> bytes:
    """``vbaProject.bin``: document modules ThisWorkbook, Sheet1, Sheet2 and the standard
    module ``PZKitchenSink``, written by :mod:`pz_excel.vbaproject` (source only, as the
    add-in's). The project header (references, ID and protection state) is taken from
    xlwings' Excel-made add-in template, as ``pz-excel addin build --engine offline`` does."""
    from pz_excel.excel import addin, vbaproject

    with zipfile.ZipFile(addin.template_path()) as zf:
        project = vbaproject.read_project(zf.read("xl/vbaProject.bin"))

    def document(name: str, base: str) -> vbaproject.Module:
        source = (
            f'Attribute VB_Name = "{name}"\r\nAttribute VB_Base = "0{{{base}}}"\r\n'
            "Attribute VB_GlobalNameSpace = False\r\nAttribute VB_Creatable = False\r\n"
            "Attribute VB_PredeclaredId = True\r\nAttribute VB_Exposed = True\r\n"
            "Attribute VB_TemplateDerived = False\r\nAttribute VB_Customizable = True\r\n"
        )
        return vbaproject.Module(name=name, kind=vbaproject.DOCUMENT, source=source)

    workbook_base, sheet_base = (
        "00020819-0000-0000-C000-000000000046",
        "00020820-0000-0000-C000-000000000046",
    )
    project.name = "KitchenSink"
    project.modules = [
        document("ThisWorkbook", workbook_base),
        document("Sheet1", sheet_base),
        document("Sheet2", sheet_base),
        vbaproject.module_from_bas(VBA_SOURCE, VBA_MODULE),
    ]
    return vbaproject.write_project(project)


def vba_modules(book: Path) -> dict[str, str]:
    """VBA module file name (``PZKitchenSink.bas``...) -> source, as olevba reads them."""
    from oletools.olevba import VBA_Parser

    parser = VBA_Parser(str(book))
    try:
        if not parser.detect_vba_macros():
            return {}
        return {name: code for _f, _s, name, code in parser.extract_macros()}
    finally:
        parser.close()


def build_xlsm(folder: Path, lang: str = "en") -> Path:
    """``folder/kitchen-sink-<lang>.xlsm``: the kitchen sink with a VBA project.

    A zip rewrite of the LibreOffice-made book (a new book of the test's own, so rewriting
    is fine): workbook content type ``sheet.macroEnabled.main+xml``, ``xl/vbaProject.bin``
    with its content type and ``vbaProject`` relationship, and ``codeName`` on workbookPr and
    each sheetPr matching the document modules. olevba must read our module back."""
    folder = Path(folder).resolve()
    key = (folder, lang, "xlsm")
    if key in _BUILT and _BUILT[key].is_file():
        return _BUILT[key]
    members = zip_members(build_kitchen_sink(folder, lang))

    types = _xml(members["[Content_Types].xml"])
    for override in types.iter(f"{{{CT}}}Override"):
        if override.get("PartName") == "/xl/workbook.xml":
            override.set("ContentType", XLSM_MAIN)
    etree.SubElement(
        types, f"{{{CT}}}Override", PartName="/xl/vbaProject.bin", ContentType=VBA_CONTENT_TYPE
    )
    rels = _xml(members["xl/_rels/workbook.xml.rels"])
    ids = {rel.get("Id") for rel in rels}
    new_id = next(f"rId{n}" for n in range(1, 1000) if f"rId{n}" not in ids)
    etree.SubElement(
        rels, f"{{{PKG_RELS}}}Relationship", Id=new_id, Type=VBA_REL_TYPE, Target="vbaProject.bin"
    )
    book = _xml(members["xl/workbook.xml"])
    book_pr = book.find(f"{{{SML}}}workbookPr")
    if book_pr is None:  # CT_Workbook: fileVersion?, fileSharing?, workbookPr?
        book_pr = etree.Element(f"{{{SML}}}workbookPr")
        after = [c for c in book if etree.QName(c).localname in ("fileVersion", "fileSharing")]
        book.insert(len(after), book_pr)
    book_pr.set("codeName", "ThisWorkbook")
    changed = {
        "[Content_Types].xml": _serial(types),
        "xl/_rels/workbook.xml.rels": _serial(rels),
        "xl/workbook.xml": _serial(book),
    }
    for n, part in enumerate(sheet_parts(members).values(), start=1):
        sheet = _xml(members[part])
        sheet_pr = sheet.find(f"{{{SML}}}sheetPr")
        if sheet_pr is None:
            sheet_pr = etree.Element(f"{{{SML}}}sheetPr")
            sheet.insert(0, sheet_pr)
        sheet_pr.set("codeName", f"Sheet{n}")
        changed[part] = _serial(sheet)

    xlsm = folder / f"kitchen-sink-{lang}.xlsm"
    with zipfile.ZipFile(xlsm, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("[Content_Types].xml", changed.pop("[Content_Types].xml"))
        for name, data in members.items():
            if name != "[Content_Types].xml":
                out.writestr(name, changed.get(name, data))
        out.writestr("xl/vbaProject.bin", kitchen_sink_vba_project())

    modules = vba_modules(xlsm)
    code = modules.get(f"{VBA_MODULE}.bas", "")
    if "PZKitchenSinkAnswer = 42" not in code:
        raise AssertionError(f"olevba does not read module {VBA_MODULE} back: {sorted(modules)}")
    check_kitchen_sink(xlsm, lang)
    _BUILT[key] = xlsm
    return xlsm
