"""Ribbon entry points (``RunPython "import pz_excel.excel.macros as m; m.connect()"`` …).

Each entry point is a few lines of glue: it reads what it needs from Excel through
``pz_excel.books.excel_ui`` (the xlwings layer), hands plain values to the pure modules
(``number_pick``: what to dial; ``messages``: what to say; ``settings_dialog``: settings;
``agent_process``: the agent Connect starts), talks to the agent's local API, and shows the
outcome in a message box or the status bar. A user never sees a Python traceback: expected
problems become one clear message, unexpected ones a short message plus a log file.

The workbook's agent is found by one rule (``pz_excel.agent.api.choose_agent``): a saved
workbook talks only to its own agent; an unsaved one to the one running agent.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pz_excel import paths
from pz_excel.agent.api import ApiClient
from pz_excel.agent.discovery import AgentUnavailable
from pz_excel.books import BookLocked
from pz_excel.books.identity import is_local_path
from pz_excel.books.settings import parse_settings, settings_values
from pz_excel.connector import credentials
from pz_excel.crm.schema import CALLS, CONTACTS, MANAGERS
from pz_excel.excel.agent_process import (
    API_TIMEOUT,
    agent_for,
    start_agent,
    wait_for_agent,
)
from pz_excel.excel.messages import (
    EXCEL_BUSY,
    NOT_RUNNING,
    TITLE,
    call_message,
    contact_added_message,
    not_running_message,
    refresh_message,
    sms_sent_message,
    status_message,
)
from pz_excel.excel.number_pick import (
    Pick,
    RowReader,
    call_back_pick,
    latest_missed,
    next_contact_row,
    owner_for_extension,
    pick_number,
)
from pz_excel.excel.settings_dialog import (
    edit_settings,
    problems_text,
    settings_table,
    validate_settings,
)
from pz_excel.excel.udf_logic import format_call
from pz_excel.i18n import Text, UserError

log = logging.getLogger("pz_excel.excel.macros")

CALL_TIMEOUT = 8.0  # s: the agent itself waits up to 5 s for the connector's answer


def place_call(client: ApiClient, pick: Pick) -> tuple[bool, Text]:
    """POST /call for a button press (no once-key: a press is a deliberate dial)."""
    return call_message(pick, client.post("/call", {"number": pick.to_dial}))


def check_contact(client: ApiClient, pick: Pick, name: str, owner: str) -> dict[str, Any]:
    """POST /contacts with ``check``: the agent's rules (a number already there, an owner
    not in Managers, not a phone number) and the values to write, nothing written: while
    the book is open, it is Excel's, so the macro writes the row (``_add_contact``)."""
    body = {"number": pick.to_dial, "name": name, "owner": owner, "check": True}
    return client.post("/contacts", body)


def post_sms(client: ApiClient, pick: Pick, text: str) -> Text:
    """POST /sms from the user's extension to the picked number."""
    return sms_sent_message(pick, client.post("/sms", {"to": pick.to_dial, "text": text}))


def _macro(action: Callable[[Any], None]) -> Callable[[], None]:
    """A ribbon entry point: finds the workbook, runs ``action``, shows any problem."""

    @functools.wraps(action)
    def run() -> None:
        from pz_excel.books import excel_ui

        book = excel_ui.caller_book()
        title = str(TITLE)
        try:
            action(book)
        except AgentUnavailable:
            excel_ui.message_box(book, str(not_running_message()), title)
        except UserError as exc:
            excel_ui.message_box(book, str(exc.text), title)
        except BookLocked:  # a cell in edit mode or a dialog open: COM refuses for now
            excel_ui.status_bar(book, str(EXCEL_BUSY))
        except Exception as exc:  # noqa: BLE001 - a message box, never a traceback popup
            where = _log_crash(action.__name__)
            excel_ui.message_box(
                book,
                str(
                    Text(
                        f"Unexpected error: {exc}\nDetails: {where}",
                        f"Непредвиденная ошибка: {exc}\nПодробности: {where}",
                    )
                ),
                title,
            )

    return run


def _log_crash(name: str) -> Path:
    where = paths.home() / "logs" / "macros.log"
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(where, "a", encoding="utf-8") as fh:
        fh.write(f"--- {datetime.now():%Y-%m-%d %H:%M:%S} {name}\n{traceback.format_exc()}\n")
    return where


