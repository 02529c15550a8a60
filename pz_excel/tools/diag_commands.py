"""The diagnostic console's commands, as the vendor's console takes them: parsing a typed
line into an action (``parse_command``), and the help text."""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pz_excel.i18n import Text
from pz_excel.protocol import codec as protocol

DIAG_GUID = "diag"
DIAG_CLIENT_TYPE = "Diagnostic"
DIAG_MASK = 65535
PV = protocol.DIAG_REQUEST_VERSION

#: What the vendor's console sends for a line or record not given (PROTOCOL.md §4: the
#: server then emits ``line=" "``, as in both captures; leaving it out gives ``line=""``).
BLANK = " "

HELP = """\
Commands (command words in any case; arguments keep their case — unlike the vendor's
console, which lowercases the whole line and so mangles base64 SMS text):

  Connect <host>:<port> <client guid> [ssl]
                        connect as client type Diagnostic with every extension's events
                        (BroadcastEventsMask 65535); asks for the password, which is not
                        shown (a --password or PZ_PASSWORD given to pz-excel diag is
                        used instead); an open connection is closed first
  ConnectEx <host>:<port> <client guid> <client type> [extension] [ssl]
                        the same, as that client type (e.g. excel) and extension
  ConnectMask <host>:<port> <client guid> <mask> [client type] [extension] [ssl]
                        the same, with that BroadcastEventsMask (0: only what a normal
                        client gets: its extension's events and transfer requests)
                        ssl: wss:// (trust: --ca-file, --pin, --legacy-tls); the vendor's
                        "proxy" is not supported: connect directly
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
  Events                                    print received events or stop (toggles,
                                            as the vendor's; an argument is ignored)
  Version                                   the connector's version
  Help                                      this text
  Quit | Exit                               leave

As the vendor's console: line and record not given are sent blank (" "); a call ID not
given is made here (Unix second << 18 | a counter) except for incoming, where the server
picks it. CRM GUID "*" (the default) means normal routing; another GUID also delivers the
event to that client. start/end are Unix seconds. Quote to pass spaces: line "a b".
"""

HELP_RU = """\
Слова команд — в любом регистре; регистр аргументов сохраняется (консоль вендора
переводит всю строку в нижний регистр и портит base64-текст SMS). Аргументы с пробелами
берите в кавычки. Connect, ConnectEx, ConnectMask спрашивают пароль и не показывают его
(или берут --password / PZ_PASSWORD); ssl — подключение по wss://. Events включает и
выключает вывод событий (переключатель, как у вендора). Не заданные линия и запись
уходят пустыми (" "), номер звонка (CallID) консоль придумывает сама, кроме incoming.
CRM GUID "*" (по умолчанию) — обычная маршрутизация; другой GUID — событие
дополнительно получит этот клиент.
"""


class CommandError(Exception):
    """A command line that can't be run: wrong syntax or arguments."""

    def __init__(self, text: Text):
        super().__init__(text.en)
        self.text = text


def say(en: str, ru: str) -> str:
    return str(Text(en, ru))


@dataclass(frozen=True)
class ConnectTarget:
    """Where and as whom a Connect command logs in (the password is asked when it runs)."""

    server: str  # ws://host:port/ or wss://host:port/
    guid: str
    client_type: str = DIAG_CLIENT_TYPE
    phone: str = ""
    mask: int = DIAG_MASK

    def settings(self, password: str) -> protocol.ConnectSettings:
        """Raises ``protocol.ProtocolError`` for a password over the length limit."""
        return protocol.ConnectSettings(
            server=self.server,
            phone=self.phone,
            password=password,
            client_type=self.client_type,
            guid=self.guid,
            broadcast_mask=self.mask,
        )


@dataclass(frozen=True)
class Action:
    """What one command line does.

    ``kind``: ``request`` (send ``build(request_id)``; ``show`` says how to print the
    answer: ``ok``, ``clients`` or ``version``), ``connect`` (to ``target``), ``events``
    (toggle), ``help``, ``quit``.
    """

    kind: str
    build: Callable[[int], str] | None = None
    show: str = "ok"
    target: ConnectTarget | None = None


