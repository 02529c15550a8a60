"""``pz-excel password set | clear`` (issue 12) and what ``run`` says when no password was
found: the password is asked hidden and twice, stored in the OS keyring under the key the
agent reads, and ``run`` then logs in with it against a connector that has a password.

The keyring is a real backend: a small one storing into a JSON file (keyrings.alt is not
installed), selected with ``keyring.set_keyring`` in this process and with
``PYTHON_KEYRING_BACKEND`` in a child.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring
import pytest
from click.testing import CliRunner
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError

from pz_excel.cli import main as cli
from pz_excel.cli.password_cmd import password_command
from pz_excel.connector import credentials
from pz_excel.tools.testserver import ServerThread
from tests.conftest import wait_until
from tests.test_agent import write_template
from tests.test_first_start import RunProcess

SECRET = "s3cret+/="  # base64 of it holds + and /: the login form must carry it intact


class FileKeyring(KeyringBackend):
    """Passwords in a JSON file named by ``PZ_TEST_KEYRING`` (a real store, not a mock)."""

    priority = 1  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        return Path(os.environ["PZ_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        return json.loads(self.path.read_text("utf-8")) if self.path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\n{username}"] = password
        self.path.write_text(json.dumps(data), "utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\n{username}", None) is None:
            raise PasswordDeleteError("not stored")
        self.path.write_text(json.dumps(data), "utf-8")


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PZ_TEST_KEYRING", str(path))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.test_password_cmd.FileKeyring")
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    yield path
    keyring.set_keyring(before)


def stored(path: Path) -> dict[str, str]:
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


@pytest.fixture
def book(tmp_path, server):
    return write_template(
        tmp_path / "crm.xlsx", lang="en", settings={"server": server.url, "phone": "101"}
    )


@pytest.fixture
def server():
    with ServerThread(password=SECRET) as srv:
        yield srv


def test_set_asks_twice_hidden_and_stores_under_the_agents_key(store, book, server):
    result = CliRunner().invoke(
        password_command, ["set", "-w", str(book)], input=f"{SECRET}\n{SECRET}\n"
    )
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output  # never echoed
    assert "Repeat for confirmation" in result.output
    assert stored(store) == {f"pz-excel\n{credentials.keyring_user(server.url, '101')}": SECRET}
    assert credentials.find_password(server.url, "101").password == SECRET


def test_set_with_server_and_phone_and_a_mismatch_stores_nothing_first(store):
    runner = CliRunner()
    args = ["set", "--server", "pbx.office", "--phone", "102"]
    result = runner.invoke(password_command, args, input="one\ntwo\nabc\nabc\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert stored(store) == {"pz-excel\n102@ws://pbx.office:10150/": "abc"}


def test_set_refuses_a_password_over_32_and_a_bad_address(store):
    long = "x" * 33
    result = CliRunner().invoke(
        password_command, ["set", "-s", "ws://pbx", "-p", "101"], input=f"{long}\n{long}\n"
    )
    assert result.exit_code != 0 and isinstance(result.exception, credentials.UserError)
    assert "longer than 32" in result.exception.text.en and "длиннее 32" in result.exception.text.ru
    assert stored(store) == {}
    assert cli.main(["password", "set", "-s", "ws//pbx", "-p", "101"]) == 2
    assert cli.main(["password", "set", "-s", "ws://pbx"]) == 2  # whose? -w or both


def test_clear_removes_it(store, book, server):
    credentials.set_password(server.url, "101", SECRET)
    result = CliRunner().invoke(password_command, ["clear", "-w", str(book)])
    assert result.exit_code == 0 and "Password removed" in result.output
    assert stored(store) == {}
    result = CliRunner().invoke(password_command, ["clear", "-w", str(book)])
    assert result.exit_code == 0 and "nothing to remove" in result.output


def test_no_keyring_backend_is_one_clean_line(capsys):
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        runner = CliRunner()
        result = runner.invoke(
            password_command, ["set", "-s", "pbx", "-p", "101"], input="abc\nabc\n"
        )
        assert isinstance(result.exception, credentials.UserError)
        text = result.exception.text
        assert "keyring cannot be used" in text.en and "--password-env" in text.en
        assert "хранилище паролей здесь недоступно" in text.ru
        assert cli.main(["password", "clear", "-s", "pbx", "-p", "101"]) == 2
        err = capsys.readouterr().err
        assert "keyring cannot be used" in err and len(err.strip().splitlines()) == 1
    finally:
        keyring.set_keyring(before)


def test_run_without_a_password_says_none_was_found_and_where(store, book, server, capsys):
    code = cli.main(["run", "-w", str(book)])
    err = capsys.readouterr().err
    assert code == 2
    final = err.strip().splitlines()[-1]
    key = credentials.keyring_user(server.url, "101")
    assert final.startswith("pz-excel: the connector refused the login (")
    assert "no password was found" in final and key in final and "'pz-excel'" in final
    assert "pz-excel password set" in final
    assert "wrong password" not in err  # said once, and not as "wrong"


def test_run_without_a_password_env_names_the_variable(store, book, monkeypatch, capsys):
    monkeypatch.setenv("PZ_EMPTY_PW", "")
    monkeypatch.setenv("PZ_LANG", "ru")
    assert cli.main(["run", "-w", str(book), "--password-env", "PZ_EMPTY_PW"]) == 2
    final = capsys.readouterr().err.strip().splitlines()[-1]
    assert "пароль не найден" in final and "переменная окружения PZ_EMPTY_PW" in final


def test_a_wrong_stored_password_is_still_wrong(store, book, server, capsys):
    credentials.set_password(server.url, "101", "not-it")
    assert cli.main(["run", "-w", str(book)]) == 2
    err = capsys.readouterr().err
    assert "wrong password" in err and "no password was found" not in err


def test_run_uses_the_stored_password(store, book, server):
    result = CliRunner().invoke(
        password_command, ["set", "-w", str(book)], input=f"{SECRET}\n{SECRET}\n"
    )
    assert result.exit_code == 0, result.output
    run = RunProcess("-w", str(book))  # a child: it reads the same file keyring
    try:
        run.wait_count("connected to", 1)
        wait_until(
            lambda: any(c["GUID"] == "101" and c["Connected"] == "1" for c in server.clients()),
            10,
            "the agent logged in",
        )
    finally:
        assert run.stop() == 0
    assert not any("wrong password" in line or "4008" in line for line in run.lines)
