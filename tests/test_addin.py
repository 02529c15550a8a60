"""The add-in build without Excel: OVBA compression, compound files, the VBA project rewrite,
the customUI zip injection, the shipped .xlam, and the CLI's behaviour where Excel is absent.

Every VBA project written here is read back with oletools (olefile + olevba), an independent
reader, not only with our own code.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import olefile
import pytest
import xmlschema
from lxml import etree
from oletools.olevba import VBA_Parser, decompress_stream

from pz_excel.cli.main import main
from pz_excel.excel import addin, vbaproject

ROOT = Path(__file__).resolve().parent.parent
XSD = Path(__file__).resolve().parent / "data" / "customui14.xsd"
LINUX = sys.platform.startswith("linux")


@pytest.fixture(scope="module")
def template_bin() -> bytes:
    with zipfile.ZipFile(addin.template_path()) as zf:
        return zf.read("xl/vbaProject.bin")


@pytest.fixture(scope="module", params=addin.LANGS)
def built(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    return request.param, addin.build_offline(request.param)


def vba_modules(vba_bin: bytes) -> dict[str, str]:
    """Module name -> code as olevba extracts it (Attribute lines hidden, CRLF)."""
    parser = VBA_Parser("vbaProject.bin", data=vba_bin)
    try:
        return {Path(name).stem: code for _, _, name, code in parser.extract_macros() if name}
    finally:
        parser.close()


def code_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    return [ln for ln in lines if ln.strip() and not ln.startswith("Attribute VB_")]


# -- [MS-OVBA] compression ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"a",
        b"abcabcabcabcabc" * 3,
        b"\x00" * 10000,  # long runs: copy tokens with overlapping source
        bytes(range(256)) * 40,
        random.Random(7).randbytes(8192) + b"tail" * 50,  # incompressible full chunks: raw
    ],
    ids=["empty", "one", "repeat", "zeros", "bytes", "random"],
)
def test_compression_round_trips_through_oletools(data: bytes) -> None:
    packed = vbaproject.compress(data)
    assert bytes(decompress_stream(bytearray(packed))) == data
    assert vbaproject.decompress(packed) == data


def test_compression_of_real_vba_matches_oletools(template_bin: bytes) -> None:
    project = vbaproject.read_project(template_bin)
    for module in project.modules:
        raw = module.source.encode("cp1252")
        packed = vbaproject.compress(raw)
        assert bytes(decompress_stream(bytearray(packed))) == raw
        assert len(packed) < len(raw)  # it really compresses source text


def test_decompress_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        vbaproject.decompress(b"\x02abc")


# -- [MS-CFB] compound files -----------------------------------------------------------------------


def test_compound_file_round_trip_via_olefile() -> None:
    rng = random.Random(3)
    streams = {
        "PROJECT": b"ID=x\r\n",
        "empty": b"",
        "VBA/mini63": rng.randbytes(63),
        "VBA/mini64": rng.randbytes(64),
        "VBA/just_under": rng.randbytes(4095),
        "VBA/cutoff": rng.randbytes(4096),
        "VBA/big": rng.randbytes(70000),
        **{f"VBA/m{i:02d}": rng.randbytes(rng.randrange(1, 3000)) for i in range(20)},
    }
    data = vbaproject.write_cfb(streams)
    ole = olefile.OleFileIO(data)
    got = {"/".join(p): ole.openstream(p).read() for p in ole.listdir()}
    assert got == streams
    assert vbaproject.read_cfb(data) == streams
    # siblings form a valid red-black tree: ordered, no red-red, equal black height
    for entry in ole.direntries:
        if entry is not None and entry.entry_type in (olefile.STGTY_ROOT, olefile.STGTY_STORAGE):
            _check_red_black(ole, entry.sid_child)


def _check_red_black(ole: olefile.OleFileIO, sid: int) -> int:
    if sid == olefile.NOSTREAM:
        return 1
    node = ole.direntries[sid]
    key = (len(node.name), node.name.upper())
    for child, side in ((node.sid_left, -1), (node.sid_right, 1)):
        if child != olefile.NOSTREAM:
            other = ole.direntries[child]
            assert ((len(other.name), other.name.upper()) > key) == (side == 1)
            if node.color == 0:
                assert other.color == 1, "red node with a red child"
    left, right = _check_red_black(ole, node.sid_left), _check_red_black(ole, node.sid_right)
    assert left == right, "unequal black height"
    return left + (1 if node.color == 1 else 0)


# -- the VBA project -------------------------------------------------------------------------------


def test_template_is_what_the_build_expects(template_bin: bytes) -> None:
    modules = vba_modules(template_bin)
    assert "RibbonMyAddin" in modules and "xlwings" in modules
    # the template's single callback can't tell buttons apart: our own module is required
    assert "Sub RunMain(control As IRibbonControl)" in modules["RibbonMyAddin"]
    assert addin.TEMPLATE_PROJECT_LINE in modules["xlwings"]
    assert f"'Version: {addin.xlwings_version()}" in modules["xlwings"]


def test_built_vba_project_reads_back_with_olevba(built: tuple[str, bytes], template_bin: bytes):
    _, xlam = built
    with zipfile.ZipFile(io.BytesIO(xlam)) as zf:
        vba_bin = zf.read("xl/vbaProject.bin")
    modules = vba_modules(vba_bin)
    original = vba_modules(template_bin)
    assert set(modules) == (set(original) - {"RibbonMyAddin"}) | {"PZExcel", "PZFunctions"}
    bas = (ROOT / "pz_excel" / "excel" / "resources" / "PZExcel.bas").read_text(encoding="ascii")
    assert code_lines(modules["PZExcel"]) == code_lines(bas)
    xl_new, xl_old = code_lines(modules["xlwings"]), code_lines(original["xlwings"])
    changed = [(a, b) for a, b in zip(xl_old, xl_new, strict=True) if a != b]
    assert changed == [(addin.TEMPLATE_PROJECT_LINE, addin.PROJECT_LINE)]
    for name in ("ThisWorkbook", "Sheet2", "Dictionary"):
        assert code_lines(modules[name]) == code_lines(original[name])

    ole = olefile.OleFileIO(vba_bin)
    # source-only project as [MS-OVBA] asks writers: version 0xFFFF, no performance cache
    assert ole.openstream("VBA/_VBA_PROJECT").read() == bytes.fromhex("cc61ffff000000")
    project_text = ole.openstream("PROJECT").read().decode("cp1252")
    assert 'Name="PZExcel"' in project_text
    assert "Module=PZExcel" in project_text and "RibbonMyAddin" not in project_text
    assert "\r\nDocument=ThisWorkbook/&H00000000\r\n" in project_text
    parsed = vbaproject.read_project(vba_bin)
    assert parsed.name == "PZExcel"
    assert {m.name: m.kind for m in parsed.modules}["PZExcel"] == vbaproject.STD
    # the worksheet functions ride along (tests/test_udf_stubs.py checks their text)
    assert {m.name: m.kind for m in parsed.modules}["PZFunctions"] == vbaproject.STD
    assert "Module=PZFunctions" in project_text


def test_customui_injected_with_extensibility_relationship(built: tuple[str, bytes]) -> None:
    lang, xlam = built
    with zipfile.ZipFile(io.BytesIO(xlam)) as zf:
        names = zf.namelist()
        rels = etree.fromstring(zf.read("_rels/.rels"))
        part = zf.read(addin.CUSTOMUI_PART)
        workbook_xml = zf.read("xl/workbook.xml")
    assert names[0] == "[Content_Types].xml"
    assert "customUI/customUI.xml" not in names  # the template's 2006 ribbon is gone
    ui = [r for r in rels if "ui/extensibility" in r.get("Type", "")]
    assert len(ui) == 1
    assert ui[0].get("Type") == addin.UI_REL_TYPE
    assert ui[0].get("Target") == addin.CUSTOMUI_PART
    assert part == addin.customui_xml(lang)
    xmlschema.XMLSchema(str(XSD)).validate(io.BytesIO(part))
    assert b'name="_pz_excel.conf"' in workbook_xml


def test_inject_customui_keeps_everything_else(tmp_path: Path) -> None:
    template = addin.template_path()
    out = addin.inject_customui(template, addin.customui_xml("en"))
    with zipfile.ZipFile(template) as old, zipfile.ZipFile(io.BytesIO(out)) as new:
        before = {n: old.read(n) for n in old.namelist()}
        after = {n: new.read(n) for n in new.namelist()}
    changed = {n for n in before.keys() & after.keys() if before[n] != after[n]}
    assert changed == {"_rels/.rels", "[Content_Types].xml"}
    assert set(before) - set(after) == {"customUI/customUI.xml"}
    assert set(after) - set(before) == {addin.CUSTOMUI_PART}
    # injecting twice still leaves exactly one ribbon
    again = addin.inject_customui(out, addin.customui_xml("ru"))
    with zipfile.ZipFile(io.BytesIO(again)) as zf:
        rels = etree.fromstring(zf.read("_rels/.rels"))
        assert sum("ui/extensibility" in r.get("Type", "") for r in rels) == 1
        assert zf.read(addin.CUSTOMUI_PART) == addin.customui_xml("ru")


def test_inject_customui_refuses_non_customui() -> None:
    with pytest.raises(ValueError):
        addin.inject_customui(addin.template_path(), b"<ribbon/>")


def test_build_is_deterministic() -> None:
    assert addin.build_offline("ru") == addin.build_offline("ru")


@pytest.mark.parametrize("lang", addin.LANGS)
def test_shipped_addins_are_current(lang: str) -> None:
    shipped = ROOT / "workbook" / "prebuilt" / lang / addin.ADDIN_FILE
    built_for = (ROOT / "workbook" / "prebuilt" / "XLWINGS_VERSION").read_text().strip()
    if built_for != addin.xlwings_version():
        pytest.skip(
            f"shipped add-ins embed xlwings {built_for}, installed is {addin.xlwings_version()}:"
            " run python workbook/build.py"
        )
    assert shipped.read_bytes() == addin.build_offline(lang), "run python workbook/build.py"


# -- user config -----------------------------------------------------------------------------------


def test_user_config_keeps_other_settings(tmp_path: Path) -> None:
    conf = tmp_path / "pz_excel.conf"
    key, _ = addin.interpreter_setting()
    conf.write_text(f'"{key}","old"\r\n"UDF Modules","udfs.calls"\r\n')
    addin.write_user_config(conf)
    lines = conf.read_text().splitlines()
    assert lines[0] == f'"{key}","{addin.interpreter_setting()[1]}"'
    assert '"UDF Modules","udfs.calls"' in lines
    assert sum(key in ln for ln in lines) == 1
    assert not any("pz_udfs" in ln for ln in lines)  # the admin's UDF list is not touched


def test_user_config_registers_our_formulas(tmp_path: Path) -> None:
    conf = addin.write_user_config(tmp_path / "pz_excel.conf")
    lines = conf.read_text().splitlines()
    assert f'"UDF Modules","{addin.UDF_MODULE}"' in lines
    import importlib

    assert hasattr(importlib.import_module(addin.UDF_MODULE), "PZ_CALL")


# -- command line where there is no Excel ----------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="checks the no-Excel path of Linux")
@pytest.mark.parametrize(
    ("lang", "needle"),
    [
        ("en", "building the add-in needs Excel on Windows or macOS"),
        ("ru", "для сборки надстройки нужен Excel на Windows или macOS"),
    ],
)
def test_build_on_linux_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lang: str, needle: str
) -> None:
    monkeypatch.setenv("PZ_LANG", lang)
    assert main(["addin", "build"]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "--engine offline" in err
    assert "Traceback" not in err


@pytest.mark.skipif(not LINUX, reason="checks the no-Excel path of Linux")
@pytest.mark.parametrize(
    "args",
    [["build", "--engine", "excel"], ["install"], ["remove"], ["status"]],
)
def test_excel_steps_on_linux_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    monkeypatch.setenv("PZ_LANG", "en")
    assert main(["addin", *args]) == 2
    err = capsys.readouterr().err
    assert "Windows" in err and "Traceback" not in err


@pytest.mark.skipif(not LINUX, reason="checks the no-Excel path of Linux")
def test_build_on_linux_subprocess_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PZ_LANG": "en"}
    proc = subprocess.run(
        [sys.executable, "-m", "pz_excel.cli.main", "addin", "build", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("pz-excel: building the add-in needs Excel on Windows or macOS")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_offline_engine_writes_the_addin(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "sub" / "pz_excel.xlam"
    assert main(["addin", "build", "--engine", "offline", "--lang", "en", "--out", str(out)]) == 0
    assert out.read_bytes() == addin.build_offline("en")
    assert str(out) in capsys.readouterr().out


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["addin", "--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("build", "install", "remove", "status"):
        assert sub in out
