"""click's own words in Russian: ``Usage:``, ``Options``, its error messages.

click marks its texts for gettext (``from gettext import gettext as _`` in each module) but
ships no catalogues. A Russian user must not meet "Missing argument" under a Russian help
text, so each click module's ``_``/``ngettext`` is pointed at this table, which answers in the
language current at the call (English passes through; a process that runs commands in both,
such as the test suite, gets each in its own); a text missing from it stays English (a newer
click may add some).
"""

from __future__ import annotations

import importlib

from pz_excel.i18n import current_lang

RU = {
    "Usage:": "Использование:",
    "Options": "Параметры",
    "Commands": "Команды",
    "Positional arguments": "Аргументы",
    "Show this message and exit.": "Показать эту справку и выйти.",
    "Show the version and exit.": "Показать версию и выйти.",
    "%(prog)s, version %(version)s": "%(prog)s, версия %(version)s",
    "Error: {message}": "Ошибка: {message}",
    "Try '{command} {option}' for help.": "Справка: '{command} {option}'.",
    "Aborted!": "Прервано.",
    "Missing argument": "Не указан аргумент",
    "Missing option": "Не указан параметр",
    "Missing parameter": "Не указан параметр",
    "Missing parameter: {param_name}": "Не указан параметр: {param_name}",
    "Missing {param_type}": "Не указан {param_type}",
    "Missing command.": "Не указана команда.",
    "No such command {name!r}.": "Нет такой команды {name!r}.",
    "No such option {name!r}.": "Нет такого параметра {name!r}.",
    "Option {name!r} does not take a value.": "Параметр {name!r} не принимает значения.",
    "Invalid value for {param_hint}: {message}": "Неверное значение {param_hint}: {message}",
    "Invalid value: {message}": "Неверное значение: {message}",
    "Argument {name!r} takes {nargs} values.": "Аргумент {name!r} принимает {nargs} значения.",
    "Choose from:\n\t{choices}": "Выберите из:\n\t{choices}",
    "{value!r} is not a valid {number_type}.": "{value!r} — не {number_type}.",
    "{value} is not in the range {range}.": "{value} вне диапазона {range}.",
    "{value!r} is not a valid UUID.": "{value!r} — не UUID.",
    "{name} {filename!r} does not exist.": "{name} {filename!r} не существует.",
    "{name} {filename!r} is a file.": "{name} {filename!r} — это файл.",
    "{name} {filename!r} is a directory.": "{name} {filename!r} — это папка.",
    "{name} {filename!r} is not readable.": "{name} {filename!r} недоступен для чтения.",
    "{name} {filename!r} is not writable.": "{name} {filename!r} недоступен для записи.",
    "{name} {filename!r} is not executable.": "{name} {filename!r} не исполняемый.",
    "Could not open file {filename!r}: {message}": (
        "Не удалось открыть файл {filename!r}: {message}"
    ),
    "file": "файл",
    "directory": "папка",
    "path": "путь",
    "default: {default}": "по умолчанию: {default}",
    "env var: {var}": "переменная окружения: {var}",
    "(dynamic)": "(вычисляется)",
    "deprecated": "устарело",
    "Repeat for confirmation": "Повторите для проверки",
    "Error: The two entered values do not match.": "Ошибка: введённые значения не совпадают.",
    "Error: invalid input": "Ошибка: неверный ввод",
    "Do you want to continue?": "Продолжить?",
    "Confirm the action without prompting.": "Подтвердить без вопроса.",
    "Press any key to continue...": "Нажмите любую клавишу…",
    "unknown error": "неизвестная ошибка",
    "integer": "целое число",
    "float": "число",
    "boolean": "да/нет",
    "text": "текст",
}

# (singular, plural) -> Russian (one text: the counts here are small and the forms agree)
RU_PLURAL = {
    ("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})"):
        "Лишние аргументы: ({args})",
    ("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)"):
        "Может быть, {possibility}?",
    ("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments."):
        "Параметру {name!r} нужно значение.",
    ("{value!r} is not {choice}.", "{value!r} is not one of {choices}."):
        "{value!r} — не из списка: {choices}.",
    ("Takes {nargs} values but 1 was given.", "Takes {nargs} values but {len} were given."):
        "Нужно значений: {nargs}, дано: {len}.",
}

MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types", "utils")


def gettext_ru(message: str) -> str:
    if current_lang() != "ru":
        return message
    return RU.get(message, message)


def ngettext_ru(singular: str, plural: str, n: int) -> str:
    text = RU_PLURAL.get((singular, plural)) if current_lang() == "ru" else None
    if text is None:
        return singular if n == 1 else plural
    if "{possibility}" in text and n != 1:  # the plural English form names the list
        return "(Может быть, одно из: {possibilities}?)"
    if "{choices}" in text and n == 1:
        return "{value!r} — не {choice}."
    return text


def install() -> None:
    """Point click's message functions at the table (idempotent; any language)."""
    for name in MODULES:
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = gettext_ru  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext_ru  # type: ignore[attr-defined]
