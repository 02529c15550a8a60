"""``pz-excel diag`` — a diagnostic console for a Prostie Zvonki connector.

It mirrors the vendor's Diagnostic 1.1.2 console (PROTOCOL.md §6): it logs in as client
type ``Diagnostic`` with BroadcastEventsMask 65535 in the native *header* form, numbers
its requests 0, 1, 2, … with request ProtocolVersion 2, and offers the same commands,
mapped to the same requests (``tests/test_diag.py`` checks them against the capture
byte for byte). Use it to make a connector — ours or the vendor's test server — emit
events, and to watch what arrives.

One deliberate difference: the vendor's console lowercases the whole command line, which
mangles base64 SMS text (``0J/RgNC40LLQtdGC`` arrived as ``0j/rgnc40llqtdgc``). Here
command words are case-insensitive but arguments keep their case. Arguments are split
shell-style, so ``" "`` passes a blank value.

The connection is our :class:`pz_excel.connector.ConnectorClient`, without reconnects:
a console should say that the connection ended, not quietly come back.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pz_excel.i18n import Text, UserError, current_lang
from pz_excel.protocol import codec as protocol

if TYPE_CHECKING:
    from pz_excel.connector.client import ConnectionState, ConnectorClient

DIAG_GUID = "diag"
DIAG_CLIENT_TYPE = "Diagnostic"
DIAG_MASK = 65535
PV = protocol.DIAG_REQUEST_VERSION

HELP = """\
Commands (command words in any case; arguments keep their case — unlike the vendor's
console, which lowercases the whole line and so mangles base64 SMS text):

  Clients                                   list the connector's clients
  Call <from> <to>                          place a call from extension <from>
  Transfer <callID> <to>                    answer a transfer request (the vendor's help
                                            names the first argument <from>)
  Generate incoming <from> [line] [serviceInfo]                             -> type 1
  Generate transfer <from> <to> [line] [CRM GUID] [CallID] [serviceInfo]    -> type 2
  Generate transans <from> <to> [line] [CRM GUID] [CallID] [serviceInfo]    -> type 32
  Generate outcoming <from> <to> [CRM GUID] [CallID] [serviceInfo]          -> type 8
  Generate outans <from> <to> [CRM GUID] [CallID] [serviceInfo]             -> type 16
  Generate history <from> <to> <start> <end> <duration> <in|out> [record] [line]
                   [CallID] [serviceInfo]                                   -> type 4
  Generate smsstatus <to> <result> [CRM GUID] [CallID] [serviceInfo]        -> type 256
  Sms <from> <to> <CRM GUID> <CallID> <base64 text> [serviceInfo]           -> type 128
  Simulation on|off                         call progress simulation on the server
  Events [on|off]                           print received events (alone: toggle)
  Version                                   the connector's version
  Help                                      this text
  Quit | Exit                               leave

CRM GUID "*" (the default) means normal routing; another GUID also delivers the event to
that client. start/end are Unix seconds. Quote to pass spaces or a blank: line " ".
"""

HELP_RU = """\
Слова команд — в любом регистре; регистр аргументов сохраняется (консоль вендора
переводит всю строку в нижний регистр и портит base64-текст SMS). Аргументы с пробелами
берите в кавычки, пустое значение — " ". CRM GUID "*" (по умолчанию) — обычная
маршрутизация; другой GUID — событие дополнительно получит этот клиент.
"""


class CommandError(Exception):
    """A command line that can't be run: wrong syntax or arguments."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text


def _t(en: str, ru: str) -> str:
    return str(Text(en, ru))


@dataclass(frozen=True)
class Action:
    """What one command line does.

    ``kind``: ``request`` (send ``build(request_id)``; ``show`` says how to print the
    answer: ``ok``, ``clients`` or ``version``), ``events`` (``events`` is True/False, or
    None to toggle), ``help``, ``quit``.
    """

    kind: str
    build: Callable[[int], str] | None = None
    show: str = "ok"
    events: bool | None = None


def _usage(syntax: str) -> CommandError:
    return CommandError(Text(f"usage: {syntax}", f"синтаксис: {syntax}"))


