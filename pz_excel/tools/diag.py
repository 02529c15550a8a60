"""``pz-excel diag`` — a diagnostic console for a Prostie Zvonki connector.

It mirrors the vendor's Diagnostic 1.1.2 console (PROTOCOL.md §6): it logs in as client
type ``Diagnostic`` with BroadcastEventsMask 65535 in the native *header* form, numbers
its requests 0, 1, 2, … with request ProtocolVersion 2, and offers the same commands,
mapped to the same requests (``tests/test_diag.py`` checks them against the capture
byte for byte). Use it to make a connector — ours or the vendor's test server — emit
events, and to watch what arrives. Like the vendor's, a Generate without a line or a
record sends them blank (``" "``) and, but for ``incoming``, makes its own CallID; Events
toggles; Connect, ConnectEx and ConnectMask log in from the console (password asked,
never shown), or the URL is given on the command line.

One deliberate difference: the vendor's console lowercases the whole command line, which
mangles base64 SMS text (``0J/RgNC40LLQtdGC`` arrived as ``0j/rgnc40llqtdgc``). Here
command words are case-insensitive but arguments keep their case. Arguments are split
shell-style, so ``" "`` passes a blank value.

The connection is our :class:`pz_excel.connector.ConnectorClient`, without reconnects:
a console should say that the connection ended, not quietly come back.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from pz_excel.connector.outcomes import unreachable_hint
from pz_excel.connector.tls_cli import chosen_pin, tls_click_options
from pz_excel.i18n import Text, UserError, current_lang, tr
from pz_excel.protocol import codec as protocol
from pz_excel.tools.diag_commands import (
    CALL_IDS,
    DIAG_CLIENT_TYPE,
    DIAG_GUID,
    DIAG_MASK,
    HELP,
    HELP_RU,
    PV,
    Action,
    CallIds,
    CommandError,
    ConnectTarget,
    parse_command,
    say,
)
from pz_excel.tools.diag_print import clients_table, describe_event

if TYPE_CHECKING:
    from pz_excel.connector.client import ConnectionState, ConnectorClient, TlsOptions


# --------------------------------------------------------------------------- the console


def ask_password(prompt: str) -> str:
    """The password, never shown: typed at the terminal with echo off, or one line of
    piped input (``echo secret | pz-excel diag``), which nothing echoes either."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    click.echo(prompt, err=True)
    return sys.stdin.readline().rstrip("\r\n")