def _saved_path(book: Any) -> Path:
    from pz_excel.books import excel_ui

    raw = excel_ui.book_path(book)
    path = Path(raw) if raw else None
    if path is None or "://" in str(raw) or not path.exists():
        raise UserError(
            Text(
                "Save the workbook to a local folder first: the agent works with a file.",
                "Сначала сохраните книгу в локальную папку: агент работает с файлом.",
            )
        )
    return path


def _client(book: Any, timeout: float = API_TIMEOUT) -> ApiClient:
    """This saved workbook's own agent; for a book never saved, the one running agent."""
    from pz_excel.books import excel_ui

    raw = excel_ui.book_path(book)
    saved = is_local_path(raw) and Path(raw).is_absolute()
    return ApiClient.discover(workbook=raw if saved else None, timeout=timeout)


def _row_reader(book: Any) -> RowReader:
    from pz_excel.books import excel_ui

    return lambda sheet, row: excel_ui.row_values(book, sheet, row)


def _password_for(book: Any, server: str, phone: str) -> tuple[bool, str | None]:
    """(go on?, password for the child's environment) — asks once, keeps it in the keyring."""
    from pz_excel.books import excel_ui

    if credentials.get_password(server, phone):
        return True, None  # the agent reads the keyring itself
    answer = excel_ui.input_box(
        book,
        str(
            Text(
                f"Password for extension {phone} on {server}\n"
                "(kept in your system's password store, never in the workbook; "
                "leave empty if the connector has none)",
                f"Пароль добавочного {phone} на {server}\n"
                "(хранится в системном хранилище паролей, не в книге; "
                "оставьте пустым, если пароля нет)",
            )
        ),
        str(TITLE),
        password=True,
    )
    if answer is None:
        return False, None
    if not answer:
        return True, None
    try:
        credentials.set_password(server, phone, answer)
    except Exception as exc:  # noqa: BLE001 - no keyring backend: hand it over directly
        log.warning("keyring unavailable (%s); password passed to the agent directly", exc)
        return True, answer
    return True, None


def _connect(book: Any) -> None:
    from pz_excel.books import excel_ui

    path = _saved_path(book)
    running = agent_for(path)
    if running is not None:
        excel_ui.message_box(book, status_message(running.get("/status")), str(TITLE))
        return
    values = settings_values(parse_settings(settings_table(book)))
    problems = validate_settings(values)
    if problems:
        raise UserError(problems_text(problems))
    go_on, password = _password_for(book, values["server"], values["phone"])
    if not go_on:
        return
    excel_ui.status_bar(book, str(Text("Connecting…", "Подключение…")))
    try:
        proc = start_agent(path, values, password)
        st = wait_for_agent(path, proc)
    finally:
        excel_ui.status_bar(book, "")
    text = status_message(st)
    if st.get("state") == "stopped":
        text += "\n\n" + str(
            Text(
                "If the password is wrong, change it with Settings and press Connect again.",
                "Если пароль неверен, измените его в «Настройках» и снова нажмите «Подключить».",
            )
        )
    excel_ui.message_box(book, text, str(TITLE))


def _disconnect(book: Any) -> None:
    from pz_excel.books import excel_ui

    path = excel_ui.book_path(book)
    client = agent_for(path) if path else None
    if client is None:
        excel_ui.message_box(book, str(NOT_RUNNING), str(TITLE))
        return
    client.post("/stop")
    excel_ui.status_bar(book, str(Text("Disconnected.", "Отключено.")))


def _dial(book: Any, pick: Pick) -> None:
    from pz_excel.books import excel_ui

    ok, text = place_call(_client(book, CALL_TIMEOUT), pick)
    if ok:
        excel_ui.status_bar(book, str(text))
    else:
        excel_ui.message_box(book, str(text), str(TITLE))


def _call_selected(book: Any) -> None:
    from pz_excel.books import excel_ui

    pick = pick_number(excel_ui.selection_values(book), _row_reader(book))
    assert pick is not None  # only tables_only picks may be None
    _dial(book, pick)


