"""The team's calls out of its database: the query the team API and ``pz-excel team
export`` share (calls started in a time range, optionally one extension's), and the export
itself — a NEW .xlsx with the Calls sheet's columns and headers (``books/template``,
write-only mode, so a year of calls is streamed, not held), or a UTF-8 CSV with a BOM so
Excel reads Cyrillic right.

The query is the journal's own (``journal_sql.calls_in``, both engines), run on the team
database without opening a journal (an export must not migrate or create anything).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

from pz_excel.agent import sqldb
from pz_excel.agent.journal_sql import calls_in
from pz_excel.books.template import write_calls_book, write_problem
from pz_excel.crm.schema import CALLS, WORDS, CallRow, word
from pz_excel.i18n import Text, UserError
from pz_excel.xlsx.cells import FORMULA_START, safe_text

#: CSV: the list separator Excel expects in that language's locale (Russian Excel splits
#: on ";", English on ","), and the dates it reads back as dates.
CSV_SEPARATOR = {"en": ",", "ru": ";"}
CSV_DATES = {"en": "%Y-%m-%d %H:%M:%S", "ru": "%d.%m.%Y %H:%M:%S"}
_PLAIN_PHONE = re.compile(r"\+[0-9 ()\-]+")

Progress = Callable[[int], None]

#: The team's calls in a time range (the journal's own query, both engines).
calls = calls_in


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)``: both days whole."""
    if last < first:
        raise UserError(Text(f"--to {last} is before --from {first}",
                             f"--to {last} раньше, чем --from {first}"))
    return (datetime.combine(first, datetime.min.time()),
            datetime.combine(last + timedelta(days=1), datetime.min.time()))


def open_team_db(target: str) -> sqldb.Db:
    """The team database, for reading: an SQLite path must exist (connecting would make an
    empty one), and it must hold a journal's ``calls`` table."""
    if not sqldb.is_dsn(target) and not Path(target).expanduser().is_file():
        raise UserError(Text(f"the database {target} does not exist",
                             f"базы данных {target} нет"))
    db = sqldb.connect(target)
    try:
        db.one("SELECT count(*) FROM calls WHERE 1 = 0")
    except Exception as exc:  # sqlite3 or psycopg: no such table
        db.close()
        where = sqldb.redact(target)
        raise UserError(Text(
            f"{where} holds no calls: is it the team database (pz-excel team run --db)?",
            f"в {where} нет звонков: это база данных команды (pz-excel team run --db)?",
        )) from exc
    return db


def _counted(rows: Iterable[CallRow], progress: Progress | None, every: int) -> Iterator[CallRow]:
    n = 0
    for n, row in enumerate(rows, 1):
        yield row
        if progress is not None and n % every == 0:
            progress(n)
    if progress is not None:
        progress(n)


def export(
    db: sqldb.Db,
    first: date,
    last: date,
    out: Path,
    *,
    lang: str = "en",
    force: bool = False,
    progress: Progress | None = None,
    every: int = 10_000,
) -> int:
    """Write every call started on the days ``first``..``last`` to ``out`` (.xlsx or .csv),
    in the Calls sheet's columns with ``lang``'s headers and words. Returns how many.
    ``progress(n)``: called every ``every`` rows and at the end."""
    out = Path(out).expanduser()
    kind = out.suffix.lower()
    if kind not in (".xlsx", ".csv"):
        raise UserError(Text(f"{out.name}: the export is an .xlsx or a .csv file",
                             f"{out.name}: выгрузка — это файл .xlsx или .csv"))
    since, until = day_range(first, last)
    count = [0]

    def rows() -> Iterator[CallRow]:
        for row in _counted(calls(db, since, until), progress, every):
            count[0] += 1
            yield row

    if kind == ".xlsx":
        write_calls_book(out, rows(), lang, force=force)
    else:
        write_csv(out, rows(), lang, force=force)
    return count[0]


def _csv_value(key: str, kind: str, value: object, lang: str) -> str:
    if value is None or value == "":
        return ""
    if key in ("direction", "status"):
        return word(str(value), lang) if str(value) in WORDS else str(value)
    if kind == "bool":
        return word("yes", lang) if value else ""
    if isinstance(value, datetime):
        return value.strftime(CSV_DATES[lang])
    text = safe_text(str(value))
    # A cell starting like a formula is text for Excel only with a quote in front (CSV
    # has no types); a plain "+7 343 …" phone stays as it is.
    if text.startswith(FORMULA_START) and not (kind == "phone" and _PLAIN_PHONE.fullmatch(text)):
        text = "'" + text
    return text


def write_csv(path: Path, rows: Iterable[CallRow], lang: str = "en", *,
              force: bool = False) -> Path:
    """``rows`` as CSV (UTF-8 with a BOM, ``lang``'s separator), written atomically."""
    path = Path(path).expanduser()
    if path.exists() and not force:
        raise UserError(Text(f"{path} already exists; use --force to overwrite it",
                             f"{path} уже существует; чтобы перезаписать, укажите --force"))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp.csv")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8-sig", newline="") as fh:
            out = csv.writer(fh, delimiter=CSV_SEPARATOR[lang])
            out.writerow(col.header(lang) for col in CALLS.columns)
            for row in rows:
                values = row.values()
                out.writerow(_csv_value(c.key, c.kind, values[c.key], lang)
                             for c in CALLS.columns)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(write_problem(path, exc, tmp=tmp)) from None
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()
    return path.resolve()
