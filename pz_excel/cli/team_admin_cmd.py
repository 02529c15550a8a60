"""``pz-excel team user add | list | remove`` and ``pz-excel team export``: the team
server's users (a bearer token per manager, ``team/users.py``) and its calls out to a new
.xlsx or .csv (``team/export.py``). Both work on the team database (``--db``, as
``team run`` takes it), whether a team server runs or not.

The ``team`` group itself is ``cli/team_cmd.py``'s (its ``SUBCOMMANDS`` name these).
"""

from __future__ import annotations

import socket
import time
from datetime import date
from pathlib import Path

import click

from pz_excel.i18n import Text, UserError, current_lang, tr

DB_ENV = "PZ_TEAM_DB"


def _db_option(fn):  # type: ignore[no-untyped-def]
    return click.option(
        "--db", "db", required=True, envvar=DB_ENV, metavar="DSN|PATH",
        help=tr(f"The team database: postgresql://… or an SQLite file, as team run --db "
                f"(or the variable {DB_ENV}).",
                f"База данных команды: postgresql://… или файл SQLite, как в team run --db "
                f"(или переменная {DB_ENV})."),
    )(fn)


def _day(ctx: click.Context, param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(str(Text(f"'{value}' is not a date YYYY-MM-DD",
                                          f"«{value}» — не дата ГГГГ-ММ-ДД"))) from None


def _where(db: object) -> tuple[str, str]:
    """The team API's address (the leader's, if one ever ran) and its pin, for the hint."""
    from pz_excel.agent import teamlink
    from pz_excel.connector import tls as tlsutil
    from pz_excel.team import leader, tlscert

    url = ""
    try:
        leader.ensure_table(db)  # type: ignore[arg-type]
        found = leader.read_leader(db)  # type: ignore[arg-type]
        url = found.api if found is not None else ""
    except Exception:  # noqa: BLE001 - only a hint: the default address does as well
        url = ""
    url = url or f"https://{socket.gethostname()}:{teamlink.DEFAULT_PORT}"
    cert = tlscert.team_dir() / "cert.pem"
    try:
        pin = tlsutil.fingerprint_sha256(cert.read_bytes())
    except (OSError, ValueError):
        pin = "SHA256"
    return url, pin


@click.group("user", help=tr(
    "Who may use the team API: a token per manager's extension.",
    "Кто может пользоваться API команды: токен на добавочный каждого менеджера."))
def user_command() -> None:
    pass


@user_command.command("add", help=tr(
    "Issue a token for extension EXT and print it (once: it is stored only hashed). "
    "An extension that has a token gets a new one; the old one stops working.",
    "Выдать токен добавочному EXT и напечатать его (один раз: хранится только хеш). "
    "Если у добавочного уже есть токен, выдаётся новый, а старый перестаёт действовать."))
@click.argument("extension", metavar="EXT")
@click.option("--name", default="", help=tr("The manager's name.", "Имя менеджера."))
@click.option("--admin", is_flag=True, help=tr(
    "An administrator rather than a manager.", "Администратор, а не менеджер."))
@_db_option
def add_command(extension: str, name: str, admin: bool, db: str) -> None:
    from pz_excel.team.users import ADMIN, MANAGER, Users, check_extension

    ext = check_extension(extension)
    with Users(db) as users:
        before = users.get(ext)
        token = users.add(ext, name, ADMIN if admin else MANAGER)
        url, pin = _where(users.db)
    if before is not None and before.active:
        click.echo(str(Text(f"Extension {ext} had a token: it no longer works; the new one:",
                            f"У добавочного {ext} был токен — он больше не действует; "
                            "новый токен:")))
    else:
        click.echo(str(Text(f"Token for extension {ext} (shown only now, keep it):",
                            f"Токен для добавочного {ext} (показывается только сейчас, "
                            "сохраните его):")))
    click.echo(token)
    click.echo(str(Text("The manager starts the agent with it:",
                        "Менеджер запускает агента с ним так:")))
    click.echo(f"  pz-excel run --team {url} --team-token {token} --team-pin {pin}")
    if pin == "SHA256":
        click.echo(str(Text("(SHA256: the certificate fingerprint pz-excel team run prints)",
                            "(SHA256 — отпечаток сертификата, его печатает pz-excel team run)")))


@user_command.command("list", help=tr("The users with a valid token.",
                                      "Пользователи с действующим токеном."))
@click.option("--all", "everyone", is_flag=True, help=tr(
    "Also the removed ones.", "Вместе с удалёнными."))
@_db_option
def list_command(everyone: bool, db: str) -> None:
    from pz_excel.team.users import Users

    with Users(db) as users:
        found = users.list(revoked=everyone)
    if not found:
        click.echo(str(Text("No users yet: pz-excel team user add EXT",
                            "Пользователей пока нет: pz-excel team user add EXT")))
        return
    for user in found:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(user.created))
        role = str(Text("admin", "администратор")) if user.role == "admin" else str(
            Text("manager", "менеджер"))
        gone = "" if user.active else str(Text(" (removed)", " (удалён)"))
        click.echo(f"{user.extension:>6}  {user.name or '-'}  {role}  {since}{gone}")


