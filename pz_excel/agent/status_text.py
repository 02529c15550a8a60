"""The agent's state as people read it: one text for the ribbon's Status box and
``pz-excel status``, in the reader's language (the agent may run in another one).

Kept apart from the ribbon's messages so that ``pz-excel status`` imports nothing heavy
(it must answer in well under 150 ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pz_excel.i18n import Text, current_lang
from pz_excel.protocol.messages import EVENT_NAMES

STATE_WORDS = {
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
    words = STATE_WORDS.get(state)
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
    team = st.get("team")
    if isinstance(team, Mapping):
        lines.append(("Командный сервер" if ru else "Team server", team_text(team, ru)))
    if st.get("book_error"):
        lines.append(("Книга недоступна" if ru else "Workbook problem", str(st["book_error"])))
    return lines


def team_text(team: Mapping[str, Any], ru: bool) -> str:
    """``https://team:10190 (routing left to it; reported up to #120)``, and why the
    reporting waits, when it does."""
    seq = team.get("reported_seq") or 0
    text = (
        f"{team.get('url')} (переводы распределяет он; передано до №{seq})"
        if ru
        else f"{team.get('url')} (routing left to it; reported up to #{seq})"
    )
    problem = team.get("problem_ru" if ru else "problem_en")
    return f"{text} — {problem}" if problem else text
