"""Ribbon macros (``RunPython "import pz_excel.macros as m; m.connect()"`` and friends).

Each ribbon entry point is a few lines of glue: it reads what it needs from Excel through
``pz_excel.books.livebook`` (the only module that talks to xlwings), hands plain values to
the pure functions below, talks to the agent's local API, and shows the outcome in a
message box or the status bar. A user never sees a Python traceback: expected problems
become one clear message, unexpected ones a short message plus a log file.

The pure parts (which number to call for a selection, the status text, settings
validation, the agent's command line) are tested without Excel.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pz_excel import paths
from pz_excel.agent.api import AgentUnavailable, ApiClient, running_agents
from pz_excel.books import BookLocked
from pz_excel.connector import credentials
from pz_excel.crm import phones
from pz_excel.crm.schema import CALLS, CONTACTS, MANAGERS, SETTING_ROWS, SETTINGS, Sheet
from pz_excel.excel.udf_logic import cell_text, format_call
from pz_excel.i18n import Text, UserError, current_lang
from pz_excel.protocol.codec import ProtocolError, normalize_server_url

log = logging.getLogger("pz_excel.excel.macros")

TITLE = Text("Prostie Zvonki", "Простые Звонки")
CONNECT_WAIT = 12.0  # s to wait for the new agent's first connection result
CALL_TIMEOUT = 8.0  # s: the agent itself waits up to 5 s for the connector's answer
API_TIMEOUT = 3.0
HEADER_ROWS = 10  # the header row may sit below a title (README: first 10 rows)
SELECTION_LIMIT = 1000  # cells of a selection looked at; whole columns are clipped
PASSWORD_ENV = "PZ_EXCEL_PASSWORD"  # only when the OS keyring cannot store the password

EXCEL_BUSY = Text(
    "Excel is busy (a cell is being edited?): press Enter or Esc and try again.",
    "Excel занят (редактируется ячейка?): нажмите Enter или Esc и повторите.",
)
NOT_RUNNING = Text(
    "The agent is not running for this workbook. Press Connect first.",
    "Агент для этой книги не запущен. Сначала нажмите «Подключить».",
)

# Selection cell: (sheet name, row, column, value), rows and columns 1-based.
Cell = tuple[str, int, int, Any]
RowReader = Callable[[str, int], Sequence[Any]]


# ====================================================================== pure: tables


def _names(col_names: Sequence[str]) -> set[str]:
    return {n.strip().casefold() for n in col_names}


def header_columns(row: Sequence[Any], sheet: Sheet) -> dict[str, int]:
    """Column key → 1-based column of ``sheet``'s columns found in this row (either language)."""
    found: dict[str, int] = {}
    for index, value in enumerate(row, start=1):
        text = str(value or "").strip().casefold()
        if not text:
            continue
        for col in sheet.columns:
            if col.key not in found and text in _names(col.names):
                found[col.key] = index
    return found


def find_header(rows: Sequence[Sequence[Any]], sheet: Sheet, need: str) -> tuple[int, dict]:
    """(header row, columns) of the first of ``rows`` that has column ``need``; (0, {}) if none."""
    for number, row in enumerate(rows[:HEADER_ROWS], start=1):
        cols = header_columns(row, sheet)
        if need in cols:
            return number, cols
    return 0, {}


def _value(row: Sequence[Any], col: int | None) -> Any:
    return row[col - 1] if col and 0 < col <= len(row) else None


def _phone_text(value: Any) -> str:
    """A cell as a dialable candidate; dates and flags are never phone numbers."""
    if isinstance(value, (datetime, date, bool)):
        return ""
    return cell_text(value)


# ====================================================================== pure: what to call


@dataclass(frozen=True)
class Pick:
    """The number a button will dial, and how to tell the user about it."""

    number: str  # normalised: the number's identity
    shown: str  # as people read it
    who: str = ""  # contact name when known
    where: str = ""  # e.g. Contacts!B5
    dial: str = ""  # as typed: the connector gets numbers the way users write them

    @property
    def to_dial(self) -> str:
        return self.dial or self.number

    def label(self) -> str:
        return f"{self.who} ({self.shown})" if self.who else self.shown


