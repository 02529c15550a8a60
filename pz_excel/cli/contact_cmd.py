"""``pz-excel contact add NUMBER --name NAME --owner OWNER``: a caller not in Contacts
yet becomes a contact, through the running agent (it owns the workbook's writes and the
routing, which knows the number at once). Which agent: ``-w BOOK``, as ``status`` and
``call`` choose (``agent.discovery.choose_agent``)."""

from __future__ import annotations

from pathlib import Path

import click

from pz_excel.i18n import Text, tr

#: Seconds to wait for the agent: it saves the workbook and reads its contacts again.
ADD_TIMEOUT = 120.0


@click.group(
    "contact",
    help=tr(
        "Contacts of the workbook, through the running agent.",
        "Контакты книги — через запущенного агента.",
    ),
)
def contact_command() -> None:
    pass


@contact_command.command(
    "add",
    help=tr(
        "Add NUMBER to Contacts as NAME, owned by OWNER (a manager's name or extension "
        "on the Managers sheet). Calls from NUMBER go to OWNER's extension at once.",
        "Добавить номер NUMBER на лист «Контакты» с именем NAME и ответственным OWNER "
        "(имя или добавочный менеджера с листа «Менеджеры»). Звонки с этого номера сразу "
        "пойдут на добавочный ответственного.",
    ),
)
@click.argument("number")
@click.option("--name", "-n", required=True,
              help=tr("The contact's name.", "Имя контакта."))
@click.option("--owner", "-o", required=True,
              help=tr("A manager from the Managers sheet: name or extension.",
                      "Менеджер с листа «Менеджеры»: имя или добавочный."))
@click.option("--workbook", "-w", type=click.Path(dir_okay=False, path_type=Path),
              help=tr("The workbook whose agent adds it (needed when several run).",
                      "Книга, агент которой добавит контакт (нужно, если агентов несколько)."))
def add_command(number: str, name: str, owner: str, workbook: Path | None) -> None:
    from pz_excel.agent.api import ApiClient

    client = ApiClient.discover(workbook=workbook, timeout=ADD_TIMEOUT)
    done = client.post("/contacts", {"number": number, "name": name, "owner": owner})
    shown, row, who = done.get("display") or done["number"], done["row"], done["owner"]
    ext = done.get("extension") or "?"
    click.echo(str(Text(
        f"Added {done['name']} ({shown}) to Contacts, row {row}; owner {who}: calls from "
        f"this number now go to extension {ext}.",
        f"Контакт {done['name']} ({shown}) добавлен на лист «Контакты», строка {row}; "
        f"ответственный {who}: звонки с этого номера теперь идут на добавочный {ext}.",
    )))
