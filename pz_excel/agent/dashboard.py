"""The Dashboard sheet (Сводка): the team's month at a glance, from the journal.

* KPI header — today, this week (Monday to today), last 30 days: calls, incoming,
  outgoing, missed, talk time; and how many callers still wait for a call back;
* calls per day for the last 30 days by kind (stacked columns);
* per owner for the last 30 days: calls and missed (bars), talk time (bars of its own —
  minutes and counts never share an axis);
* missed calls not yet called back, one line per client, newest first.

Figures come from the journal, one row per call ID, added up in SQL (``call_tallies``,
``waiting_clients``): the cost does not grow with the workbook, and a refresh with 100 k
calls takes milliseconds. Owners are named through Managers (``101`` and "Anna" are one
owner when Managers says so). The sheet speaks the book's language (that of its Calls
headers), is printable (landscape, one page wide, each block on a page of its own, so no
chart is cut) and is written at the zip level with its drawing and charts: ``writer()``
gives FileBook the edit, and every other part of the workbook is copied byte for byte.

"Called back" means what ``Journal.missed_not_called_back`` means — a later outgoing call
to the same normalised number, answered or not — so ``PZ_MISSED()`` and the sheet agree.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from pz_excel.xlsx.chartxml import Anchor, Chart, Series, chart_xml, drawing_xml
from pz_excel.xlsx.package import (
    CT_CHART,
    CT_DRAWING,
    CT_WORKSHEET,
    REL_CHART,
    REL_DRAWING,
    new_rels,
    quote_title,
)
from pz_excel.xlsx.rels import rels_part_of
from pz_excel.xlsx.sheetxml import Grid, serial, worksheet_xml

if TYPE_CHECKING:
    from pz_excel.agent.journal import Journal
    from pz_excel.books.callspatch import CallsPatch

NAMES = ("Dashboard", "Сводка")
DAYS = 30
MISSED_SHOWN = 200  # lines of the call-back list; the KPI counts them all
DURATION_FORMAT = "[h]:mm:ss"
DATE_FORMATS = {"en": "yyyy-mm-dd", "ru": "dd.mm.yyyy"}
DATETIME_FORMATS = {"en": "yyyy-mm-dd hh:mm", "ru": "dd.mm.yyyy hh:mm"}
COLORS = {"answered": "4472C4", "missed": "ED7D31", "outgoing": "70AD47", "talk": "7F6084"}

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
    "talk_owner": ("Talk time per owner, minutes", "Время разговоров, минуты"),
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


@dataclass
class Tally:
    calls: int = 0
    incoming: int = 0  # answered and missed
    outgoing: int = 0
    missed: int = 0
    talk: int = 0  # seconds

    def add(self, direction: str, status: str, calls: int, talk: int) -> None:
        self.calls += calls
        self.talk += talk
        if direction == "incoming":
            self.incoming += calls
            if status == "missed":
                self.missed += calls
        elif direction == "outgoing":
            self.outgoing += calls


@dataclass
class Waiting:
    """A client whose missed calls nobody has returned yet."""

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
    owners: dict[str, tuple[Tally, Tally]] = field(default_factory=dict)  # name: 30 d, week
    waiting: list[Waiting] = field(default_factory=list)  # newest first, MISSED_SHOWN at most
    waiting_total: int = 0


def figures(
    journal: Journal, today: date, owner_name: Callable[[str], str] = str.strip
) -> Figures:
    """Every number of the sheet, from the journal. ``owner_name`` gives one name per
    manager (``ContactIndex.owner_name``)."""
    first = today - timedelta(days=DAYS - 1)
    monday = today - timedelta(days=today.weekday())
    fig = Figures(today=today)
    fig.kpi = {"today": Tally(), "week": Tally(), "month": Tally()}
    fig.days = {first + timedelta(days=i): Tally() for i in range(DAYS)}
    owners: dict[str, tuple[str, Tally, Tally]] = {}
    since = datetime.combine(first, datetime.min.time())
    until = datetime.combine(today + timedelta(days=1), datetime.min.time())
    for day_text, direction, status, owner, calls, talk in journal.call_tallies(since, until):
        day = date.fromisoformat(day_text)
        fig.days[day].add(direction, status, calls, talk)
        fig.kpi["month"].add(direction, status, calls, talk)
        if day >= monday:
            fig.kpi["week"].add(direction, status, calls, talk)
        if day == today:
            fig.kpi["today"].add(direction, status, calls, talk)
        name = owner_name(owner or "").strip()
        entry = owners.setdefault(" ".join(name.split()).casefold(), (name, Tally(), Tally()))
        entry[1].add(direction, status, calls, talk)
        if day >= monday:
            entry[2].add(direction, status, calls, talk)
    ranked = sorted(owners.values(), key=lambda e: (-e[1].calls, e[0].casefold()))
    fig.owners = {name: (month, week) for name, month, week in ranked}
    fig.waiting_total, found = journal.waiting_clients(MISSED_SHOWN)
    fig.waiting = [
        Waiting(phone, contact, owner_name(owner or "").strip(), last, times)
        for phone, contact, owner, last, times in found
    ]
    return fig


# ---------------------------------------------------------------------- the sheet

#: The formats of the sheet, by name (``Styles.make`` arguments; formats by language).
_STYLES: dict[str, dict] = {
    "title": {"bold": True, "size": 14},
    "section": {"bold": True, "size": 12},
    "bold": {"bold": True},
    "head": {"bold": True, "fill": "DDEBF7", "wrap": True},
    "warn": {"bold": True, "fill": "FCE4D6"},
    "duration": {"number_format": DURATION_FORMAT},
    "text": {"number_format": "@"},
}
_NOT_SIZED = ("title", "section")  # long titles run over the empty cells to their right
CHART_COLS = (7, 17)  # charts sit in H:Q (0-based columns), right of the tables
CHART_ROWS = 18


def style_specs(lang: str) -> dict[str, dict]:
    return {
        **_STYLES,
        "date": {"number_format": DATE_FORMATS.get(lang, DATE_FORMATS["en"])},
        "datetime": {"number_format": DATETIME_FORMATS.get(lang, DATETIME_FORMATS["en"])},
    }


def layout(fig: Figures, lang: str, now: datetime | None = None) -> tuple[Grid, list[Chart],
                                                                         list[Anchor]]:
    """The sheet as cells, and its charts with where they sit."""
    now = now or datetime.now()
    title = quote_title(sheet_title(lang))
    g = Grid()
    charts: list[Chart] = []
    anchors: list[Anchor] = []
    culture = "ru-RU" if lang == "ru" else "en-US"

    def ref(col: str, r1: int, r2: int | None = None) -> str:
        return f"{title}!${col}${r1}" + (f":${col}${r2}" if r2 is not None else "")

    # Page 1: KPIs and the last 30 days.
    g.put(1, 1, _t("title", lang), "title")
    g.put(2, 1, _t("updated", lang, d=now.strftime(
        "%d.%m.%Y %H:%M" if lang == "ru" else "%Y-%m-%d %H:%M")))
    g.row(3, [_t(k, lang) for k in ("period", "calls", "incoming", "outgoing", "missed",
                                    "talk")], "head")
    for r, period in enumerate(("today", "week", "month"), start=4):
        tally = fig.kpi[period]
        g.put(r, 1, _t(period, lang), "bold")
        g.row(r, [tally.calls, tally.incoming, tally.outgoing, tally.missed], first=2)
        g.put(r, 6, timedelta(seconds=tally.talk), "duration")
    g.put(7, 1, _t("waiting", lang), "bold")
    g.put(7, 2, fig.waiting_total, "warn" if fig.waiting_total else "bold")
    top = 9
    g.put(top, 1, _t("per_day", lang), "section")
    g.row(top + 1, [_t(k, lang) for k in ("date", "answered_in", "missed", "outgoing",
                                          "total")], "head")
    first_day = top + 2
    for r, (day, tally) in enumerate(fig.days.items(), start=first_day):
        g.put(r, 1, day, "date")
        g.row(r, [tally.incoming - tally.missed, tally.missed, tally.outgoing, tally.calls],
              first=2)
    last_day = first_day + DAYS - 1
    charts.append(Chart(
        title=_t("per_day", lang),
        categories_ref=ref("A", first_day, last_day),
        categories=[float(serial(d)) for d in fig.days],
        category_format="dd.mm",
        stacked=True,
        axis_title=_t("calls", lang),
        lang=culture,
        series=[
            Series(_t(key, lang), ref(col, top + 1), ref(col, first_day, last_day),
                   [float(getattr(t, attr) if attr else t.incoming - t.missed)
                    for t in fig.days.values()], COLORS[color])
            for key, col, attr, color in (("answered_in", "B", "", "answered"),
                                          ("missed", "C", "missed", "missed"),
                                          ("outgoing", "D", "outgoing", "outgoing"))
        ],
    ))
    anchors.append(Anchor(CHART_COLS[0], 2, CHART_COLS[1], 2 + CHART_ROWS + 4))
    g.row_breaks.append(last_day + 1)

    # Page 2: per owner, with two charts of their own.
    top = last_day + 3
    g.put(top, 1, _t("per_owner", lang), "section")
    g.row(top + 1, [_t(k, lang) for k in ("owner", "calls", "missed", "talk", "talk_min",
                                          "week_calls")], "head")
    first_owner = top + 2
    for r, (name, (month, week)) in enumerate(fig.owners.items(), start=first_owner):
        g.put(r, 1, name or _t("no_owner", lang))
        g.row(r, [month.calls, month.missed], first=2)
        g.put(r, 4, timedelta(seconds=month.talk), "duration")
        g.row(r, [round(month.talk / 60), week.calls], first=5)
    last_owner = first_owner + len(fig.owners) - 1
    if fig.owners:
        names = [name or _t("no_owner", lang) for name in fig.owners]
        month_of = [m for m, _w in fig.owners.values()]
        charts.append(Chart(
            title=_t("per_owner", lang), categories_ref=ref("A", first_owner, last_owner),
            categories=list(names), horizontal=True, lang=culture,
            series=[Series(_t("calls", lang), ref("B", top + 1),
                           ref("B", first_owner, last_owner),
                           [float(m.calls) for m in month_of], COLORS["answered"]),
                    Series(_t("missed", lang), ref("C", top + 1),
                           ref("C", first_owner, last_owner),
                           [float(m.missed) for m in month_of], COLORS["missed"])],
        ))
        anchors.append(Anchor(CHART_COLS[0], top - 1, CHART_COLS[1], top - 1 + CHART_ROWS))
        charts.append(Chart(
            title=_t("talk_owner", lang), categories_ref=ref("A", first_owner, last_owner),
            categories=list(names), horizontal=True, lang=culture,
            series=[Series(_t("talk_min", lang), ref("E", top + 1),
                           ref("E", first_owner, last_owner),
                           [float(round(m.talk / 60)) for m in month_of], COLORS["talk"])],
        ))
        anchors.append(Anchor(CHART_COLS[0], top + CHART_ROWS, CHART_COLS[1],
                              top + 2 * CHART_ROWS))
    section_end = max(last_owner, top + 2 * CHART_ROWS if fig.owners else top + 2)
    g.row_breaks.append(section_end + 1)

    # Page 3 on: the call-back list.
    top = section_end + 3
    g.put(top, 1, _t("callback", lang), "section")
    g.row(top + 1, [_t(k, lang) for k in ("number", "contact", "owner", "last_missed",
                                          "times")], "head")
    if not fig.waiting:
        g.put(top + 2, 1, _t("none", lang))
    for r, item in enumerate(fig.waiting, start=top + 2):
        g.put(r, 1, item.phone, "text")
        g.put(r, 2, item.contact)
        g.put(r, 3, item.owner)
        g.put(r, 4, item.last, "datetime")
        g.put(r, 5, item.times)
    if fig.waiting_total > len(fig.waiting):
        g.put(top + 2 + len(fig.waiting), 1,
              _t("more", lang, n=fig.waiting_total - len(fig.waiting)))
    g.widths = _widths(g)
    for (r, _c), (_value, style) in g.cells.items():
        if style == "head":  # header labels wrap on two lines
            g.heights[r] = 30
    g.widths[CHART_COLS[0]] = 3  # a gap between the tables and the charts
    return g, charts, anchors


def _widths(g: Grid) -> dict[int, float]:
    """Column widths that fit the longest value (header labels wrap on spaces)."""
    longest: dict[int, int] = {}
    for (_r, c), (value, style) in g.cells.items():
        if style in _NOT_SIZED or value is None:
            continue
        if isinstance(value, datetime):
            n = 16
        elif isinstance(value, (date, timedelta)):
            n = 10
        elif style == "head":
            n = max(len(w) for w in str(value).split()) + 1
        else:
            n = len(str(value))
        longest[c] = max(longest.get(c, 0), n)
    return {c: min(max(n * 1.1 + 2, 10), 60) for c, n in longest.items()}


# ---------------------------------------------------------------------- the parts


def writer(fig: Figures, now: datetime | None = None) -> Callable[[CallsPatch], None]:
    """The Dashboard's edit of a workbook for ``FileBook.write_parts``: the sheet, its
    drawing and charts, in the book's language; our old ones replaced. A partial of a
    module function, not a closure: it is pickled to the book's own process (bookproc)."""
    return functools.partial(_place, fig, now)