def _args(words: list[str], required: int, optional: int, syntax: str) -> list[str | None]:
    """Check the argument count; pad absent optional ones with None."""
    if not required <= len(words) <= required + optional:
        raise _usage(syntax)
    return [*words, *[None] * (required + optional - len(words))]


def _int(value: str, name: str) -> str:
    try:
        int(value)
    except ValueError:
        raise CommandError(
            Text(f"{name} must be a number, not {value!r}", f"{name} — это число, а не {value!r}")
        ) from None
    return value


def _on_off(words: list[str], syntax: str) -> bool:
    if len(words) != 1 or words[0].lower() not in ("on", "off"):
        raise _usage(syntax)
    return words[0].lower() == "on"


def _generate(event_type: int, fields: dict[str, str | None]) -> Action:
    return Action(
        "request",
        lambda rid: protocol.generate_request(event_type, fields, rid, protocol_version=PV),
    )


GENERATE_SYNTAX = {
    "incoming": "Generate incoming <from> [line] [serviceInfo]",
    "transfer": "Generate transfer <from> <to> [line] [CRM GUID] [CallID] [serviceInfo]",
    "transans": "Generate transans <from> <to> [line] [CRM GUID] [CallID] [serviceInfo]",
    "outcoming": "Generate outcoming <from> <to> [CRM GUID] [CallID] [serviceInfo]",
    "outans": "Generate outans <from> <to> [CRM GUID] [CallID] [serviceInfo]",
    "history": "Generate history <from> <to> <start> <end> <duration> <in|out> [record] "
    "[line] [CallID] [serviceInfo]",
    "smsstatus": "Generate smsstatus <to> <result> [CRM GUID] [CallID] [serviceInfo]",
}


def _parse_generate(words: list[str]) -> Action:
    if not words:
        raise _usage("Generate incoming|transfer|transans|outcoming|outans|history|smsstatus …")
    kind, rest = words[0].lower(), words[1:]
    syntax = GENERATE_SYNTAX.get(kind)
    if syntax is None:
        raise CommandError(
            Text(
                f"unknown Generate kind {words[0]!r}: " + ", ".join(GENERATE_SYNTAX),
                f"неизвестный вид Generate {words[0]!r}: " + ", ".join(GENERATE_SYNTAX),
            )
        )
    if kind == "incoming":
        src, line, system = _args(rest, 1, 2, syntax)
        return _generate(1, {"From": src, "Line": line, "ClientGUID": "*", "System": system})
    if kind in ("transfer", "transans"):
        src, dst, line, guid, call_id, system = _args(rest, 2, 4, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "Line": line}
        fields |= {"ClientGUID": guid or "*", "System": system}
        return _generate(2 if kind == "transfer" else 32, fields)
    if kind in ("outcoming", "outans"):
        src, dst, guid, call_id, system = _args(rest, 2, 3, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "ClientGUID": guid or "*"}
        fields["System"] = system
        return _generate(8 if kind == "outcoming" else 16, fields)
    if kind == "history":
        src, dst, start, end, duration, direction, record, line, call_id, system = _args(
            rest, 6, 4, syntax
        )
        assert start is not None and end is not None and duration is not None
        assert direction is not None
        if direction.lower() not in ("in", "out"):
            raise CommandError(
                Text(
                    f"direction is in or out, not {direction!r}",
                    f"направление — in или out, а не {direction!r}",
                )
            )
        fields = {
            "From": src,
            "To": dst,
            "Start": _int(start, "start"),
            "End": _int(end, "end"),
            "Duration": _int(duration, "duration"),
            "Record": record,
            "Direction": "0" if direction.lower() == "in" else "1",
            "Line": line,
            "ClientGUID": "*",
            "CallID": call_id,
            "System": system,
        }
        return _generate(4, fields)
    # smsstatus: ours; the vendor's console has no command for type 256
    dst, result, guid, call_id, system = _args(rest, 2, 3, syntax)
    assert result is not None
    fields = {"To": dst, "Result": _int(result, "result"), "ClientGUID": guid or "*"}
    fields |= {"CallID": call_id, "System": system}
    return _generate(256, fields)


