"""``pz-excel init``: write the CRM workbook template."""

from __future__ import annotations

from pathlib import Path

import click

from pz_excel.i18n import Text, current_lang, tr


@click.command(
    "init",
    help=tr(
        "Write the CRM workbook template (Contacts, Managers, Calls, Settings) to BOOK.",
        "Создать книгу-шаблон CRM (Контакты, Менеджеры, Звонки, Настройки) в файле BOOK.",
    ),
)
# dir_okay: a folder given by mistake gets our bilingual line from write_template, not
# click's English usage error.
@click.argument("book", type=click.Path(path_type=Path))
@click.option(
    "--lang",
    type=click.Choice(["en", "ru"]),
    default=None,
    help=tr(
        "Sheet names and headers language (default: your locale).",
        "Язык листов и заголовков (по умолчанию — язык системы).",
    ),
)
@click.option("--force", is_flag=True, help=tr("Overwrite an existing file.", "Перезаписать файл."))
@click.option(
    "--server",
    default="",
    help=tr(
        "Connector URL to put on the Settings sheet, e.g. ws://pbx:10150.",
        "Адрес коннектора для листа «Настройки», например ws://pbx:10150.",
    ),
)
@click.option(
    "--phone",
    default="",
    help=tr("Your extension, for the Settings sheet.", "Ваш добавочный для листа «Настройки»."),
)
@click.option(
    "--area-code",
    default="",
    help=tr(
        "City area code for local 5-7 digit numbers, e.g. 343 (Settings sheet).",
        "Код города для местных номеров из 5–7 цифр, например 343 (лист «Настройки»).",
    ),
)
def init_command(
    book: Path, lang: str | None, force: bool, server: str, phone: str, area_code: str
) -> None:
    """Write the CRM workbook template (Contacts, Managers, Calls, Settings)."""
    from pz_excel.books.settings import checked_settings
    from pz_excel.books.template import write_template

    lang = lang or current_lang()
    # Bad values are refused before the file is written: a new user must not find them
    # only when the agent fails to connect.
    settings = checked_settings(server=server, phone=phone, area_code=area_code)
    path = write_template(book, lang=lang, force=force, settings=settings or None)
    click.echo(str(Text(f"Workbook written: {path}", f"Книга создана: {path}")))