class CallIds:
    """Call IDs for a Generate without one, made as the vendor's console makes them: the
    Unix second shifted left by 18 bits, or'ed with a counter of this console (1, 2, …).

    Read off the captures: a fresh console sent ``<CallID>470667183259649`` at
    1795452817.9 = (1795452817 << 18) | 1, then 470667183783938 = (1795452819 << 18) | 2;
    the events the other console generated count 1…7 the same way. ``clock`` is
    injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._count = self._count % ((1 << 18) - 1) + 1
            return str((int(self._clock()) << 18) | self._count)


#: The console's own call IDs (one counter per process, as the vendor's console has).
CALL_IDS = CallIds()


def usage_error(syntax: str) -> CommandError:
    return CommandError(Text(f"usage: {syntax}", f"синтаксис: {syntax}"))


def take_args(words: list[str], required: int, optional: int, syntax: str) -> list[str | None]:
    """Check the argument count; pad absent optional ones with None."""
    if not required <= len(words) <= required + optional:
        raise usage_error(syntax)
    return [*words, *[None] * (required + optional - len(words))]


def int_arg(value: str, name: str) -> str:
    try:
        int(value)
    except ValueError:
        raise CommandError(
            Text(f"{name} must be a number, not {value!r}", f"{name} — это число, а не {value!r}")
        ) from None
    return value


def on_off(words: list[str], syntax: str) -> bool:
    if len(words) != 1 or words[0].lower() not in ("on", "off"):
        raise usage_error(syntax)
    return words[0].lower() == "on"


def or_blank(value: str | None) -> str:
    return BLANK if value is None else value


def generate_action(
    event_type: int, fields: dict[str, str | None], call_ids: CallIds | None = None
) -> Action:
    """A Generate request; with ``call_ids``, a CallID not given is made when it is sent."""

    def build(rid: int) -> str:
        sent = dict(fields)
        if call_ids is not None and sent.get("CallID") is None:
            sent["CallID"] = call_ids.next()
        return protocol.generate_request(event_type, sent, rid, protocol_version=PV)

    return Action("request", build)


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


def parse_generate(words: list[str], call_ids: CallIds) -> Action:
    """The vendor's console sends ``<Line> </Line>`` and ``<Record> </Record>`` for a line
    and a record not given, and makes a CallID for every kind but ``incoming`` (whose ID
    the server picks): see :data:`BLANK` and :class:`CallIds`."""
    if not words:
        raise usage_error(
            "Generate incoming|transfer|transans|outcoming|outans|history|smsstatus …"
        )
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
        src, line, system = take_args(rest, 1, 2, syntax)
        fields = {"From": src, "Line": or_blank(line), "ClientGUID": "*", "System": system}
        return generate_action(1, fields)
    if kind in ("transfer", "transans"):
        src, dst, line, guid, call_id, system = take_args(rest, 2, 4, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "Line": or_blank(line)}
        fields |= {"ClientGUID": guid or "*", "System": system}
        return generate_action(2 if kind == "transfer" else 32, fields, call_ids)
    if kind in ("outcoming", "outans"):
        src, dst, guid, call_id, system = take_args(rest, 2, 3, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "ClientGUID": guid or "*"}
        fields["System"] = system
        return generate_action(8 if kind == "outcoming" else 16, fields, call_ids)
    if kind == "history":
        src, dst, start, end, duration, direction, record, line, call_id, system = take_args(
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
            "Start": int_arg(start, "start"),
            "End": int_arg(end, "end"),
            "Duration": int_arg(duration, "duration"),
            "Record": or_blank(record),
            "Direction": "0" if direction.lower() == "in" else "1",
            "Line": or_blank(line),
            "ClientGUID": "*",
            "CallID": call_id,
            "System": system,
        }
        return generate_action(4, fields, call_ids)
    # smsstatus: ours; the vendor's console has no command for type 256
    dst, result, guid, call_id, system = take_args(rest, 2, 3, syntax)
    assert result is not None
    fields = {"To": dst, "Result": int_arg(result, "result"), "ClientGUID": guid or "*"}
    fields |= {"CallID": call_id, "System": system}
    return generate_action(256, fields)


CONNECT_SYNTAX = {
    "connect": "Connect <host>:<port> <client guid> [ssl]",
    "connectex": "ConnectEx <host>:<port> <client guid> <client type> [extension] [ssl]",
    "connectmask": "ConnectMask <host>:<port> <client guid> <mask> [client type] [extension] [ssl]",
}


def server_address(address: str, secure: bool) -> str:
    """``host:port`` (the vendor's form; ``ws://…`` too) → the URL; ``ssl``: ``wss://``.
    Checked by the one address rule before the scheme is chosen, so ``ws//host`` is
    refused rather than read as a host named "ws"."""
    try:
        url = protocol.normalize_server_url(address)
    except protocol.ProtocolError as exc:
        raise CommandError(exc.text) from None
    if secure and "://" not in address:
        url = "wss" + url[len("ws") :]
    elif secure and not url.startswith("wss://"):
        raise CommandError(
            Text(
                f"ssl needs a wss:// address, not {address!r}",
                f"для ssl нужен адрес wss://, а не {address!r}",
            )
        )
    return url


def parse_connect(name: str, words: list[str]) -> Action:
    """Connect / ConnectEx / ConnectMask (PROTOCOL.md §6; the arguments of the last two
    are ours: the vendor's help only names them)."""
    syntax = CONNECT_SYNTAX[name]
    secure = False
    if words and words[-1].lower() in ("ssl", "proxy"):
        if words[-1].lower() == "proxy":
            raise CommandError(
                Text(
                    "proxy is not supported here: connect directly (ssl for wss://)",
                    "proxy здесь не поддерживается: подключайтесь напрямую (ssl — это wss://)",
                )
            )
        secure, words = True, words[:-1]
    client_type: str | None = DIAG_CLIENT_TYPE
    phone: str | None = ""
    mask = DIAG_MASK
    if name == "connect":
        address, guid = take_args(words, 2, 0, syntax)
    elif name == "connectex":
        address, guid, client_type, phone = take_args(words, 3, 1, syntax)
    else:
        address, guid, mask_text, client_type, phone = take_args(words, 3, 2, syntax)
        assert mask_text is not None
        mask = int(int_arg(mask_text, "mask"))
        if mask < 0:
            raise CommandError(Text("mask must not be negative", "маска не бывает отрицательной"))
    assert address is not None and guid is not None
    target = ConnectTarget(
        server_address(address, secure),
        guid,
        client_type or DIAG_CLIENT_TYPE,
        phone or "",
        mask,
    )
    return Action("connect", target=target)


def parse_command(line: str, call_ids: CallIds = CALL_IDS) -> Action | None:
    """One console line → its :class:`Action`; ``None`` for a blank line or a comment.
    ``call_ids`` makes the CallIDs a Generate line does not give.

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
        take_args(rest, 0, 0, "Clients")
        return Action(
            "request", lambda rid: protocol.get_clients_request(rid, protocol_version=PV), "clients"
        )
    if name == "version":
        take_args(rest, 0, 0, "Version")
        return Action(
            "request", lambda rid: protocol.get_version_request(rid, protocol_version=PV), "version"
        )
    if name == "call":
        src, dst = take_args(rest, 2, 0, "Call <from> <to>")
        return Action(
            "request",
            lambda rid: protocol.call_request(src or "", dst or "", rid, protocol_version=PV),
        )
    if name == "transfer":
        call_id, dst = take_args(rest, 2, 0, "Transfer <callID> <to>")
        return Action(
            "request",
            lambda rid: protocol.transfer_request(
                call_id or "", dst or "", rid, protocol_version=PV
            ),
        )
    if name == "generate":
        return parse_generate(rest, call_ids)
    if name == "sms":
        syntax = "Sms <from> <to> <CRM GUID> <CallID> <base64 text> [serviceInfo]"
        src, dst, guid, call_id, text, system = take_args(rest, 5, 1, syntax)
        fields = {"From": src, "To": dst, "Smstext": text, "ClientGUID": guid}
        fields |= {"CallID": call_id, "System": system}
        return generate_action(128, fields)
    if name == "simulation":
        on = on_off(rest, "Simulation on|off")
        return Action(
            "request", lambda rid: protocol.simulation_request(on, rid, protocol_version=PV)
        )
    if name == "events":  # toggles, whatever follows: the vendor's "events on" does too
        return Action("events")
    if name in ("help", "?"):
        return Action("help")
    if name in ("quit", "exit"):
        return Action("quit")
    if name in CONNECT_SYNTAX:
        return parse_connect(name, rest)
    raise CommandError(
        Text(
            f"unknown command {words[0]!r}; Help lists the commands",
            f"неизвестная команда {words[0]!r}; список команд — Help",
        )
    )