def _place(fig: Figures, now: datetime | None, patch: CallsPatch) -> None:
    pkg, styles = patch.package, patch.styles
    assert pkg is not None and styles is not None
    lang = patch.lang
    grid, charts, anchors = layout(fig, lang, now)
    specs = style_specs(lang)
    title = sheet_title(lang)
    entry = pkg.find(NAMES)
    if entry is None:
        entry = pkg.add_sheet(title, pkg.free_name("xl/worksheets/sheet{}.xml"))
    elif entry.title != title:
        pkg.rename_sheet(entry, title)
    # What hung off our old sheet (its drawing, charts, their rels) goes; names reused.
    drawings = [t for _i, kind, t in pkg.relationships(entry.part) if kind == REL_DRAWING]
    old_charts = [t for d in drawings for _i, kind, t in pkg.relationships(d)
                  if kind == REL_CHART]
    for part in (*drawings, *old_charts):
        pkg.remove(part)
        pkg.remove(rels_part_of(part))
    drawing = drawings[0] if drawings else pkg.free_name("xl/drawings/drawing{}.xml")
    names: list[str] = []
    for i in range(len(charts)):
        name = old_charts[i] if i < len(old_charts) else None
        if name is None or name in names:
            name = pkg.free_name("xl/charts/chart{}.xml")
        names.append(name)
        pkg.put(name, chart_xml(charts[i]), CT_CHART)
    for i, anchor in enumerate(anchors, start=1):
        anchor.rid = f"rId{i}"
    pkg.put(drawing, drawing_xml(anchors), CT_DRAWING)
    folder = posixpath.dirname(drawing)
    pkg.put(rels_part_of(drawing), new_rels(
        [(f"rId{i}", REL_CHART, posixpath.relpath(n, folder))
         for i, n in enumerate(names, start=1)]))
    grid.drawing_rid = "rId1"
    pkg.put(rels_part_of(entry.part), new_rels(
        [("rId1", REL_DRAWING, posixpath.relpath(drawing, posixpath.dirname(entry.part)))]))
    pkg.put(entry.part, worksheet_xml(grid, lambda name: styles.make(**specs[name]),
                                      patch.epoch), CT_WORKSHEET)
    pkg.ensure_rels_default()
