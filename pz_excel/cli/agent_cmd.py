"""``pz-excel run | status | call``: the agent in the foreground, and talking to a running one.

Which running agent ``status`` and ``call`` talk to is decided by
``pz_excel.agent.api.choose_agent``: ``-w BOOK`` means that workbook's agent or an error naming
the workbooks agents run for; without ``-w``, the one running agent, or an error asking to
choose when there are several.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from pz_excel import paths
from pz_excel.books.settings import area_code_setting, read_settings_sheet
from pz_excel.cli.console_log import setup_logging
from pz_excel.i18n import Text, UserError, current_lang


def _tls_options(pin: str | None, legacy: bool, ca_file: str | None):
    from pz_excel.connector.client import TlsOptions

    if not (pin or legacy or ca_file):
        return None
    try:
        return TlsOptions(pin_sha256=pin, legacy=legacy, ca_file=ca_file)
    except ValueError as exc:
        raise UserError(Text(str(exc), str(exc))) from exc


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
):
    from pz_excel.agent.lifecycle import AgentConfig
    from pz_excel.connector.credentials import get_password

    workbook = workbook.expanduser()
    if not workbook.exists():
        raise UserError(
            Text(
                f"workbook not found: {workbook} (create one: pz-excel init)",
                f"книга не найдена: {workbook} (создайте: pz-excel init)",
            )
        )
    sheet = read_settings_sheet(workbook)
    server = server or sheet.get("server")
    phone = phone or sheet.get("phone")
    if not server:
        raise UserError(
            Text(
                "no connector address: give --server or fill Settings",
                "не указан адрес коннектора: --server или лист «Настройки»",
            )
        )
    if not phone:
        raise UserError(
            Text(
                "no extension: give --phone or fill Settings",
                "не указан добавочный: --phone или лист «Настройки»",
            )
        )
    return AgentConfig(
        workbook=workbook,
        server=server,
        phone=phone,
        password=get_password(server, phone, password_env),
        client_type=client_type or sheet.get("client_type") or "excel",
        guid=guid or "",
        fallback=fallback or sheet.get("fallback") or "",
        area_code=area_code_setting(sheet, area_code),
        lang=lang,
        tls=tls,
        journal=journal,
    )


@click.command("run")
@click.option("--workbook", "-w", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--server", "-s", help="Connector URL, e.g. ws://pbx:10150 (or Settings sheet).")
@click.option("--phone", "-p", help="Your extension (or Settings sheet).")
@click.option(
    "--password-env",
    metavar="VAR",
    help="Read the password from this variable (default: the OS keyring).",
)
@click.option("--client-type", default=None, help="Client type (licence), default excel.")
@click.option("--guid", default=None, help="Client GUID (default: the extension).")
@click.option("--fallback", default=None, help="Extension for unknown callers.")
@click.option(
    "--area-code",
    default=None,
    help="City area code, e.g. 343: 5-7 digit numbers are then that city's (or Settings sheet).",
)
@click.option("--pin-sha256", default=None, help="Pinned SHA-256 of the wss certificate.")
@click.option(
    "--legacy-tls", is_flag=True, help="Allow TLS 1.0 for old connectors (needs --pin-sha256)."
)
@click.option("--ca-file", default=None, help="CA bundle for wss.")
@click.option("--verbose", "-v", is_flag=True)
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
    legacy_tls: bool,
    ca_file: str | None,
    verbose: bool,
) -> None:
    """Run the call agent in the foreground; Ctrl+C stops it cleanly."""
    from pz_excel.agent.lifecycle import Agent

    setup_logging(verbose)
    config = build_config(
        workbook,
        server,
        phone,
        password_env,
        client_type,
        guid,
        fallback,
        tls=_tls_options(pin_sha256, legacy_tls, ca_file),
        area_code=area_code,
    )
    agent = Agent(config).start()
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
    done = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.25):
            state = agent.client.state if agent.client else None
            if state is not None and state.kind == "stopped" and state.close is not None:
                agent.stop()
                raise UserError(state.text)
            if agent.stopped:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        agent.stop()
    click.echo(str(Text("Agent stopped.", "Агент остановлен.")))


@click.command("status")
@click.option("--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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
    last = st.get("last_event")
    last_text = (
        f"{last['name']} {last['call_id']} {last['from']}→{last['to']} at {last['at']}"
        if last
        else "—"
    )
    ru = current_lang() == "ru"
    lines = [
        ("Состояние" if ru else "State", st["state_text"]),
        ("Добавочный" if ru else "Extension", st["phone"]),
        ("Сервер" if ru else "Server", st["server"]),
        ("Книга" if ru else "Workbook", f"{st['workbook']} ({st['book']})"),
        ("Контакты" if ru else "Contacts", str(st["contacts"])),
        ("Ждут записи" if ru else "Rows pending", str(st["pending_rows"])),
        ("Последнее событие" if ru else "Last event", last_text),
        ("Журнал" if ru else "Journal", st["journal"]),
    ]
    if st.get("book_error"):
        lines.append(("Книга недоступна" if ru else "Workbook problem", st["book_error"]))
    warnings = st.get("warnings") or []
    lines += [("Внимание" if ru else "Warning", w) for w in warnings[:3]]
    if len(warnings) > 3:  # the rest: status --json
        more = len(warnings) - 3
        lines.append(("", f"… ещё {more}: --json" if ru else f"… {more} more: --json"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")


@click.command("call")
@click.argument("number")
@click.option("--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path))
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
