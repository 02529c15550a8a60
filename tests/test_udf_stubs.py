"""The worksheet-function stubs the add-in carries (module PZFunctions).

Checked against the real things, none faked: the decorated functions of udfs/pz_udfs.py,
xlwings' own stub writer (``udfs.generate_vba_wrapper`` and its decorators, run from the
installed xlwings' source: the module itself needs pywin32 to import), and the shipped
``workbook/prebuilt/<lang>/pz_excel.xlam`` read back with our reader and with olevba.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib
import inspect
import io
import re
import types
import typing
import zipfile
from pathlib import Path

import pytest
from xlwings.utils import VBAWriter

from pz_excel.excel import addin, udf_stubs, vbaproject

ROOT = Path(__file__).resolve().parent.parent
UDF_SOURCE = ROOT / "udfs" / "pz_udfs.py"
STUB = re.compile(r"^Function (\w+)\((.*)\)\r?$", re.M)
CALL = re.compile(r'^ {8}(\w+) = XLPy\.CallUDF\("([^"]+)", "(\w+)", Array\((.*?)\)\)\r?$', re.M)


@pytest.fixture(scope="module")
def source() -> str:
    return udf_stubs.vba_source(addin.UDF_MODULE)


def stubs(text: str) -> dict[str, str]:
    """Function name -> its whole text, from a generated module."""
    parts = re.split(r"(?m)^(?=Function )", text)
    return {STUB.match(p).group(1): p for p in parts if STUB.match(p)}


def decorated_names() -> set[str]:
    tree = ast.parse(UDF_SOURCE.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("xw.func" in ast.unparse(d) for d in node.decorator_list)
    }


def test_every_stub_calls_an_existing_udf_with_its_arguments_in_order(source: str) -> None:
    module = importlib.import_module(addin.UDF_MODULE)
    found = stubs(source)
    assert set(found) == decorated_names() and len(found) >= 7
    for name, text in found.items():
        params = [p.split()[-1] for p in STUB.match(text).group(2).split(", ") if p]
        calls = CALL.findall(text)
        assert len(calls) == 1, text
        result, module_name, target, array = calls[0]
        assert (result, module_name, target) == (name, addin.UDF_MODULE, name)
        func = getattr(module, name)
        sig = inspect.signature(func).parameters.values()
        # the Python parameters, in order; xlwings puts the calling cell in for `caller`
        assert (array.split(", ") if array else []) == [
            "Nothing" if p.name == "caller" else p.name for p in sig
        ]
        assert params == [p.name for p in sig if p.name != "caller"]
        optional = [p.name for p in sig if p.default is not p.empty]
        assert re.findall(r"Optional (\w+)", text) == optional
        # an add-in passes ActiveWorkbook (the caller's book), as xlwings does for .xlam
        assert f"Array({array}), ActiveWorkbook, Application.Caller)" in text


def test_status_and_missed_are_volatile_and_call_never_runs_in_the_wizard(source: str) -> None:
    found = stubs(source)
    volatile = {n for n, t in found.items() if "\r\n    Application.Volatile\r\n" in t}
    assert volatile == {"PZ_STATUS", "PZ_MISSED"}
    wizard = {n for n, t in found.items() if 'CommandBars("Standard")' in t}
    assert wizard == {"PZ_CALL"}


def test_module_is_ascii_crlf_and_named(source: str) -> None:
    source.encode("ascii")
    assert source.splitlines()[0] == 'Attribute VB_Name = "PZFunctions"'
    assert "\n" not in source.replace("\r\n", "")
    assert '#Const App = "Microsoft Excel"' in source  # the stubs' #If needs it in this module


# -- the same text as xlwings' own writer ---------------------------------------------------------

XLWINGS_PARTS = (
    "func_sig",
    "get_category",
    "get_async_mode",
    "check_bool",
    "extract_type_and_annotations",
    "xlfunc",
    "xlarg",
    "generate_vba_wrapper",
)


@pytest.fixture(scope="module")
def xlwings_udfs() -> types.SimpleNamespace:
    """xlwings' decorators and stub writer, compiled from the installed xlwings/udfs.py."""
    path = Path(addin.xlwings_dir()) / "udfs.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    picked = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in XLWINGS_PARTS]
    assert sorted(n.name for n in picked) == sorted(XLWINGS_PARTS), "xlwings changed its udfs.py"
    code = "from __future__ import annotations\n" + "\n\n".join(map(ast.unparse, picked))
    names: dict[str, object] = {
        "inspect": inspect,
        "dt": dt,
        "VBAWriter": VBAWriter,
        "_F": typing.TypeVar("_F"),
        **{n: getattr(typing, n) for n in ("Annotated", "Any", "Callable", "TypeVar")},
        **{n: getattr(typing, n) for n in ("get_args", "get_origin", "get_type_hints")},
    }
    exec(compile(code, str(path), "exec"), names)  # xlwings' own code
    return types.SimpleNamespace(**{n: names[n] for n in XLWINGS_PARTS})


