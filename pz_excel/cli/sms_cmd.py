"""``pz-excel sms NUMBER TEXT``: an SMS from the user's phone, through the running agent,
and its status as the connector reports it (type-256 events): sending, sent or failed.
Which agent: ``-w BOOK``, as ``status`` and ``call`` choose."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from pz_excel.i18n import Text, tr

#: How long the command waits for "sent" or "failed" by default (seconds).
WAIT = 30.0
#: How often it asks the agent meanwhile.
POLL = 0.25

SAID = {
    "sending": Text("sending…", "отправляется…"),
    "sent": Text("sent", "отправлено"),
    "failed": Text("failed: not sent", "ошибка: SMS не отправлено"),
    "unknown": Text("status unknown (the agent was restarted?)",
                    "статус неизвестен (агент перезапускали?)"),
}


@click.command(
    "sms",
    help=tr(
        "Send TEXT as an SMS to NUMBER from your phone, and wait for its status.",
        "Отправить SMS с текстом TEXT на номер NUMBER с вашего телефона и дождаться "
        "статуса.",
    ),
)
@click.argument("number")
@click.argument("text")
@click.option("--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path),
              help=tr("The workbook whose agent sends it (needed when several run).",
                      "Книга, агент которой отправит SMS (нужно, если агентов несколько)."))
@click.option("--no-wait", is_flag=True,
              help=tr("Do not wait for the status.", "Не ждать статуса."))
@click.option("--timeout", type=click.FloatRange(0, 600), default=WAIT, show_default=True,
              help=tr("Seconds to wait for sent or failed.",
                      "Сколько секунд ждать «отправлено» или «не отправлено»."))
def sms_command(number: str, text: str, workbook: Path | None, no_wait: bool,
                timeout: float) -> None:
    from pz_excel.agent.api import ApiClient

    client = ApiClient.discover(workbook=workbook, timeout=8.0)
    done = client.post("/sms", {"to": number, "text": text})
    call_id, status = str(done["call_id"]), str(done.get("status") or "sending")
    click.echo(str(Text(f"SMS to {done.get('to') or number} (ID {call_id}): ",
                        f"SMS на {done.get('to') or number} (ID {call_id}): "))
               + str(SAID.get(status, SAID["unknown"])))
    if no_wait:
        return
    deadline = time.monotonic() + timeout
    while status == "sending" and time.monotonic() < deadline:
        time.sleep(POLL)  # the agent holds the status; asking it is cheap
        new = str(client.get("/sms", call_id=call_id).get("status") or "unknown")
        if new != status:
            status = new
            click.echo(str(SAID.get(status, SAID["unknown"])))
    if status == "sending":
        click.echo(str(Text(
            f"still sending after {timeout:g} s; the phone may send it later "
            f"(pz-excel status shows the last event)",
            f"всё ещё отправляется спустя {timeout:g} с; телефон может отправить его позже "
            f"(последнее событие — в pz-excel status)",
        )))
    elif status == "failed":
        sys.exit(1)
    elif status == "unknown":
        sys.exit(1)
