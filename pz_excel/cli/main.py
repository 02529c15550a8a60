"""The ``pz-excel`` command. Each subcommand lives in its own module and is imported only
when run, so ``pz-excel --help`` is fast and a module's heavy imports stay where used."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from pz_excel import __version__
from pz_excel.cli import click_ru
from pz_excel.i18n import Text, UserError, tr

# name -> "module:attribute" of a click.Command; each module owns its options.
COMMANDS = {
    "init": (
        "pz_excel.cli.workbook_cmd:init_command",
        Text("write the CRM workbook template", "создать книгу-шаблон CRM"),
    ),
    "run": (
        "pz_excel.cli.agent_cmd:run_command",
        Text("run the call agent for a workbook", "запустить агента звонков для книги"),
    ),
    "status": (
        "pz_excel.cli.agent_cmd:status_command",
        Text("show the running agent's state", "состояние запущенного агента"),
    ),
    "call": (
        "pz_excel.cli.agent_cmd:call_command",
        Text("place a call through the running agent", "позвонить через запущенного агента"),
    ),
    "demo": (
        "pz_excel.cli.demo:demo_command",
        Text(
            "the whole product on a built-in test connector",
            "весь продукт на встроенном тестовом коннекторе",
        ),
    ),
    "testserver": (
        "pz_excel.tools.testserver_cli:command",
        Text("the vendor's TestServer, stand-in", "замена TestServer производителя"),
    ),
    "diag": (
        "pz_excel.tools.diag:command",
        Text("diagnostic console for a connector", "диагностическая консоль коннектора"),
    ),
    "addin": (
        "pz_excel.excel.addin:command",
        Text(
            "build, install or remove the Excel ribbon add-in",
            "собрать, установить или удалить надстройку Excel",
        ),
    ),
    "bench": (
        "bench.__main__:command",
        Text("run the benchmarks and print the figures", "бенчмарки с выводом цифр"),
    ),
    "password": (
        "pz_excel.cli.password_cmd:password_command",
        Text("store the connector password", "сохранить пароль коннектора"),
    ),
    "contact": (
        "pz_excel.cli.contact_cmd:contact_command",
        Text("add a contact through the agent", "добавить контакт через агента"),
    ),
    "team": (
        "pz_excel.cli.team_cmd:team_group",
        Text("the team server and its status", "сервер команды и его состояние"),
    ),
    "sms": (
        "pz_excel.cli.sms_cmd:sms_command",
        Text("send an SMS through the agent", "отправить SMS через агента"),
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        if module.startswith("bench."):
            _find_source_checkout()
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if module.startswith("bench.") and exc.name in ("bench", module):
                return _not_installed(name)
            if exc.name != module:  # a real missing dependency must not hide as "not built"
                raise
            return _missing(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section(tr("Commands", "Команды")):
            formatter.write_dl([(name, str(COMMANDS[name][1])) for name in sorted(COMMANDS)])


def _find_source_checkout() -> None:
    """The benchmarks are a development tool, not installed with the package: they run
    from a source checkout (``pip install -e .`` of the repository), found beside the
    package's folder."""
    root = Path(__file__).resolve().parents[2]
    if (root / "bench" / "__main__.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _not_installed(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        click.echo(
            "pz-excel bench runs from a source checkout of pz-excel (the benchmarks are "
            "not installed with the package) / бенчмарки запускаются из исходников "
            "pz-excel, с пакетом они не устанавливаются",
            err=True,
        )
        sys.exit(2)

    return placeholder


def _missing(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        click.echo(f"'{name}' is not available in this build yet / команда пока недоступна")
        sys.exit(2)

    return placeholder


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=tr(
        "pz-excel — Prostie Zvonki (Простые Звонки) telephony for Excel workbooks.",
        "pz-excel — телефония «Простых Звонков» для книг Excel.",
    ),
)
@click.version_option(
    __version__,
    prog_name="pz-excel",
    help=tr("Show the version and exit.", "Показать версию и выйти."),
)
def cli() -> None:
    """The ``pz-excel`` group; its subcommands are loaded lazily (``COMMANDS``)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one clear line and exit code 2, never a traceback."""
    click_ru.install()
    try:
        cli.main(args=argv, prog_name="pz-excel", standalone_mode=False)
    except UserError as exc:
        click.echo(f"pz-excel: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("pz-excel: stopped / остановлено", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if os.environ.get("PZ_DEBUG"):
            raise
        report = _crash_report()
        click.echo(
            f"pz-excel: internal error / внутренняя ошибка: {type(exc).__name__}: {exc}\n"
            f"  details / подробности: {report}",
            err=True,
        )
        return 1
    return 0


def _crash_report() -> str:
    """Write the traceback to a file the user can send us; return its path."""
    import tempfile
    import time
    import traceback

    try:
        from pz_excel import paths

        folder = paths.home() / "crash"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir())
    path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text(traceback.format_exc(), encoding="utf-8")
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
