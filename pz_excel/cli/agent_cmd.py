"""``pz-excel run | status | call``: the agent in the foreground, and talking to a running one.

Which running agent ``status`` and ``call`` talk to is decided by
``pz_excel.agent.api.choose_agent``: ``-w BOOK`` means that workbook's agent or an error naming
the workbooks agents run for; without ``-w``, the one running agent, or an error asking to
choose when there are several.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import click

from pz_excel import paths
from pz_excel.cli.console_log import setup_logging
from pz_excel.cli.team_link_opts import team_click_options, team_link
from pz_excel.connector.tls_cli import chosen_pin, tls_click_options
from pz_excel.i18n import Text, UserError, current_lang, tr
from pz_excel.signals import sigterm_sets

log = logging.getLogger(__name__)


def tls_options(pin: str | None, legacy: bool, ca_file: str | None):
    """The TLS options of ``run`` and ``team run`` (``tls_click_options``' values)."""
    from pz_excel.connector.client import TlsOptions

    if not (pin or legacy or ca_file):
        return None
    try:
        return TlsOptions(pin_sha256=pin, legacy=legacy, ca_file=ca_file)
    except ValueError as exc:
        raise UserError(Text(str(exc), str(exc))) from exc


def connector_target(
    workbook: Path | None, server: str | None, phone: str | None
) -> tuple[str, str, dict[str, str]]:
    """(server, extension, Settings sheet) of a command that connects for ``workbook``
    (``None``: no sheet): ``--server``/``--phone`` win over the sheet; the address is checked
    by the one rule (``normalize_server_url``) before anything connects. ``run`` and
    ``password`` share it, so a password is stored under the key the agent reads."""
    from pz_excel.protocol.login import ProtocolError, normalize_server_url

    sheet: dict[str, str] = {}
    if workbook is not None:
        workbook = workbook.expanduser()
        if not workbook.exists():
            raise UserError(
                Text(
                    f"workbook not found: {workbook} (create one: pz-excel init)",
                    f"книга не найдена: {workbook} (создайте: pz-excel init)",
                )
            )
        # imported here, on run's path only: status and call stay light
        from pz_excel.books.settings import read_settings_sheet

        sheet = read_settings_sheet(workbook)
    name = workbook.name if workbook is not None else ""
    where = (
        Text("--server", "--server")
        if server
        else Text(f"Settings sheet of {name}", f"лист «Настройки» книги {name}")
    )
    server = server or sheet.get("server")
    phone = phone or sheet.get("phone")
    if not server:
        raise UserError(
            Text(
                "no connector address: give --server or fill Settings",
                "не указан адрес коннектора: --server или лист «Настройки»",
            )
        )
    try:
        normalize_server_url(server)
    except ProtocolError as exc:
        raise UserError(
            Text(f"{exc.text.en} (from {where.en})", f"{exc.text.ru} (источник: {where.ru})")
        ) from None
    if not phone:
        raise UserError(
            Text(
                "no extension: give --phone or fill Settings",
                "не указан добавочный: --phone или лист «Настройки»",
            )
        )
    return server, phone, sheet


def _area_code(sheet: dict[str, str], given: str | None) -> str:
    from pz_excel.books.settings import area_code_setting

    return area_code_setting(sheet, given)


def build_config(
    workbook: Path,
    server: str | None,
    phone: str | None,
    password_env: str | None,
    client_type: str | None,
    guid: str | None,
    fallback: str | None,
    lang: str | None = None,
    tls=None,
    journal=None,
    area_code: str | None = None,
    lookup: list | None = None,
):
    """The agent's configuration; ``lookup``, if given, receives the
    :class:`~pz_excel.connector.credentials.PasswordLookup` (where the password was found)."""
    from pz_excel.agent.lifecycle import AgentConfig
    from pz_excel.connector.credentials import find_password

    server, phone, sheet = connector_target(workbook, server, phone)
    found = find_password(server, phone, password_env)
    if lookup is not None:
        lookup.append(found)
    return AgentConfig(
        workbook=workbook.expanduser(),
        server=server,
        phone=phone,
        password=found.password,
        client_type=client_type or sheet.get("client_type") or "excel",
        guid=guid or "",
        fallback=fallback or sheet.get("fallback") or "",
        area_code=_area_code(sheet, area_code),
        lang=lang,
        tls=tls,
        journal=journal,
    )


@click.command(
    "run",
    help=tr(
        "Run the call agent in the foreground; Ctrl+C stops it cleanly.",
        "Запустить агента звонков в этом окне; Ctrl+C аккуратно его останавливает.",
    ),
)
@click.option(
    "--workbook",
    "-w",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=tr("The CRM workbook.", "Книга CRM."),
)
@click.option(
    "--server",
    "-s",
    help=tr(
        "Connector address, e.g. ws://pbx:10150 (default: the Settings sheet).",
        "Адрес коннектора, например ws://pbx:10150 (по умолчанию — с листа «Настройки»).",
    ),
)
@click.option(
    "--phone",
    "-p",
    help=tr(
        "Your extension (default: the Settings sheet).",
        "Ваш добавочный (по умолчанию — с листа «Настройки»).",
    ),
)
@click.option(
    "--password-env",
    metavar="VAR",
    help=tr(
        "Read the password from this variable (default: the OS keyring: pz-excel password set).",
        "Взять пароль из этой переменной (по умолчанию — из системного хранилища паролей: "
        "pz-excel password set).",
    ),
)
@click.option(
    "--client-type",
    default=None,
    help=tr("Client type (licence), default excel.", "Тип клиента (лицензия), по умолчанию excel."),
)
@click.option(
    "--guid",
    default=None,
    help=tr("Client GUID (default: the extension).", "GUID клиента (по умолчанию — добавочный)."),
)
@click.option(
    "--fallback",
    default=None,
    help=tr("Extension for unknown callers.", "Добавочный для неизвестных абонентов."),
)
@click.option(
    "--area-code",
    default=None,
    help=tr(
        "City area code, e.g. 343: 5-7 digit numbers are then that city's (or Settings sheet).",
        "Код города, например 343: номера из 5–7 цифр считаются номерами этого города "
        "(или лист «Настройки»).",
    ),
)
@tls_click_options
@team_click_options
@click.option("--verbose", "-v", is_flag=True, help=tr("Debug log lines.", "Подробный журнал."))
def run_command(
    workbook: Path,
    server: str | None,
    phone: str | None,
    password_env: str | None,
    client_type: str | None,
    guid: str | None,
    fallback: str | None,
    area_code: str | None,
    pin_sha256: str | None,
    pin_alias: str | None,
    legacy_tls: bool,
    ca_file: str | None,
    team: str | None,
    team_token: str | None,
    team_pin: str | None,
    verbose: bool,
) -> None:
    from pz_excel.agent.lifecycle import Agent

    setup_logging(verbose)
    lookup: list = []
    config = build_config(
        workbook,
        server,
        phone,
        password_env,
        client_type,
        guid,
        fallback,
        tls=tls_options(chosen_pin(pin_sha256, pin_alias), legacy_tls, ca_file),
        area_code=area_code,
        lookup=lookup,
    )
    config.team = team_link(team, team_token, team_pin, config.phone)  # checked: whoami
    config.freeze_gc = True  # this process is only the agent (see AgentConfig.freeze_gc)
    done = threading.Event()
    with sigterm_sets(done):  # before the start: "connected" may bring a SIGTERM at once
        _run_until_stopped(Agent(config).start(), config, lookup, done)
    click.echo(str(Text("Agent stopped.", "Агент остановлен.")))


def _run_until_stopped(agent, config, lookup: list, done: threading.Event) -> None:
    # The final state is said once, as the exit line: the log lines of it go.
    quiet = _FinalStateFilter(agent)
    loggers = [logging.getLogger(n) for n in ("pz_excel.agent.lifecycle", CONNECTOR_LOG)]
    for logger in loggers:
        logger.addFilter(quiet)
    hinted = False
    try:
        click.echo(
            str(
                Text(
                    f"Agent running for extension {config.phone}, workbook {config.workbook}\n"
                    f"  connector: {config.settings.url}\n  journal:   {config.journal}\n"
                    f"  Ctrl+C stops it.",
                    f"Агент запущен: добавочный {config.phone}, книга {config.workbook}\n"
                    f"  коннектор: {config.settings.url}\n  журнал:    {config.journal}\n"
                    f"  Ctrl+C — остановить.",
                )
            )
        )
        if config.team is not None:
            click.echo(str(Text(
                f"  team server: {config.team.url} (routes transfers; our calls are reported)",
                f"  командный сервер: {config.team.url} (распределяет переводы; звонки "
                "передаются ему)",
            )))
        while not done.wait(0.25):
            client = agent.client
            state = client.state if client else None
            if not hinted and client is not None:
                hinted = _first_failure_hint(client, config.settings.url)
            if state is not None and state.kind == "stopped" and state.close is not None:
                agent.stop()
                raise UserError(_final_text(state, lookup[0]))
            if agent.stopped:
                break
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
        for logger in loggers:
            logger.removeFilter(quiet)


#: The connector's logger: it warns of a close that is not retried (4008, 4009, ...),
#: which ``run`` ends on, saying why as its exit line.
CONNECTOR_LOG = "pz_excel.connector.client"


class _FinalStateFilter(logging.Filter):
    """Drops the log lines of a final state (stopped with a reason: the agent's state line
    and the connector's close warning): ``run`` ends with that reason as its exit line, and
    said two or three times it read like several failures."""

    def __init__(self, agent) -> None:
        super().__init__()
        self.agent = agent

    def filter(self, record: logging.LogRecord) -> bool:
        client = self.agent.client
        state = client.state if client is not None else None
        if record.name == CONNECTOR_LOG:
            return not str(record.msg).startswith("connector closed the connection")
        final = state is not None and state.kind == "stopped" and state.close is not None
        return not (final and record.args and record.args[0] == state.text)


def _first_failure_hint(client, url: str) -> bool:
    """Once per run, when the first attempt failed to reach the connector (never connected
    yet), say what is wrong and what to check; retrying goes on. True once decided."""
    from pz_excel.connector.outcomes import unreachable_hint

    failure = client.first_failure
    if failure is None:
        return client.state.kind == "connected"  # reached it: nothing to say, ever
    parts = urlsplit(url)
    hint = unreachable_hint(failure, parts.hostname or "", parts.port or 0)
    if hint is not None:
        log.warning(
            "%s",
            Text(
                f"cannot reach the connector at {url}: {failure.text.en}; {hint.en} "
                "(the address and port: Settings sheet or --server). Still retrying.",
                f"не удаётся связаться с коннектором {url}: {failure.text.ru}; {hint.ru} "
                "(адрес и порт — на листе «Настройки» или в --server). Попытки продолжаются.",
            ),
        )
    return True


def _final_text(state, lookup) -> Text:
    """Why ``run`` ends: the state's own words, or, for a refused login when no password
    was found, that none was found and where it was looked for."""
    from pz_excel.connector.credentials import no_password_text

    close = state.close
    if close.code in (401, 403, 4008) and not lookup.found:
        return no_password_text(lookup, f"HTTP {close.code}" if close.http else str(close.code))
    return state.text


_WORKBOOK_OF_AGENT = tr(
    "The workbook whose agent to ask (needed when several run).",
    "Книга, чьего агента спросить (нужно, когда их запущено несколько).",
)


@click.command(
    "status",
    help=tr(
        "Show the running agent's state, extension, server, last event and journal path.",
        "Состояние запущенного агента: подключение, добавочный, сервер, последнее событие, "
        "журнал.",
    ),
)
@click.option(
    "--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path), help=_WORKBOOK_OF_AGENT
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help=tr("Machine-readable output.", "Вывод для программ (JSON)."),
)
def status_command(workbook: Path | None, as_json: bool) -> None:
    """Show the running agent's state, extension, server, last event and journal path."""
    from pz_excel.agent.api import ApiClient
    from pz_excel.agent.discovery import AgentUnavailable, NoAgentForWorkbook

    try:
        client = ApiClient.discover(workbook=workbook)
    except NoAgentForWorkbook:
        raise  # agents run, not this workbook's: the error names theirs
    except AgentUnavailable:
        click.echo(
            str(
                Text(
                    f"No agent is running. Journals are kept in {paths.journals_dir()}",
                    f"Агент не запущен. Журналы хранятся в {paths.journals_dir()}",
                )
            )
        )
        sys.exit(1)
    st = client.get("/status")
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False, indent=2))
        return
    from pz_excel.agent.status_text import status_lines  # one status text, ribbon and CLI

    ru = current_lang() == "ru"
    lines = status_lines(st)
    warnings = st.get("warnings") or []
    lines += [("Внимание" if ru else "Warning", w) for w in warnings[:3]]
    if len(warnings) > 3:  # the rest: status --json
        more = len(warnings) - 3
        lines.append(("", f"… ещё {more}: --json" if ru else f"… {more} more: --json"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")


@click.command(
    "call",
    help=tr(
        "Place a call from your extension to NUMBER through the running agent.",
        "Позвонить со своего добавочного на номер NUMBER через запущенного агента.",
    ),
)
@click.argument("number")
@click.option(
    "--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path), help=_WORKBOOK_OF_AGENT
)
def call_command(number: str, workbook: Path | None) -> None:
    """Place a call from your extension to NUMBER through the running agent."""
    from pz_excel.agent.api import ApiClient

    client = ApiClient.discover(workbook=workbook, timeout=8.0)
    result = client.post("/call", {"number": number})
    if result.get("code") != 0:
        raise UserError(
            Text(result.get("message", "call refused"), result.get("message", "звонок отклонён"))
        )
    click.echo(str(Text(f"Calling {number}…", f"Звоним {number}…")))