class Console:
    """The console: connects (at start or by Connect), runs commands, prints answers and
    (when on) events. At most one connection; Connect replaces it."""

    def __init__(
        self,
        *,
        tls: TlsOptions | None = None,
        password: str | None = None,
        events: bool = False,
        timeout: float = 5.0,
        echo: Callable[[str], None] = click.echo,
        password_prompt: Callable[[str], str] = ask_password,
        call_ids: CallIds = CALL_IDS,
    ):
        self.client: ConnectorClient | None = None
        self.tls = tls
        self.password = password  # None: Connect asks for it
        self.events = events
        self.timeout = timeout
        self.echo = echo
        self.password_prompt = password_prompt
        self.call_ids = call_ids
        self.lost: Text | None = None  # why the connection ended, if it did on its own
        self.ended = threading.Event()
        self._state_lock = threading.Lock()
        self._print_lock = threading.Lock()
        self.prompt_active = False  # interactive: redraw the prompt after an event line

    def connect(self, settings: protocol.ConnectSettings) -> Text | None:
        """Log in (closing the open connection first). ``None``, or why it failed."""
        from pz_excel.connector.client import ConnectorClient

        self.disconnect()
        client = ConnectorClient(
            settings,
            header_login=True,
            request_version=PV,
            reconnect=False,
            tls=self.tls,
            connect_timeout=self.timeout,
        )
        client.subscribe(self.on_event)  # before start: the replayed history is printed too
        client.start()
        if not client.wait_connected(self.timeout + 1):
            why = _why(client.state)
            failure = client.first_failure
            client.stop()
            parts = urlsplit(settings.url)
            hint = failure and unreachable_hint(failure, parts.hostname or "", parts.port or 0)
            if hint:
                why = Text(f"{why.en}; {hint.en}", f"{why.ru}; {hint.ru}")
            return Text(
                f"cannot connect to {settings.url}: {why.en}",
                f"не удалось подключиться к {settings.url}: {why.ru}",
            )
        with self._state_lock:
            self.client, self.lost = client, None
            self.ended.clear()
        client.on_state(lambda state: self._on_state(client, state))
        if client.state.kind == "stopped":  # ended between the two lines above
            self._on_state(client, client.state)
        return None

    def disconnect(self) -> None:
        with self._state_lock:
            client, self.client = self.client, None
        if client is not None:
            client.stop()  # no longer ours: its "stopped" is not reported as a loss

    # Called on the connector's delivery thread.
    def on_event(self, event: protocol.Event) -> None:
        if self.events:
            self._print_async(describe_event(event))

    def _on_state(self, client: ConnectorClient, state: ConnectionState) -> None:
        if state.kind != "stopped":
            return
        with self._state_lock:
            if client is not self.client or self.lost is not None:
                return
            self.lost = lost = _why(state)
            self.ended.set()
        self._print_async(say("Connection ended: ", "Соединение завершено: ") + str(lost), err=True)

    def _print_async(self, text: str, err: bool = False) -> None:
        with self._print_lock:
            if self.prompt_active and _readline is not None and sys.stdout.isatty():
                # Print above the line being typed, then redraw prompt and input.
                sys.stdout.write("\r\x1b[K")
                click.echo(text, err=err)
                sys.stdout.write(self.prompt + _readline.get_line_buffer())
                sys.stdout.flush()
            else:
                click.echo(text, err=err)

    @property
    def prompt(self) -> str:
        return "[events on]> " if self.events else "[events off]> "

    def close(self) -> None:
        self.disconnect()

    def run(self, line: str) -> bool | None:
        """Run one line. True: done; False: it failed (the reason is printed); None: quit."""
        try:
            action = parse_command(line, self.call_ids)
        except CommandError as exc:
            self.echo(say("Error: ", "Ошибка: ") + str(exc.text))
            return False
        if action is None:
            return True
        if action.kind == "quit":
            return None
        if action.kind == "help":
            self.echo(HELP + ("\n" + HELP_RU if current_lang() == "ru" else ""))
            return True
        if action.kind == "events":  # a toggle, as the vendor's: the prompt shows the state
            self.events = not self.events
            self.echo(
                say("events on", "события включены")
                if self.events
                else say("events off", "события выключены")
            )
            return True
        if action.kind == "connect":
            assert action.target is not None
            return self._connect(action.target)
        return self._request(action)

    def _connect(self, target: ConnectTarget) -> bool:
        password = self.password
        if password is None:
            password = self.password_prompt(say("Password: ", "Пароль: "))
        try:
            settings = target.settings(password)
        except protocol.ProtocolError as exc:
            self.echo(say("Error: ", "Ошибка: ") + str(exc.text))
            return False
        why = self.connect(settings)
        if why is not None:
            self.echo(say("Error: ", "Ошибка: ") + str(why))
            return False
        self.echo(say(f"Connected to {settings.url}", f"Подключено к {settings.url}"))
        return True

    def _request(self, action: Action) -> bool:
        from pz_excel.connector.client import ConnectorError

        assert action.build is not None
        client = self.client
        if client is None:
            self.echo(
                say(
                    "Error: not connected: Connect <host>:<port> <client guid> first",
                    "Ошибка: нет подключения: сначала Connect <хост>:<порт> <GUID клиента>",
                )
            )
            return False
        try:
            response = client.request(action.build, timeout=self.timeout)
        except ConnectorError as exc:
            self.echo(say("Error: ", "Ошибка: ") + str(exc.text))
            return False
        if not response.ok:
            details = f": {response.details}" if response.details else ""
            self.echo(
                say(
                    f"Error: the connector answered code {response.code}{details}",
                    f"Ошибка: коннектор ответил кодом {response.code}{details}",
                )
            )
            return False
        if action.show == "clients":
            self.echo(clients_table(response.clients))
        elif action.show == "version":
            self.echo(response.version or response.data or "?")
        else:
            self.echo("OK")
        return True


def _why(state: ConnectionState) -> Text:
    """Why a connection ended: the close (code) text, else the state's own words."""
    if state.close is not None:
        return state.close.text
    text = state.text
    prefixes = ("stopped: ", "остановлено: ")
    if text.en.startswith(prefixes[0]) and text.ru.startswith(prefixes[1]):
        return Text(text.en[len(prefixes[0]) :], text.ru[len(prefixes[1]) :])
    return text