@user_command.command("remove", help=tr(
    "Revoke extension EXT's token: its requests are refused from now on.",
    "Отозвать токен добавочного EXT: его запросы с этого момента отклоняются."))
@click.argument("extension", metavar="EXT")
@_db_option
def remove_command(extension: str, db: str) -> None:
    from pz_excel.team.users import Users, check_extension

    ext = check_extension(extension)
    with Users(db) as users:
        gone = users.remove(ext)
    if not gone:
        raise UserError(Text(f"extension {ext} has no token", f"у добавочного {ext} нет токена"))
    click.echo(str(Text(f"The token of extension {ext} is revoked.",
                        f"Токен добавочного {ext} отозван.")))


@click.command("export", help=tr(
    "Write the team's calls started from --from to --to (both days whole) to a NEW .xlsx "
    "or .csv file, in the Calls sheet's columns.",
    "Выгрузить звонки команды, начатые с --from по --to (оба дня целиком), в НОВЫЙ файл "
    ".xlsx или .csv, в столбцах листа «Звонки»."))
@_db_option
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", callback=_day,
              help=tr("The first day.", "Первый день."))
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", callback=_day,
              help=tr("The last day.", "Последний день."))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help=tr("The file to write: FILE.xlsx or FILE.csv.",
                      "Файл для записи: ФАЙЛ.xlsx или ФАЙЛ.csv."))
@click.option("--lang", type=click.Choice(["en", "ru"]), default=None, help=tr(
    "Headers' and words' language (default: this program's).",
    "Язык заголовков и слов (по умолчанию — язык программы)."))
@click.option("--force", is_flag=True, help=tr("Overwrite an existing file.",
                                               "Перезаписать существующий файл."))
def export_command(db: str, first: date, last: date, out: Path, lang: str | None,
                   force: bool) -> None:
    from pz_excel.team import export

    if out.suffix.lower() not in (".xlsx", ".csv"):
        raise UserError(Text(f"{out.name}: give a file name ending in .xlsx or .csv",
                             f"{out.name}: укажите имя файла с окончанием .xlsx или .csv"))
    if out.is_dir():
        raise UserError(Text(f"{out} is a folder: give a file name, e.g. {out / 'calls.xlsx'}",
                             f"{out} — это папка: укажите имя файла, например "
                             f"{out / 'calls.xlsx'}"))
    if out.exists() and not force:
        raise UserError(Text(f"{out} already exists; use --force to overwrite it",
                             f"{out} уже существует; чтобы перезаписать, укажите --force"))
    export.day_range(first, last)  # --to before --from: said before anything is opened
    started = time.monotonic()
    shown = [0.0]

    def progress(n: int) -> None:  # a long export says how far it got, once a second
        now = time.monotonic()
        if n and now - started >= 1.0 and now - shown[0] >= 1.0:
            shown[0] = now
            click.echo(str(Text(f"  {n} calls…", f"  {n} звонков…")), err=True)

    team_db = export.open_team_db(db)
    try:
        count = export.export(team_db, first, last, out, lang=lang or current_lang(),
                              force=force, progress=progress)
    finally:
        team_db.close()
    took = time.monotonic() - started
    click.echo(str(Text(
        f"{count} calls ({first} – {last}) written to {out.resolve()} in {took:.1f} s",
        f"{count} звонков ({first} – {last}) записано в {out.resolve()} за {took:.1f} с")))