@pytest.fixture(scope="module")
def decorated(xlwings_udfs: types.SimpleNamespace) -> types.ModuleType:
    """udfs/pz_udfs.py run with xlwings' real decorators (as on Windows): ``__xlfunc__``."""
    text = UDF_SOURCE.read_text(encoding="utf-8")
    assert text.count("import xlwings as xw\n") == 1
    module = types.ModuleType(addin.UDF_MODULE)
    module.__dict__["xw"] = types.SimpleNamespace(func=xlwings_udfs.xlfunc, arg=xlwings_udfs.xlarg)
    code = compile(text.replace("import xlwings as xw\n", ""), str(UDF_SOURCE), "exec")
    exec(code, module.__dict__)  # our own module's source
    return module


def test_stubs_equal_what_xlwings_writes_for_an_addin(
    source: str, xlwings_udfs: types.SimpleNamespace, decorated: types.ModuleType
) -> None:
    out = io.StringIO()
    addin_book = types.SimpleNamespace(Name=addin.ADDIN_FILE)  # all the writer reads of it
    xlwings_udfs.generate_vba_wrapper(addin.UDF_MODULE, decorated, out, addin_book)
    ours = source.replace("\r\n", "\n").split("\n", 4)[4]  # after our 4 header lines
    assert ours == out.getvalue()
    assert decorated.PZ_STATUS.__xlfunc__["volatile"] is True


def test_xlwings_metadata_and_source_reading_agree(source: str, decorated: types.ModuleType):
    # Windows reads __xlfunc__, other systems the decorators in the source: same stubs
    assert udf_stubs.vba_source(addin.UDF_MODULE, decorated) == source


# -- in the shipped add-ins -----------------------------------------------------------------------


def shipped_vba(lang: str) -> bytes:
    xlam = ROOT / "workbook" / "prebuilt" / lang / addin.ADDIN_FILE
    with zipfile.ZipFile(xlam) as zf:
        return zf.read("xl/vbaProject.bin")


@pytest.mark.parametrize("lang", addin.LANGS)
def test_shipped_addin_has_the_generated_module(lang: str, source: str) -> None:
    project = vbaproject.read_project(shipped_vba(lang))
    assert project.module(udf_stubs.MODULE_NAME).source == source
    assert project.module(udf_stubs.MODULE_NAME).kind == vbaproject.STD


@pytest.mark.parametrize("lang", addin.LANGS)
def test_shipped_addin_module_reads_back_with_olevba(lang: str, source: str) -> None:
    olevba = pytest.importorskip("oletools.olevba", reason="oletools not installed in .venv")
    parser = olevba.VBA_Parser("vbaProject.bin", data=shipped_vba(lang))
    try:
        modules = {Path(n).stem: code for _, _, n, code in parser.extract_macros() if n}
    finally:
        parser.close()

    def lines(text: str) -> list[str]:
        return [ln for ln in text.replace("\r\n", "\n").split("\n") if not ln.startswith("Attr")]

    assert lines(modules[udf_stubs.MODULE_NAME]) == lines(source)
