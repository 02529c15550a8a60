"""Team API users, tokens and audit (pz_excel/team/users.py) and their CLI, on a real SQLite
file and a real PostgreSQL database."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from pz_excel.agent import sqldb
from pz_excel.cli import team_admin_cmd
from pz_excel.i18n import UserError
from pz_excel.team.users import ADMIN, MANAGER, Users


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "team.sqlite")
    return request.getfixturevalue("pg_dsn")


def test_add_check_list_remove(target):
    with Users(target) as users:
        token = users.add("101", "Анна Смирнова")
        admin = users.add("100", "Boss", ADMIN)
        found = users.check(token)
        assert found is not None and (found.extension, found.name, found.role) == (
            "101", "Анна Смирнова", MANAGER)
        assert users.check(admin).role == ADMIN  # type: ignore[union-attr]
        assert users.check("not-a-token") is None and users.check("") is None
        assert [u.extension for u in users.list()] == ["100", "101"]

        assert users.remove("101") is True
        assert users.check(token) is None  # revoked at once
        assert users.remove("101") is False
        assert [u.extension for u in users.list()] == ["100"]
        assert [u.extension for u in users.list(revoked=True)] == ["100", "101"]


def test_token_is_stored_only_hashed(target):
    with Users(target) as users:
        token = users.add("101")
        stored = users.db.execute("SELECT token_hash FROM team_users").fetchall()
    assert [r[0] for r in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(stored)


def test_adding_again_replaces_the_token(target):
    with Users(target) as users:
        old = users.add("101", "Anna")
        new = users.add("101")
        assert new != old
        assert users.check(old) is None
        assert users.check(new).name == "Anna"  # type: ignore[union-attr]  # name kept
        again = users.add("101", "Anna S.")  # a removed user can be added back
        users.remove("101")
        assert users.check(again) is None
        assert users.check(users.add("101")) is not None


def test_extension_uses_the_projects_rule(target):
    with Users(target) as users:
        assert users.check(users.add(" 101 ")).extension == "101"  # type: ignore[union-attr]
        for bad in ("abc", "+7 343 011-22-33", ""):
            with pytest.raises(UserError) as err:
                users.add(bad)
            assert "добавочн" in err.value.text.ru
        with pytest.raises(UserError):
            users.add("102", role="root")


def test_audit_rows(target):
    with Users(target) as users:
        users.audit("101", "dial", number="+73430112233", result="ok")
        users.audit("102", "dial", number="*8", result="refused", detail="why")
        dials = users.audit_log(action="dial")
        assert [(a.extension, a.number, a.result) for a in dials] == [
            ("102", "*8", "refused"), ("101", "+73430112233", "ok")]
        assert users.audit_log(extension="101")[0].at > 0


def test_two_processes_migrate_once(target):
    first, second = Users(target), Users(target)  # a leader and a standby starting together
    token = first.add("101")
    assert second.check(token) is not None
    assert sqldb.schema_version(second.db, "team_users") == 1
    first.close()
    second.close()


# ---------------------------------------------------------------------- the CLI


def test_cli_add_list_remove(target):
    runner = CliRunner()
    added = runner.invoke(team_admin_cmd.user_command, ["add", "101", "--name", "Anna",
                                                        "--db", target])
    assert added.exit_code == 0, added.output
    lines = added.output.splitlines()
    token = lines[1]
    assert "--team-token " + token in added.output and "--team-pin" in added.output
    with Users(target) as users:
        assert users.check(token).name == "Anna"  # type: ignore[union-attr]

    again = runner.invoke(team_admin_cmd.user_command, ["add", "101", "--db", target])
    assert "no longer works" in again.output
    with Users(target) as users:
        assert users.check(token) is None

    listed = runner.invoke(team_admin_cmd.user_command, ["list", "--db", target])
    assert listed.exit_code == 0 and "101" in listed.output and "Anna" in listed.output

    removed = runner.invoke(team_admin_cmd.user_command, ["remove", "101", "--db", target])
    assert removed.exit_code == 0 and "revoked" in removed.output
    gone = runner.invoke(team_admin_cmd.user_command, ["remove", "101", "--db", target])
    assert isinstance(gone.exception, UserError)
    assert "no token" in str(gone.exception.text.en)


def test_cli_hint_shows_the_certificate_pin(tmp_path):
    from pz_excel.team import tlscert

    cert = tlscert.load(hosts=["127.0.0.1"])  # the team server's own, in the team folder
    result = CliRunner().invoke(team_admin_cmd.user_command,
                                ["add", "103", "--db", str(tmp_path / "t.sqlite")])
    assert f"--team-pin {cert.fingerprint}" in result.output
