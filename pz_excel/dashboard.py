"""The Dashboard sheet (Сводка): the team's week at a glance, rebuilt from call rows.

Headless (openpyxl charts), so the agent or a script can refresh it without Excel:

* KPI header — today, this week (Monday to today), last 30 days: calls, incoming,
  outgoing, missed, talk time; and how many missed callers still wait for a call back;
* calls per day for the last 30 days by direction (stacked columns);
* calls and talk time per owner for the last 30 days (table + columns);
* missed calls not yet called back, one line per caller, newest first.

"Called back" means what the agent's journal means (``Journal.missed_not_called_back``):
a later outgoing call to the same normalised number, answered or not, so ``PZ_MISSED()``
and the dashboard agree.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from . import phones
from .schema import CallRow

NAMES = ("Dashboard", "Сводка")
DAYS = 30
MISSED_SHOWN = 200  # lines of the call-back list; the KPI counts them all
DURATION_FORMAT = "[h]:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"

_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")
_WARN_FILL = PatternFill("solid", fgColor="FCE4D6")

# Every label in both languages: (en, ru).
_L = {
    "title": ("Calls dashboard", "Сводка по звонкам"),
    "updated": ("as of {d}", "на {d}"),
    "period": ("Period", "Период"),
    "today": ("Today", "Сегодня"),
    "week": ("This week", "Эта неделя"),
    "month": ("Last 30 days", "30 дней"),
    "calls": ("Calls", "Звонки"),
    "incoming": ("Incoming", "Входящие"),
    "answered_in": ("Incoming answered", "Входящие отвеченные"),
    "outgoing": ("Outgoing", "Исходящие"),
    "missed": ("Missed", "Пропущенные"),
    "talk": ("Talk time", "Время разговоров"),
    "talk_min": ("Talk time, min", "Разговоры, мин"),
    "waiting": ("Waiting for a call back", "Ждут обратного звонка"),
    "per_day": ("Calls per day, last 30 days", "Звонки по дням, 30 дней"),
    "date": ("Date", "Дата"),
    "total": ("Total", "Всего"),
    "per_owner": ("Per owner, last 30 days", "По ответственным, 30 дней"),
    "owner": ("Owner", "Ответственный"),
    "week_calls": ("Calls this week", "Звонки за неделю"),
    "no_owner": ("(no owner)", "(без ответственного)"),
    "callback": ("Missed calls not yet called back", "Пропущенные без обратного звонка"),
    "number": ("Client phone", "Телефон клиента"),
    "contact": ("Contact", "Контакт"),
    "last_missed": ("Last missed", "Последний пропущенный"),
    "times": ("Times missed", "Сколько раз"),
    "more": ("… and {n} more", "… и ещё {n}"),
    "none": ("none", "нет"),
}


def _t(key: str, lang: str, **kwargs: object) -> str:
    en, ru = _L[key]
    return (ru if lang == "ru" else en).format(**kwargs)


def sheet_title(lang: str) -> str:
    return NAMES[1] if lang == "ru" else NAMES[0]


# ---------------------------------------------------------------------- figures


def _kind(row: CallRow) -> str | None:
    """incoming (answered or ringing), missed (incoming nobody took), outgoing."""
    if row.direction == "outgoing":
        return "outgoing"
    if row.direction == "incoming":
        return "missed" if row.status == "missed" else "incoming"
    return None


def _talk(row: CallRow) -> int:
    if row.status == "missed" or not row.duration or row.duration < 0:
        return 0
    return int(row.duration)


@functools.lru_cache(maxsize=4096)
def client_key(phone: str) -> str:
    """The same caller whatever the format: the normalised number, else the raw text."""
    phone = (phone or "").strip()
    return phones.normalize(phone) or phone


@dataclass
class Tally:
    calls: int = 0
    incoming: int = 0
    outgoing: int = 0
    missed: int = 0
    talk: int = 0  # seconds

    def add(self, row: CallRow) -> None:
        self.calls += 1
        kind = _kind(row)
        if kind == "incoming":
            self.incoming += 1
        elif kind == "missed":
            self.incoming += 1
            self.missed += 1
        elif kind == "outgoing":
            self.outgoing += 1
        self.talk += _talk(row)


@dataclass
class Waiting:
    """A caller whose missed calls nobody has returned yet."""

    phone: str
    contact: str
    owner: str
    last: datetime
    times: int = 1


@dataclass
class Figures:
    today: date
    kpi: dict[str, Tally] = field(default_factory=dict)  # today | week | month
    days: dict[date, Tally] = field(default_factory=dict)  # last 30 days, oldest first
    owners: dict[str, tuple[str, Tally, Tally]] = field(default_factory=dict)  # 30 d, week
    waiting: list[Waiting] = field(default_factory=list)


def compute(rows: Iterable[CallRow], today: date) -> Figures:
    """All the dashboard's numbers from call rows (rows without a start are skipped)."""
    first = today - timedelta(days=DAYS - 1)
    monday = today - timedelta(days=today.weekday())
    figures = Figures(today=today)
    figures.kpi = {"today": Tally(), "week": Tally(), "month": Tally()}
    figures.days = {first + timedelta(days=i): Tally() for i in range(DAYS)}
    owners: dict[str, tuple[str, Tally, Tally]] = {}
    dated = sorted(
        (r for r in rows if isinstance(r.start, datetime)),
        key=lambda r: r.start,  # type: ignore[arg-type, return-value]
    )
    for row in dated:
        day = row.start.date()  # type: ignore[union-attr]
        if first <= day <= today:
            figures.days[day].add(row)
            figures.kpi["month"].add(row)
            name = (row.owner or "").strip()
            entry = owners.setdefault(name.casefold(), (name, Tally(), Tally()))
            entry[1].add(row)
            if day >= monday:
                entry[2].add(row)
        if monday <= day <= today:
            figures.kpi["week"].add(row)
        if day == today:
            figures.kpi["today"].add(row)
    figures.owners = dict(sorted(owners.items(), key=lambda kv: (-kv[1][1].calls, kv[0])))
    figures.waiting = waiting_for_call_back(dated)
    return figures


