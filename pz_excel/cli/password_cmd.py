"""``pz-excel password set | clear``: the connector password in the OS keyring, under the
key the agent reads (``credentials.keyring_user``), so ``pz-excel run`` finds it.

The password is asked with echo off, twice, and never taken on the command line (it
would stay in the shell history and show in the process list).
"""

from __future__ import annotations

from pathlib import Path

import click

from pz_excel.cli.agent_cmd import connector_target
from pz_excel.i18n import Text, UserError, tr


def _where_options(fn):
    fn = click.option(
        "--phone",
        "-p",
        default=None,
        help=tr(
            "Your extension (default: the workbook's Settings sheet).",
            "Ваш добавочный (по умолчанию — с листа «Настройки» книги).",
        ),
    )(fn)
    fn = click.option(
        "--server",
        "-s",
        default=None,
        help=tr(
            "Connector address, e.g. ws://pbx:10150 (default: the workbook's Settings sheet).",
            "Адрес коннектора, например ws://pbx:10150 (по умолчанию — с листа «Настройки» книги).",
        ),
    )(fn)
    fn = click.option(
        "--workbook",
        "-w",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=tr(
            "Read the connector address and extension from this workbook, as run does.",
            "Взять адрес коннектора и добавочный из этой книги, как это делает run.",
        ),
    )(fn)
    return fn


def _target(workbook: Path | None, server: str | None, phone: str | None) -> tuple[str, str]:
    if workbook is None and not (server and phone):
        raise UserError(
            Text(
                "say whose password it is: -w <workbook>, or --server and --phone",
                "укажите, чей это пароль: -w <книга> или --server и --phone",
            )
        )
    server, phone, _sheet = connector_target(workbook, server, phone)
    return server, phone


def _no_keyring(exc: BaseException) -> UserError:
    return UserError(
        Text(
            f"the OS keyring cannot be used here ({type(exc).__name__}: {exc}); give the "
            "password to pz-excel run in an environment variable instead: --password-env VAR",
            f"системное хранилище паролей здесь недоступно ({type(exc).__name__}: {exc}); "
            "передайте пароль pz-excel run через переменную окружения: --password-env VAR",
        )
    )


@click.group(
    "password",
    help=tr(
        "Store or remove the connector password in the OS keyring (where run looks for it).",
        "Сохранить или удалить пароль коннектора в системном хранилище паролей (там его ищет run).",
    ),
)
def password_command() -> None:
    pass


@password_command.command(
    "set",
    help=tr(
        "Ask for the password (not shown, typed twice) and store it in the OS keyring.",
        "Спросить пароль (не отображается, вводится дважды) и сохранить его в системном "
        "хранилище паролей.",
    ),
)
@_where_options
def set_command(workbook: Path | None, server: str | None, phone: str | None) -> None:
    from pz_excel.connector import credentials
    from pz_excel.protocol.login import MAX_PASSWORD_LENGTH

    server, phone = _target(workbook, server, phone)
    place = credentials.keyring_place(server, phone)
    password = click.prompt(
        str(
            Text(
                f"Connector password for extension {phone}",
                f"Пароль коннектора для добавочного {phone}",
            )
        ),
        hide_input=True,
        confirmation_prompt=True,
    )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(
            Text(
                f"the password is longer than {MAX_PASSWORD_LENGTH} characters "
                f"({len(password)}): the connector takes at most {MAX_PASSWORD_LENGTH}; "
                "nothing was stored",
                f"пароль длиннее {MAX_PASSWORD_LENGTH} символов ({len(password)}): коннектор "
                f"принимает не больше {MAX_PASSWORD_LENGTH}; ничего не сохранено",
            )
        )
    try:
        credentials.set_password(server, phone, password)
    except Exception as exc:  # noqa: BLE001 - no backend, locked, denied: one clear line
        raise _no_keyring(exc) from None
    click.echo(
        str(
            Text(
                f"Password stored in {place.en}; pz-excel run uses it.",
                f"Пароль сохранён ({place.ru}); pz-excel run будет его использовать.",
            )
        )
    )


@password_command.command(
    "clear",
    help=tr(
        "Remove the stored password from the OS keyring.",
        "Удалить сохранённый пароль из системного хранилища паролей.",
    ),
)
@_where_options
def clear_command(workbook: Path | None, server: str | None, phone: str | None) -> None:
    from pz_excel.connector import credentials

    server, phone = _target(workbook, server, phone)
    place = credentials.keyring_place(server, phone)
    try:
        removed = credentials.delete_password(server, phone)
    except Exception as exc:  # noqa: BLE001 - no backend, locked, denied: one clear line
        raise _no_keyring(exc) from None
    if removed:
        click.echo(str(Text(f"Password removed: {place.en}.", f"Пароль удалён: {place.ru}.")))
    else:
        click.echo(
            str(
                Text(
                    f"No password was stored in {place.en}: nothing to remove.",
                    f"Пароль не был сохранён ({place.ru}): удалять нечего.",
                )
            )
        )
