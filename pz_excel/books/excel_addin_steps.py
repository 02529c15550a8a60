"""The Excel-side steps of ``pz-excel addin``: the install folder, loaded add-ins, and
building the add-in's VBA project with Excel itself.

Part of the xlwings layer (see :mod:`pz_excel.books.excel_app`); checked statically by
``tests/test_livebook_static.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pz_excel.books.excel_app import NEEDS_EXCEL, ExcelUnavailable, xlwings_module
from pz_excel.i18n import Text, UserError

if TYPE_CHECKING:
    import xlwings as xw


def excel_startup_path() -> Path:
    """The user's XLSTART folder, as ``xlwings addin install`` finds it (asking a running Excel,
    or a hidden one started for the question)."""
    xw = xlwings_module()
    try:
        active: xw.App | None = xw.apps.active if xw.apps else None
        if active is not None:
            return Path(active.startup_path)
        with xw.App(visible=False, add_book=False) as hidden:
            app: xw.App = hidden
            return Path(app.startup_path)
    except Exception as exc:
        raise ExcelUnavailable(NEEDS_EXCEL.format(why=exc)) from exc


def close_addin(name: str) -> None:
    """Unload add-in ``name`` from every running Excel so its file can be replaced."""
    xw = xlwings_module()
    try:
        app: xw.App
        for app in xw.apps:
            try:
                book: xw.Book = app.books[name]
            except KeyError:
                continue
            book.close()
    except Exception:  # noqa: BLE001 - best effort: copying over a loaded add-in reports it
        pass


def load_addin(path: Path) -> bool:
    """Load the installed add-in into running Excels on Windows (macOS asks about macros when a
    file is opened directly, so there the user restarts Excel). True if it is loaded now."""
    if sys.platform != "win32":
        return False
    xw = xlwings_module()
    loaded = False
    try:
        app: xw.App
        for app in xw.apps:
            app.books.open(str(path))
            loaded = True
    except Exception:  # noqa: BLE001 - not fatal: the add-in loads on Excel's next start
        return False
    return loaded


VBA_TRUST = Text(
    "Excel refused access to the VBA project. Enable File > Options > Trust Center > Trust Center"
    " Settings > Macro Settings > 'Trust access to the VBA project object model', or build"
    " without Excel: pz-excel addin build --engine offline ({why})",
    "Excel не дал доступ к проекту VBA. Включите Файл > Параметры > Центр управления безопасностью"
    " > Параметры > Параметры макросов > «Доверять доступ к объектной модели проектов VBA» или"
    " соберите без Excel: pz-excel addin build --engine offline ({why})",
)


def build_vba_with_excel(
    template: Path,
    out: Path,
    module_path: Path,
    remove_modules: Sequence[str],
    replace_lines: dict[str, tuple[str, str]],
    rename_sheets: dict[str, str],
    extra_modules: Sequence[Path] = (),
) -> None:
    """Let Excel itself assemble the add-in's VBA project (Windows: COM only).

    Opens ``template`` hidden, removes ``remove_modules``, imports the ``.bas`` at
    ``module_path``, replaces whole code lines (``{module: (old_line, new_line)}``), renames
    sheets and saves as an add-in to ``out``. Excel for Mac has no VBA object model for
    automation, so there this raises :class:`ExcelUnavailable`.
    """
    xw = xlwings_module()
    if sys.platform != "win32":
        raise ExcelUnavailable(
            Text(
                "Excel for Mac cannot import VBA code by automation; use --engine offline",
                "Excel для Mac не умеет импортировать код VBA по автоматизации;"
                " используйте --engine offline",
            )
        )
    with xw.App(visible=False, add_book=False) as hidden:
        app: xw.App = hidden
        app.display_alerts = False
        book: xw.Book = app.books.open(str(template))
        try:
            try:
                project = book.api.VBProject
                components = project.VBComponents
            except Exception as exc:
                raise UserError(VBA_TRUST.format(why=exc)) from exc
            for name in remove_modules:
                components.Remove(components.Item(name))
            for path in (module_path, *extra_modules):  # extra: the worksheet function stubs
                components.Import(str(path))
            for module, (old, new) in replace_lines.items():
                code = components.Item(module).CodeModule
                for number in range(1, code.CountOfLines + 1):
                    if code.Lines(number, 1).strip() == old.strip():
                        code.ReplaceLine(number, new)
                        break
                else:
                    raise UserError(
                        Text(
                            "template module {m} has no line {l!r}",
                            "в модуле шаблона {m} нет строки {l!r}",
                        ).format(m=module, l=old)
                    )
            sheet: xw.Sheet
            for sheet in book.sheets:
                if sheet.name in rename_sheets:
                    sheet.name = rename_sheets[sheet.name]
            book.save(str(out))  # new book: the add-in built from its template
        finally:
            book.close()
