"""What the ribbon tells the user: the call result, the Status box, "not running", the
contacts refresh. Pure text from the agent's API answers, in both languages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pz_excel import paths
from pz_excel.excel.number_pick import Pick
from pz_excel.i18n import Text, current_lang
from pz_excel.protocol.codec import EVENT_NAMES

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


_STATE_WORDS = {
    "connecting": Text("connecting…", "подключение…"),
    "connected": Text("connected", "подключено"),
    "retrying": Text("reconnecting", "переподключение"),
    "stopped": Text("stopped", "остановлено"),
}


_BOOK_KINDS = {
    "file": Text("file", "файл"),
    "excel": Text("open in Excel", "открыта в Excel"),
}


def last_event_text(event: Mapping[str, Any] | None, ru: bool) -> str:
    """The last event in the reader's language (the agent may run in another one): its
    name from its type, call ID, from → to, when."""
    if not event:
        return "—"
    ev = dict(event)
    name = EVENT_NAMES.get(ev.get("type"))  # type: ignore[arg-type]
    shown = (name.ru if ru else name.en) if name else str(ev.get("name") or ev.get("type") or "")
    when = str(ev.get("at") or "").replace("T", " ")
    return (
        f"{shown} {ev.get('call_id') or ''} {ev.get('from') or '?'} → {ev.get('to') or '?'}, {when}"
    ).strip()


def status_lines(st: Mapping[str, Any], lang: str | None = None) -> list[tuple[str, str]]:
    """(label, value) of the agent's state, for the ribbon's Status box and ``pz-excel
    status`` alike, in the reader's language: state, extension, server, last event,
    contacts, rows waiting, workbook, journal, a workbook problem."""
    ru = (lang or current_lang()) == "ru"
    state = str(st.get("state") or "")
    words = _STATE_WORDS.get(state)
    state_line = (words.ru if ru else words.en) if words else state
    detail = str(st.get("state_text_ru" if ru else "state_text_en") or st.get("state_text") or "")
    if detail and detail.casefold() != state_line.casefold():
        # "connected" + "connected to ws://…": the detail alone says both
        same = detail.casefold().startswith(state_line.casefold())
        state_line = detail if same else f"{state_line} — {detail}"
    workbook = str(st.get("workbook") or "—")
    kind = _BOOK_KINDS.get(str(st.get("book") or ""))
    if kind is not None:
        workbook = f"{workbook} ({kind.ru if ru else kind.en})"
    lines = [
        ("Состояние" if ru else "State", state_line),
        ("Добавочный" if ru else "Extension", str(st.get("phone") or "—")),
        ("Сервер" if ru else "Server", str(st.get("server") or "—")),
        ("Последнее событие" if ru else "Last event", last_event_text(st.get("last_event"), ru)),
        ("Контакты" if ru else "Contacts", str(st.get("contacts", "—"))),
        (
            "Ждут записи в книгу" if ru else "Rows waiting for the workbook",
            str(st.get("pending_rows", 0)),
        ),
        ("Книга" if ru else "Workbook", workbook),
        ("Журнал" if ru else "Journal", str(st.get("journal") or "—")),
    ]
    if st.get("book_error"):
        lines.append(("Книга недоступна" if ru else "Workbook problem", str(st["book_error"])))
    return lines


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
