"""The Excel ribbon add-in: ``pz-excel addin build | install | remove | status``.

``pz_excel.xlam`` is xlwings' own ribbon add-in template (``xlwings quickstart --addin
--ribbon``) with four changes:

* our ribbon: ``customUI/customUI14.xml`` (Office 2010+), a tab "Простые Звонки" / "Calls";
* our VBA module ``PZExcel`` in place of the template's ``RibbonMyAddin``: one
  ``Sub OnX(control As IRibbonControl)`` per button, each a single ``RunPython`` line into
  :mod:`pz_excel.excel.macros` (the list is :data:`RIBBON_ACTIONS`, checked by the tests against the
  XML and the ``.bas``);
* a second VBA module ``PZFunctions``: one stub per worksheet function of :data:`UDF_MODULE`
  (:mod:`pz_excel.excel.udf_stubs`), so ``=PZ_STATUS()`` … work in every workbook without
  xlwings' *Import Functions*;
* the template's xlwings module with ``PROJECT_NAME = "pz_excel"``, so RunPython reads its
  settings (interpreter…) from ``%USERPROFILE%\\.pz_excel\\pz_excel.conf`` and not from another
  add-in's.

The template's own ribbon callback can't serve us: its single ``RunMain`` ignores which button
was pressed and imports a module named after the file, so a VBA project with our module is
required. Two build engines (see workbook/README.md):

* ``excel`` (Windows): Excel imports the module through COM and saves the add-in itself;
  needs "Trust access to the VBA project object model".
* ``offline`` (any OS): :mod:`pz_excel.vbaproject` rewrites ``vbaProject.bin`` directly;
  no Excel, no trust setting; Excel compiles the source when it first loads the add-in.

In both, the ribbon is put in by :func:`inject_customui`, a plain zip edit.
"""

from __future__ import annotations

import importlib.util
import io
import locale
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click
from lxml import etree

from pz_excel.excel import udf_stubs, vbaproject
from pz_excel.i18n import Text, UserError, current_lang, tr

ADDIN_FILE = "pz_excel.xlam"
UDF_MODULE = "pz_excel_udfs.pz_udfs"  # our PZ_* formulas: the stubs in PZFunctions call it
PROJECT_NAME = "pz_excel"  # xlwings PROJECT_NAME: names the config file and config sheet
VBA_PROJECT_NAME = "PZExcel"  # as the VBA editor shows the project
VBA_MODULE = "PZExcel"  # the ribbon callbacks module (workbook/PZExcel.bas)
MACROS_MODULE = "pz_excel.excel.macros"  # Python side of the buttons (written elsewhere)

# The xlwings template we start from, and what in it we change.
TEMPLATE_FILE = "quickstart_addin_ribbon.xlam"
TEMPLATE_RIBBON_MODULE = "RibbonMyAddin"
TEMPLATE_XLWINGS_MODULE = "xlwings"
TEMPLATE_PROJECT_LINE = 'Public Const PROJECT_NAME As String = "myaddin"'
PROJECT_LINE = f'Public Const PROJECT_NAME As String = "{PROJECT_NAME}"'
# xlwings reads "<PROJECT_NAME>.conf" sheets; the leading "_" keeps the sheet inactive until an
# admin renames it (then its values override the user config file).
TEMPLATE_CONF_SHEET = "_myaddin.conf"
CONF_SHEET = f"_{PROJECT_NAME}.conf"

CUSTOMUI_NS = "http://schemas.microsoft.com/office/2009/07/customui"
CUSTOMUI_PART = "customUI/customUI14.xml"
# customUI14 parts hang off the package root with the 2007 "ui/extensibility" type; Office 2007's
# customUI.xml used the 2006 type. We remove both kinds and add ours.
UI_REL_TYPE = "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility"
UI_REL_TYPE_2006 = "http://schemas.microsoft.com/office/2006/relationships/ui/extensibility"
_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: identical inputs give an identical .xlam


