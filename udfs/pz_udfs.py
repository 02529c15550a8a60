"""Worksheet functions: ``=PZ_STATUS()``, ``=PZ_NORMALIZE(B2)``, ``=PZ_CALL(B2)`` …

Thin xlwings wrappers around ``pz_excel.excel.udf_logic``; the logic is tested without
Excel. Excel reaches them through the add-in's VBA module ``PZFunctions``, generated from
these decorators by ``pz_excel.excel.udf_stubs`` when the add-in is built. The docstrings
(≤ 255 characters) and ``@xw.arg(doc=…)`` are the function wizard's help where xlwings'
*Import Functions* registers them. Parameters carry no type hints on purpose: xlwings would
take a hint as a value converter. The one xlwings object used, ``caller``, is read by
``pz_excel.books.excel_ui``.
"""

import xlwings as xw

from pz_excel.excel import udf_logic

CATEGORY = "Prostie Zvonki"

_NUMBER_DOC = (
    "Phone number: a cell or text, any format (+7 (343) 011-22-33, 83430112233). "
    "/ Номер телефона: ячейка или текст в любом формате."
)


# volatile: Excel recalculates them on every change and F9, so they follow the agent
@xw.func(category=CATEGORY, volatile=True)
def PZ_STATUS():
    """State of the call agent, e.g. "connected · ext 101". / Состояние агента звонков."""
    return udf_logic.pz_status()


@xw.func(category=CATEGORY)
@xw.arg("number", doc=_NUMBER_DOC)
def PZ_NORMALIZE(number):
    """The phone number in one readable format; a local 555-00-00 gets the Settings area code from the agent. / Номер телефона в едином виде; местному номеру код города даёт агент."""  # noqa: E501
    return udf_logic.pz_normalize(number)


@xw.func(category=CATEGORY)
@xw.arg("number", doc=_NUMBER_DOC)
def PZ_OWNER(number):
    """Owner of the contact with this number: "Name (extension)". / Ответственный за контакт: «Имя (добавочный)»."""  # noqa: E501
    return udf_logic.pz_owner(number)


@xw.func(category=CATEGORY)
@xw.arg("number", doc=_NUMBER_DOC)
def PZ_LASTCALL(number):
    """The latest call with this number: time, direction, status, talk time. / Последний звонок с этим номером."""  # noqa: E501
    return udf_logic.pz_lastcall(number)


@xw.func(category=CATEGORY)
@xw.arg("number", doc=_NUMBER_DOC)
def PZ_TEAM_LAST(number):
    """The team's last call with this client, any manager's (needs a team server): time, who, direction, status. / Последний звонок команды с этим клиентом."""  # noqa: E501
    return udf_logic.pz_team_last(number)


@xw.func(category=CATEGORY)
@xw.arg("number", doc=_NUMBER_DOC)
@xw.arg(
    "days",
    doc="Optional: only the last N days (empty = all). / Необязательно: только за N дней.",
)
def PZ_CALLS(number, days=None):
    """How many calls with this number, optionally in the last N days. / Сколько звонков с этим номером (за N дней)."""  # noqa: E501
    return udf_logic.pz_calls(number, days)


# volatile like PZ_STATUS: a missed call shows up at the next recalculation
@xw.func(category=CATEGORY, volatile=True)
@xw.arg(
    "owner",
    doc="Optional: an owner's name as in Contacts (empty = everyone). "
    "/ Необязательно: ответственный (пусто — все).",
)
def PZ_MISSED(owner=None):
    """Missed incoming calls not yet called back. / Пропущенные входящие, на которые ещё не перезвонили."""  # noqa: E501
    return udf_logic.pz_missed(owner)


# call_in_wizard=False: the function wizard evaluates formulas while you type, and must
# never dial. `caller` is xlwings' reserved argument: the cell the formula is in.
@xw.func(category=CATEGORY, call_in_wizard=False)
@xw.arg(
    "number",
    doc="Number to dial once from your extension; recalculating never redials. "
    "/ Номер для однократного набора; пересчёт не перезванивает.",
)
def PZ_CALL(number, caller):
    """Dials the number once per cell and number; then shows when. Recalculation, fill-down and reopening never redial. / Звонит на номер один раз для ячейки и номера."""  # noqa: E501
    return udf_logic.pz_call(number, lambda: _caller_cell(caller))


def _caller_cell(caller):
    if caller is None:  # evaluated outside a cell (VBA Evaluate): pz_call explains
        return None
    from pz_excel.books import excel_ui

    book, sheet, address, path, cells = excel_ui.caller_cell(caller)
    return udf_logic.CallerCell(book, sheet, address, path, cells)