# --------------------------------------------------------------------------- readline

try:  # absent on Windows without pyreadline3: the prompt still works, without history
    import readline as _readline
except ImportError:  # pragma: no cover - platform dependent
    _readline = None  # type: ignore[assignment]


def _history_file() -> Path:
    forced = os.environ.get("PZ_EXCEL_HOME", "").strip()
    if forced:
        base = Path(forced)
    else:
        import platformdirs

        base = Path(platformdirs.user_state_dir("pz-excel", False))
    return base / "diag_history"


@contextlib.contextmanager
def _line_history() -> Iterator[None]:
    if _readline is None or not sys.stdin.isatty():  # piped input: keep no history
        yield
        return
    path = _history_file()
    with contextlib.suppress(OSError):
        _readline.read_history_file(str(path))
    _readline.set_history_length(1000)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            _readline.write_history_file(str(path))


def _interactive(console: Console) -> int:
    if console.client is not None:
        click.echo(say("Connected. Help lists the commands.", "Подключено. Список команд — Help."))
    else:
        click.echo(
            say(
                "Not connected: Connect <host>:<port> <client guid>. Help lists the commands.",
                "Нет подключения: Connect <хост>:<порт> <GUID клиента>. Список команд — Help.",
            )
        )
    with _line_history():  # a lost connection leaves the console open: Connect again
        while True:
            console.prompt_active = True
            try:
                line = input(console.prompt)
            except (EOFError, KeyboardInterrupt):
                click.echo()
                return 0
            finally:
                console.prompt_active = False
            if console.run(line) is None:
                return 0


# --------------------------------------------------------------------------- CLI


def _quiet_connector_logs() -> None:
    # Without logging set up, Python prints library warnings to stderr; the console
    # already tells the user why a connection ended, in both languages.
    if not logging.getLogger().handlers:
        logger = logging.getLogger("pz_excel.connector.client")
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


