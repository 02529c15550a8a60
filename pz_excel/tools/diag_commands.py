"""The diagnostic console's commands, as the vendor's console takes them: parsing a typed
line into an action (``parse_command``), and the help text."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from pz_excel.i18n import Text
from pz_excel.protocol import codec as protocol

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


def say(en: str, ru: str) -> str:
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


def generate_action(event_type: int, fields: dict[str, str | None]) -> Action:
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


def parse_generate(words: list[str]) -> Action:
    if not words:
        raise usage_error(
            "Generate incoming|transfer|transans|outcoming|outans|history|smsstatus …")
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
        return generate_action(1, {"From": src, "Line": line, "ClientGUID": "*", "System": system})
    if kind in ("transfer", "transans"):
        src, dst, line, guid, call_id, system = take_args(rest, 2, 4, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "Line": line}
        fields |= {"ClientGUID": guid or "*", "System": system}
        return generate_action(2 if kind == "transfer" else 32, fields)
    if kind in ("outcoming", "outans"):
        src, dst, guid, call_id, system = take_args(rest, 2, 3, syntax)
        fields = {"From": src, "To": dst, "CallID": call_id, "ClientGUID": guid or "*"}
        fields["System"] = system
        return generate_action(8 if kind == "outcoming" else 16, fields)
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
            "Record": record,
            "Direction": "0" if direction.lower() == "in" else "1",
            "Line": line,
            "ClientGUID": "*",
            "CallID": call_id,
            "System": system,
        }
        return generate_action(4, fields)
    # smsstatus: ours; the vendor's console has no command for type 256
    dst, result, guid, call_id, system = take_args(rest, 2, 3, syntax)
    assert result is not None
    fields = {"To": dst, "Result": int_arg(result, "result"), "ClientGUID": guid or "*"}
    fields |= {"CallID": call_id, "System": system}
    return generate_action(256, fields)


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
        return parse_generate(rest)
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
    if name == "events":
        if not rest:
            return Action("events", events=None)
        return Action("events", events=on_off(rest, "Events [on|off]"))
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


