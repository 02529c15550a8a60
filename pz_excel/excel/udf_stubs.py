"""The VBA module ``PZFunctions`` that makes ``=PZ_STATUS()`` … work in every workbook.

Excel only knows a worksheet function that some loaded VBA project defines. xlwings' *Import
Functions* writes such stubs into the active workbook (which an ``.xlsx`` cannot keep) from
a separate add-in; we write them into ``pz_excel.xlam`` itself when it is built, so the
functions come with the add-in. The text is what xlwings' ``udfs.generate_vba_wrapper``
writes for an add-in (``XLPy.CallUDF`` into the module, ``ActiveWorkbook``, ``caller`` passed
as ``Nothing`` and replaced by xlwings with the calling cell, ``Application.Volatile`` …), so
the template's own ``xlwings`` module serves the calls exactly as it serves imported ones.

What each stub looks like comes from the decorated functions themselves: xlwings' metadata
(``__xlfunc__``) where its decorators ran (Windows), else the same facts read from the
module: the signature from the function object, the decorator options from its source
(off Windows ``xw.func`` is a no-op that keeps none).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any

MODULE_NAME = "PZFunctions"  # the VBA module, next to PZExcel in the add-in
MAX_LINE = 1023  # VBA's line limit; our stubs never come near it


@dataclass(frozen=True)
class UdfArg:
    name: str
    optional: bool = False
    vararg: bool = False
    vba: str | None = None  # a VBA expression passed instead of a parameter (xw.arg(vba=))


@dataclass(frozen=True)
class Udf:
    name: str
    args: tuple[UdfArg, ...]
    volatile: bool = False
    call_in_wizard: bool = True
    sub: bool = False


def _from_xlfunc(info: dict[str, Any]) -> Udf:
    args = tuple(
        UdfArg(a["name"], "optional" in a, bool(a["vararg"]), a.get("vba")) for a in info["args"]
    )
    return Udf(
        info["name"],
        args,
        bool(info["volatile"]),
        bool(info["call_in_wizard"]),
        bool(info["sub"]),
    )


def _decorator(node: ast.expr) -> tuple[str, list[ast.expr], dict[str, Any]] | None:
    """``@xw.func(volatile=True)`` -> ("func", args, {"volatile": True}); others: None."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if not isinstance(target, ast.Attribute) or target.attr not in ("func", "sub", "arg"):
        return None
    wanted = ("volatile", "call_in_wizard", "vba")  # literals; category, doc … may be names
    keywords = {
        k.arg: ast.literal_eval(k.value) for k in (call.keywords if call else []) if k.arg in wanted
    }
    return target.attr, list(call.args) if call else [], keywords


def _from_source(module: ModuleType) -> list[Udf]:
    found = []
    for node in ast.parse(inspect.getsource(module)).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        decorators = [d for d in map(_decorator, node.decorator_list) if d is not None]
        kinds = [kind for kind, _, _ in decorators if kind in ("func", "sub")]
        if not kinds:
            continue
        options: dict[str, Any] = {}
        vba: dict[str, str] = {}
        for kind, args, keywords in decorators:
            if kind == "arg":
                if "vba" in keywords:
                    vba[ast.literal_eval(args[0]).lstrip("*")] = keywords["vba"]
            else:
                options.update(keywords)
        func = getattr(module, node.name)  # the real function: its signature, not the AST's
        params = inspect.signature(func).parameters.values()
        args = tuple(
            UdfArg(
                p.name,
                optional=p.default is not p.empty,
                vararg=p.kind is p.VAR_POSITIONAL,
                vba=vba.get(p.name),
            )
            for p in params
        )
        found.append(
            Udf(
                func.__name__,
                args,
                volatile=bool(options.get("volatile", False)),
                call_in_wizard=bool(options.get("call_in_wizard", True)),
                sub=kinds[0] == "sub",
            )
        )
    return found