@click.command(
    "diag",
    help=tr(
        "Diagnostic console for a connector at URL (e.g. ws://127.0.0.1:10150).\n\n"
        "Mirrors the vendor's Diagnostic console: connects as client type Diagnostic and "
        "receives every event. Without URL, connect from the console (Connect, ConnectEx, "
        "ConnectMask). Without -c it is interactive (type Help). Commands are "
        "case-insensitive; their arguments keep their case (the vendor's console "
        "lowercases them, which breaks base64 SMS text).",
        "Диагностическая консоль коннектора по адресу URL (например, ws://127.0.0.1:10150)."
        "\n\nПовторяет консоль Diagnostic вендора: подключается как клиент типа Diagnostic "
        "и получает все события. Без URL подключайтесь из консоли (Connect, ConnectEx, "
        "ConnectMask). Без -c консоль интерактивна (наберите Help). Регистр слов команд "
        "не важен, регистр аргументов сохраняется (консоль вендора переводит их в нижний "
        "регистр и портит base64-текст SMS).",
    ),
)
@click.argument("url", required=False)
@click.option(
    "-c",
    "--command",
    "commands",
    multiple=True,
    metavar="COMMAND",
    help=tr(
        "Run COMMAND (repeatable, in order), then exit; non-zero exit if one fails.",
        "Выполнить COMMAND (можно несколько, по порядку) и выйти; если одна не удалась, "
        "код выхода ненулевой.",
    ),
)
@click.option(
    "--guid",
    default=DIAG_GUID,
    show_default=True,
    help=tr("Client GUID to log in with.", "GUID клиента для входа."),
)
@click.option(
    "--password",
    envvar="PZ_PASSWORD",
    default=None,
    show_envvar=True,
    help=tr(
        "Connector password (default: empty for URL; Connect asks for it).",
        "Пароль коннектора (по умолчанию: пустой для URL; Connect спросит его).",
    ),
)
@click.option(
    "--events",
    "events_on",
    is_flag=True,
    help=tr("Print received events from the start.", "Выводить полученные события с начала."),
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help=tr(
        "After the -c commands (or alone), print events for SECONDS, then exit (implies --events).",
        "После команд -c (или без них) выводить события SECONDS секунд, затем выйти "
        "(включает --events).",
    ),
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help=tr(
        "Seconds to wait for the connection and for each answer.",
        "Сколько секунд ждать подключения и каждого ответа.",
    ),
)
@tls_click_options
@click.option(
    "--show-cert",
    is_flag=True,
    help=tr(
        "wss://: print the connector certificate's SHA-256 fingerprint (to compare with the "
        "connector admin's and pin with --pin-sha256), its TLS version and cipher, and exit.",
        "wss://: показать отпечаток SHA-256 сертификата коннектора (сверить с администратором "
        "коннектора и закрепить через --pin-sha256), версию TLS и шифр, и выйти.",
    ),
)
@click.option(
    "--insecure",
    is_flag=True,
    help=tr(
        "wss://: don't check the certificate at all.",
        "wss://: не проверять сертификат вовсе.",
    ),
)
def command(
    url: str | None,
    commands: tuple[str, ...],
    guid: str,
    password: str | None,
    events_on: bool,
    wait: float,
    timeout: float,
    pin_sha256: str | None,
    pin_alias: str | None,
    legacy_tls: bool,
    ca_file: str | None,
    show_cert: bool,
    insecure: bool,
) -> None:
    from pz_excel.connector.client import TlsConfigError, TlsOptions

    if show_cert:
        _show_cert(url)
        return
    _quiet_connector_logs()
    try:
        settings = None
        if url is not None:
            settings = protocol.ConnectSettings(
                server=url,
                phone="",
                password=password or "",
                client_type=DIAG_CLIENT_TYPE,
                guid=guid,
                broadcast_mask=DIAG_MASK,
            )
            settings.url  # noqa: B018 - validate the address now
        tls = TlsOptions(
            verify=not insecure,
            ca_file=ca_file,
            pin_sha256=chosen_pin(pin_sha256, pin_alias),
            legacy=legacy_tls,
        )
    except protocol.ProtocolError as exc:
        raise UserError(exc.text) from None
    except TlsConfigError as exc:
        raise UserError(exc.text) from exc
    # Checked before anything runs: a typo must not half-run a script.
    for line in commands:
        try:
            parse_command(line)
        except CommandError as exc:
            raise UserError(
                Text(f"{line!r}: {exc.text.en}", f"{line!r}: {exc.text.ru}"), exit_code=1
            ) from exc

    console = Console(tls=tls, password=password, events=events_on or wait > 0, timeout=timeout)
    try:
        if settings is not None:
            why = console.connect(settings)
            if why is not None:
                raise UserError(why)
        scripted = bool(commands) or wait > 0  # --wait alone: just watch events
        code = _script(console, commands, wait) if scripted else _interactive(console)
    finally:
        console.close()
    if code:
        sys.exit(code)


def _show_cert(url: str | None) -> None:
    """What to pin: the fingerprint read off the connector (nothing sent, nothing trusted)."""
    from pz_excel.connector.certinfo import fetch_cert

    if not url:
        raise UserError(
            Text(
                "--show-cert needs the URL: wss://host:port",
                "--show-cert нужен адрес: wss://host:port",
            )
        )
    info = fetch_cert(url)
    click.echo(info.fingerprint)
    click.echo(
        say(
            f"TLS {info.tls_version}, {info.cipher}. Compare this fingerprint with the one the "
            f"connector's admin sees, then: pz-excel run --pin-sha256 {info.fingerprint}",
            f"TLS {info.tls_version}, {info.cipher}. Сверьте отпечаток с тем, что видит "
            f"администратор коннектора, затем: pz-excel run --pin-sha256 {info.fingerprint}",
        )
        + (
            say(
                " --legacy-tls (an old TLS: needs the legacy mode)",
                " --legacy-tls (старый TLS: нужен режим совместимости)",
            )
            if info.legacy
            else ""
        )
    )


def _script(console: Console, commands: Sequence[str], wait: float) -> int:
    for line in commands:
        result = console.run(line)
        if result is None:
            return 0
        if result is False:
            click.echo(say(f"Command failed: {line}", f"Команда не выполнена: {line}"), err=True)
            return 1
    if wait > 0:
        try:
            console.ended.wait(wait)  # ends early if the connector drops us
        except KeyboardInterrupt:
            pass
    return 1 if console.lost is not None else 0
