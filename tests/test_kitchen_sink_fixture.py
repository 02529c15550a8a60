"""The test infrastructure itself: the OOXML schema validator (no LibreOffice needed) and the
LibreOffice-made kitchen-sink books (skipped without soffice)."""

from __future__ import annotations

import re
import subprocess
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from lxml import etree
from openpyxl import load_workbook

from tests import ooxml_schema
from tests.kitchen_sink import (
    CONTACT_HEADERS,
    MANAGERS,
    TITLES,
    VBA_CONTENT_TYPE,
    VBA_MODULE,
    VBA_REL_TYPE,
    XLSM_MAIN,
    build_kitchen_sink,
    build_xlsm,
    check_kitchen_sink,
    needs_soffice,
    raw_members,
    rels_of,
    run_soffice,
    sheet_parts,
    tiny_png,
    to_pdf,
    vba_modules,
    zip_members,
)

SML_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
MC_NS = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
X14AC_NS = 'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"'
MINIMAL_SHEET = (
    f"<worksheet {SML_NS}><dimension ref='A1'/><sheetData><row r='1'>"
    "<c r='A1' t='inlineStr'><is><t xml:space='preserve'> hi </t></is></c>"
    "</row></sheetData></worksheet>"
).encode()

# Parts of a LibreOffice book that no bundled schema covers: core.xml needs the Dublin Core
# schemas (opc-coreProperties.xsd imports them without a schemaLocation).
NOT_VALIDATED = {"docProps/core.xml"}


# -- the validator (pure) --------------------------------------------------------------------------


def test_validate_accepts_a_minimal_worksheet():
    assert ooxml_schema.validate("xl/worksheets/sheet1.xml", MINIMAL_SHEET) == []


def test_validate_rejects_elements_out_of_order():
    broken = MINIMAL_SHEET.replace(b"<dimension ref='A1'/>", b"").replace(
        b"</sheetData>", b"</sheetData><dimension ref='A1'/>"
    )
    errors = ooxml_schema.validate("xl/worksheets/sheet1.xml", broken)
    assert len(errors) == 1
    assert errors[0].startswith("xl/worksheets/sheet1.xml:1: ")
    assert "dimension" in errors[0] and "not expected" in errors[0]


def test_validate_rejects_a_bad_attribute_value():
    broken = MINIMAL_SHEET.replace(b"t='inlineStr'", b"t='text'")
    assert any("'text'" in e for e in ooxml_schema.validate("sheet", broken))


def test_markup_compatibility_is_processed_before_validating():
    """Ignorable attributes/elements go, AlternateContent becomes its Fallback."""
    part = (
        f"<worksheet {SML_NS} {MC_NS} {X14AC_NS} mc:Ignorable='x14ac'>"
        "<sheetFormatPr defaultRowHeight='15' x14ac:dyDescent='0.25'/>"
        "<mc:AlternateContent><mc:Choice Requires='x14ac'><x14ac:whatever/></mc:Choice>"
        "<mc:Fallback><sheetData/></mc:Fallback></mc:AlternateContent>"
        "<x14ac:unknownElement/></worksheet>"
    ).encode()
    assert ooxml_schema.validate("sheet", part) == []
    # Without mc:Ignorable the x14ac attribute and element are errors, as Excel 2007 sees them.
    errors = ooxml_schema.validate("sheet", part.replace(b" mc:Ignorable='x14ac'", b""))
    assert len(errors) == 2 and "dyDescent" in errors[0] and "unknownElement" in errors[1]
    # No Fallback: the AlternateContent disappears (and sheetData, required, is then missing).
    no_fallback = re.sub(rb"<mc:Fallback>.*</mc:Fallback>", b"", part)
    assert any("sheetData" in e for e in ooxml_schema.validate("sheet", no_fallback))


def test_must_understand_an_unknown_namespace_is_an_error():
    part = (
        f"<worksheet {SML_NS} {MC_NS} {X14AC_NS} mc:MustUnderstand='x14ac'><sheetData/></worksheet>"
    ).encode()
    errors = ooxml_schema.validate("sheet", part)
    assert len(errors) == 1 and "MustUnderstand" in errors[0]