def waiting_for_call_back(rows: Iterable[CallRow]) -> list[Waiting]:
    """Missed incoming calls with no later outgoing call to that client, newest first."""
    last_out: dict[str, datetime] = {}
    missed: list[CallRow] = []
    for row in rows:
        if not isinstance(row.start, datetime) or not row.client_phone.strip():
            continue
        if row.direction == "outgoing":
            key = client_key(row.client_phone)
            if key not in last_out or row.start > last_out[key]:
                last_out[key] = row.start
        elif row.direction == "incoming" and row.status == "missed":
            missed.append(row)
    by_client: dict[str, Waiting] = {}
    for row in missed:
        key = client_key(row.client_phone)
        called = last_out.get(key)
        assert row.start is not None
        if called is not None and called >= row.start:
            continue
        found = by_client.get(key)
        if found is None:
            by_client[key] = Waiting(row.client_phone, row.contact, row.owner, row.start)
        else:
            found.times += 1
            if row.start > found.last:
                found.last = row.start
                found.phone = row.client_phone
                found.contact = row.contact or found.contact
                found.owner = row.owner or found.owner
    return sorted(by_client.values(), key=lambda w: w.last, reverse=True)


# ---------------------------------------------------------------------- the sheet


def _header(ws: Worksheet, row: int, labels: list[str]) -> None:
    for col, label in enumerate(labels, start=1):
        cell = ws.cell(row=row, column=col, value=label)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center")


def _duration(ws: Worksheet, row: int, col: int, seconds: int) -> None:
    cell = ws.cell(row=row, column=col, value=timedelta(seconds=seconds))
    cell.number_format = DURATION_FORMAT


def _fresh_sheet(wb: Workbook, lang: str) -> Worksheet:
    """A new empty dashboard sheet where the old one was (either language's name)."""
    index = None
    for name in NAMES:
        if name in wb.sheetnames:
            old = wb[name]
            index = wb.sheetnames.index(name) if index is None else index
            wb.remove(old)
    ws = wb.create_sheet(sheet_title(lang), index)
    return ws


