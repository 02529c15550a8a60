"""What the ribbon tells the user: the call result, the Status box, "not running", the
contacts refresh. Pure text from the agent's API answers, in both languages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pz_excel import paths
from pz_excel.agent.status_text import status_lines
from pz_excel.excel.number_pick import Pick
from pz_excel.i18n import Text, current_lang

TITLE = Text("Prostie Zvonki", "Простые Звонки")
EXCEL_BUSY = Text(
    "Excel is busy (a cell is being edited?): press Enter or Esc and try again.",
    "Excel занят (редактируется ячейка?): нажмите Enter или Esc и повторите.",
)
NOT_RUNNING = Text(
    "The agent is not running for this workbook. Press Connect first.",
    "Агент для этой книги не запущен. Сначала нажмите «Подключить».",
)


def call_message(pick: Pick, result: Mapping[str, Any]) -> tuple[bool, Text]:
    """(dialled?, what to tell the user) for a POST /call answer."""
    code = result.get("code")
    if code == 0:
        return True, Text(f"Calling {pick.label()}…", f"Звоним: {pick.label()}…")
    reason = str(result.get("message") or "")
    return False, Text(
        f"The call to {pick.label()} was not placed (code {code}). {reason}".strip(),
        f"Звонок на {pick.label()} не выполнен (код {code}). {reason}".strip(),
    )


def status_message(st: Mapping[str, Any], lang: str | None = None) -> str:
    """The Status box: :func:`status_lines`, then the contacts' warnings."""
    ru = (lang or current_lang()) == "ru"
    warnings = list(st.get("warnings") or [])
    text = "\n".join(f"{k}: {v}" for k, v in status_lines(st, lang))
    if warnings:
        head = "Предупреждения по контактам" if ru else "Contacts warnings"
        text += f"\n\n{head} ({len(warnings)}):\n" + "\n".join(f"• {w}" for w in warnings[:5])
    return text


def not_running_message() -> Text:
    where = paths.journals_dir()
    return Text(
        f"{NOT_RUNNING.en}\nJournals are kept in {where}",
        f"{NOT_RUNNING.ru}\nЖурналы хранятся в {where}",
    )


def refresh_message(result: Mapping[str, Any]) -> Text:
    count = result.get("contacts", 0)
    warnings = [str(w) for w in result.get("warnings") or []]
    en = f"Contacts loaded: {count}."
    ru = f"Загружено контактов: {count}."
    if warnings:
        shown = "\n".join(f"• {w}" for w in warnings[:10])
        more_en = f"\n… and {len(warnings) - 10} more" if len(warnings) > 10 else ""
        more_ru = f"\n… и ещё {len(warnings) - 10}" if len(warnings) > 10 else ""
        en += f"\n\nWarnings ({len(warnings)}):\n{shown}{more_en}"
        ru += f"\n\nПредупреждения ({len(warnings)}):\n{shown}{more_ru}"
    return Text(en, ru)


def contact_added_message(pick: Pick, result: Mapping[str, Any]) -> Text:
    """The answer to POST /contacts: which row of Contacts now holds the number."""
    shown = str(result.get("display") or result.get("number") or pick.shown)
    name = str(result.get("name") or "").strip()
    who = f"{name} ({shown})" if name else shown
    row = result.get("row")
    owner = str(result.get("owner") or "").strip()
    en = f"Contact added: {who}, row {row} of Contacts."
    ru = f"Контакт добавлен: {who}, строка {row} листа «Контакты»."
    if owner:
        en += f" Owner: {owner}."
        ru += f" Ответственный: {owner}."
    return Text(en, ru)


def sms_sent_message(pick: Pick, result: Mapping[str, Any]) -> Text:
    """The answer to POST /sms: the connector took the message; delivery comes later."""
    ref = str(result.get("call_id") or "")
    tail_en = f" (id {ref})" if ref else ""
    tail_ru = f" (номер {ref})" if ref else ""
    return Text(
        f"SMS to {pick.label()} handed to the phone system{tail_en}.",
        f"SMS на {pick.label()} передано в телефонию{tail_ru}.",
    )