# Table sheet → (its phone column, the column naming the person).
_TABLES: dict[str, tuple[Sheet, str, str]] = {
    CONTACTS.key: (CONTACTS, "phone", "name"),
    CALLS.key: (CALLS, "client_phone", "contact"),
}


def _table_of(sheet_name: str, tables: Sequence[Sheet]) -> Sheet | None:
    name = sheet_name.strip().casefold()
    for sheet in tables:
        if name in _names(sheet.names):
            return sheet
    return None


def _address(sheet: str, row: int, col: int) -> str:
    from openpyxl.utils import get_column_letter

    return f"{sheet}!{get_column_letter(col)}{row}"


def _pick(raw: str, who: str, where: str) -> Pick | None:
    key = phones.normalize(raw) if raw else None
    return Pick(key, phones.display(key), who, where, raw) if key else None


def pick_number(
    selection: Sequence[Cell],
    row_of: RowReader,
    *,
    tables: Sequence[Sheet] = (CONTACTS, CALLS),
    tables_only: bool = False,
) -> Pick | None:
    """The number to dial for a selection, first valid cell first.

    On a row of a table sheet (Contacts, Calls) the row's phone column is dialled whatever
    cell of the row is selected: a name, a company, a date or a duration there is never a
    number to dial. Elsewhere the cell's own value is dialled if it is a phone number.
    ``row_of(sheet, row)`` reads a sheet row (header rows included). Returns ``None`` only
    with ``tables_only`` when nothing selected is on a table row; otherwise raises a
    :class:`UserError` saying why nothing can be dialled.
    """
    headers: dict[str, tuple[int, dict]] = {}
    rows: dict[tuple[str, int], Sequence[Any]] = {}
    first_text = ""
    on_table_row = False

    def read(sheet: str, row: int) -> Sequence[Any]:
        if (sheet, row) not in rows:
            rows[(sheet, row)] = row_of(sheet, row)
        return rows[(sheet, row)]

    for sheet_name, row, col, value in selection[:SELECTION_LIMIT]:
        table = _table_of(sheet_name, tables)
        if table is not None:
            _, phone_key, who_key = _TABLES[table.key]
            if sheet_name not in headers:
                head = [read(sheet_name, r) for r in range(1, HEADER_ROWS + 1)]
                headers[sheet_name] = find_header(head, table, phone_key)
            header_row, cols = headers[sheet_name]
            if header_row and row > header_row:
                on_table_row = True
                line = read(sheet_name, row)
                found = _pick(
                    _phone_text(_value(line, cols.get(phone_key))),
                    cell_text(_value(line, cols.get(who_key))),
                    _address(sheet_name, row, cols[phone_key]),
                )
                if found:
                    return found
                first_text = first_text or cell_text(value)
                continue
        if tables_only:
            continue
        found = _pick(_phone_text(value), "", _address(sheet_name, row, col))
        if found:
            return found
        first_text = first_text or cell_text(value)
    if tables_only and not on_table_row:
        return None
    if not selection:
        raise UserError(
            Text(
                "Select a cell with a phone number, or a row of Contacts or Calls.",
                "Выделите ячейку с номером телефона или строку листа «Контакты» или «Звонки».",
            )
        )
    if on_table_row:
        raise UserError(
            Text(
                "The selected row has no valid phone number in its phone column.",
                "В выделенной строке нет правильного номера в столбце телефона.",
            )
        )
    if first_text:
        raise UserError(
            Text(
                f"«{first_text}» is not a phone number. Select a phone number, "
                "or any cell of a row of Contacts or Calls.",
                f"«{first_text}» — не номер телефона. Выделите номер телефона "
                "или любую ячейку строки листа «Контакты» или «Звонки».",
            )
        )
    raise UserError(
        Text(
            "The selected cells are empty. Select a phone number, or a row of Contacts or Calls.",
            "Выделенные ячейки пусты. Выделите номер телефона или строку листа «Контакты» "
            "или «Звонки».",
        )
    )


def owner_for_extension(table: Sequence[Sequence[Any]], extension: str) -> str | None:
    """The Managers sheet's owner whose extension is ``extension``, if any."""
    header_row, cols = find_header(table, MANAGERS, "extension")
    if not header_row or "owner" not in cols:
        return None
    for row in table[header_row:]:
        if cell_text(_value(row, cols["extension"])) == extension.strip():
            owner = cell_text(_value(row, cols["owner"]))
            if owner:
                return owner
    return None