def write_dashboard(wb: Workbook, rows: Iterable[CallRow], *, lang: str, today: date) -> None:
    """(Re)build the Dashboard sheet of ``wb`` from ``rows``; other sheets are untouched."""
    fig = compute(rows, today)
    active = wb.active.title if wb.worksheets and wb.active is not None else None
    ws = _fresh_sheet(wb, lang)
    # Rebuilding must not switch the user's view (a shown dashboard stays shown).
    keep = ws.title if active in NAMES else active
    if keep in wb.sheetnames:
        wb.active = wb.sheetnames.index(keep)

    ws["A1"] = _t("title", lang)
    ws["A1"].font = _TITLE
    ws["A2"] = _t("updated", lang, d=today.isoformat())

    # KPI header: rows 4-6.
    kpi_cols = ["calls", "incoming", "outgoing", "missed", "talk"]
    _header(ws, 3, [_t("period", lang), *(_t(k, lang) for k in kpi_cols)])
    for offset, period in enumerate(("today", "week", "month")):
        r = 4 + offset
        tally = fig.kpi[period]
        ws.cell(row=r, column=1, value=_t(period, lang)).font = _BOLD
        for col, value in enumerate(
            (tally.calls, tally.incoming, tally.outgoing, tally.missed), start=2
        ):
            ws.cell(row=r, column=col, value=value)
        _duration(ws, r, 6, tally.talk)
    ws.cell(row=7, column=1, value=_t("waiting", lang)).font = _BOLD
    waiting_cell = ws.cell(row=7, column=2, value=len(fig.waiting))
    waiting_cell.font = _BOLD
    if fig.waiting:
        waiting_cell.fill = _WARN_FILL

    # Calls per day (table from row 10) + stacked columns beside the KPI.
    top = 9
    ws.cell(row=top, column=1, value=_t("per_day", lang)).font = _TITLE
    _header(
        ws,
        top + 1,
        [_t(k, lang) for k in ("date", "answered_in", "missed", "outgoing", "total")],
    )
    for i, (day, tally) in enumerate(fig.days.items()):
        r = top + 2 + i
        ws.cell(row=r, column=1, value=day).number_format = DATE_FORMAT
        ws.cell(row=r, column=2, value=tally.incoming - tally.missed)
        ws.cell(row=r, column=3, value=tally.missed)
        ws.cell(row=r, column=4, value=tally.outgoing)
        ws.cell(row=r, column=5, value=tally.calls)
    last_day_row = top + 1 + DAYS
    daily = BarChart()
    daily.type = "col"
    daily.grouping = "stacked"
    daily.overlap = 100
    daily.title = _t("per_day", lang)
    daily.y_axis.title = _t("calls", lang)
    daily.add_data(
        Reference(ws, min_col=2, max_col=4, min_row=top + 1, max_row=last_day_row),
        titles_from_data=True,
    )
    daily.set_categories(Reference(ws, min_col=1, min_row=top + 2, max_row=last_day_row))
    daily.x_axis.number_format = "dd.mm"
    daily.width, daily.height = 20, 8
    ws.add_chart(daily, "H3")

    # Per owner, last 30 days.
    top = last_day_row + 3
    ws.cell(row=top, column=1, value=_t("per_owner", lang)).font = _TITLE
    _header(
        ws,
        top + 1,
        [_t(k, lang) for k in ("owner", "calls", "missed", "talk", "talk_min", "week_calls")],
    )
    for i, (name, month, week) in enumerate(fig.owners.values()):
        r = top + 2 + i
        ws.cell(row=r, column=1, value=name or _t("no_owner", lang))
        ws.cell(row=r, column=2, value=month.calls)
        ws.cell(row=r, column=3, value=month.missed)
        _duration(ws, r, 4, month.talk)
        ws.cell(row=r, column=5, value=round(month.talk / 60))
        ws.cell(row=r, column=6, value=week.calls)
    last_owner_row = top + 1 + len(fig.owners)
    if fig.owners:
        per_owner = BarChart()
        per_owner.type = "bar"  # horizontal: long owner names stay readable
        per_owner.grouping = "clustered"
        per_owner.title = _t("per_owner", lang)
        per_owner.add_data(
            Reference(ws, min_col=2, max_col=2, min_row=top + 1, max_row=last_owner_row),
            titles_from_data=True,
        )
        per_owner.add_data(
            Reference(ws, min_col=5, max_col=5, min_row=top + 1, max_row=last_owner_row),
            titles_from_data=True,
        )
        per_owner.set_categories(Reference(ws, min_col=1, min_row=top + 2, max_row=last_owner_row))
        per_owner.width, per_owner.height = 20, max(6, 1.2 + 0.9 * len(fig.owners))
        ws.add_chart(per_owner, "H21")

    # Missed calls not yet called back.
    top = max(last_owner_row, top + 1) + 3
    ws.cell(row=top, column=1, value=_t("callback", lang)).font = _TITLE
    _header(
        ws,
        top + 1,
        [_t(k, lang) for k in ("number", "contact", "owner", "last_missed", "times")],
    )
    if not fig.waiting:
        ws.cell(row=top + 2, column=1, value=_t("none", lang))
    for i, item in enumerate(fig.waiting[:MISSED_SHOWN]):
        r = top + 2 + i
        ws.cell(row=r, column=1, value=item.phone).number_format = "@"
        ws.cell(row=r, column=2, value=item.contact)
        ws.cell(row=r, column=3, value=item.owner)
        ws.cell(row=r, column=4, value=item.last).number_format = DATETIME_FORMAT
        ws.cell(row=r, column=5, value=item.times)
    if len(fig.waiting) > MISSED_SHOWN:
        ws.cell(
            row=top + 2 + MISSED_SHOWN,
            column=1,
            value=_t("more", lang, n=len(fig.waiting) - MISSED_SHOWN),
        )

    for col, width in enumerate((26, 14, 14, 14, 14, 14), start=1):
        ws.column_dimensions[get_column_letter(col)].width = width