def _call_back(book: Any) -> None:
    from pz_excel.books import excel_ui

    pick = pick_number(
        excel_ui.selection_values(book), _row_reader(book), tables=(CALLS,), tables_only=True
    )
    if pick is None:  # not on a Calls row: the newest missed call nobody returned
        client = _client(book)
        owner = owner_for_extension(excel_ui.sheet_table(book, MANAGERS.names), client.info.phone)
        missed = client.get("/missed", owner=owner).get("calls") or []
        call = latest_missed(missed)
        if call is None:
            excel_ui.message_box(
                book,
                str(
                    Text(
                        "No missed calls are waiting for a call back.",
                        "Нет пропущенных звонков, ждущих обратного звонка.",
                    )
                ),
                str(TITLE),
            )
            return
        pick = call_back_pick(call)
        excel_ui.status_bar(
            book,
            str(
                Text(
                    f"Calling back: {format_call(call, 'en')}",
                    f"Перезваниваем: {format_call(call, 'ru')}",
                )
            ),
        )
    _dial(book, pick)


def _status(book: Any) -> None:
    from pz_excel.books import excel_ui

    excel_ui.message_box(book, status_message(_client(book).get("/status")), str(TITLE))


def _refresh_contacts(book: Any) -> None:
    from pz_excel.books import excel_ui

    result = _client(book, timeout=30.0).post("/refresh")
    excel_ui.message_box(book, str(refresh_message(result)), str(TITLE))


def _ask(book: Any, en: str, ru: str) -> str | None:
    """One line from the user; ``None`` when cancelled (the macro then does nothing)."""
    from pz_excel.books import excel_ui

    answer = excel_ui.input_box(book, str(Text(en, ru)), str(TITLE))
    return None if answer is None else " ".join(answer.split())


def _add_contact(book: Any) -> None:
    from pz_excel.books import excel_ui

    pick = pick_number(excel_ui.selection_values(book), _row_reader(book))
    assert pick is not None  # only tables_only picks may be None
    client = _client(book)
    name = _ask(book, f"Name of the contact for {pick.shown}:", f"Имя контакта для {pick.shown}:")
    if name is None:
        return
    # an empty answer means "mine": the owner of this agent's extension on Managers
    mine = owner_for_extension(excel_ui.sheet_table(book, MANAGERS.names), client.info.phone)
    hint_en = f" (empty: {mine})" if mine else ""
    hint_ru = f" (пусто — {mine})" if mine else ""
    owner = _ask(
        book,
        f"Owner: a name or an extension from Managers{hint_en}:",
        f"Ответственный: имя или добавочный с листа «Менеджеры»{hint_ru}:",
    )
    if owner is None:
        return
    checked = check_contact(client, pick, name, owner or mine or "")
    row, cols = next_contact_row(excel_ui.sheet_table(book, CONTACTS.names))
    for key in ("name", "phone", "owner"):
        if key in cols:  # text stays text: write_cell never makes a formula or a number
            value = checked["display"] if key == "phone" else checked[key]
            excel_ui.write_cell(book, CONTACTS.names, row, cols[key], value)
    client.post("/refresh")  # the agent reads what Excel shows, saved or not
    text = contact_added_message(pick, {**checked, "row": row})
    excel_ui.message_box(book, str(text), str(TITLE))
    if "name" in cols:  # ready for the rest of the row (company, notes) to be typed
        excel_ui.select_cell(book, CONTACTS.names, row, cols["name"])


def _send_sms(book: Any) -> None:
    from pz_excel.books import excel_ui

    pick = pick_number(excel_ui.selection_values(book), _row_reader(book))
    assert pick is not None  # only tables_only picks may be None
    client = _client(book, CALL_TIMEOUT)  # the agent waits for the connector's answer
    prompt = Text(f"SMS text for {pick.label()}:", f"Текст SMS для {pick.label()}:")
    answer = excel_ui.input_box(book, str(prompt), str(TITLE))  # as typed: spaces are text
    if answer is None:
        return
    excel_ui.status_bar(book, str(post_sms(client, pick, answer)))


def _settings(book: Any) -> None:
    from pz_excel.books import excel_ui

    path = excel_ui.book_path(book)
    edit_settings(book, has_agent=bool(path) and agent_for(path) is not None)


connect = _macro(_connect)
disconnect = _macro(_disconnect)
call_selected = _macro(_call_selected)
call_back = _macro(_call_back)
status = _macro(_status)
refresh_contacts = _macro(_refresh_contacts)
settings = _macro(_settings)
add_contact = _macro(_add_contact)
send_sms = _macro(_send_sms)
