"""The xlwings layer without Excel (none here, none faked): ``pz_excel/books/livebook.py``
(the Calls writer), ``excel_app.py`` (reaching Excel), ``excel_ui.py`` (the ribbon's and
UDFs' side) and ``excel_addin_steps.py`` (``pz-excel addin`` in Excel).

The main check reads these modules' syntax trees, follows every attribute chain that starts at an
xlwings object (``xw.apps``, variables annotated ``xw.Book``/``xw.Sheet``/…, and what their
properties and methods return according to xlwings' own annotations) and asserts each attribute
exists on the installed xlwings' classes, that assigned attributes have setters, and that the
keyword arguments we pass are accepted. A typo or an attribute xlwings dropped fails here
instead of in a sales manager's Excel.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import xlwings
import xlwings.main as xm

from pz_excel.books import excel_addin_steps, excel_app, livebook
from pz_excel.crm.schema import CALLS, cell_text
from pz_excel.i18n import UserError

ROOT = Path(__file__).resolve().parent.parent
BOOKS = ROOT / "pz_excel" / "books"
# The xlwings layer: the only modules that import xlwings; the first one defines the helpers.
SOURCES = [
    BOOKS / "excel_app.py",
    BOOKS / "livebook.py",
    BOOKS / "excel_ui.py",
    BOOKS / "excel_addin_steps.py",
]
# xlwings types its collections' __getitem__/__iter__ with a TypeVar; the element classes:
ITEM_OF = {"Apps": xm.App, "Books": xm.Book, "Sheets": xm.Sheet}
# Attribute chains the layer must use and this checker must have seen (guards the checker).
REQUIRED = {
    ("xlwings", "apps"),
    ("xlwings", "App"),
    ("Apps", "active"),
    ("App", "books"),
    ("App", "screen_updating"),
    ("App", "status_bar"),
    ("App", "startup_path"),
    ("Books", "open"),
    ("Book", "sheets"),
    ("Book", "fullname"),
    ("Book", "app"),
    ("Book", "activate"),
    ("Book", "close"),
    ("Sheet", "range"),
    ("Sheet", "used_range"),
    ("Sheet", "name"),
    ("Sheet", "activate"),
    ("Range", "value"),
    ("Range", "options"),
    ("Range", "number_format"),
    ("Range", "color"),
    ("Range", "last_cell"),
    ("Range", "row"),
    ("Range", "column"),
    ("Range", "select"),
}
# Names used as attribute bases in the layer that hold no xlwings object. A new name here
# must be a non-xlwings value; an xlwings one needs an `xw.Class` annotation instead.
NOT_XLWINGS = {
    "os",
    "sys",
    "pythoncom",
    "CALLS",
    "CONTACTS",
    "NEEDS_EXCEL",
    "VBA_TRUST",
    "c",
    "n",
    "p",
    "col",
    "call",
    "value",
    "exc",
    "old",
    "runs",
    "existing",
    "by_name",
    "project",
    "components",
    "code",
    "replace_lines",
    "names",
    "subprocess",
    "done",
    "tkinter",
    "simpledialog",
    "root",
    "layout",
    "wanted",
}


class Method:
    def __init__(self, cls: type, name: str, func: Any):
        self.cls, self.name, self.func = cls, name, func


def _resolve_annotation(annotation: Any) -> type | None:
    """An xlwings annotation (string or class) -> the xlwings class it names, if any."""
    if isinstance(annotation, str):
        head = annotation.split("|")[0].strip().strip("\"'")
        if "[" in head:
            return None
        found = getattr(xm, head, None)
        return found if isinstance(found, type) else None
    if isinstance(annotation, type) and annotation.__module__.startswith("xlwings"):
        return annotation
    return None


def _lookup(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


def _annotation_class(node: ast.expr | None) -> type | None:
    """Our own annotations: xw.Book, "xw.Book", xw.Book | None."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        node = ast.parse(node.value, mode="eval").body
    if isinstance(node, ast.BinOp):
        return _annotation_class(node.left) or _annotation_class(node.right)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id == "xw":
            return getattr(xm, node.attr, None)
    return None


class Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.errors: list[str] = []
        self.untyped: set[str] = set()
        self.env: dict[str, type] = {}
        self.self_env: dict[str, type] = {}
        self.returns: dict[str, type] = {}  # our own functions/methods -> xlwings class

    # -- typing ----------------------------------------------------------------------------

    def type_of(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            if node.id == "xw":
                return xlwings
            return self.env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return self.self_env.get(node.attr)
            base = self.type_of(node.value)
            if base is None:
                if isinstance(node.value, ast.Name) and node.value.id not in self.env:
                    self.untyped.add(node.value.id)
                return None
            return self.attribute(base, node, store=isinstance(node.ctx, ast.Store))
        if isinstance(node, ast.Call):
            own = node.func
            if isinstance(own, ast.Attribute) and isinstance(own.value, ast.Name):
                if own.value.id == "self" and own.attr in self.returns:
                    return self.returns[own.attr]
            if isinstance(own, ast.Name) and own.id in self.returns:
                return self.returns[own.id]
            func = self.type_of(node.func)
            self.check_call(func, node)
            if isinstance(func, Method):
                ret = inspect.signature(func.func).return_annotation
                if func.name in ("__getitem__",):
                    return ITEM_OF.get(func.cls.__name__)
                return _resolve_annotation(ret)
            if isinstance(func, type):  # xw.App(...) makes an App
                return func
            return None
        if isinstance(node, ast.Subscript):
            base = self.type_of(node.value)
            if isinstance(base, type):
                for klass in base.__mro__:
                    if klass.__name__ in ITEM_OF:
                        self.seen.add((klass.__name__, "__getitem__"))
                        return ITEM_OF[klass.__name__]
            return None
        return None

    def attribute(self, base: Any, node: ast.Attribute, store: bool) -> Any:
        name = node.attr
        where = f"line {node.lineno}"
        if base is xlwings:
            if not hasattr(xlwings, name):
                self.errors.append(f"{where}: xlwings has no attribute {name!r}")
                return None
            self.seen.add(("xlwings", name))
            value = getattr(xlwings, name)
            return value if isinstance(value, type) else type(value)
        if not isinstance(base, type):
            return None
        try:
            member = _lookup(base, name)
        except AttributeError:
            self.errors.append(f"{where}: xlwings {base.__name__} has no attribute {name!r}")
            return None
        owner = next(k for k in base.__mro__ if name in vars(k))
        self.seen.add((base.__name__, name))
        if owner is not base:
            self.seen.add((owner.__name__, name))
        if isinstance(member, property):
            if store and member.fset is None:
                self.errors.append(f"{where}: {base.__name__}.{name} is read-only")
            if name == "api":
                return None  # the native COM/AppleScript object: outside xlwings
            return _resolve_annotation(inspect.signature(member.fget).return_annotation)
        if callable(member):
            return Method(base, name, member)
        return None

    def check_call(self, func: Any, node: ast.Call) -> None:
        target = func.func if isinstance(func, Method) else func if isinstance(func, type) else None
        if target is None:
            return
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return
        args = [object()] * len(node.args)
        kwargs = {kw.arg: object() for kw in node.keywords if kw.arg}
        try:
            if isinstance(func, Method):
                sig.bind(object(), *args, **kwargs)
            else:
                sig.bind(*args, **kwargs)
        except TypeError as exc:
            self.errors.append(f"line {node.lineno}: call does not fit {target}: {exc}")

    # -- walking ---------------------------------------------------------------------------

    def visit_Module(self, node: ast.Module) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef):
                cls = _annotation_class(sub.returns)
                if cls:
                    self.returns[sub.name] = cls
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        saved = self.self_env
        self.self_env = {}
        for sub in ast.walk(node):
            if isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Attribute):
                cls = _annotation_class(sub.annotation)
                if cls and isinstance(sub.target.value, ast.Name) and sub.target.value.id == "self":
                    self.self_env[sub.target.attr] = cls
        self.generic_visit(node)
        self.self_env = saved

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = self.env
        self.env = {}
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            cls = _annotation_class(arg.annotation)
            if cls:
                self.env[arg.arg] = cls
        for sub in ast.walk(node):
            if isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                cls = _annotation_class(sub.annotation)
                if cls:
                    self.env[sub.target.id] = cls
        for sub in ast.walk(node):  # plain `x = <xlwings expression>` (flow-insensitive)
            if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
                target = sub.targets[0]
                if isinstance(target, ast.Name) and target.id not in self.env:
                    cls = self.type_of(sub.value)
                    if isinstance(cls, type) and cls.__module__.startswith("xlwings"):
                        self.env[target.id] = cls
        for stmt in node.body:
            self.visit(stmt)
        self.env = saved

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.type_of(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.type_of(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.type_of(node)
        self.generic_visit(node)


@pytest.fixture(scope="module")
def checked() -> Checker:
    checker = Checker()
    for source in SOURCES:  # in order: later modules call the helpers of earlier ones
        checker.visit(ast.parse(source.read_text(encoding="utf-8"), filename=str(source)))
    return checker


def test_every_xlwings_attribute_livebook_uses_exists(checked: Checker) -> None:
    assert not checked.errors, "\n".join(checked.errors)


def test_checker_saw_the_attributes_that_matter(checked: Checker) -> None:
    assert REQUIRED <= checked.seen, f"not seen: {sorted(REQUIRED - checked.seen)}"


def test_no_unannotated_xlwings_variables(checked: Checker) -> None:
    unknown = checked.untyped - NOT_XLWINGS
    assert not unknown, (
        f"attribute bases with no xlwings type: {sorted(unknown)}; annotate xlwings objects"
        " (name: xw.Class) or, if not xlwings, add them to NOT_XLWINGS"
    )


def test_checker_catches_mistakes() -> None:
    bad = """
def f(book: xw.Book, xw):
    sheet: xw.Sheet = book.sheets[0]
    sheet.range("A1").valeu = 1
    book.fullname = "x"
    xw.appz
    sheet.range("A1").options(ndim=2).value
    xw.App(visibel=False)
"""
    checker = Checker()
    checker.visit(ast.parse(bad))
    text = "\n".join(checker.errors)
    assert "no attribute 'valeu'" in text
    assert "Book.fullname is read-only" in text
    assert "no attribute 'appz'" in text
    assert "visibel" in text
    assert ("Range", "options") in checker.seen and ("Range", "value") in checker.seen


def test_only_the_xlwings_layer_imports_xlwings() -> None:
    offenders = []
    for path in (ROOT / "pz_excel").rglob("*.py"):
        if path in SOURCES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "xlwings" or n.startswith("xlwings.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"xlwings is used outside the xlwings layer: {offenders}"


def test_module_imports_without_touching_xlwings() -> None:
    code = (
        "import sys; import pz_excel.books.livebook, pz_excel.books.excel_ui;"
        " import pz_excel.excel.addin, pz_excel.excel.macros;"
        " print('xlwings' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


# -- behaviour where Excel is absent ---------------------------------------------------------------

LINUX = sys.platform.startswith("linux")


@pytest.mark.skipif(not LINUX, reason="the no-Excel path of Linux")
def test_is_open_in_excel_is_false_and_never_raises(tmp_path: Path) -> None:
    for path in (tmp_path / "book.xlsx", "relative.xlsx", "", Path("/nonexistent/x.xlsm")):
        assert livebook.is_open_in_excel(path) is False


@pytest.mark.skipif(not LINUX, reason="the no-Excel path of Linux")
@pytest.mark.parametrize(
    "call",
    [
        lambda: livebook.LiveBook("book.xlsx"),
        excel_addin_steps.excel_startup_path,
        lambda: excel_addin_steps.close_addin("pz_excel.xlam"),
    ],
)
def test_excel_calls_raise_a_clear_error_on_linux(call: Any, monkeypatch) -> None:
    monkeypatch.setenv("PZ_LANG", "ru")
    with pytest.raises(livebook.ExcelUnavailable) as info:
        call()
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    assert "нужен Microsoft Excel на Windows или macOS" in str(info.value)
    assert "needs Microsoft Excel on Windows or macOS" in info.value.text.en


# -- pure helpers (no Excel involved) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+79991234567", "'+79991234567"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rx", "'\rx"),
        ("Иван Петров", "Иван Петров"),
        ("79991234567", "79991234567"),
        ("a=b", "a=b"),
    ],
)
def test_outside_text_is_kept_as_text(raw: str, stored: str) -> None:
    assert excel_app.excel_text(raw) == stored


def test_runs_and_ids() -> None:
    assert livebook.runs([2, 3, 4, 7, 9, 10]) == [(2, 4), (7, 7), (9, 10)]
    assert livebook.runs([]) == []
    assert cell_text(12345.0) == "12345"  # the Call ID reader livebook shares with filebook
    assert cell_text(" abc ") == "abc"
    assert cell_text(None) == ""


def test_identifier_columns_are_text_formatted() -> None:
    phone_keys = {c.key for c in CALLS.columns if c.kind == "phone"}
    assert {"call_id", "client_phone", "extension"} <= livebook.TEXT_KEYS
    assert phone_keys <= livebook.TEXT_KEYS
    assert excel_app.TEXT_FORMAT == "@"


def test_cell_values_follow_the_sheet_language() -> None:
    fake = types.SimpleNamespace(lang="ru")  # only the language: _cell touches no Excel
    col = {c.key: c for c in CALLS.columns}
    cell = livebook.LiveBook._cell
    assert cell(fake, col["direction"], "incoming") == "входящий"
    assert cell(fake, col["status"], "missed") == "пропущен"
    assert cell(fake, col["late"], True) == "да"
    assert cell(fake, col["late"], False) is None
    assert cell(fake, col["duration"], 42) == 42
    assert cell(fake, col["client_phone"], "+7 999") == "'+7 999"
    assert cell(fake, col["contact"], "") is None
    aware = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    local = cell(fake, col["start"], aware)
    assert local.tzinfo is None and local == aware.astimezone().replace(tzinfo=None)
