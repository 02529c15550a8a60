"""Every command speaks the user's language (issue 12): ``--help`` of every ``COMMANDS``
entry and of its subcommands, every option's help, click's own words (Usage, Options,
errors), in Russian with ``PZ_LANG=ru`` and in English with ``PZ_LANG=en``.

Help texts are fixed when a command's module is imported, in the language of the process,
so each language is checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pz_excel.cli.main import COMMANDS

DUMP = r"""
import json, sys
import click
from pz_excel.cli import click_ru, main
click_ru.install()
out = {}
def walk(path, cmd, parent):
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    out[" ".join(path)] = {
        "help": cmd.get_help(ctx),
        "text": cmd.help or "",
        "options": {p.name: p.help or "" for p in cmd.params
                    if isinstance(p, click.Option) and not p.hidden},
    }
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            walk(path + [name], cmd.get_command(ctx, name), ctx)
root = click.Context(main.cli, info_name="pz-excel")
for name in sorted(main.COMMANDS):
    walk([name], main.cli.get_command(root, name), root)
print(json.dumps(out, ensure_ascii=False))
"""

CYRILLIC = re.compile(r"[а-яё]", re.I)


def dump(lang: str) -> dict:
    env = dict(os.environ, PZ_LANG=lang)
    done = subprocess.run(
        [sys.executable, "-c", DUMP],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def ru() -> dict:
    return dump("ru")


@pytest.fixture(scope="module")
def en() -> dict:
    return dump("en")


def test_every_command_is_covered(ru) -> None:
    assert set(COMMANDS) <= set(ru)


def test_russian_help_for_every_command_and_option(ru) -> None:
    missing = []
    for path, cmd in ru.items():
        if not CYRILLIC.search(cmd["text"]):
            missing.append(f"{path}: command help")
        for option, text in cmd["options"].items():
            if option != "help" and not CYRILLIC.search(text):
                missing.append(f"{path} --{option}: {text!r}")
        assert "Использование:" in cmd["help"] and "Show this message" not in cmd["help"]
    assert missing == []


def test_english_help_has_no_russian_words_but_sheet_names(en) -> None:
    for path, cmd in en.items():
        assert "Usage:" in cmd["help"], path
        text = re.sub(r"«[^»]*»|\([^)]*[а-яё][^)]*\)|Простые Звонки", "", cmd["help"], flags=re.I)
        assert not CYRILLIC.search(text), (path, text)


def test_click_errors_in_russian() -> None:
    env = dict(os.environ, PZ_LANG="ru")
    done = subprocess.run(
        [sys.executable, "-m", "pz_excel", "init", "--no-such-thing"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Ошибка: Нет такого параметра '--no-such-thing'." in done.stderr
    assert "Использование: pz-excel init" in done.stderr


def test_click_words_follow_the_language_of_each_call(monkeypatch, capsys) -> None:
    """In one process (the test suite, a long-lived host), a Russian run must not leave
    click speaking Russian to the next English one."""
    from pz_excel.cli import main as cli

    monkeypatch.setenv("PZ_LANG", "ru")
    assert cli.main(["init", "--no-such-thing"]) == 2
    assert "Нет такого параметра" in capsys.readouterr().err
    monkeypatch.setenv("PZ_LANG", "en")
    assert cli.main(["init", "--no-such-thing"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_status_speaks_the_readers_language_whatever_the_agents(tmp_path) -> None:
    """An agent started in English, read by `pz-excel status` in Russian: every label and
    value we write is Russian (state, the book's mode, the last event's name)."""
    from pz_excel.tools.testserver import ServerThread
    from tests.test_agent import make_book, start_agent

    with ServerThread() as server:
        agent = start_agent(make_book(tmp_path / "crm.xlsx"), server)  # lang="en"
        try:
            server.generate(4, {"From": "73430112233", "To": "101", "CallID": "77"})
            assert server.wait_for(lambda: agent.last_event is not None, 5)
            done = subprocess.run(
                [sys.executable, "-m", "pz_excel", "status"],
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=60,
                env=dict(os.environ, PZ_LANG="ru"),
            )
        finally:
            agent.stop()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Состояние" in out and "подключено к ws://" in out and "(файл)" in out
    assert "подключено — подключено" not in out
    assert "завершённый звонок 77 73430112233 → 101" in out
    assert not re.search(r"\b(connected|file|completed|at)\b", out)