def parse_command(line: str) -> Action | None:
    """One console line → its :class:`Action`; ``None`` for a blank line or a comment.

    Raises :class:`CommandError` for anything that can't be run.
    """
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:  # an unclosed quote
        raise CommandError(
            Text(f"cannot split the line: {exc}", f"не удалось разобрать строку: {exc}")
        ) from None
    if not words:
        return None
    name, rest = words[0].lower(), words[1:]
    if name == "clients":
        _args(rest, 0, 0, "Clients")
        return Action(
            "request", lambda rid: protocol.get_clients_request(rid, protocol_version=PV), "clients"
        )
    if name == "version":
        _args(rest, 0, 0, "Version")
        return Action(
            "request", lambda rid: protocol.get_version_request(rid, protocol_version=PV), "version"
        )
    if name == "call":
        src, dst = _args(rest, 2, 0, "Call <from> <to>")
        return Action(
            "request",
            lambda rid: protocol.call_request(src or "", dst or "", rid, protocol_version=PV),
        )
    if name == "transfer":
        call_id, dst = _args(rest, 2, 0, "Transfer <callID> <to>")
        return Action(
            "request",
            lambda rid: protocol.transfer_request(
                call_id or "", dst or "", rid, protocol_version=PV
            ),
        )
    if name == "generate":
        return _parse_generate(rest)
    if name == "sms":
        syntax = "Sms <from> <to> <CRM GUID> <CallID> <base64 text> [serviceInfo]"
        src, dst, guid, call_id, text, system = _args(rest, 5, 1, syntax)
        fields = {"From": src, "To": dst, "Smstext": text, "ClientGUID": guid}
        fields |= {"CallID": call_id, "System": system}
        return _generate(128, fields)
    if name == "simulation":
        on = _on_off(rest, "Simulation on|off")
        return Action(
            "request", lambda rid: protocol.simulation_request(on, rid, protocol_version=PV)
        )
    if name == "events":
        if not rest:
            return Action("events", events=None)
        return Action("events", events=_on_off(rest, "Events [on|off]"))
    if name in ("help", "?"):
        return Action("help")
    if name in ("quit", "exit"):
        return Action("quit")
    if name == "connect":
        raise CommandError(
            Text(
                "give the address on the command line: pz-excel diag ws://HOST:PORT",
                "укажите адрес в командной строке: pz-excel diag ws://ХОСТ:ПОРТ",
            )
        )
    raise CommandError(
        Text(
            f"unknown command {words[0]!r}; Help lists the commands",
            f"неизвестная команда {words[0]!r}; список команд — Help",
        )
    )


# --------------------------------------------------------------------------- printing


def _when(value: int | None) -> str:
    if value is None:
        return "?"
    try:
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(value)


def _sms_text(b64: str) -> str:
    try:
        return base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return b64  # not base64 (or mangled by a lowercasing console): show it as sent


def describe_event(event: protocol.Event) -> str:
    """One line that says what happened, in the current language."""
    parts = [f"{event.name} [{event.type}]"]
    if event.from_:
        parts.append(_t("from", "от") + f" {event.from_}")
    if event.to:
        parts.append(_t("to", "кому") + f" {event.to}")
    if event.line:
        parts.append(_t("line", "линия") + f" {event.line}")
    if event.type == 4:
        direction = {0: _t("incoming", "входящий"), 1: _t("outgoing", "исходящий")}
        parts.append(direction.get(event.direction or 0, str(event.direction)))
        parts.append(_t("start", "начало") + f" {_when(event.start)}")
        parts.append(_t("duration", "длительность") + f" {event.duration or 0} " + _t("s", "с"))
        if event.record:
            parts.append(_t("record", "запись") + f" {event.record}")
    if event.type == 128:
        parts.append(_t("text", "текст") + f" {_sms_text(event.smstext)!r}")
    if event.type == 256:
        results = {0: _t("sending", "отправляется"), 1: _t("sent", "отправлено")}
        parts.append(results.get(event.result or 0, _t("failed", "ошибка")) + f" ({event.result})")
    if event.system:
        parts.append(_t("info", "инфо") + f" {event.system}")
    parts.append(f"callID {event.call_id}")
    shown = {"type", "callID", "from", "to", "line", "direction", "start", "end", "duration"}
    shown |= {"record", "smstext", "result", "system", "missed", "missedFinal"}
    extra = [f"{k}={v!r}" for k, v in event.attrs.items() if k not in shown]
    parts.extend(extra)
    if event.missed:
        parts.append(
            _t("(missed, last)", "(пропущенное, последнее)")
            if event.missed_final
            else _t("(missed)", "(пропущенное)")
        )
    return "<- " + ", ".join(parts)


