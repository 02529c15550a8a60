"""``pz-excel team …``: the team server (``run``) and who leads it (``status``).

Subcommands load lazily from ``SUBCOMMANDS`` (name → "module:attribute" and a short
bilingual line), like the top-level ``pz-excel`` group: another module adds its command
with one line there.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path

import click

from pz_excel.cli.agent_cmd import tls_options
from pz_excel.cli.console_log import setup_logging
from pz_excel.connector.tls_cli import chosen_pin, tls_click_options
from pz_excel.i18n import Text, UserError, tr
from pz_excel.signals import sigterm_sets
from pz_excel.team.config import DEFAULT_LISTEN

log = logging.getLogger(__name__)

SUBCOMMANDS = {
    "run": ("pz_excel.cli.team_cmd:run_command",
            Text("run a team server (leader or standby)",
                 "запустить сервер команды (ведущий или резервный)")),
    "status": ("pz_excel.cli.team_cmd:status_command",
               Text("who leads the team, since when, calls stored",
                    "кто ведущий, с какого времени, сколько звонков сохранено")),
    "user": ("pz_excel.cli.team_admin_cmd:user_command",
             Text("team API users and their tokens", "пользователи API команды и их токены")),
    "export": ("pz_excel.cli.team_admin_cmd:export_command",
               Text("the team's calls to a new .xlsx or .csv",
                    "звонки команды в новый файл .xlsx или .csv")),
}


class _LazyTeamGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr = SUBCOMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section(tr("Commands", "Команды")):
            formatter.write_dl([(n, str(SUBCOMMANDS[n][1])) for n in sorted(SUBCOMMANDS)])


@click.group(
    "team",
    cls=_LazyTeamGroup,
    help=tr(
        "The team server: one connection to the connector for the whole team, every call "
        "in one database, transfers routed by the contacts' Owner.",
        "Сервер команды: одно подключение к коннектору на всю команду, все звонки в одной "
        "базе данных, переводы по ответственному из контактов.",
    ),
)
def team_group() -> None:
    """The ``team`` group; subcommands from ``SUBCOMMANDS``."""


_DB_HELP = tr(
    "The team database: a postgresql:// DSN (two servers, failover) or an SQLite file "
    "(one machine).",
    "База данных команды: DSN postgresql:// (два сервера, резервирование) или файл SQLite "
    "(один компьютер).",
)


@click.command(
    "run",
    help=tr(
        "Run a team server in the foreground: a standby until it holds the leader lock, "
        "then the team's one connection to the connector. Ctrl+C stops it.",
        "Запустить сервер команды в этом окне: резервный, пока не получит блокировку "
        "ведущего, затем — единственное подключение команды к коннектору. Ctrl+C — "
        "остановить.",
    ),
)
@click.option("--server", "-s", required=True,
              help=tr("Connector address, e.g. ws://pbx:10150.",
                      "Адрес коннектора, например ws://pbx:10150."))
@click.option("--db", "db", required=True, metavar="DSN|PATH", help=_DB_HELP)
@click.option("--contacts", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help=tr("The shared CRM workbook with Contacts (only read).",
                      "Общая книга CRM с контактами (только чтение)."))
@click.option("--team-book", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help=tr("The team's book: Calls and Dashboard of everyone (created if missing).",
                      "Книга команды: звонки и сводка всех (создаётся, если её нет)."))
@click.option("--guid", default="pz-team", show_default=True,
              help=tr("Client GID of the team (the same on both servers).",
                      "GID клиента команды (одинаковый на обоих серверах)."))
@click.option("--password-env", metavar="VAR",
              help=tr("Read the connector password from this variable (default: the OS "
                      "keyring: pz-excel password set --server URL --phone GID).",
                      "Взять пароль коннектора из этой переменной (по умолчанию — из "
                      "хранилища паролей: pz-excel password set --server URL --phone GID)."))
@click.option("--fallback", default="",
              help=tr("Extension for unknown callers.", "Добавочный для неизвестных абонентов."))
@click.option("--area-code", default="",
              help=tr("City area code, e.g. 343: 5-7 digit numbers are then that city's.",
                      "Код города, например 343: номера из 5–7 цифр — номера этого города."))
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help=tr("Where the team API listens (HTTPS). 0.0.0.0:10190 opens it to the LAN.",
                      "Где слушает API команды (HTTPS). 0.0.0.0:10190 — доступен в сети."))
@click.option("--cert", "certfile", type=click.Path(exists=True, dir_okay=False),
              help=tr("The API's certificate (PEM); default: a self-signed one made once, "
                      "its SHA-256 fingerprint printed for managers to pin.",
                      "Сертификат API (PEM); по умолчанию самоподписанный, создаётся один "
                      "раз, его отпечаток SHA-256 печатается для менеджеров."))
@click.option("--key", "keyfile", type=click.Path(exists=True, dir_okay=False),
              help=tr("The private key of --cert (PEM).", "Закрытый ключ для --cert (PEM)."))
@tls_click_options
@click.option("--verbose", "-v", is_flag=True, help=tr("Debug log lines.", "Подробный журнал."))
def run_command(server: str, db: str, contacts: Path, team_book: Path, guid: str,
                password_env: str | None, fallback: str, area_code: str, listen: str,
                certfile: str | None, keyfile: str | None,
                pin_sha256: str | None, pin_alias: str | None, legacy_tls: bool,
                ca_file: str | None, verbose: bool) -> None:
    from pz_excel.agent import sqldb
    from pz_excel.connector.credentials import find_password
    from pz_excel.team.config import TeamConfig
    from pz_excel.team.service import TeamService

    setup_logging(verbose)
    config = TeamConfig(
        server=server, db=db, contacts=contacts, team_book=team_book, guid=guid,
        password=find_password(server, guid, password_env).password,
        tls=tls_options(chosen_pin(pin_sha256, pin_alias), legacy_tls, ca_file),
        area_code=area_code, fallback=fallback, freeze_gc=True,  # a process of its own
    )
    if bool(certfile) != bool(keyfile):
        raise UserError(Text("--cert and --key go together", "--cert и --key задаются вместе"))
    team = TeamService(config, listen=listen, certfile=certfile, keyfile=keyfile)
    url = config.agent_config().settings.url
    where = sqldb.redact(config.db)
    done = threading.Event()
    with sigterm_sets(done):  # before the start: a supervisor may stop us at once
        team.start()
        _serve_until_stopped(team, config, where, url, done)
    team.wait(0)  # a failure on the way (a refused login) is raised here, said as one line
    click.echo(str(Text("Team server stopped.", "Сервер команды остановлен.")))


def _serve_until_stopped(team, config, where: str, url: str, done: threading.Event) -> None:
    assert team.api is not None
    try:
        api, pin = team.api.url, team.api.fingerprint
        click.echo(str(Text(
            f"Team server started (standby until it leads)\n  database:  {where}\n"
            f"  connector: {url} as {config.guid}\n  team book: {config.team_book}\n"
            f"  contacts:  {config.contacts}\n  team API:  {api}\n"
            f"  API certificate SHA-256 (managers: --team-pin): {pin}\n  Ctrl+C stops it.",
            f"Сервер команды запущен (резервный, пока не станет ведущим)\n"
            f"  база данных: {where}\n  коннектор:   {url} как {config.guid}\n"
            f"  книга команды: {config.team_book}\n  контакты:    {config.contacts}\n"
            f"  API команды: {api}\n"
            f"  SHA-256 сертификата API (менеджерам: --team-pin): {pin}\n"
            f"  Ctrl+C — остановить.",
        )))
        while not team.wait(0.25):
            if done.is_set():
                break
    except KeyboardInterrupt:
        pass
    finally:
        team.stop()


@click.command(
    "status",
    help=tr("Who leads the team, since when, its last heartbeat, and calls stored.",
            "Кто ведущий, с какого времени, его последний пульс и сколько звонков сохранено."),
)
@click.option("--db", "db", required=True, metavar="DSN|PATH", help=_DB_HELP)
def status_command(db: str) -> None:
    from pz_excel.agent import sqldb
    from pz_excel.team.leader import HEARTBEAT, ensure_table, read_leader

    if not sqldb.is_dsn(db) and not Path(db).expanduser().exists():
        raise UserError(Text(f"no team database at {db}", f"нет базы данных команды: {db}"))
    con = sqldb.connect(db)
    try:
        ensure_table(con)
        info = read_leader(con)
        try:
            calls = int(con.one("SELECT count(*) FROM calls") or 0)
        except Exception:  # noqa: BLE001 - no calls table yet: nothing stored
            calls = 0
    finally:
        con.close()
    rows: list[tuple[Text, str]] = [(Text("database", "база данных"), sqldb.redact(db))]
    if info is None:
        rows.append((Text("leader", "ведущий"), str(Text("none", "нет"))))
    else:
        age = info.heartbeat_age
        stale = age > 5 * HEARTBEAT
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.since))
        rows += [
            (Text("leader", "ведущий"), f"{info.host}/{info.pid} ({info.holder})"),
            (Text("since", "с"), since),
            (Text("heartbeat", "пульс"), str(Text(
                f"{age:.1f} s ago" + (" — stale: the leader may be gone" if stale else ""),
                f"{age:.1f} с назад" + (" — устарел: ведущего, возможно, нет" if stale
                                        else "")))),
            (Text("API", "API"), info.api or "—"),
        ]
    rows.append((Text("calls stored", "звонков сохранено"), str(calls)))
    labels = [str(k) for k, _ in rows]
    width = max(len(k) for k in labels)
    for label, (_, value) in zip(labels, rows, strict=True):
        click.echo(f"{label.ljust(width)}  {value}")
