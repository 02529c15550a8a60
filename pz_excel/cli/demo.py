"""``pz-excel demo``: the whole product on the embedded default, in under 30 seconds.

Starts our test connector in-process on a free loopback port, writes a demo workbook
(a few hundred contacts with owners, three managers), runs the agent for extension 101 and
plays a scripted set of calls, then reads the Calls sheet back and prints it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from pz_excel.i18n import Text, UserError, current_lang, tr

MANAGERS = [("Анна Смирнова", "101"), ("Борис Иванов", "102"), ("Вера Петрова", "103")]
ME = "101"


def _wait(predicate: Callable[[], bool], timeout: float, what: Text) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise UserError(Text(f"demo step timed out: {what.en}", f"шаг демо не дождался: {what.ru}"))


def run_demo(directory: Path, lang: str, console: Console, contacts: int = 300) -> Path:
    # Imports here keep `pz-excel --help` fast.
    from pz_excel.agent.api import ApiClient
    from pz_excel.agent.lifecycle import Agent, AgentConfig
    from pz_excel.books.template import demo_contacts, write_template
    from pz_excel.tools.testserver import ServerThread

    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PZ_EXCEL_HOME"] = str(directory / "state")  # demo state stays in its folder
    book = directory / "pz-excel-demo.xlsx"
    journal = directory / "state" / "demo-journal.sqlite"
    for stale in (book, journal, *(Path(f"{journal}{s}") for s in ("-wal", "-shm", "-spool"))):
        stale.unlink(missing_ok=True)

    ru = lang == "ru"
    steps = 9
    step_no = 0

    def step(text: Text) -> None:
        nonlocal step_no
        step_no += 1
        console.print(f"[bold cyan][{step_no}/{steps}][/] {text.ru if ru else text.en}")

    started = time.monotonic()
    decisions: list = []
    step(Text("Starting the built-in test connector", "Запускаем встроенный тестовый коннектор"))
    server = ServerThread(host="127.0.0.1", port=0, production_like=True).start()
    agent = None
    try:
        step(
            Text(
                f"Writing the demo workbook ({contacts} contacts, 3 managers)",
                f"Создаём демо-книгу ({contacts} контактов, 3 менеджера)",
            )
        )
        people = demo_contacts(contacts, MANAGERS, seed=7)
        write_template(
            book,
            lang=lang,
            force=True,
            contacts=people,
            managers=MANAGERS,
            settings={"server": server.url, "phone": ME},
        )
        mine = next(c for c in people if c[2] == MANAGERS[0][0])  # owned by Anna (101)
        annas = [c for c in people if c[2] == MANAGERS[0][0] and c is not mine]
        dialled = next((c for c in annas if people.index(c) >= 20), annas[-1])  # click-to-call
        boris = next(c for c in people if c[2] == MANAGERS[1][0])  # owned by Boris (102)

        def start_agent() -> Agent:
            cfg = AgentConfig(
                workbook=book,
                server=server.url,
                phone=ME,
                lang=lang,
                journal=journal,
                save_interval=0.3,
            )
            fresh = Agent(cfg)
            fresh.on_decision = decisions.append
            return fresh.start()

        step(Text("Starting the agent for extension 101", "Запускаем агента для добавочного 101"))
        agent = start_agent()
        _wait(
            lambda: agent.client.state.kind == "connected",
            10,
            Text("agent connected", "агент подключился"),
        )
        t0 = int(time.time()) - 3600

        step(
            Text(
                f"Known caller {mine[1]} ({mine[0]}) → transferred to the owner's extension",
                f"Известный клиент {mine[1]} ({mine[0]}) → перевод на ответственного",
            )
        )
        server.generate(1, {"From": mine[1], "CallID": "900000000000001", "Line": "1"})
        _wait(
            lambda: server.transfers.get("900000000000001") == ME,
            5,
            Text("transfer answered", "ответ на перевод"),
        )
        server.generate(32, {"From": mine[1], "To": ME, "CallID": "900000000000001", "Line": "1"})
        server.generate(
            4,
            {
                "From": mine[1],
                "To": ME,
                "CallID": "900000000000001",
                "Start": str(t0),
                "End": str(t0 + 95),
                "Duration": "95",
                "Direction": "0",
                "Line": "1",
                "Record": "http://records.example/900000000000001.mp3",
            },
        )

        step(
            Text(
                f"Caller {boris[1]} of Boris (102) → routed to 102, not to us",
                f"Клиент Бориса (102) {boris[1]} → направлен на 102, не к нам",
            )
        )
        server.generate(1, {"From": boris[1], "CallID": "900000000000002"})
        _wait(
            lambda: server.transfers.get("900000000000002") == "102",
            5,
            Text("transfer answered", "ответ на перевод"),
        )

        step(
            Text(
                "Unknown caller +7 999 000-00-00 → declined (no fallback)",
                "Неизвестный номер +7 999 000-00-00 → отказ (нет запасного)",
            )
        )
        server.generate(1, {"From": "79990000000", "CallID": "900000000000003"})
        _wait(
            lambda: any(d.call_id == "900000000000003" for d in decisions),
            5,
            Text("decline sent", "отказ отправлен"),
        )

        step(
            Text(
                "Click-to-call from the workbook (the ribbon's Call button)",
                "Звонок из книги (кнопка «Позвонить» на ленте)",
            )
        )
        api = ApiClient.discover(workbook=book, timeout=5.0)
        result = api.post("/call", {"number": dialled[1]})
        if result["code"] != 0:
            raise UserError(Text("click-to-call refused", "звонок отклонён"))
        for etype, extra in (
            (8, {}),
            (16, {}),
            (
                4,
                {
                    "Start": str(t0 + 600),
                    "End": str(t0 + 660),
                    "Duration": "60",
                    "Direction": "1",
                    "Record": "http://records.example/900000000000004.mp3",
                },
            ),
        ):
            server.generate(
                etype, {"From": ME, "To": dialled[1], "CallID": "900000000000004", **extra}
            )

        step(Text("A missed call (rang, nobody answered)", "Пропущенный звонок (никто не ответил)"))
        server.generate(2, {"From": people[9][1], "To": ME, "CallID": "900000000000005"})
        server.generate(
            4,
            {
                "From": people[9][1],
                "To": ME,
                "CallID": "900000000000005",
                "Start": str(t0 + 900),
                "End": str(t0 + 930),
                "Duration": "0",
                "Direction": "0",
            },
        )
        _wait(
            lambda: agent.journal.stats().get("dirty", 0) == 0 and agent.rows_written >= 3,
            10,
            Text("rows written to Calls", "строки записаны в «Звонки»"),
        )

        step(
            Text(
                "Agent offline; a call completes meanwhile; agent back → late row",
                "Агент отключён; тем временем звонок завершился; агент снова в сети → "
                "запоздавшая строка",
            )
        )
        agent.stop()
        server.generate(
            4,
            {
                "From": people[12][1],
                "To": ME,
                "CallID": "900000000000006",
                "Start": str(t0 + 1200),
                "End": str(t0 + 1290),
                "Duration": "90",
                "Direction": "0",
                "Record": "http://records.example/900000000000006.mp3",
            },
        )
        agent = start_agent()
        _wait(
            lambda: agent.journal.get_call("900000000000006") is not None,
            10,
            Text("replayed call received", "получен повторно доставленный звонок"),
        )
        _wait(
            lambda: agent.journal.stats().get("dirty", 0) == 0,
            10,
            Text("rows written to Calls", "строки записаны в «Звонки»"),
        )
    finally:
        if agent is not None:
            agent.stop()
        server.stop()

    _print_decisions(decisions, lang, console)
    _print_calls(book, lang, console)
    console.print(
        str(
            Text(
                f"\nWorkbook: {book}\nDone in {time.monotonic() - started:.1f} s. "
                f"Open the workbook and look at the Calls sheet.",
                f"\nКнига: {book}\nГотово за {time.monotonic() - started:.1f} с. Откройте книгу, "
                f"лист «Звонки».",
            )
        )
    )
    return book


def fitted_table(
    title: str, headers: list[str], rows: list[list[str]], width: int, drop_first: list[int]
) -> Table:
    """A table that fits ``width`` (a pipe or a narrow terminal gets 80 columns) without
    breaking a word: columns are left out in ``drop_first`` order until every kept column
    can be as wide as its longest word; the space left widens the columns whose text wraps,
    one character at a time, so no column gets more than its longest line needs."""

    def texts(i: int) -> list[str]:
        return [headers[i], *(row[i] for row in rows)]

    def longest_word(i: int) -> int:
        return max((len(word) for text in texts(i) for word in text.split()), default=1)

    keep = list(range(len(headers)))
    dropping = [i for i in drop_first if i in keep]
    room = lambda: width - 1 - 3 * len(keep)  # noqa: E731 - borders and padding per column
    while dropping and sum(longest_word(i) for i in keep) > room():
        keep.remove(dropping.pop(0))
    widths = {i: longest_word(i) for i in keep}
    full = {i: max(len(text) for text in texts(i)) for i in keep}
    spare = room() - sum(widths.values())
    while spare > 0 and any(widths[i] < full[i] for i in keep):
        for i in keep:
            if spare > 0 and widths[i] < full[i]:
                widths[i] += 1
                spare -= 1
    table = Table(title=title, title_justify="left")
    for i in keep:
        table.add_column(headers[i], width=widths[i], overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def _print_decisions(decisions: list, lang: str, console: Console) -> None:
    ru = lang == "ru"
    headers = (
        ["ID звонка", "Звонит", "Кому", "Почему"] if ru else ["Call ID", "Caller", "To", "Why"]
    )
    rows = [
        [
            d.call_id,
            d.caller,
            d.to or ("отказ" if ru else "declined"),
            str(d.reason.ru if ru else d.reason.en),
        ]
        for d in decisions
    ]
    title = "Умный перевод" if ru else "Smart transfer"
    console.print(fitted_table(title, headers, rows, console.width, drop_first=[0]))


def _print_calls(book: Path, lang: str, console: Console) -> None:
    """Read the Calls sheet back from the file, as Excel would show it."""
    from openpyxl import load_workbook

    from pz_excel.crm.schema import CALLS

    wb = load_workbook(book, read_only=True)
    rows = list(wb[CALLS.title(lang)].iter_rows(values_only=True))
    wb.close()
    keep = [
        "call_id",
        "direction",
        "status",
        "client_phone",
        "contact",
        "owner",
        "duration",
        "recording",
        "late",
    ]
    header = list(rows[0])
    idx = [header.index(CALLS.column(k).header(lang)) for k in keep]
    table_rows = []
    for row in rows[1:]:
        cells = []
        for key, i in zip(keep, idx, strict=True):
            value = row[i] if i < len(row) else None  # read-only rows stop at the last value
            if key == "recording":
                value = "✓" if value else ""
            cells.append("" if value is None else str(value))
        table_rows.append(cells)
    least_needed = [keep.index(k) for k in ("late", "recording", "duration", "direction")]
    title = f"{CALLS.title(lang)} — {book.name}"
    headers = [str(header[i]) for i in idx]
    console.print(fitted_table(title, headers, table_rows, console.width, least_needed))


@click.command(
    "demo",
    help=tr(
        "Run the whole product on a built-in test connector with a scripted set of calls.",
        "Весь продукт на встроенном тестовом коннекторе: сценарий звонков от начала до конца.",
    ),
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("pz-excel-demo"),
    show_default=True,
    help=tr("Where the demo workbook and its journal go.", "Папка для демо-книги и журнала."),
)
@click.option(
    "--lang",
    type=click.Choice(["en", "ru"]),
    default=None,
    help=tr("Language of the workbook and output.", "Язык книги и вывода."),
)
@click.option(
    "--contacts",
    default=300,
    show_default=True,
    type=click.IntRange(10, 1_000_000),
    help=tr("How many demo contacts.", "Сколько демо-контактов."),
)
def demo_command(directory: Path, lang: str | None, contacts: int) -> None:
    """Run the whole product on a built-in test connector with a scripted set of calls."""
    run_demo(directory.resolve(), lang or current_lang(), Console(), contacts)