@pytest.mark.parametrize(
    ("name", "part"),
    [
        (
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/></Types>',
        ),
        (
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://x/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        ),
        (
            "docProps/app.xml",
            "<Properties xmlns='http://schemas.openxmlformats.org/officeDocument/2006/"
            "extended-properties'><Application>Test</Application></Properties>",
        ),
        (
            "docProps/custom.xml",
            "<Properties xmlns='http://schemas.openxmlformats.org/officeDocument/2006/"
            "custom-properties' xmlns:vt='http://schemas.openxmlformats.org/officeDocument/"
            "2006/docPropsVTypes'><property fmtid='{D5CDD505-2E9C-101B-9397-08002B2CF9AE}'"
            " pid='2' name='x'><vt:lpwstr>y</vt:lpwstr></property></Properties>",
        ),
        ("xl/sharedStrings.xml", f"<sst {SML_NS} count='1'><si><t>a</t></si></sst>"),
        (
            "xl/drawings/drawing1.xml",
            "<xdr:wsDr xmlns:xdr='http://schemas.openxmlformats.org/drawingml/2006/"
            "spreadsheetDrawing'/>",
        ),
    ],
)
def test_validate_package_parts(name, part):
    assert ooxml_schema.validate(name, part.encode()) == []
    # and the same part with an undeclared child is rejected by the same schema
    root = etree.fromstring(part.encode())
    etree.SubElement(root, f"{{{etree.QName(root).namespace}}}bogus")
    assert ooxml_schema.validate(name, etree.tostring(root))


def test_chart_space_is_validated_against_dml_chart():
    empty = b"<c:chartSpace xmlns:c='http://schemas.openxmlformats.org/drawingml/2006/chart'/>"
    assert any("chart" in e for e in ooxml_schema.validate("xl/charts/chart1.xml", empty))


def test_unknown_root_is_a_clear_error():
    part = b"<customUI xmlns='http://schemas.microsoft.com/office/2009/07/customui'/>"
    assert not ooxml_schema.supported(part)
    with pytest.raises(ooxml_schema.UnknownRootError, match="no schema for root element"):
        ooxml_schema.validate("customUI/customUI14.xml", part)


# -- zip helpers and the PNG (pure) ----------------------------------------------------------------


def test_zip_members_and_raw_members(tmp_path):
    book = tmp_path / "a.zip"
    with zipfile.ZipFile(book, "w") as zf:
        zf.writestr("stored.txt", b"s" * 100, compress_type=zipfile.ZIP_STORED)
        zf.writestr("deflated.txt", b"d" * 100, compress_type=zipfile.ZIP_DEFLATED)
    assert zip_members(book) == {"stored.txt": b"s" * 100, "deflated.txt": b"d" * 100}
    raw = raw_members(book)
    assert raw["stored.txt"][6:] == b"s" * 100
    assert raw["deflated.txt"][:2] == zipfile.ZIP_DEFLATED.to_bytes(2, "little")
    assert zlib.decompress(raw["deflated.txt"][6:], -15) == b"d" * 100
    # the same content compressed differently is not a byte-for-byte copy
    other = tmp_path / "b.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("deflated.txt", b"d" * 100, zipfile.ZIP_DEFLATED, compresslevel=0)
    assert zip_members(other)["deflated.txt"] == b"d" * 100
    assert raw_members(other)["deflated.txt"] != raw["deflated.txt"]


def test_tiny_png_is_a_png():
    png = tiny_png(4, 3)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    assert int.from_bytes(png[16:20], "big") == 4 and int.from_bytes(png[20:24], "big") == 3


# -- the LibreOffice-made books --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kitchen-sink")


@pytest.fixture(scope="module")
def xlsx(sink_dir) -> Path:
    return build_kitchen_sink(sink_dir)


@pytest.fixture(scope="module")
def xlsm(sink_dir) -> Path:
    return build_xlsm(sink_dir)


@needs_soffice
@pytest.mark.filterwarnings("ignore:Sparkline Group extension is not supported")  # openpyxl
def test_kitchen_sink_has_every_feature(xlsx, sink_dir):
    check_kitchen_sink(xlsx)  # also done by the builder; here for the record
    assert build_kitchen_sink(sink_dir) == xlsx  # cached: same file, no second conversion
    members = zip_members(xlsx)
    assert {
        "xl/drawings/drawing1.xml",
        "xl/media/image1.png",
        "xl/comments1.xml",
        "xl/tables/table1.xml",
        "docProps/custom.xml",
    } <= set(members)
    assert members["xl/media/image1.png"] == tiny_png()

    wb = load_workbook(xlsx, read_only=True, data_only=True)
    try:
        assert wb.sheetnames == [TITLES["en"]["contacts"], TITLES["en"]["managers"]]
        contacts = list(wb[TITLES["en"]["contacts"]].values)
        managers = list(wb[TITLES["en"]["managers"]].values)
    finally:
        wb.close()
    assert contacts[0] == CONTACT_HEADERS["en"]
    assert len(contacts) == 21
    assert contacts[1][1] == "+7 343 000-22-33"
    assert {row[2] for row in contacts[1:]} >= {"101", 102, "Anna Smirnova"}
    assert [row[:2] for row in managers[1:]] == [(name, ext) for name, ext, _ in MANAGERS]
    assert managers[1][7] == sum(MANAGERS[0][2])  # the Total formula was calculated


@needs_soffice
def test_kitchen_sink_in_russian(sink_dir):
    book = build_kitchen_sink(sink_dir, lang="ru")
    assert list(sheet_parts(zip_members(book))) == ["Контакты", "Менеджеры"]


def _validation_errors(book: Path) -> tuple[dict[str, list[str]], set[str]]:
    errors: dict[str, list[str]] = {}
    skipped: set[str] = set()
    for name, data in zip_members(book).items():
        if not name.endswith((".xml", ".rels")):
            continue  # media, VML (legacy, no schema here), vbaProject.bin
        if not ooxml_schema.supported(data):
            skipped.add(name)
        elif found := ooxml_schema.validate(name, data):
            errors[name] = found
    return errors, skipped


@needs_soffice
@pytest.mark.parametrize("kind", ["xlsx", "xlsm"])
def test_every_xml_part_is_schema_valid(kind, request):
    """LibreOffice 7.4's output (and our xlsm rewrite of it) is valid ISO 29500 transitional,
    so a writer that breaks validity is caught by comparing against it."""
    errors, skipped = _validation_errors(request.getfixturevalue(kind))
    assert errors == {}
    assert skipped == NOT_VALIDATED


@needs_soffice
def test_xlsm_carries_a_vba_project(xlsm):
    members = zip_members(xlsm)
    types = members["[Content_Types].xml"].decode()
    assert f'PartName="/xl/workbook.xml" ContentType="{XLSM_MAIN}"' in types
    assert f'PartName="/xl/vbaProject.bin" ContentType="{VBA_CONTENT_TYPE}"' in types
    assert (VBA_REL_TYPE, "xl/vbaProject.bin") in rels_of(members, "xl/workbook.xml").values()
    assert members["xl/vbaProject.bin"].startswith(bytes.fromhex("d0cf11e0a1b11ae1"))
    modules = vba_modules(xlsm)
    assert set(modules) == {"ThisWorkbook.cls", "Sheet1.cls", "Sheet2.cls", f"{VBA_MODULE}.bas"}
    assert "Public Sub PZKitchenSinkHello()" in modules[f"{VBA_MODULE}.bas"]
    assert b'codeName="ThisWorkbook"' in members["xl/workbook.xml"]
    assert b'codeName="Sheet1"' in members["xl/worksheets/sheet1.xml"]


@needs_soffice
def test_libreoffice_reads_the_vba_project_back(xlsm, tmp_path):
    """A second, independent reader: LibreOffice imports the module into Basic."""
    proc = run_soffice(["--convert-to", "fods", "--outdir", str(tmp_path), str(xlsm)], tmp_path)
    fods = (tmp_path / (xlsm.stem + ".fods")).read_text(encoding="utf-8")
    assert "PZKitchenSinkAnswer = 42" in fods, proc.stderr


@needs_soffice
def test_to_pdf(xlsm, tmp_path):
    pdf = to_pdf(xlsm, tmp_path)
    data = pdf.read_bytes()
    assert pdf == tmp_path / "kitchen-sink-en.pdf" and data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2  # Contacts and Managers at least


@needs_soffice
def test_to_pdf_reports_soffice_output_when_nothing_comes_out(tmp_path):
    with pytest.raises(RuntimeError, match=r"did not convert missing\.xlsx(.|\n)*stdout"):
        to_pdf(tmp_path / "missing.xlsx", tmp_path)


@needs_soffice
def test_run_soffice_never_hangs(tmp_path):
    book = tmp_path / "b.fods"
    book.write_text("<x/>")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_soffice(["--convert-to", "pdf", str(book)], tmp_path, timeout=0.2)
    assert time.monotonic() - started < 10
