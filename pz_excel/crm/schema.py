"""The CRM workbook's sheets and columns, in English and Russian.

One source of truth for the template writer, the contacts reader and the Calls writer.
Columns are found **by header name in either language**, in any order, so users may
reorder columns, add their own and keep their formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime


@dataclass(frozen=True)
class Column:
    key: str  # internal name
    en: str
    ru: str
    required: bool = True
    width: float = 16
    kind: str = "text"  # text | phone | datetime | int | url | bool

    def header(self, lang: str) -> str:
        return self.ru if lang == "ru" else self.en

    @property
    def names(self) -> tuple[str, str]:
        return (self.en, self.ru)


@dataclass(frozen=True)
class Sheet:
    key: str
    en: str
    ru: str
    columns: tuple[Column, ...]

    def title(self, lang: str) -> str:
        return self.ru if lang == "ru" else self.en

    @property
    def names(self) -> tuple[str, str]:
        return (self.en, self.ru)

    @property
    def header_names(self) -> dict[str, tuple[str, str]]:
        """Column key → (English, Russian) header: what ``xlsx.header.find_header`` looks
        for."""
        return {col.key: col.names for col in self.columns}

    @property
    def required(self) -> list[str]:
        """The keys of the columns a header row must hold."""
        return [col.key for col in self.columns if col.required]

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(key)


CONTACTS = Sheet(
    "contacts",
    "Contacts",
    "Контакты",
    (
        Column("name", "Name", "Имя", width=28),
        Column("phone", "Phone", "Телефон", width=20, kind="phone"),
        Column("owner", "Owner", "Ответственный", width=20),
        Column("company", "Company", "Компания", required=False, width=28),
        Column("notes", "Notes", "Заметки", required=False, width=40),
    ),
)

MANAGERS = Sheet(
    "managers",
    "Managers",
    "Менеджеры",
    (
        Column("owner", "Owner", "Ответственный", width=24),
        Column("extension", "Extension", "Добавочный", width=14, kind="phone"),
    ),
)

CALLS = Sheet(
    "calls",
    "Calls",
    "Звонки",
    (
        Column("call_id", "Call ID", "ID звонка", width=20),
        Column("direction", "Direction", "Направление", width=12),
        Column("status", "Status", "Статус", width=12),
        Column("client_phone", "Client phone", "Телефон клиента", width=18, kind="phone"),
        Column("contact", "Contact", "Контакт", width=26),
        Column("owner", "Owner", "Ответственный", width=20),
        Column("extension", "Extension", "Добавочный", width=12, kind="phone"),
        Column("start", "Start", "Начало", width=19, kind="datetime"),
        Column("end", "End", "Конец", width=19, kind="datetime"),
        Column("duration", "Duration (s)", "Длительность (с)", width=14, kind="int"),
        Column("recording", "Recording", "Запись", width=30, kind="url"),
        Column("line", "Line", "Линия", width=10),
        Column("late", "Late", "Поздно", width=8, kind="bool"),
    ),
)

SETTINGS = Sheet(
    "settings",
    "Settings",
    "Настройки",
    (
        Column("setting", "Setting", "Параметр", width=28),
        Column("value", "Value", "Значение", width=36),
        # Explanations for a new user; never a value (books/settings.py skips this column).
        Column("help", "Help", "Подсказка", required=False, width=90),
    ),
)

# The Settings sheet's rows, one source for labels and help: key -> (English label, Russian
# label, English help, Russian help). Never the password (it lives in the OS keyring). The
# help says what the value is, an example, and where else it can be given.
_SETTINGS_TABLE: dict[str, tuple[str, str, str, str]] = {
    "server": (
        "Server URL",
        "Адрес сервера",
        "Address of the Prostie Zvonki connector, e.g. ws://pbx.office:10150 "
        "(wss:// for an encrypted one). Also: pz-excel run --server",
        "Адрес коннектора «Простых Звонков», например ws://pbx.office:10150 "
        "(wss:// — для шифрованного). Можно и так: pz-excel run --server",
    ),
    "phone": (
        "Extension",
        "Добавочный номер",
        "Your own extension: digits only, e.g. 101. Also: pz-excel run --phone",
        "Ваш добавочный номер, только цифры, например 101. Можно и так: pz-excel run --phone",
    ),
    "client_type": (
        "Client type",
        "Тип клиента",
        "Client type of your licence, e.g. excel; empty means excel. "
        "Also: pz-excel run --client-type",
        "Тип клиента по вашей лицензии, например excel; пусто — значит excel. "
        "Можно и так: pz-excel run --client-type",
    ),
    "fallback": (
        "Fallback extension",
        "Добавочный по умолчанию",
        "Extension that gets callers not in Contacts or without an owner, e.g. 100; "
        "empty: such calls are left to the PBX. Also: pz-excel run --fallback",
        "Добавочный, на который идут звонящие, которых нет в контактах или у которых нет "
        "ответственного, например 100; пусто — такие звонки остаются АТС. "
        "Можно и так: pz-excel run --fallback",
    ),
    # Local numbers (5–7 digits) in Contacts and caller IDs are this city's: crm/phones.py.
    "area_code": (
        "Area code",
        "Код города",
        "Your city's code without 8 or +7, e.g. 343: short local numbers such as "
        "555-00-00 are then that city's. Also: pz-excel run --area-code",
        "Код вашего города без 8 и +7, например 343: короткие местные номера вроде "
        "555-00-00 считаются номерами этого города. Можно и так: pz-excel run --area-code",
    ),
}
#: Settings sheet rows: key -> (English label, Russian label).
SETTING_ROWS: dict[str, tuple[str, str]] = {
    key: (en, ru) for key, (en, ru, _, _) in _SETTINGS_TABLE.items()
}
#: The help beside each Settings value: key -> (English, Russian).
SETTING_HELP: dict[str, tuple[str, str]] = {
    key: (help_en, help_ru) for key, (_, _, help_en, help_ru) in _SETTINGS_TABLE.items()
}

SHEETS = (CONTACTS, MANAGERS, CALLS, SETTINGS)

# Words the Calls sheet shows, per language (values stay readable for people).
WORDS: dict[str, tuple[str, str]] = {
    "incoming": ("incoming", "входящий"),
    "outgoing": ("outgoing", "исходящий"),
    "ringing": ("ringing", "звонит"),
    "dialing": ("dialing", "набор"),
    "answered": ("answered", "отвечен"),
    "completed": ("completed", "завершён"),
    "missed": ("missed", "пропущен"),
    "yes": ("yes", "да"),
    "no": ("", ""),
}


_XESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")  # OOXML escape of a control character


def cell_text(value: object) -> str:
    """A cell's value as the text a user sees in Excel; the one rule for every reader.

    Trimmed; a whole float without its ``.0`` (an ID or a phone typed as a number comes
    back as ``1234.0``); a boolean as Excel shows it, ``TRUE`` / ``FALSE``; a date or time
    in ISO form; an OOXML escape (``_x000D_``, how a file stores a control character)
    decoded; ``None`` → ``""``.
    """
    if value is None:
        return ""
    if type(value) is str:
        text = value.strip()
        if "_x" in text:
            text = _XESCAPE.sub(lambda m: chr(int(m[1], 16)), text).strip()
        return text
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    return str(value).strip()


def word(key: str, lang: str) -> str:
    en, ru = WORDS[key]
    return ru if lang == "ru" else en


@dataclass
class CallRow:
    """One row of the Calls sheet, by callID. Values are internal (keys, not words)."""

    call_id: str
    direction: str = ""  # incoming | outgoing
    status: str = ""  # ringing | answered | dialing | completed | missed
    client_phone: str = ""
    contact: str = ""
    owner: str = ""
    extension: str = ""
    start: datetime | None = None
    end: datetime | None = None
    duration: int | None = None
    recording: str = ""
    line: str = ""
    late: bool = False

    def values(self) -> dict[str, object]:
        return {col.key: getattr(self, col.key) for col in CALLS.columns}