def udfs(module: ModuleType) -> list[Udf]:
    """The module's worksheet functions in xlwings' order (``dir()``: by name)."""
    with_meta = [getattr(module, n) for n in dir(module)]
    metas = [_from_xlfunc(f.__xlfunc__) for f in with_meta if hasattr(f, "__xlfunc__")]
    found = metas or _from_source(module)
    return sorted(found, key=lambda u: u.name)


def _stub(module_name: str, udf: Udf) -> list[str]:
    """One stub, line for line as xlwings' ``generate_vba_wrapper`` writes it for an .xlam."""
    kind = "Sub" if udf.sub else "Function"
    params = []
    vararg = ""
    for arg in udf.args:
        if arg.name == "caller" or arg.vba:  # xlwings fills these in itself
            continue
        if arg.optional:
            params.append(f"Optional {arg.name}")
        elif arg.vararg:
            vararg = arg.name
            params.append(f"ParamArray {arg.name}()")
        else:
            params.append(arg.name)

    def value(arg: UdfArg) -> str:
        return "Nothing" if arg.name == "caller" else (arg.vba or arg.name)

    lines = [f"{kind} {udf.name}({', '.join(params)})"]
    body = []
    if kind == "Function":
        if not udf.call_in_wizard:  # the function wizard disables the Standard command bar
            standard = 'Application.CommandBars("Standard").Controls(1).Enabled'
            body.append(f"If (Not {standard}) Then Exit Function")
        if udf.volatile:
            body.append("Application.Volatile")
    if vararg:
        fixed = [value(a) for a in udf.args if not a.vararg]
        body += [
            "Dim argsArray() As Variant",
            f"argsArray = Array({', '.join(fixed)})",
            f"ReDim Preserve argsArray(0 to UBound({vararg}) - LBound({vararg}) + {len(fixed)})",
            f"For k = LBound({vararg}) To UBound({vararg})",
            f"argsArray({len(fixed)} + k - LBound({vararg})) = {vararg}(k)",
            "Next k",
        ]
        args_vba = "argsArray"
    else:
        args_vba = f"Array({', '.join(value(a) for a in udf.args)})"
    call = f'"{module_name}", "{udf.name}", {args_vba}'
    if kind == "Sub":
        body += [
            '#If App = "Microsoft Excel" Then',
            f"    XLPy.CallUDF {call}, ActiveWorkbook, Application.Caller",
            "#Else",
            f"    XLPy.CallUDF {call}",
            "#End If",
        ]
    else:
        body += [
            '#If App = "Microsoft Excel" Then',
            "    If TypeOf Application.Caller Is Range Then On Error GoTo failed",
            f"    {udf.name} = XLPy.CallUDF({call}, ActiveWorkbook, Application.Caller)",
            f"    Exit {kind}",
            "#Else",
            f"    {udf.name} = XLPy.CallUDF({call})",
            f"    Exit {kind}",
            "#End If",
        ]
    lines += ["    " + ln for ln in body]
    if kind == "Function":
        lines += ["failed:", f"    {udf.name} = Err.Description"]
    return [*lines, f"End {kind}", ""]


def vba_source(module_name: str, module: ModuleType | None = None) -> str:
    """The ``.bas`` text of :data:`MODULE_NAME` (CRLF, ASCII) for the UDF module
    ``module_name`` (imported unless given)."""
    module = module or importlib.import_module(module_name)
    lines = [
        f'Attribute VB_Name = "{MODULE_NAME}"',
        f"' Written by 'pz-excel addin build' from the Python module {module_name}:",
        "' one stub per worksheet function. Changes here are lost at the next build.",
        '#Const App = "Microsoft Excel" \'Adjust when using outside of Excel',
    ]
    for udf in udfs(module):
        lines += _stub(module_name, udf)
    text = "\r\n".join(lines) + "\r\n"
    too_long = [ln for ln in lines if len(ln) > MAX_LINE]
    if too_long:
        raise ValueError(f"VBA line over {MAX_LINE} characters: {too_long[0][:60]}…")
    text.encode("ascii")  # VBA source is in the ANSI code page: names stay ASCII
    return text