@dataclass(frozen=True)
class RibbonAction:
    """One ribbon button: customUI control id → VBA Sub → Python function."""

    control_id: str
    sub: str  # Sub name in module PZExcel
    target: str  # function name in pz_excel.excel.macros

    @property
    def on_action(self) -> str:
        return f"{VBA_MODULE}.{self.sub}"

    @property
    def run_python(self) -> str:
        return f"import {MACROS_MODULE} as m; m.{self.target}()"


# The one list of ribbon actions. workbook/PZExcel.bas and workbook/customUI/*.xml must match it
# (tests/test_workbook_static.py); pz_excel/excel/macros.py must define every target.
RIBBON_ACTIONS: tuple[RibbonAction, ...] = (
    RibbonAction("pzConnect", "OnConnect", "connect"),
    RibbonAction("pzDisconnect", "OnDisconnect", "disconnect"),
    RibbonAction("pzCallSelected", "OnCallSelected", "call_selected"),
    RibbonAction("pzCallBack", "OnCallBack", "call_back"),
    RibbonAction("pzSendSms", "OnSendSms", "send_sms"),
    RibbonAction("pzAddContact", "OnAddContact", "add_contact"),
    RibbonAction("pzStatus", "OnStatus", "status"),
    RibbonAction("pzRefreshContacts", "OnRefreshContacts", "refresh_contacts"),
    RibbonAction("pzSettings", "OnSettings", "settings"),
)

LANGS = ("ru", "en")

# -- messages -----------------------------------------------------------------------------------

BUILD_NEEDS_EXCEL = Text(
    "building the add-in needs Excel on Windows or macOS (this is {os}). Install the ready"
    " add-in on a Windows or Mac computer with 'pz-excel addin install'. Packagers can assemble"
    " it without Excel: pz-excel addin build --engine offline",
    "для сборки надстройки нужен Excel на Windows или macOS (здесь {os}). Установите готовую"
    " надстройку на компьютере с Windows или Mac командой 'pz-excel addin install'. Сборщики"
    " пакетов могут собрать её без Excel: pz-excel addin build --engine offline",
)
INSTALL_NEEDS_EXCEL = Text(
    "installing the add-in needs Excel on Windows or macOS (this is {os})",
    "для установки надстройки нужен Excel на Windows или macOS (здесь {os})",
)
EXCEL_ENGINE_WINDOWS = Text(
    "--engine excel works on Windows only (Excel for Mac cannot import VBA by automation);"
    " use --engine offline",
    "--engine excel работает только на Windows (Excel для Mac не импортирует VBA"
    " по автоматизации); используйте --engine offline",
)
TEMPLATE_UNKNOWN = Text(
    "the add-in template of the installed xlwings {v} is not the one pz-excel knows ({why});"
    " install a supported xlwings version",
    "шаблон надстройки установленного xlwings {v} не тот, что знает pz-excel ({why});"
    " установите поддерживаемую версию xlwings",
)
FILE_LOCKED = Text(
    "cannot write {p}: the file is in use. Quit Excel and try again",
    "не удаётся записать {p}: файл занят. Закройте Excel и повторите",
)


# -- sources ------------------------------------------------------------------------------------


def resource(name: str) -> bytes:
    """A source of the add-in (VBA module, ribbon XML): its one copy, in the package."""
    return (resources.files("pz_excel.excel") / "resources" / name).read_bytes()


def customui_xml(lang: str) -> bytes:
    if lang not in LANGS:
        raise ValueError(f"no ribbon for language {lang!r}")
    return resource(f"customUI14.{lang}.xml")


def vba_module_text() -> str:
    return resource(f"{VBA_MODULE}.bas").decode("ascii")


def xlwings_dir() -> Path:
    spec = importlib.util.find_spec("xlwings")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError(Text("xlwings is not installed", "xlwings не установлен"))
    return Path(next(iter(spec.submodule_search_locations)))


def xlwings_version() -> str:
    from importlib.metadata import version

    return version("xlwings")


def template_path() -> Path:
    return xlwings_dir() / TEMPLATE_FILE


