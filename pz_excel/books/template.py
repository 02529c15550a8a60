"""The CRM workbook template: Contacts, Managers, Calls and Settings, in English or Russian.

Every sheet is an Excel table with a frozen header row and sensible widths. Phone columns
are text (format ``@``, values written as strings) so Excel never turns ``89125554433``
into ``8.91E+10`` or drops a leading ``+``; Start/End are real datetimes. The Settings
sheet never holds a password. Files are written atomically (temp file + ``os.replace``).

``demo_contacts`` makes realistic, deterministic Russian contacts for the demo and the
benchmarks; ``write_contacts_fast`` writes a million of them with openpyxl's write-only
mode (about a minute; the normal mode would need gigabytes).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import secrets
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.filters import AutoFilter
from openpyxl.worksheet.table import Table, TableColumn, TableStyleInfo

from pz_excel.crm.schema import (
    CALLS,
    CONTACTS,
    MANAGERS,
    SETTING_HELP,
    SETTING_ROWS,
    SETTINGS,
    CallRow,
    Sheet,
    word,
)
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.cells import FORMULA_START, safe_text
from pz_excel.xlsx.package import quote_title

TABLE_STYLE = "TableStyleMedium2"
#: Table names are ASCII in both languages, so formulas and macros work in either.
TABLE_NAMES = {
    "contacts": "Contacts",
    "managers": "Managers",
    "calls": "Calls",
    "settings": "Settings",
}
DATETIME_FORMATS = {"en": "yyyy-mm-dd hh:mm:ss", "ru": "dd.mm.yyyy hh:mm:ss"}
TEXT_FORMAT = "@"
#: The Owner drop-down lists this many rows of Managers (a team's managers fit easily).
MANAGER_LIST_ROWS = 1000
MAX_ROWS = 1_048_576  # Excel's last row: the drop-down covers contacts added later too
#: Text starting like this would be a formula to Excel; written as text with a quote prefix.

ContactRow = Sequence[object] | Mapping[str, object]


def write_template(
    path: Path | str,
    lang: str = "en",
    *,
    force: bool = False,
    contacts: Iterable[ContactRow] | None = None,
    managers: Iterable[Sequence[object]] | Mapping[str, object] | None = None,
    settings: Mapping[str, object] | None = None,
    calls: Iterable[CallRow] | None = None,
) -> Path:
    """Write the CRM workbook to ``path`` and return its resolved path.

    ``contacts``: rows in ``schema.CONTACTS`` column order (name, phone, owner, company,
    notes; trailing ones may be left out) or dicts by column key. ``managers``: (owner,
    extension) pairs or a dict. ``settings``: values by ``schema.SETTING_ROWS`` key.
    ``calls``: ``CallRow`` objects for a pre-filled Calls sheet.
    Refuses to overwrite an existing file unless ``force``.
    """
    return _write(path, lang, force, contacts, managers, settings, calls, styled=True)


def write_contacts_fast(
    path: Path | str,
    n: int,
    *,
    lang: str = "en",
    managers: Sequence[tuple[str, str]] | None = None,
    seed: int = 1,
) -> Path:
    """A template holding ``n`` demo contacts, for benchmarks (it overwrites ``path``):
    the same workbook as ``write_template`` but contact cells carry no per-cell style (the
    Phone column's text format is set on the column), which keeps a million rows to about
    a minute."""
    managers = list(managers or DEMO_MANAGERS)
    rows = _demo_rows(n, managers, seed)
    return _write(path, lang, True, rows, managers, None, None, styled=False)


# ---------------------------------------------------------------------- writing


def _write(
    path: Path | str,
    lang: str,
    force: bool,
    contacts: Iterable[ContactRow] | None,
    managers: Iterable[Sequence[object]] | Mapping[str, object] | None,
    settings: Mapping[str, object] | None,
    calls: Iterable[CallRow] | None,
    *,
    styled: bool,
    calls_only: bool = False,
) -> Path:
    if lang not in ("en", "ru"):
        raise UserError(
            Text(
                f"unknown language '{lang}': use en or ru",
                f"неизвестный язык «{lang}»: укажите en или ru",
            )
        )
    path = Path(path).expanduser()
    if path.is_dir():
        example = path / "crm.xlsx"
        raise UserError(
            Text(
                f"{path} is a folder: give the workbook's file name, e.g. {example}",
                f"{path} — это папка: укажите имя файла книги, например {example}",
            )
        )
    if path.suffix.lower() != ".xlsx":
        raise UserError(
            Text(
                f"{path.name}: the workbook must be an .xlsx file",
                f"{path.name}: книга должна быть файлом .xlsx",
            )
        )
    if path.exists() and not force:
        raise UserError(
            Text(
                f"{path} already exists; use --force to overwrite it",
                f"{path} уже существует; чтобы перезаписать, укажите --force",
            )
        )
    settings = dict(settings or {})
    unknown = set(settings) - set(SETTING_ROWS)
    if unknown:  # "password" included: it never goes into a workbook
        raise ValueError(f"unknown settings for the Settings sheet: {sorted(unknown)}")
    if isinstance(managers, Mapping):
        managers = list(managers.items())

    # The temp file sits next to the target (same file system, so os.replace is atomic) and
    # is created with open(): it gets the usual umask permissions, not mkstemp's 0600 that
    # would lock a shared team workbook away from colleagues. It is opened before the book
    # is built: openpyxl's write-only sheets left unsaved print tracebacks when collected.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp.xlsx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(tmp, "xb")  # closed by the "with out" below, after the save
    except OSError as exc:
        raise UserError(write_problem(path, exc, tmp=tmp)) from None
    replacing = False
    try:
        with out:
            book = (_calls_book(lang, calls) if calls_only
                    else _book(lang, contacts, managers, settings, calls, styled))
            book.save(out)
        replacing = True
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(write_problem(path, exc, tmp=tmp, replacing=replacing)) from None
    finally:
        with contextlib.suppress(OSError):  # never hide the real error behind this one
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path.resolve()


def _book(
    lang: str,
    contacts: Iterable[ContactRow] | None,
    managers: Iterable[Sequence[object]] | None,
    settings: Mapping[str, object],
    calls: Iterable[CallRow] | None,
    styled: bool,
) -> Workbook:
    """The new book (a template we create, so openpyxl may write it)."""
    wb = Workbook(write_only=True)
    dt_format = DATETIME_FORMATS[lang]
    people = _sheet(
        wb, CONTACTS, lang, (_contact_values(r) for r in contacts or ()), styled, dt_format
    )
    people.data_validations.append(_owner_choice(lang))
    _sheet(wb, MANAGERS, lang, ([owner, ext] for owner, ext in managers or ()), True, dt_format)
    _sheet(wb, CALLS, lang, (_call_values(c, lang) for c in calls or ()), True, dt_format)
    pick = 1 if lang == "ru" else 0
    _sheet(
        wb,
        SETTINGS,
        lang,
        (
            [label[pick], settings.get(key, ""), SETTING_HELP[key][pick]]
            for key, label in SETTING_ROWS.items()
        ),
        True,
        dt_format,
        text_columns={"value"},
    )
    return wb


def write_calls_book(
    path: Path | str, calls: Iterable[CallRow], lang: str = "en", *, force: bool = False
) -> Path:
    """A new workbook holding only a Calls sheet (``pz-excel team export``): the CRM
    workbook's columns, headers and formats, streamed (write-only mode), written atomically.
    Refuses to overwrite an existing file unless ``force``."""
    return _write(path, lang, force, None, None, None, calls, styled=True, calls_only=True)


def _calls_book(lang: str, calls: Iterable[CallRow] | None) -> Workbook:
    wb = Workbook(write_only=True)
    _sheet(wb, CALLS, lang, (_call_values(c, lang) for c in calls or ()), True,
           DATETIME_FORMATS[lang])
    return wb


def write_problem(
    path: Path, exc: OSError, *, tmp: Path | None = None, replacing: bool = False
) -> Text:
    """Why the new workbook ``path`` could not be written, as one line naming the path and
    the cause. ``tmp``: the temp file beside it (a user knows its folder, not its name);
    ``replacing``: the book was written and only putting it in place failed."""
    where = Path(exc.filename) if exc.filename else path
    if tmp is not None and where == tmp:
        where = path.parent
    code = exc.errno
    if replacing and isinstance(exc, PermissionError) and path.exists():
        # The file itself refuses: on Windows that is a book open in Excel.
        return Text(
            f"cannot replace {path}: the file is in use (open in Excel?). Close it and retry",
            f"не удалось заменить {path}: файл занят (открыт в Excel?). Закройте его и "
            "повторите",
        )
    if code == errno.EISDIR:
        return Text(
            f"cannot write {path}: it is a folder", f"не удалось записать {path}: это папка"
        )
    if code in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder must be
        # mkdir names the folder it could not make; the user needs the file in its way
        where = next((p for p in (where, *where.parents) if p.is_file()), where)
        return Text(
            f"cannot write {path}: {where} is a file, not a folder",
            f"не удалось записать {path}: {where} — файл, а не папка",
        )
    if code == errno.ENOENT:
        if not path.parent.is_dir():
            return Text(
                f"cannot write {path}: the folder {path.parent} does not exist and cannot "
                "be created",
                f"не удалось записать {path}: папки {path.parent} нет, и создать её нельзя",
            )
        return Text(  # /proc and the like: a folder, but no files can be created in it
            f"cannot write {path}: files cannot be created in {path.parent}",
            f"не удалось записать {path}: в папке {path.parent} нельзя создавать файлы",
        )
    if code == errno.EROFS:
        return Text(
            f"cannot write {path}: the file system is read-only",
            f"не удалось записать {path}: файловая система только для чтения",
        )
    if code in (errno.EACCES, errno.EPERM):
        return Text(
            f"cannot write {path}: permission denied for {where}",
            f"не удалось записать {path}: нет прав на запись в {where}",
        )
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return Text(
            f"cannot write {path}: the disk is full", f"не удалось записать {path}: диск заполнен"
        )
    reason = exc.strerror or type(exc).__name__
    return Text(f"cannot write {path}: {reason}", f"не удалось записать {path}: {reason}")


def _owner_choice(lang: str) -> DataValidation:
    """A drop-down on Contacts' Owner column listing the Managers sheet's names, so owners
    are picked rather than misspelled. An extension typed instead (also a valid owner) or a
    name not yet in Managers only gets a note the user can accept: nothing is refused."""
    owner = get_column_letter(CONTACTS.columns.index(CONTACTS.column("owner")) + 1)
    names = get_column_letter(MANAGERS.columns.index(MANAGERS.column("owner")) + 1)
    source = f"{quote_title(MANAGERS.title(lang))}!${names}$2:${names}${MANAGER_LIST_ROWS}"
    ru = lang == "ru"
    choice = DataValidation(
        type="list",
        formula1=source,
        allow_blank=True,
        showErrorMessage=True,
        errorStyle="information",
        errorTitle="Ответственный" if ru else "Owner",
        error=(
            "Этого имени нет на листе «Менеджеры». Добавочный номер (например, 101) тоже "
            "подходит. Нажмите ОК, чтобы оставить значение."
            if ru
            else "This name is not on the Managers sheet. An extension (e.g. 101) works "
            "too. Click OK to keep the value."
        ),
        showInputMessage=True,
        promptTitle="Ответственный" if ru else "Owner",
        prompt=(
            "Выберите менеджера из списка (лист «Менеджеры») или введите добавочный номер."
            if ru
            else "Pick a manager from the list (Managers sheet) or type an extension."
        ),
    )
    choice.add(f"{owner}2:{owner}{MAX_ROWS}")
    return choice


def _contact_values(row: ContactRow) -> list[object]:
    if isinstance(row, Mapping):
        return [row.get(col.key) for col in CONTACTS.columns]
    values = list(row)[: len(CONTACTS.columns)]
    return values + [None] * (len(CONTACTS.columns) - len(values))


def _call_values(row: CallRow, lang: str) -> list[object]:
    values = row.values()
    for key in ("direction", "status"):
        if values[key]:
            values[key] = word(str(values[key]), lang)
    values["late"] = word("yes", lang) if values["late"] else ""
    return [values[col.key] for col in CALLS.columns]


def _sheet(
    wb: Workbook,
    sheet: Sheet,
    lang: str,
    rows: Iterable[Sequence[object]],
    styled: bool,
    dt_format: str,
    text_columns: set[str] | None = None,
) -> Any:  # openpyxl's write-only worksheet
    ws = wb.create_sheet(sheet.title(lang))
    ws.freeze_panes = "A2"  # the header row stays in view
    # Printable: landscape, one page wide, the header row on top of every page.
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = "9"  # A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "1:1"
    text_columns = {c.key for c in sheet.columns if c.kind == "phone"} | (text_columns or set())
    formats: list[str | None] = []
    for i, col in enumerate(sheet.columns, 1):
        dim = ws.column_dimensions[get_column_letter(i)]
        dim.width = col.width
        fmt = (
            TEXT_FORMAT
            if col.key in text_columns
            else dt_format
            if col.kind == "datetime"
            else "0"
            if col.kind == "int"
            else None
        )
        if fmt:
            dim.number_format = fmt  # cells users add later get it too
        formats.append(fmt)
    headers = [col.header(lang) for col in sheet.columns]
    ws.append(headers)
    count = 0
    for values in rows:
        out: list[object] = []
        for col, fmt, value in zip(sheet.columns, formats, values, strict=True):
            if value is not None and col.key in text_columns and not isinstance(value, str):
                value = _as_text(value)
            if isinstance(value, str):
                value = safe_text(value)
                # Text, never a formula. Text-format columns never evaluate; elsewhere the
                # quote prefix keeps "+7 …" or "=…" text when the cell is edited again.
                quote = value.startswith(FORMULA_START) and col.key not in text_columns
                if quote or value.startswith("="):
                    out.append(_styled(ws, col.kind, fmt if styled else None, value, quote))
                    continue
            if styled and value not in (None, ""):
                out.append(_styled(ws, col.kind, fmt, value))
            else:
                out.append(value)
        ws.append(out)
        count += 1
    if count == 0:
        ws.append([None] * len(headers))  # an Excel table needs one body row
    ref = f"A1:{get_column_letter(len(headers))}{max(count, 1) + 1}"
    table = Table(
        displayName=TABLE_NAMES[sheet.key],
        ref=ref,
        tableStyleInfo=TableStyleInfo(name=TABLE_STYLE, showRowStripes=True),
    )
    table.tableColumns = [TableColumn(id=i, name=h) for i, h in enumerate(headers, 1)]
    table.autoFilter = AutoFilter(ref=ref)
    with warnings.catch_warnings():  # "in write-only mode you must add table columns
        warnings.filterwarnings("ignore", message="In write-only mode")  # manually": done
        ws.add_table(table)
    return ws


def _as_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 89125554433.0 typed as a number → "89125554433"
    return str(value)


def _styled(ws, kind: str, fmt: str | None, value: object, quote: bool = False) -> WriteOnlyCell:  # type: ignore[no-untyped-def]
    cell = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl made "=…" a formula on assignment: undo that
        cell.quotePrefix = quote
    if fmt:
        cell.number_format = fmt
    if kind == "url" and isinstance(value, str) and value.startswith(("http://", "https://")):
        cell.hyperlink = value
        cell.style = "Hyperlink"
    return cell


# ---------------------------------------------------------------------- demo data

DEMO_MANAGERS = [("Анна Смирнова", "101"), ("Борис Иванов", "102"), ("Вера Петрова", "103")]

_SURNAMES = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев "
    "Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв "
    "Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов "
    "Поляков Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов Филиппов "
    "Комаров Давыдов Беляев Герасимов Богданов Осипов Сидоров Матвеев Титов Марков Миронов "
    "Крылов Куликов Карпов Власов Мельников Денисов Гаврилов Тихонов Казаков Афанасьев "
    "Данилов Савельев Тимофеев Фомин Чернов Абрамов Мартынов Ефимов Федотов Щербаков Назаров "
    "Калинин Исаев Чернышёв Быков Маслов Родионов Коновалов Лазарев Воронин Климов Филатов"
).split()
_SURNAMES_SKY = "Достоевский Вишневский Заболоцкий Покровский Успенский Чайковский".split()
_MALE = (
    "Александр Алексей Андрей Антон Артём Борис Вадим Валерий Виктор Владимир Геннадий "
    "Георгий Григорий Денис Дмитрий Евгений Егор Иван Игорь Илья Кирилл Константин Максим "
    "Михаил Никита Николай Олег Павел Пётр Роман Сергей Степан Фёдор Юрий Ярослав"
).split()
_FEMALE = (
    "Александра Алина Алла Анастасия Анна Валентина Валерия Вера Виктория Галина Дарья "
    "Екатерина Елена Елизавета Ирина Камила Ксения Лариса Любовь Людмила Марина Мария "
    "Надежда Наталья Нина Ольга Полина Светлана София Татьяна Ульяна Юлия Яна"
).split()
_FATHERS = (
    "Александр Алексей Андрей Борис Василий Виктор Владимир Дмитрий Иван Игорь Михаил "
    "Николай Олег Павел Пётр Сергей Фёдор Юрий"
).split()
_FORMS = ("ООО", "ООО", "ООО", "АО", "ПАО", "ИП", "ЗАО")
_ROOTS = (
    "Урал Сибирь Волга Север Юг Восток Запад Альфа Вега Дельта Орион Гранит Кедр "
    "Ладога Байкал Алтай Енисей Кама Обь Ока Нева Дон Тайга Полюс Меридиан Вектор "
    "Прогресс Сфера Импульс Квант Фактор Ресурс Монолит Бастион Горизонт Элемент"
).split()
_SUFFIXES = (
    "",
    "",
    *"Маш Строй Трейд Логистик Сервис Пром Снаб Энерго Торг Инвест Софт Агро "
    "Мед Транс Холдинг Групп Тех".split(),
)
_CITIES = (
    "Екатеринбург Москва Санкт-Петербург Новосибирск Казань Самара Пермь Челябинск "
    "Тюмень Уфа".split()
)
# Area codes: mobile (9xx) and a few cities. 999 is left out: demos use it for strangers.
_AREAS = (
    "912 922 902 950 953 904 908 982 343 495 812 383 843 846 342 351 345 347 915 926 916 "
    "903 905 910"
).split()
_NOTES = (
    "перезвонить после 15:00",
    "просил КП",
    "ждёт счёт",
    "VIP",
    "не звонить в пятницу",
    "бухгалтерия",
    "склад",
    "новый клиент",
)


_PATRONYMIC_STEMS = {
    "Пётр": "Петров",
    "Павел": "Павлов",
    "Василий": "Васильев",
    "Юрий": "Юрьев",
    "Дмитрий": "Дмитриев",
    "Алексей": "Алексеев",
    "Андрей": "Андреев",
    "Николай": "Николаев",
    "Сергей": "Сергеев",
    "Игорь": "Игорев",
}


def _patronymic(father: str, female: bool) -> str:
    return _PATRONYMIC_STEMS.get(father, father + "ов") + ("на" if female else "ич")


def _surname(male: str, female: bool) -> str:
    if not female:
        return male
    if male.endswith("ий"):
        return male[:-2] + "ая"
    return male + "а"


def _format_phone(area: str, sub: str, style: int) -> str:
    """The same number written the ways people write it, to exercise normalisation."""
    a, b, c = sub[:3], sub[3:5], sub[5:]
    if style == 0:
        return f"+7 ({area}) {a}-{b}-{c}"
    if style == 1:
        return f"8 {area} {a} {b} {c}"
    if style == 2:
        return f"8{area}{sub}"
    if style == 3:
        return f"+7{area}{sub}"
    return f"+7 {area} {a}-{b}-{c}"


def _demo_rows(
    n: int, managers: Sequence[tuple[str, str]], seed: int
) -> Iterable[tuple[str, str, str, str, str | None]]:
    """Yield ``n`` distinct contacts; the same ``seed`` gives the same rows."""
    rng = random.Random(seed)
    companies = []
    for _ in range(max(20, n // 8)):  # several contacts per company, as in B2B sales
        form = rng.choice(_FORMS)
        if form == "ИП":
            female = rng.random() < 0.4
            companies.append(
                f"ИП {_surname(rng.choice(_SURNAMES), female)} "
                f"{rng.choice(_FEMALE if female else _MALE)[0]}. "
                f"{rng.choice(_FATHERS)[0]}."
            )
        else:
            root = rng.choice(_ROOTS) + rng.choice(_SUFFIXES)
            city = f" ({rng.choice(_CITIES)})" if rng.random() < 0.2 else ""
            companies.append(f"{form} «{root}»{city}")
    names = [m[0] for m in managers]
    exts = [m[1] for m in managers]
    areas = len(_AREAS)
    offset = rng.randrange(10_000_000)
    random_ = rng.random
    choice = rng.choice
    for i in range(n):
        # i -> (area, subscriber) is one-to-one for i < 3e7 (7919 is prime to 10^7).
        area = _AREAS[i % areas]
        sub = f"{(i * 7919 + offset) % 10_000_000:07d}"
        female = random_() < 0.5
        surname = _surname(choice(_SURNAMES_SKY) if random_() < 0.03 else choice(_SURNAMES), female)
        first = choice(_FEMALE if female else _MALE)
        if random_() < 0.6:
            name = f"{surname} {first} {_patronymic(choice(_FATHERS), female)}"
        else:
            name = f"{first} {surname}"
        r = random_()
        if not managers or r < 0.03:
            owner = None  # a lead nobody owns yet
        elif r < 0.18:
            owner = choice(exts)
        else:
            owner = choice(names)
        note = choice(_NOTES) if random_() < 0.05 else None
        yield (name, _format_phone(area, sub, i % 5), owner, choice(companies), note)


def demo_contacts(
    n: int, managers: Sequence[tuple[str, str]] = DEMO_MANAGERS, seed: int = 7
) -> list[tuple[str, str, str, str]]:
    """``n`` realistic Russian contacts ``(name, phone, owner, company)``, deterministic for
    a ``seed``. Owners are mostly manager names, some extensions, a few left blank."""
    return [row[:4] for row in _demo_rows(n, managers, seed)]  # type: ignore[misc]
