"""Static checks of the ribbon add-in sources (no Excel here, none faked).

* the customUI XML validates against Microsoft's customUI14 schema (tests/data/customui14.xsd);
* every button's onAction names a Sub of workbook/PZExcel.bas with the exact ribbon callback
  signature, and every Sub is one RunPython line into pz_excel.macros;
* XML, .bas and pz_excel.addin.RIBBON_ACTIONS agree; the Python targets exist once
  pz_excel/excel/macros.py is in the tree;
* the sources have one copy, in pz_excel/excel/resources.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from pz_excel.excel import addin

ROOT = Path(__file__).resolve().parent.parent
WORKBOOK = ROOT / "workbook"
RESOURCES = ROOT / "pz_excel" / "excel" / "resources"
BAS = RESOURCES / "PZExcel.bas"
XSD = Path(__file__).resolve().parent / "data" / "customui14.xsd"
NS = {"c": addin.CUSTOMUI_NS}
CONTRACT = {
    "connect",
    "disconnect",
    "call_selected",
    "call_back",
    "status",
    "refresh_contacts",
    "settings",
    "add_contact",
    "send_sms",
}
CYRILLIC = re.compile("[\u0400-\u04ff]")


def ribbon_path(lang: str) -> Path:
    return RESOURCES / f"customUI14.{lang}.xml"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def buttons(lang: str) -> list[etree._Element]:
    root = etree.parse(str(ribbon_path(lang))).getroot()
    return root.findall(".//c:button", NS)


def bas_subs() -> dict[str, list[str]]:
    """Sub name -> body lines (comments and blanks dropped), from the .bas text."""
    subs: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in BAS.read_text(encoding="ascii").splitlines():
        line = raw.strip()
        match = re.match(r"^(?:Public\s+|Private\s+)?Sub\s+(\w+)\s*\((.*)\)\s*$", line)
        if match:
            current = subs.setdefault(match.group(1), [])
            current.append(f"({match.group(2)})")  # first item: the parameter list
        elif line == "End Sub":
            current = None
        elif current is not None and line and not line.startswith("'"):
            current.append(line)
    return subs


# -- schema ----------------------------------------------------------------------------------


def test_schema_is_customui14_and_strict(schema: xmlschema.XMLSchema) -> None:
    assert schema.target_namespace == "http://schemas.microsoft.com/office/2009/07/customui"
    assert "customUI" in schema.elements
    good = ribbon_path("en").read_bytes()
    assert schema.is_valid(good)
    # the copy really constrains: a wrong size, an unknown attribute, a 2006 namespace fail
    assert not schema.is_valid(good.replace(b'size="large"', b'size="huge"', 1))
    assert not schema.is_valid(good.replace(b"onAction=", b"onClick=", 1))
    assert not schema.is_valid(
        good.replace(
            addin.CUSTOMUI_NS.encode(), b"http://schemas.microsoft.com/office/2006/01/customui"
        )
    )


@pytest.mark.parametrize("lang", addin.LANGS)
def test_ribbon_validates_against_customui14(schema: xmlschema.XMLSchema, lang: str) -> None:
    schema.validate(str(ribbon_path(lang)))  # raises with the exact location on error


@pytest.mark.parametrize("lang", addin.LANGS)
def test_ribbon_has_one_tab_with_every_action(lang: str) -> None:
    root = etree.parse(str(ribbon_path(lang))).getroot()
    tabs = root.findall(".//c:tab", NS)
    assert [t.get("label") for t in tabs] == [{"ru": "Простые Звонки", "en": "Calls"}[lang]]
    by_id = {b.get("id"): b for b in buttons(lang)}
    assert len(by_id) == len(buttons(lang)), "duplicate button ids"
    expected = {a.control_id: a.on_action for a in addin.RIBBON_ACTIONS}
    assert {i: b.get("onAction") for i, b in by_id.items()} == expected
    for b in by_id.values():
        assert b.get("imageMso"), f"{b.get('id')} has no imageMso icon"
        for attr in ("label", "screentip", "supertip"):
            assert b.get(attr), f"{b.get('id')} lacks {attr}"


def test_both_languages_have_the_same_controls() -> None:
    def shape(lang: str) -> list[tuple[str | None, ...]]:
        root = etree.parse(str(ribbon_path(lang))).getroot()
        return [
            (el.tag, el.get("id"), el.get("onAction"), el.get("imageMso"), el.get("size"))
            for el in root.iter(etree.Element)
        ]

    assert shape("ru") == shape("en")


@pytest.mark.parametrize("lang", addin.LANGS)
def test_texts_are_in_the_files_language(lang: str) -> None:
    root = etree.parse(str(ribbon_path(lang))).getroot()
    for el in root.iter(etree.Element):
        for attr in ("label", "screentip", "supertip"):
            text = el.get(attr)
            if text is None:
                continue
            if lang == "ru":
                assert CYRILLIC.search(text), f"{el.get('id')}.{attr} not Russian: {text!r}"
            else:
                assert not CYRILLIC.search(text), f"{el.get('id')}.{attr} not English: {text!r}"


# -- VBA module --------------------------------------------------------------------------------


def test_bas_is_ascii_and_named() -> None:
    raw = BAS.read_bytes()
    raw.decode("ascii")  # VBA keeps code in the ANSI code page: stay portable
    assert raw.splitlines()[0] == b'Attribute VB_Name = "PZExcel"'
    assert addin.VBA_MODULE == "PZExcel"
    assert "Option Explicit" in raw.decode()


def test_every_on_action_has_a_callback_sub_with_the_exact_signature() -> None:
    text = BAS.read_text(encoding="ascii")
    for lang in addin.LANGS:
        for button in buttons(lang):
            module, _, sub = button.get("onAction").partition(".")
            assert module == addin.VBA_MODULE
            pattern = rf"^Sub {re.escape(sub)}\(control As IRibbonControl\)$"
            assert re.search(pattern, text, re.M), f"no 'Sub {sub}(control As IRibbonControl)'"


def _run_python_target(line: str) -> tuple[str, str]:
    """'RunPython "import a.b as m; m.f()"' -> ("a.b", "f"), checking the Python parses."""
    match = re.fullmatch(r'RunPython "([^"]*)"', line)
    assert match, f"not a single RunPython call: {line!r}"
    tree = ast.parse(match.group(1))
    assert len(tree.body) == 2, line
    imp, call = tree.body
    assert isinstance(imp, ast.Import) and len(imp.names) == 1, line
    alias = imp.names[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call), line
    func = call.value.func
    assert isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name), line
    assert func.value.id == (alias.asname or alias.name), line
    assert not call.value.args and not call.value.keywords, "callbacks take no arguments"
    return alias.name, func.attr


def test_every_sub_is_one_run_python_line_matching_ribbon_actions() -> None:
    subs = bas_subs()
    assert set(subs) == {a.sub for a in addin.RIBBON_ACTIONS}
    for action in addin.RIBBON_ACTIONS:
        params, *body = subs[action.sub]
        assert params == "(control As IRibbonControl)"
        assert len(body) == 1, f"{action.sub} must only call RunPython: {body}"
        assert body[0] == f'RunPython "{action.run_python}"'
        assert _run_python_target(body[0]) == (addin.MACROS_MODULE, action.target)


def test_ribbon_actions_are_the_contract() -> None:
    actions = addin.RIBBON_ACTIONS
    assert {a.target for a in actions} == CONTRACT
    for attr in ("control_id", "sub", "target"):
        values = [getattr(a, attr) for a in actions]
        assert len(set(values)) == len(values), f"duplicate {attr}"
    assert addin.MACROS_MODULE == "pz_excel.excel.macros"


def test_macro_targets_exist_once_macros_module_is_in_the_tree() -> None:
    macros = importlib.import_module(addin.MACROS_MODULE)
    for action in addin.RIBBON_ACTIONS:
        func = getattr(macros, action.target, None)
        assert callable(func), f"pz_excel.macros.{action.target} missing"
        required = [
            p
            for p in inspect.signature(func, follow_wrapped=False).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        assert not required, f"{action.target}() is called without arguments by RunPython"


# -- one copy of each source -------------------------------------------------------------------


def test_each_add_in_source_has_one_copy_in_the_package() -> None:
    for name in ("PZExcel.bas", "customUI14.ru.xml", "customUI14.en.xml"):
        assert addin.resource(name) == (RESOURCES / name).read_bytes()
        copies = [p for p in ROOT.rglob(name) if ".venv" not in p.parts and ".git" not in p.parts]
        assert copies == [RESOURCES / name], copies
