"""The ribbon's Settings: checking values before Connect, and the Settings dialog that edits
the sheet. Reading the sheet is :mod:`pz_excel.books.settings`, the one reader the CLI shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pz_excel.books import excel_ui
from pz_excel.books.settings import parse_settings, setting_writes, table_lang
from pz_excel.connector import credentials
from pz_excel.crm import phones
from pz_excel.crm.schema import SETTING_ROWS, SETTINGS
from pz_excel.excel.messages import TITLE
from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import ProtocolError, normalize_server_url

_CLIENT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def validate_settings(values: Mapping[str, str]) -> list[Text]:
    """Problems that stop a connection, each a sentence a sales manager can act on."""
    problems: list[Text] = []
    server = (values.get("server") or "").strip()
    if not server:
        problems.append(
            Text(
                "Server URL is empty: put the connector address on the Settings sheet "
                "(e.g. ws://pbx.office:10150).",
                "Адрес сервера пуст: укажите адрес коннектора на листе «Настройки» "
                "(например, ws://pbx.office:10150).",
            )
        )
    else:
        try:
            normalize_server_url(server)
        except ProtocolError as exc:  # the one address rule says what is wrong, both tongues
            problems.append(Text(f"{exc.text.en}.", f"{exc.text.ru}."))
    phone = (values.get("phone") or "").strip()
    if not phone:
        problems.append(
            Text(
                "Extension is empty: put your extension number on the Settings sheet.",
                "Добавочный номер пуст: укажите свой добавочный на листе «Настройки».",
            )
        )
    elif phones.extension(phone) is None:  # the agent's rule (crm/phones), as for init
        problems.append(
            Text(
                f"Extension «{phone}» must be digits only, up to {phones.MAX_SHORT} "
                "(e.g. 101).",
                f"Добавочный «{phone}» должен состоять из цифр, не больше "
                f"{phones.MAX_SHORT} (например, 101).",
            )
        )
    client_type = (values.get("client_type") or "").strip()
    if client_type and not _CLIENT_TYPE.match(client_type):
        problems.append(
            Text(
                f"Client type «{client_type}»: Latin letters and digits only (e.g. excel).",
                f"Тип клиента «{client_type}»: только латинские буквы и цифры (например, excel).",
            )
        )
    fallback = (values.get("fallback") or "").strip()
    if fallback and phones.extension(fallback) is None:
        problems.append(
            Text(
                f"Fallback extension «{fallback}» must be digits only, or empty.",
                f"Добавочный по умолчанию «{fallback}» — только цифры или пусто.",
            )
        )
    try:
        phones.parse_area_code(values.get("area_code") or "")
    except UserError as exc:  # the one area code rule, with its own words
        problems.append(exc.text)
    return problems


def problems_text(problems: Sequence[Text]) -> Text:
    return Text(
        "Please fix the settings:\n" + "\n".join(f"• {p.en}" for p in problems),
        "Исправьте настройки:\n" + "\n".join(f"• {p.ru}" for p in problems),
    )


CLEAR = "-"  # typed in a Settings prompt: empty an optional value


def apply_setting_answer(current: str, answer: str, required: bool) -> str:
    """An input box answer: empty keeps the value, ``-`` clears an optional one."""
    answer = answer.strip()
    if not answer:
        return current
    if answer == CLEAR and not required:
        return ""
    return answer


def settings_table(book: Any) -> list[list]:
    table = excel_ui.sheet_table(book, SETTINGS.names)
    if not table:
        raise UserError(
            Text(
                "This workbook has no Settings sheet. Create a workbook with: pz-excel init",
                "В книге нет листа «Настройки». Создайте книгу командой: pz-excel init",
            )
        )
    return table


def edit_settings(book: Any, has_agent: bool) -> None:
    """Ask for each setting, write the changed ones, store a new password if one is typed.
    ``has_agent``: whether the workbook's agent runs (then the user is told to reconnect)."""
    table = settings_table(book)
    cells = parse_settings(table)
    lang = table_lang(table)
    new: dict[str, str] = {}
    for key, (en, ru) in SETTING_ROWS.items():
        current = cells[key].value if key in cells else ""
        required = key in ("server", "phone")
        prompt = Text(
            f"{en}\nNow: {current or '—'}\n\nType a new value, or leave empty to keep it."
            + ("" if required else f" «{CLEAR}» clears it."),
            f"{ru}\nСейчас: {current or '—'}\n\nВведите новое значение или оставьте пустым."
            + ("" if required else f" «{CLEAR}» — очистить."),
        )
        answer = excel_ui.input_box(book, str(prompt), str(TITLE))
        if answer is None:
            return  # cancelled: nothing written
        new[key] = apply_setting_answer(current, answer, required)
    problems = validate_settings(new)
    if problems:
        raise UserError(problems_text(problems))
    for row, col, value in setting_writes(cells, new, len(table), lang):
        excel_ui.write_cell(book, SETTINGS.names, row, col, value)
    password = excel_ui.input_box(
        book,
        str(
            Text(
                f"New password for extension {new['phone']} on {new['server']}\n"
                "(leave empty to keep the stored one)",
                f"Новый пароль добавочного {new['phone']} на {new['server']}\n"
                "(оставьте пустым, чтобы не менять)",
            )
        ),
        str(TITLE),
        password=True,
    )
    done = Text("Settings saved.", "Настройки сохранены.")
    if password:
        try:
            credentials.set_password(new["server"], new["phone"], password)
            done = Text(f"{done.en} Password stored.", f"{done.ru} Пароль сохранён.")
        except Exception as exc:  # noqa: BLE001 - say so; the rest is saved
            done = Text(
                f"{done.en} The password could not be stored ({exc}).",
                f"{done.ru} Пароль сохранить не удалось ({exc}).",
            )
    if has_agent:
        done = Text(
            f"{done.en}\nDisconnect and Connect again to use them.",
            f"{done.ru}\nНажмите «Отключить» и снова «Подключить», чтобы они вступили в силу.",
        )
    excel_ui.message_box(book, str(done), str(TITLE))