def latest_missed(calls: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest missed call with a number (the API's rows, ISO start times)."""
    usable = [c for c in calls if str(c.get("client_phone") or "").strip()]
    return max(usable, key=lambda c: str(c.get("start") or ""), default=None)


def call_back_pick(call: Mapping[str, Any]) -> Pick:
    raw = str(call.get("client_phone") or "")
    found = _pick(raw, str(call.get("contact") or ""), "")
    if found is None:
        raise UserError(
            Text(
                f"The missed call's number «{raw}» cannot be dialled.",
                f"Номер пропущенного звонка «{raw}» набрать нельзя.",
            )
        )
    return found


# ====================================================================== pure: messages


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


def status_message(st: Mapping[str, Any], lang: str | None = None) -> str:
    """The Status box: state, extension, server, last event, journal path."""
    ru = (lang or current_lang()) == "ru"
    state = str(st.get("state") or "")
    words = _STATE_WORDS.get(state)
    state_line = (words.ru if ru else words.en) if words else state
    detail = str(st.get("state_text") or "")
    if detail and detail.casefold() != state_line.casefold():
        state_line = f"{state_line} — {detail}"
    last = st.get("last_event")
    if last:
        ev = dict(last)
        when = str(ev.get("at") or "").replace("T", " ")
        last_line = (
            f"{ev.get('name') or ev.get('type') or ''} {ev.get('call_id') or ''} "
            f"{ev.get('from') or '?'} → {ev.get('to') or '?'}, {when}"
        ).strip()
    else:
        last_line = "—"
    lines = [
        ("Состояние" if ru else "State", state_line),
        ("Добавочный" if ru else "Extension", str(st.get("phone") or "—")),
        ("Сервер" if ru else "Server", str(st.get("server") or "—")),
        ("Последнее событие" if ru else "Last event", last_line),
        ("Контакты" if ru else "Contacts", str(st.get("contacts", "—"))),
        (
            "Ждут записи в книгу" if ru else "Rows waiting for the workbook",
            str(st.get("pending_rows", 0)),
        ),
        ("Книга" if ru else "Workbook", str(st.get("workbook") or "—")),
        ("Журнал" if ru else "Journal", str(st.get("journal") or "—")),
    ]
    if st.get("book_error"):
        lines.append(("Книга недоступна" if ru else "Workbook problem", str(st["book_error"])))
    warnings = list(st.get("warnings") or [])
    text = "\n".join(f"{k}: {v}" for k, v in lines)
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


# ====================================================================== pure: settings


@dataclass(frozen=True)
class SettingCell:
    row: int  # 1-based row of the label
    col: int  # 1-based column of the value
    value: str


def parse_settings(table: Sequence[Sequence[Any]]) -> dict[str, SettingCell]:
    """Settings sheet rows (labels in either language, or the keys) → where and what."""
    labels = {label.strip().casefold(): key for key, pair in SETTING_ROWS.items() for label in pair}
    labels.update({key: key for key in SETTING_ROWS})
    found: dict[str, SettingCell] = {}
    for number, row in enumerate(table, start=1):
        for index, cell in enumerate(row[:-1] if row else (), start=1):
            key = labels.get(str(cell or "").strip().casefold())
            if key and key not in found:
                found[key] = SettingCell(number, index + 1, cell_text(row[index]))
                break
    return found


def settings_values(cells: Mapping[str, SettingCell]) -> dict[str, str]:
    return {key: cell.value for key, cell in cells.items() if cell.value}


_EXTENSION = re.compile(r"^\+?[0-9*#]{1,20}$")
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
        except ProtocolError as exc:
            problems.append(
                Text(f"Server URL «{server}»: {exc}.", f"Адрес сервера «{server}»: {exc}.")
            )
    phone = (values.get("phone") or "").strip()
    if not phone:
        problems.append(
            Text(
                "Extension is empty: put your extension number on the Settings sheet.",
                "Добавочный номер пуст: укажите свой добавочный на листе «Настройки».",
            )
        )
    elif not _EXTENSION.match(phone):
        problems.append(
            Text(
                f"Extension «{phone}» must be digits only (e.g. 101).",
                f"Добавочный «{phone}» должен состоять из цифр (например, 101).",
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
    if fallback and not _EXTENSION.match(fallback):
        problems.append(
            Text(
                f"Fallback extension «{fallback}» must be digits only, or empty.",
                f"Добавочный по умолчанию «{fallback}» — только цифры или пусто.",
            )
        )
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


def setting_writes(
    cells: Mapping[str, SettingCell], new: Mapping[str, str], table_rows: int, lang: str
) -> list[tuple[int, int, str]]:
    """Cell writes (row, col, value) that put ``new`` values on the Settings sheet.

    Existing rows are updated in place; missing ones are appended below the last row with
    a label in the sheet's language.
    """
    writes: list[tuple[int, int, str]] = []
    next_row = max(table_rows, 1) + 1
    for key, value in new.items():
        cell = cells.get(key)
        if cell is not None:
            if value != cell.value:
                writes.append((cell.row, cell.col, value))
        elif value:
            en, ru = SETTING_ROWS[key]
            writes.append((next_row, 1, ru if lang == "ru" else en))
            writes.append((next_row, 2, value))
            next_row += 1
    return writes


def table_lang(table: Sequence[Sequence[Any]]) -> str:
    """``ru`` if the sheet's labels are Russian, else ``en``."""
    ru_labels = {pair[1].casefold() for pair in SETTING_ROWS.values()}
    ru_labels |= {SETTINGS.column("setting").ru.casefold()}
    for row in table:
        for cell in row:
            if str(cell or "").strip().casefold() in ru_labels:
                return "ru"
    return current_lang()


# ====================================================================== agent process


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        left, right = (os.path.normcase(Path(p).expanduser().resolve()) for p in (a, b))
    except OSError:
        return False
    return left == right


def agent_for(workbook: str | Path, timeout: float = API_TIMEOUT) -> ApiClient | None:
    """This workbook's running agent, if any (never another workbook's)."""
    for info in running_agents():
        if same_file(info.workbook, workbook):
            return ApiClient(info, timeout)
    return None


def agent_command(
    workbook: str | Path,
    values: Mapping[str, str],
    *,
    python: str | None = None,
    password_env: bool = False,
    windows: bool | None = None,
) -> list[str]:
    """``python -m pz_excel run --workbook PATH …``; live Settings values go on the command
    line, so the agent uses what the sheet shows even before the workbook is saved."""
    windows = (os.name == "nt") if windows is None else windows
    exe = python or sys.executable
    if windows:  # pythonw: no console window for a background process
        candidate = Path(exe).with_name("pythonw.exe")
        if candidate.exists():
            exe = str(candidate)
    argv = [exe, "-m", "pz_excel", "run", "--workbook", str(workbook)]
    for key, option in (
        ("server", "--server"),
        ("phone", "--phone"),
        ("client_type", "--client-type"),
        ("fallback", "--fallback"),
    ):
        value = (values.get(key) or "").strip()
        if value:
            argv += [option, value]
    if password_env:
        argv += ["--password-env", PASSWORD_ENV]
    return argv


def spawn_options(windows: bool | None = None) -> dict[str, Any]:
    """Popen options that detach the agent from Excel's Python: it outlives the macro."""
    windows = (os.name == "nt") if windows is None else windows
    if windows:
        flags = (
            getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
            | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
            | getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
        )
        return {"creationflags": flags, "close_fds": True}
    return {"start_new_session": True, "close_fds": True}


def agent_log(workbook: str | Path) -> Path:
    folder = paths.home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"agent-{paths.workbook_id(workbook)}.log"


def start_agent(
    workbook: str | Path,
    values: Mapping[str, str],
    password: str | None = None,
    *,
    python: str | None = None,
) -> subprocess.Popen:
    """Start a detached agent for ``workbook``; its output goes to :func:`agent_log`.

    ``password`` is passed through the child's environment only when the OS keyring could
    not keep it (the agent otherwise reads the keyring itself); never on the command line.
    """
    log_path = agent_log(workbook)
    if log_path.exists() and log_path.stat().st_size > 2_000_000:
        log_path.replace(log_path.with_suffix(".log.1"))
    env = dict(os.environ)
    env["PZ_LANG"] = current_lang()  # the agent's messages in the user's language
    env["PYTHONIOENCODING"] = "utf-8"  # Cyrillic in the log on any Windows code page
    if password is not None:
        env[PASSWORD_ENV] = password
    argv = agent_command(workbook, values, python=python, password_env=password is not None)
    with open(log_path, "ab") as out:
        out.write(f"\n--- {datetime.now():%Y-%m-%d %H:%M:%S} start\n".encode())
        out.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            **spawn_options(),
        )


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    last = text.rsplit("\n--- ", 1)[-1].splitlines()[1:]  # this start's lines only
    return "\n".join(line.removeprefix("pz-excel: ") for line in last if line.strip())[-1500:]


def wait_for_agent(
    workbook: str | Path,
    proc: subprocess.Popen | None,
    timeout: float = CONNECT_WAIT,
) -> dict[str, Any]:
    """Wait until the new agent answers and its connection is past "connecting".

    Returns its status (possibly still "connecting" after ``timeout``). Raises a
    :class:`UserError` with the agent's own last words if the process ends first.
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            if status is not None and status.get("state") == "stopped":
                return status
            tail = _log_tail(agent_log(workbook))
            raise UserError(
                Text(
                    f"The agent stopped (exit code {proc.returncode}):\n{tail}",
                    f"Агент остановился (код {proc.returncode}):\n{tail}",
                )
            )
        client = agent_for(workbook, timeout=1.0)
        if client is not None:
            try:
                status = client.get("/status")
            except AgentUnavailable:
                status = None
            if status is not None and status.get("state") != "connecting":
                return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if status is not None:
                return status
            raise UserError(
                Text(
                    f"The agent did not start within {timeout:.0f} s; see {agent_log(workbook)}",
                    f"Агент не запустился за {timeout:.0f} с; см. {agent_log(workbook)}",
                )
            )
        if proc is not None:
            try:  # sleeps, but wakes at once if the agent exits
                proc.wait(min(0.1, remaining))
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(min(0.1, remaining))


def place_call(client: ApiClient, pick: Pick) -> tuple[bool, Text]:
    """POST /call for a button press (no once-key: a press is a deliberate dial)."""
    return call_message(pick, client.post("/call", {"number": pick.to_dial}))


# ====================================================================== ribbon entry points


def _macro(action: Callable[[Any], None]) -> Callable[[], None]:
    """A ribbon entry point: finds the workbook, runs ``action``, shows any problem."""

    @functools.wraps(action)
    def run() -> None:
        from pz_excel.books import livebook

        book = livebook.caller_book()
        title = str(TITLE)
        try:
            action(book)
        except AgentUnavailable:
            livebook.message_box(book, str(not_running_message()), title)
        except UserError as exc:
            livebook.message_box(book, str(exc.text), title)
        except BookLocked:  # a cell in edit mode or a dialog open: COM refuses for now
            livebook.status_bar(book, str(EXCEL_BUSY))
        except Exception as exc:  # noqa: BLE001 - a message box, never a traceback popup
            where = _log_crash(action.__name__)
            livebook.message_box(
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
    from pz_excel.books import livebook

    raw = livebook.book_path(book)
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
    """This workbook's agent, else the one running agent (for a second open workbook)."""
    from pz_excel.books import livebook

    raw = livebook.book_path(book)
    found = agent_for(raw, timeout) if raw else None
    return found or ApiClient.discover(workbook=raw or None, timeout=timeout)


def _row_reader(book: Any) -> RowReader:
    from pz_excel.books import livebook

    return lambda sheet, row: livebook.row_values(book, sheet, row)


def _settings_table(book: Any) -> list[list]:
    from pz_excel.books import livebook

    table = livebook.sheet_table(book, SETTINGS.names)
    if not table:
        raise UserError(
            Text(
                "This workbook has no Settings sheet. Create a workbook with: pz-excel init",
                "В книге нет листа «Настройки». Создайте книгу командой: pz-excel init",
            )
        )
    return table


def _password_for(book: Any, server: str, phone: str) -> tuple[bool, str | None]:
    """(go on?, password for the child's environment) — asks once, keeps it in the keyring."""
    from pz_excel.books import livebook

    if credentials.get_password(server, phone):
        return True, None  # the agent reads the keyring itself
    answer = livebook.input_box(
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
    from pz_excel.books import livebook

    path = _saved_path(book)
    running = agent_for(path)
    if running is not None:
        livebook.message_box(book, status_message(running.get("/status")), str(TITLE))
        return
    values = settings_values(parse_settings(_settings_table(book)))
    problems = validate_settings(values)
    if problems:
        raise UserError(problems_text(problems))
    go_on, password = _password_for(book, values["server"], values["phone"])
    if not go_on:
        return
    livebook.status_bar(book, str(Text("Connecting…", "Подключение…")))
    try:
        proc = start_agent(path, values, password)
        st = wait_for_agent(path, proc)
    finally:
        livebook.status_bar(book, "")
    text = status_message(st)
    if st.get("state") == "stopped":
        text += "\n\n" + str(
            Text(
                "If the password is wrong, change it with Settings and press Connect again.",
                "Если пароль неверен, измените его в «Настройках» и снова нажмите «Подключить».",
            )
        )
    livebook.message_box(book, text, str(TITLE))


def _disconnect(book: Any) -> None:
    from pz_excel.books import livebook

    path = livebook.book_path(book)
    client = agent_for(path) if path else None
    if client is None:
        livebook.message_box(book, str(NOT_RUNNING), str(TITLE))
        return
    client.post("/stop")
    livebook.status_bar(book, str(Text("Disconnected.", "Отключено.")))


def _dial(book: Any, pick: Pick) -> None:
    from pz_excel.books import livebook

    ok, text = place_call(_client(book, CALL_TIMEOUT), pick)
    if ok:
        livebook.status_bar(book, str(text))
    else:
        livebook.message_box(book, str(text), str(TITLE))


def _call_selected(book: Any) -> None:
    from pz_excel.books import livebook

    pick = pick_number(livebook.selection_values(book), _row_reader(book))
    assert pick is not None  # only tables_only picks may be None
    _dial(book, pick)


def _call_back(book: Any) -> None:
    from pz_excel.books import livebook

    pick = pick_number(
        livebook.selection_values(book), _row_reader(book), tables=(CALLS,), tables_only=True
    )
    if pick is None:  # not on a Calls row: the newest missed call nobody returned
        client = _client(book)
        owner = owner_for_extension(livebook.sheet_table(book, MANAGERS.names), client.info.phone)
        missed = client.get("/missed", owner=owner).get("calls") or []
        call = latest_missed(missed)
        if call is None:
            livebook.message_box(
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
        livebook.status_bar(
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
    from pz_excel.books import livebook

    livebook.message_box(book, status_message(_client(book).get("/status")), str(TITLE))


def _refresh_contacts(book: Any) -> None:
    from pz_excel.books import livebook

    result = _client(book, timeout=30.0).post("/refresh")
    livebook.message_box(book, str(refresh_message(result)), str(TITLE))


def _settings(book: Any) -> None:
    from pz_excel.books import livebook

    table = _settings_table(book)
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
        answer = livebook.input_box(book, str(prompt), str(TITLE))
        if answer is None:
            return  # cancelled: nothing written
        new[key] = apply_setting_answer(current, answer, required)
    problems = validate_settings(new)
    if problems:
        raise UserError(problems_text(problems))
    for row, col, value in setting_writes(cells, new, len(table), lang):
        livebook.write_cell(book, SETTINGS.names, row, col, value)
    password = livebook.input_box(
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
    path = livebook.book_path(book)
    if path and agent_for(path) is not None:
        done = Text(
            f"{done.en}\nDisconnect and Connect again to use them.",
            f"{done.ru}\nНажмите «Отключить» и снова «Подключить», чтобы они вступили в силу.",
        )
    livebook.message_box(book, str(done), str(TITLE))


connect = _macro(_connect)
disconnect = _macro(_disconnect)
call_selected = _macro(_call_selected)
call_back = _macro(_call_back)
status = _macro(_status)
refresh_contacts = _macro(_refresh_contacts)
settings = _macro(_settings)
