"""``pz-excel init`` through the CLI's real entry point, on real paths: a path it cannot
write is one bilingual line naming the path and the cause (exit 2, no traceback, no crash
file), and bad Settings values are refused before anything is written."""

from __future__ import annotations

import errno
import gc
import os
from pathlib import Path

import pytest

from pz_excel.books.settings import read_settings_sheet
from pz_excel.books.template import write_problem
from pz_excel.cli.main import main

# openpyxl's write-only sheets left unsaved print "Exception ignored … Traceback" when
# collected: that is a traceback on the user's screen too, so it fails these tests.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def init(capsys, *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``pz-excel init ARGS``."""
    capsys.readouterr()
    code = main(["init", *args])
    gc.collect()  # an unsaved write-only sheet would complain now, not after the test
    return code, capsys.readouterr().err


def one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def no_crash_file(home: Path) -> None:
    assert not (home / "crash").exists()


@pytest.mark.parametrize(
    ("where", "cause_en", "cause_ru"),
    [
        ("/proc/crm.xlsx", "files cannot be created in /proc", "в папке /proc нельзя"),
        (
            "/proc/no-such-folder/crm.xlsx",
            "the folder /proc/no-such-folder does not exist and cannot be created",
            "папки /proc/no-such-folder нет, и создать её нельзя",
        ),
        ("{tmp}/a-file/sub/crm.xlsx", "{tmp}/a-file is a file, not a folder", "— файл, а не папка"),
        ("{tmp}", "{tmp} is a folder: give the workbook's file name", "— это папка"),
    ],
)
def test_a_path_that_cannot_be_written_is_one_line(
    tmp_path, capsys, monkeypatch, _isolated_home, where, cause_en, cause_ru
):
    (tmp_path / "a-file").write_text("not a folder")
    path = where.format(tmp=tmp_path)
    code, err = init(capsys, path)
    assert code == 2
    line = one_clean_line(err)
    assert line.startswith("pz-excel: ") and cause_en.format(tmp=tmp_path) in line
    assert path in line  # the path the user gave is named
    monkeypatch.setenv("PZ_LANG", "ru")
    code, err = init(capsys, path)
    assert code == 2 and cause_ru in one_clean_line(err)
    no_crash_file(_isolated_home)
    assert not list(tmp_path.rglob("*.xlsx"))  # nor a temp file left behind


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file modes")
def test_a_read_only_folder_is_permission_denied(tmp_path, capsys, _isolated_home):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = init(capsys, str(folder / "crm.xlsx"))
    finally:
        folder.chmod(0o755)
    assert code == 2
    line = one_clean_line(err)
    assert f"permission denied for {folder}" in line and "Excel" not in line
    assert list(folder.iterdir()) == []  # no temp file left behind
    no_crash_file(_isolated_home)


@pytest.mark.parametrize(
    ("code", "replacing", "en", "ru"),
    [
        (errno.EROFS, False, "the file system is read-only", "только для чтения"),
        (errno.ENOSPC, False, "the disk is full", "диск заполнен"),
        (errno.EACCES, True, "in use (open in Excel?)", "открыт в Excel?"),
        (errno.EACCES, False, "permission denied", "нет прав на запись"),
    ],
)
def test_causes_are_named(tmp_path, code, replacing, en, ru):
    """The causes a test machine cannot produce for real (a read-only mount, a full disk,
    a book Windows' Excel holds open), from the OSError the OS would raise."""
    book = tmp_path / "crm.xlsx"
    book.write_bytes(b"an existing book")
    exc = (PermissionError if code == errno.EACCES else OSError)(code, os.strerror(code))
    text = write_problem(book, exc, replacing=replacing)
    assert en in text.en and ru in text.ru and str(book) in text.en and str(book) in text.ru
    assert ("Excel" in text.en) == replacing  # blamed only where it is the likely cause


@pytest.mark.parametrize(
    ("args", "en"),
    [
        (["--server", "http://pbx:10150"], "--server http://pbx:10150"),
        (["--server", "ws://:10150"], "--server ws://:10150"),
        (["--server", "ws//x"], "--server ws//x"),
        (["--phone", "abc"], "extension 'abc' is not valid"),
        (["--phone", "1234567"], "extension '1234567' is not valid"),
        (["--phone", "1-01"], "extension '1-01' is not valid"),
        (["--area-code", "12"], "area code '12' is not valid"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_written(
    tmp_path, capsys, monkeypatch, _isolated_home, args, en
):
    book = tmp_path / "crm.xlsx"
    code, err = init(capsys, str(book), *args)
    assert code == 2 and en in one_clean_line(err)
    monkeypatch.setenv("PZ_LANG", "ru")
    code, err = init(capsys, str(book), *args)
    assert code == 2 and "указан неверно" in one_clean_line(err)
    assert not book.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".xlsx"]
    no_crash_file(_isolated_home)


def test_good_settings_are_written(tmp_path, capsys):
    book = tmp_path / "crm.xlsx"
    code, _ = init(
        capsys, str(book), "--server", "pbx.office", "--phone", "101", "--area-code", "(343)"
    )
    assert code == 0
    assert read_settings_sheet(book) == {"server": "pbx.office", "phone": "101", "area_code": "343"}
