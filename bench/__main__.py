"""All benchmarks in one run: printed tables, one JSON file with every figure.

    python -m bench [--quick] [--out FILE.json] [--plot docs/lag_vs_log.png]
    pz-excel bench [--quick] …

Sections (``--only`` picks some):

* ``routing`` — smart transfer decisions at 10 k / 100 k / 1 M contacts next to the
  tutorials' linear scan, and the contacts index built from an .xlsx (bench_routing);
* ``journal`` — events stored per second, next to plain SQLite inserts;
* ``sheet`` — Calls sheet save cost and lag against the log's size, the zip-level writer
  and an openpyxl baseline side by side, and the lag-vs-log plot;
* ``dashboard`` — one Dashboard refresh (figures from the journal, sheet and charts written
  at the zip level) on a book of 1 M contacts with 100 k calls, next to an openpyxl
  whole-book load and save;
* ``mixed`` — the caller's wait under everything at once: transfers at 50 and 500/s with
  completed calls fed at 100/s into a Calls sheet that already holds 100 k rows and the
  Dashboard rebuilt every 2 s, next to the same agent alone (bench_mixed);
* ``agent`` — type 1 → Transfer on the wire with 1 M contacts at 1 / 50 / 500 requests/s,
  the local API's Call round trip, a contacts re-read after an edit, the agent's RSS over
  100 k calls;
* ``team`` — the team server (issue 15): transfers at 200/s with 1 M contacts through
  ``pz-excel team run`` on PostgreSQL, the journal's ingest into PostgreSQL next to SQLite,
  and failover times (leader killed → standby logged in) (bench_team, bench_failover);
* ``ready`` — from ``pz-excel run`` to the first transfer answered with 1 M contacts
  (quick: 100 k): the index parsed (cold), read back from its stored copy (warm), and
  read back while the book changed (stale) (bench_ready).

``--quick`` (CI) keeps it under a minute with smaller sizes and counts. Everything runs on
loopback, with bounded counts, and stops by itself. Generated workbooks are cached
(``PZ_BENCH_CACHE``, else the temp folder); agents started here register in a private
``PZ_EXCEL_HOME``, never next to the user's own.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from pz_excel.i18n import tr

SECTIONS = ("routing", "journal", "sheet", "dashboard", "agent", "mixed", "ready", "team")


def _machine() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    import openpyxl

    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpu": cpu,
            "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "openpyxl": openpyxl.__version__, "temp": tempfile.gettempdir()}


def _section(name: str, quick: bool, out: Callable[[str], None], plot: Path | None) -> dict:
    if name == "routing":
        from bench import bench_routing

        # quick: the index build from the 10 k book, which the other sections share
        return bench_routing.run(quick=quick, out=out, file_size=10_000 if quick else None)
    if name == "journal":
        from bench import bench_journal

        return bench_journal.run(quick=quick, out=out)
    if name == "sheet":
        from bench import bench_sheet

        return bench_sheet.run(quick=quick, out=out, plot_path=plot)
    if name == "dashboard":
        from bench import bench_dashboard

        return bench_dashboard.run(quick=quick, out=out)
    if name == "team":
        from bench import bench_team

        return bench_team.run(quick=quick, out=out)
    if name == "ready":
        from bench import bench_ready

        return bench_ready.run(quick=quick, out=out)
    if name == "mixed":
        from bench import bench_mixed

        return bench_mixed.run(quick=quick, out=out)
    from bench import bench_agent

    return bench_agent.run(quick=quick, out=out)


def run(quick: bool, out_path: Path, plot: Path, only: tuple[str, ...]) -> int:
    """Run the sections in order, print as they go, write the JSON; 1 if one crashed."""
    from bench.bench_agent import isolate_home

    isolate_home()
    started = time.perf_counter()
    report: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"),
                              "quick": quick, "machine": _machine(), "sections": {},
                              "seconds": {}, "targets": {}, "errors": {}}
    click.echo(f"pz-excel benchmarks ({'quick' if quick else 'full'}) on "
               f"{report['machine']['cpu']} ×{report['machine']['cores']}, "
               f"Python {report['machine']['python']}")
    for name in only:
        click.echo("")
        click.echo(f"== {name} " + "=" * (70 - len(name)))
        t0 = time.perf_counter()
        try:
            result = _section(name, quick, click.echo, plot)
        except Exception as exc:  # noqa: BLE001 - the other sections still run
            traceback.print_exc()
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            result = {}
        report["seconds"][name] = round(time.perf_counter() - t0, 1)
        report["sections"][name] = result
        for key, ok in (result.get("targets") or {}).items():
            report["targets"][f"{name}.{key}"] = bool(ok)
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(_clean(report), indent=1, default=str))
    click.echo("")
    click.echo("== summary " + "=" * 61)
    for key, ok in report["targets"].items():
        click.echo(f"  {'OK    ' if ok else 'MISSED'} {key}")
    for name, error in report["errors"].items():
        click.echo(f"  ERROR  {name}: {error}")
    click.echo(f"  {report['seconds']['total']:.0f} s; figures: {out_path}"
               + (f"; plot: {plot}" if "sheet" in only and plot.exists() else ""))
    return 1 if report["errors"] else 0


def _clean(value: Any) -> Any:
    """NaN and infinities become null: strict JSON for any reader."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def results_dir() -> Path:
    """Where figures go by default: the user's pz-excel folder (``bench-results``), not the
    current directory, which may be anywhere (or read-only) when ``pz-excel bench`` runs."""
    from pz_excel import paths

    return paths.home() / "bench-results"


@click.command(
    "bench",
    context_settings={"help_option_names": ["-h", "--help"]},
    help=tr("Run the benchmarks and print the figures (loopback only, stops by itself).",
            "Бенчмарки с выводом цифр (только loopback, останавливаются сами)."),
)
@click.option("--quick", is_flag=True,
              help=tr("Smaller sizes and counts (CI): under a minute.",
                      "Меньшие размеры и счёт (для CI): меньше минуты."))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help=tr("JSON file for the figures (default: DATE[-quick].json in the "
                      "bench-results folder of your pz-excel data folder).",
                      "JSON-файл с цифрами (по умолчанию ДАТА[-quick].json в папке "
                      "bench-results данных pz-excel)."))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help=tr("Lag-vs-log plot (default next to the JSON; needs matplotlib, "
                      "else skipped).",
                      "График задержки от размера журнала (по умолчанию рядом с JSON; "
                      "нужен matplotlib, иначе пропускается)."))
@click.option("--only", help=tr(f"Comma-separated sections: {', '.join(SECTIONS)}.",
                                f"Разделы через запятую: {', '.join(SECTIONS)}."))
def command(quick: bool, out_path: Path | None, plot: Path | None, only: str | None) -> None:
    """Run the benchmarks and print the figures (loopback only, stops by itself)."""
    picked = tuple(s.strip() for s in only.split(",")) if only else SECTIONS
    unknown = [s for s in picked if s not in SECTIONS]
    if unknown:
        raise click.BadParameter(f"unknown section(s) {unknown}; choose from {SECTIONS}",
                                 param_hint="--only")
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S") + ("-quick" if quick else "")
    out_path = out_path or results_dir() / f"{stamp}.json"
    plot = plot or out_path.with_name(out_path.stem + "-lag.png")
    sys.exit(run(quick, out_path, plot, picked))


if __name__ == "__main__":
    command(prog_name="python -m bench")