# -- OOXML package editing (no Excel needed) -----------------------------------------------------


def _xml(data: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    return etree.fromstring(data, parser)


def check_customui(xml: bytes) -> None:
    """Well-formed and a customUI14 document (full XSD validation is done by the tests)."""
    root = _xml(xml)
    if root.tag != f"{{{CUSTOMUI_NS}}}customUI":
        raise ValueError(f"not a customUI14 document (root is {root.tag})")


def _write_zip(entries: Iterable[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, data)
    return buf.getvalue()


def _read_zip(package: bytes | Path) -> list[tuple[str, bytes]]:
    source = io.BytesIO(package) if isinstance(package, bytes) else package
    with zipfile.ZipFile(source) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist() if not info.is_dir()]


def inject_customui(package: bytes | Path, customui: bytes) -> bytes:
    """Return ``package`` (an .xlam/.xlsm as bytes or path) with ``customui`` as its only ribbon.

    Removes existing ribbon parts (2006 and 2010 kinds, with their own relationships and
    images), adds ``customUI/customUI14.xml`` and its ``ui/extensibility`` relationship in
    ``_rels/.rels``. Everything else is copied byte for byte.
    """
    check_customui(customui)
    entries = dict(_read_zip(package))
    rels = _xml(entries["_rels/.rels"])
    dropped: set[str] = set()
    for rel in list(rels):
        if rel.get("Type") in (UI_REL_TYPE, UI_REL_TYPE_2006):
            dropped.add(rel.get("Target", "").lstrip("/"))
            rels.remove(rel)
    dropped |= {n for n in entries if n.startswith("customUI/")}
    for part in list(dropped):  # a ribbon part's own rels (its images) go with it
        folder, _, name = part.rpartition("/")
        dropped.add(f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels")
    ids = {rel.get("Id") for rel in rels}
    new_id = next(f"rIdPZ{n}" for n in range(1, 1000) if f"rIdPZ{n}" not in ids)
    etree.SubElement(
        rels,
        f"{{{_RELS_NS}}}Relationship",
        Id=new_id,
        Type=UI_REL_TYPE,
        Target=CUSTOMUI_PART,
    )
    types = _xml(entries["[Content_Types].xml"])
    for override in list(types):
        if override.get("PartName", "").lstrip("/") in dropped:
            types.remove(override)
    has_xml_default = any(
        t.tag == f"{{{_CT_NS}}}Default" and t.get("Extension", "").lower() == "xml" for t in types
    )
    if not has_xml_default:
        etree.SubElement(
            types,
            f"{{{_CT_NS}}}Override",
            PartName="/" + CUSTOMUI_PART,
            ContentType="application/xml",
        )

    def serial(root: etree._Element) -> bytes:
        # Office writes the declaration with double quotes; lxml would use single ones
        body = etree.tostring(root, encoding="UTF-8")
        return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n' + body

    out: list[tuple[str, bytes]] = [("[Content_Types].xml", serial(types))]
    for name, data in entries.items():
        if name == "[Content_Types].xml" or name in dropped:
            continue
        out.append((name, serial(rels) if name == "_rels/.rels" else data))
    out.append((CUSTOMUI_PART, customui))
    return _write_zip(out)


def _rename_conf_sheet(entries: dict[str, bytes]) -> None:
    old, new = TEMPLATE_CONF_SHEET.encode(), CONF_SHEET.encode()
    for part in ("xl/workbook.xml", "docProps/app.xml"):
        if part in entries:
            entries[part] = entries[part].replace(b'"' + old + b'"', b'"' + new + b'"')
            entries[part] = entries[part].replace(b">" + old + b"<", b">" + new + b"<")


# -- build ----------------------------------------------------------------------------------------


def pz_vba_project(template_bin: bytes) -> bytes:
    """The template's ``vbaProject.bin`` with our modules in (ribbon callbacks, worksheet
    function stubs), its ribbon module out and the xlwings ``PROJECT_NAME`` set (see
    :mod:`pz_excel.vbaproject`)."""
    version = xlwings_version()
    project = vbaproject.read_project(template_bin)
    try:
        project.module(TEMPLATE_RIBBON_MODULE)
        xlwings_mod = project.module(TEMPLATE_XLWINGS_MODULE)
    except KeyError as exc:
        raise UserError(TEMPLATE_UNKNOWN.format(v=version, why=f"no module {exc}")) from exc
    if xlwings_mod.source.count(TEMPLATE_PROJECT_LINE) != 1:
        raise UserError(TEMPLATE_UNKNOWN.format(v=version, why="PROJECT_NAME line not found"))
    xlwings_mod.source = xlwings_mod.source.replace(TEMPLATE_PROJECT_LINE, PROJECT_LINE)
    project.modules = [m for m in project.modules if m.name != TEMPLATE_RIBBON_MODULE]
    project.modules.append(vbaproject.module_from_bas(vba_module_text(), VBA_MODULE))
    # the worksheet functions come with the add-in: no Import Functions per workbook
    functions = udf_stubs.vba_source(UDF_MODULE)
    project.modules.append(vbaproject.module_from_bas(functions, udf_stubs.MODULE_NAME))
    project.name = VBA_PROJECT_NAME
    return vbaproject.write_project(project)


def build_offline(lang: str, template: Path | None = None) -> bytes:
    """The whole add-in, assembled without Excel (deterministic: same inputs, same bytes)."""
    entries = dict(_read_zip(template or template_path()))
    entries["xl/vbaProject.bin"] = pz_vba_project(entries["xl/vbaProject.bin"])
    _rename_conf_sheet(entries)
    return inject_customui(_write_zip(entries.items()), customui_xml(lang))


def build_with_excel(lang: str) -> bytes:
    """The add-in with its VBA project written by Excel itself (Windows, COM)."""
    from pz_excel.books import excel_addin_steps

    with tempfile.TemporaryDirectory(prefix="pz-excel-addin-") as tmp:
        work = Path(tmp) / "template.xlam"
        shutil.copyfile(template_path(), work)
        module = Path(tmp) / f"{VBA_MODULE}.bas"
        # VBComponents.Import wants CRLF lines in the ANSI code page (the .bas is ASCII)
        module.write_bytes(vba_module_text().replace("\r\n", "\n").replace("\n", "\r\n").encode())
        functions = Path(tmp) / f"{udf_stubs.MODULE_NAME}.bas"  # already CRLF and ASCII
        functions.write_bytes(udf_stubs.vba_source(UDF_MODULE).encode("ascii"))
        built = Path(tmp) / "vba.xlam"
        excel_addin_steps.build_vba_with_excel(
            template=work,
            out=built,
            module_path=module,
            extra_modules=[functions],
            remove_modules=[TEMPLATE_RIBBON_MODULE],
            replace_lines={TEMPLATE_XLWINGS_MODULE: (TEMPLATE_PROJECT_LINE, PROJECT_LINE)},
            rename_sheets={TEMPLATE_CONF_SHEET: CONF_SHEET},
        )
        return inject_customui(built, customui_xml(lang))


def _platform_name() -> str:
    return {"linux": "Linux"}.get(sys.platform, sys.platform)


def resolve_engine(engine: str) -> str:
    """``auto`` → ``excel`` on Windows, ``offline`` on macOS; no Excel anywhere else."""
    if engine == "auto":
        if sys.platform == "win32":
            return "excel"
        if sys.platform == "darwin":
            return "offline"
        raise UserError(BUILD_NEEDS_EXCEL.format(os=_platform_name()))
    if engine == "excel" and sys.platform != "win32":
        raise UserError(EXCEL_ENGINE_WINDOWS)
    return engine


def build(lang: str, engine: str = "auto") -> bytes:
    engine = resolve_engine(engine)
    return build_with_excel(lang) if engine == "excel" else build_offline(lang)


def _write_file(path: Path, data: bytes) -> None:
    """Write via a temporary file beside ``path`` so a failed write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except PermissionError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(FILE_LOCKED.format(p=path)) from exc


# -- install --------------------------------------------------------------------------------------


def user_config_path() -> Path:
    """Where the xlwings VBA of our add-in looks for its user settings (GetConfigFilePath)."""
    if sys.platform == "darwin":  # Excel's sandbox home
        return Path.home() / "Library/Containers/com.microsoft.Excel/Data" / f"{PROJECT_NAME}.conf"
    return Path.home() / f".{PROJECT_NAME}" / f"{PROJECT_NAME}.conf"


def interpreter_setting() -> tuple[str, str]:
    """(config key, Python) for RunPython: this very Python, where pz_excel is installed."""
    exe = Path(sys.executable)
    if sys.platform == "win32":
        windowless = exe.with_name("pythonw.exe")  # no console window flashing per click
        return "INTERPRETER_WIN", str(windowless if windowless.exists() else exe)
    return "INTERPRETER_MAC", str(exe)


def write_user_config(path: Path | None = None) -> Path:
    """Set the interpreter line in the add-in's config file, keeping any other settings.

    The VBA reads it with ``Input #``, which expects the ANSI code page on Windows; a path that
    does not fit there is reported instead of being written garbled."""
    path = path or user_config_path()
    key, value = interpreter_setting()
    encoding = "utf-8" if sys.platform == "darwin" else locale.getpreferredencoding(False)
    lines: list[str] = []
    if path.exists():
        text = path.read_bytes().decode(encoding, errors="replace")
        pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*,', re.IGNORECASE)
        lines = [ln for ln in text.splitlines() if ln.strip() and not pattern.match(ln)]
    lines.insert(0, f'"{key}","{value}"')
    udf = re.compile(r'^\s*"?UDF Modules"?\s*,', re.IGNORECASE)
    if not any(udf.match(ln) for ln in lines):  # an admin's own list is kept as it is
        lines.append(f'"UDF Modules","{UDF_MODULE}"')
    try:
        data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    except UnicodeEncodeError as exc:
        raise UserError(
            Text(
                "the Python path {p} has characters Excel's VBA can't read here; install Python"
                " in a folder with Latin letters only",
                "путь к Python {p} содержит символы, которые VBA в Excel здесь не прочтёт;"
                " установите Python в папку с латинскими буквами",
            ).format(p=value)
        ) from exc
    _write_file(path, data)
    return path


def enable_runpython_mac() -> None:
    """macOS: RunPython goes through xlwings' AppleScript in Excel's script folder."""
    name = f"xlwings-{xlwings_version()}.applescript"
    target = Path.home() / "Library/Application Scripts/com.microsoft.Excel"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(xlwings_dir() / name, target / name)


def _needs_excel_here(message: Text) -> None:
    if sys.platform not in ("win32", "darwin"):
        raise UserError(message.format(os=_platform_name()))


# -- command line ----------------------------------------------------------------------------------

_LANG_OPTION = click.option(
    "--lang",
    type=click.Choice(LANGS),
    default=None,
    help=tr(
        "Ribbon language (default: PZ_LANG or the system's).",
        "Язык ленты (по умолчанию — PZ_LANG или язык системы).",
    ),
)
_ENGINE_OPTION = click.option(
    "--engine",
    type=click.Choice(["auto", "excel", "offline"]),
    default="auto",
    show_default=True,
    help=tr(
        "Who writes the VBA project: Excel via COM (Windows) or pz-excel itself.",
        "Кто пишет проект VBA: Excel через COM (Windows) или сам pz-excel.",
    ),
)


@click.group(
    "addin",
    help=tr(
        "Build, install or remove the Excel ribbon add-in (with the PZ_* formulas).",
        "Собрать, установить или удалить надстройку Excel с лентой (и формулами PZ_*).",
    ),
)
def command() -> None:
    """The ``addin`` group."""


@command.command(
    "build",
    help=tr(
        "Assemble pz_excel.xlam from the xlwings template, our ribbon and our VBA modules.",
        "Собрать pz_excel.xlam из шаблона xlwings, нашей ленты и наших модулей VBA.",
    ),
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(ADDIN_FILE),
    show_default=True,
    help=tr("Where to write the add-in.", "Куда записать надстройку."),
)
@_LANG_OPTION
@_ENGINE_OPTION
def build_command(out: Path, lang: str | None, engine: str) -> None:
    """Assemble pz_excel.xlam from the xlwings template, our ribbon and our VBA module."""
    data = build(lang or current_lang(), engine)
    _write_file(out, data)
    click.echo(str(Text("add-in written: {p}", "надстройка записана: {p}").format(p=out)))


@command.command(
    "install",
    help=tr(
        "Copy the add-in to Excel's XLSTART folder (like 'xlwings addin install').",
        "Скопировать надстройку в папку XLSTART Excel (как 'xlwings addin install').",
    ),
)
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=tr("Install this .xlam instead of building one.", "Установить этот .xlam вместо сборки."),
)
@_LANG_OPTION
@_ENGINE_OPTION
def install_command(file_: Path | None, lang: str | None, engine: str) -> None:
    """Copy the add-in to Excel's XLSTART folder (like 'xlwings addin install')."""
    _needs_excel_here(INSTALL_NEEDS_EXCEL)
    from pz_excel.books import excel_addin_steps

    data = file_.read_bytes() if file_ else build(lang or current_lang(), engine)
    target = excel_addin_steps.excel_startup_path() / ADDIN_FILE
    excel_addin_steps.close_addin(ADDIN_FILE)
    _write_file(target, data)
    config = write_user_config()
    if sys.platform == "darwin":
        enable_runpython_mac()
    click.echo(str(Text("add-in installed: {p}", "надстройка установлена: {p}").format(p=target)))
    click.echo(str(Text("Python for the ribbon: {p}", "Python для ленты: {p}").format(p=config)))
    if excel_addin_steps.load_addin(target):
        click.echo(str(Text("loaded into the running Excel", "загружена в запущенный Excel")))
    else:
        click.echo(
            str(
                Text(
                    "restart Excel to see the tab (macOS: quit with Cmd-Q first)",
                    "перезапустите Excel, чтобы увидеть вкладку (macOS: сначала Cmd-Q)",
                )
            )
        )


@command.command(
    "remove",
    help=tr(
        "Remove the add-in from Excel's XLSTART folder (settings are kept).",
        "Удалить надстройку из папки XLSTART Excel (настройки сохраняются).",
    ),
)
def remove_command() -> None:
    """Remove the add-in from Excel's XLSTART folder (settings are kept)."""
    _needs_excel_here(INSTALL_NEEDS_EXCEL)
    from pz_excel.books import excel_addin_steps

    target = excel_addin_steps.excel_startup_path() / ADDIN_FILE
    if not target.exists():
        click.echo(str(Text("not installed: {p}", "не установлена: {p}").format(p=target)))
        return
    excel_addin_steps.close_addin(ADDIN_FILE)
    try:
        target.unlink()
    except PermissionError as exc:
        raise UserError(FILE_LOCKED.format(p=target)) from exc
    click.echo(str(Text("add-in removed: {p}", "надстройка удалена: {p}").format(p=target)))


@command.command(
    "status",
    help=tr(
        "Show where the add-in is installed and which Python it runs.",
        "Где установлена надстройка и какой Python она запускает.",
    ),
)
def status_command() -> None:
    """Show where the add-in is installed and which Python it runs."""
    _needs_excel_here(INSTALL_NEEDS_EXCEL)
    from pz_excel.books import excel_addin_steps

    target = excel_addin_steps.excel_startup_path() / ADDIN_FILE
    state = (
        Text("installed: {p}", "установлена: {p}")
        if target.exists()
        else Text("not installed (would go to {p})", "не установлена (место: {p})")
    )
    click.echo(str(state.format(p=target)))
    config = user_config_path()
    if config.exists():
        click.echo(config.read_bytes().decode(errors="replace").strip())