#: A rebuild in the child process is given up after this long (the next run retries).
CHILD_TIMEOUT = 600.0


def refresh_file(
    path: Path,
    rows: Iterable[CallRow],
    *,
    lang: str,
    today: date | None = None,
    commit_lock: AbstractContextManager[object] | None = None,
    in_child: bool = False,
) -> bool:
    """Rebuild the Dashboard sheet of the .xlsx at ``path``; atomic like every save of ours.

    Raises ``BookLocked`` when Excel or LibreOffice holds the book. Returns False (and
    changes nothing) if someone saved the file while we were building: the next run redoes
    it, so a user's edit is never overwritten.

    ``in_child``: load, rebuild and save in a child Python process (the agent's way).
    openpyxl holds the interpreter lock for seconds and leaves a cyclic heap of the whole
    book behind; in the agent's own process that stalls the thread answering transfer
    requests and swells its memory for good.
    """
    from .books import BookLocked
    from .books.filebook import _fsync_dir, _locked_text, lock_files

    path = Path(path)
    locks = lock_files(path)
    if locks:
        raise BookLocked(_locked_text(path, *locks[0]), str(locks[0][0]))
    before = path.stat()
    tmp = path.with_name(f".{path.name}.dashboard.tmp")
    today = today or date.today()
    try:
        if in_child:
            _build_in_child(path, list(rows), lang, today, tmp)
        else:
            _build(path, rows, lang, today, tmp)
        # The check and the rename are one step for the Calls writer (commit_lock): a
        # batch saved in between would otherwise be replaced by our older copy.
        with commit_lock if commit_lock is not None else nullcontext():
            after = path.stat()
            if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size):
                return False  # changed under us: keep theirs, redo later
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _build(path: Path, rows: Iterable[CallRow], lang: str, today: date, tmp: Path) -> None:
    """The book at ``path`` with a fresh Dashboard, saved (and fsynced) at ``tmp``."""
    from openpyxl import load_workbook

    macros = path.suffix.lower() in (".xlsm", ".xltm")  # an .xlsm keeps its VBA project
    wb = load_workbook(path, keep_vba=macros, keep_links=True)
    write_dashboard(wb, rows, lang=lang, today=today)
    wb.save(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())


class DashboardFailed(RuntimeError):
    """The child process could not rebuild the Dashboard (its last error line says why)."""


def _build_in_child(path: Path, rows: list[CallRow], lang: str, today: date, tmp: Path) -> None:
    # Our own child reads the job from its stdin: no file another user could swap.
    job = pickle.dumps((str(path), rows, lang, today, str(tmp)))
    proc = subprocess.run(
        [sys.executable, "-m", "pz_excel.dashboard"],
        input=job,
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console flash
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DashboardFailed(lines[-1] if lines else f"exit code {proc.returncode}")


def _child_main() -> int:
    path, rows, lang, today, tmp = pickle.loads(sys.stdin.buffer.read())
    _build(Path(path), rows, lang, today, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