def clients_table(clients: Sequence[dict[str, str] | Any]) -> str:
    """GetClients rows as the vendor lists them: index, type, ip, guid, state, extension."""
    header = ["#", _t("type", "тип"), "ip", "GUID", _t("state", "состояние"), _t("ext", "доб.")]
    rows = [header]
    for c in clients:
        state = (
            _t("connected", "подключён") if c.get("Connected") == "1" else _t("offline", "отключён")
        )
        rows.append(
            [
                c.get("id", ""),
                c.get("type", ""),
                c.get("ip", ""),
                c.get("GUID", ""),
                state,
                c.get("PhoneNumber", ""),
            ]
        )
    if len(rows) == 1:
        return _t("no clients", "клиентов нет")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --------------------------------------------------------------------------- the console


class Console:
    """A connected console: runs commands, prints answers and (when on) events."""

    def __init__(
        self,
        client: ConnectorClient,
        *,
        events: bool = False,
        timeout: float = 5.0,
        echo: Callable[[str], None] = click.echo,
    ):
        self.client = client
        self.events = events
        self.timeout = timeout
        self.echo = echo
        self.lost: Text | None = None  # why the connection ended, if it did on its own
        self.ended = threading.Event()
        self._closing = False
        self._print_lock = threading.Lock()
        self.prompt_active = False  # interactive: redraw the prompt after an event line

    # Called on the connector's delivery thread.
    def on_event(self, event: protocol.Event) -> None:
        if self.events:
            self._print_async(describe_event(event))

    def on_state(self, state: ConnectionState) -> None:
        if state.kind == "stopped" and not self._closing and self.lost is None:
            self.lost = _why(state)
            self.ended.set()
            self._print_async(
                _t("Connection ended: ", "Соединение завершено: ") + str(self.lost), err=True
            )

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
        self._closing = True

    def run(self, line: str) -> bool | None:
        """Run one line. True: done; False: it failed (the reason is printed); None: quit."""
        try:
            action = parse_command(line)
        except CommandError as exc:
            self.echo(_t("Error: ", "Ошибка: ") + str(exc.text))
            return False
        if action is None:
            return True
        if action.kind == "quit":
            return None
        if action.kind == "help":
            self.echo(HELP + ("\n" + HELP_RU if current_lang() == "ru" else ""))
            return True
        if action.kind == "events":
            self.events = (not self.events) if action.events is None else action.events
            self.echo(
                _t("events on", "события включены")
                if self.events
                else _t("events off", "события выключены")
            )
            return True
        return self._request(action)

    def _request(self, action: Action) -> bool:
        from pz_excel.connector.client import ConnectorError

        assert action.build is not None
        try:
            response = self.client.request(action.build, timeout=self.timeout)
        except ConnectorError as exc:
            self.echo(_t("Error: ", "Ошибка: ") + str(exc.text))
            return False
        if not response.ok:
            details = f": {response.details}" if response.details else ""
            self.echo(
                _t(
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
    click.echo(_t("Connected. Help lists the commands.", "Подключено. Список команд — Help."))
    with _line_history():
        while console.lost is None:
            console.prompt_active = True
            try:
                line = input(console.prompt)
            except EOFError:
                click.echo()
                return 0
            except KeyboardInterrupt:
                click.echo()
                return 0
            finally:
                console.prompt_active = False
            if console.run(line) is None:
                return 0
    return 1


# --------------------------------------------------------------------------- CLI


def _quiet_connector_logs() -> None:
    # Without logging set up, Python prints library warnings to stderr; the console
    # already tells the user why a connection ended, in both languages.
    if not logging.getLogger().handlers:
        logger = logging.getLogger("pz_excel.connector.client")
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


@click.command("diag")
@click.argument("url")
@click.option(
    "-c",
    "--command",
    "commands",
    multiple=True,
    metavar="COMMAND",
    help="Run COMMAND (repeatable, in order), then exit; non-zero exit if one fails.",
)
@click.option("--guid", default=DIAG_GUID, show_default=True, help="Client GUID to log in with.")
@click.option(
    "--password",
    envvar="PZ_PASSWORD",
    default="",
    show_envvar=True,
    help="Connector password (default: empty).",
)
@click.option("--events", "events_on", is_flag=True, help="Print received events from the start.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="After the -c commands (or alone), print events for SECONDS, then exit "
    "(implies --events).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to wait for the connection and for each answer.",
)
@click.option("--ca-file", type=click.Path(dir_okay=False), help="wss://: trust this CA file.")
@click.option("--pin", metavar="SHA256", help="wss://: trust only this certificate fingerprint.")
@click.option("--insecure", is_flag=True, help="wss://: don't check the certificate at all.")
@click.option(
    "--legacy-tls", is_flag=True, help="wss://: allow TLS 1.0 of old connectors (needs --pin)."
)
def command(
    url: str,
    commands: tuple[str, ...],
    guid: str,
    password: str,
    events_on: bool,
    wait: float,
    timeout: float,
    ca_file: str | None,
    pin: str | None,
    insecure: bool,
    legacy_tls: bool,
) -> None:
    """Diagnostic console for a connector at URL (e.g. ws://127.0.0.1:10150).

    Mirrors the vendor's Diagnostic console: connects as client type Diagnostic and
    receives every event. Without -c it is interactive (type Help). Commands are
    case-insensitive; their arguments keep their case (the vendor's console lowercases
    them, which breaks base64 SMS text).
    """
    from pz_excel.connector.client import ConnectorClient, TlsConfigError, TlsOptions

    _quiet_connector_logs()
    try:
        settings = protocol.ConnectSettings(
            server=url,
            phone="",
            password=password,
            client_type=DIAG_CLIENT_TYPE,
            guid=guid,
            broadcast_mask=DIAG_MASK,
        )
        settings.url  # noqa: B018 - validate the address now
        tls = TlsOptions(verify=not insecure, ca_file=ca_file, pin_sha256=pin, legacy=legacy_tls)
    except protocol.ProtocolError as exc:
        raise UserError(Text(f"bad setting: {exc}", f"неверная настройка: {exc}")) from exc
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

    client = ConnectorClient(
        settings,
        header_login=True,
        request_version=PV,
        reconnect=False,
        tls=tls,
        connect_timeout=timeout,
    )
    console = Console(client, events=events_on or wait > 0, timeout=timeout)
    client.subscribe(console.on_event)
    client.start()
    try:
        if not client.wait_connected(timeout + 1):
            why = _why(client.state)
            raise UserError(
                Text(
                    f"cannot connect to {settings.url}: {why.en}",
                    f"не удалось подключиться к {settings.url}: {why.ru}",
                )
            )
        client.on_state(console.on_state)
        if client.state.kind == "stopped":  # ended between the two lines above
            console.on_state(client.state)
        scripted = bool(commands) or wait > 0  # --wait alone: just watch events
        code = _script(console, commands, wait) if scripted else _interactive(console)
    finally:
        console.close()
        client.stop()
    if code:
        sys.exit(code)


def _script(console: Console, commands: Sequence[str], wait: float) -> int:
    for line in commands:
        result = console.run(line)
        if result is None:
            return 0
        if result is False:
            click.echo(_t(f"Command failed: {line}", f"Команда не выполнена: {line}"), err=True)
            return 1
    if wait > 0:
        try:
            console.ended.wait(wait)  # ends early if the connector drops us
        except KeyboardInterrupt:
            pass
    return 1 if console.lost is not None else 0
