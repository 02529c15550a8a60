"""The pictures of docs/performance.md that come from measurements (issue 14, target 6).

    python -m bench.plots [--contacts 1000000] [--requests 1500] [--out docs]

* ``e2e_cdf_vs_floor.png`` — the distribution of the caller's wait (type 1 sent → Transfer
  received, on the wire) for the agent with ``--contacts`` contacts and for the floor (a
  bare websocket-client answering at once), same connector, same load (50 requests/s),
  measured in this run, side by side;
* ``rss_vs_log.png`` — the agent's Calls book's memory against the log's size, from
  ``bench_calls_memory`` run here in fresh processes (0, 100 k, 1 M rows; ``--quick``
  0, 10 k, 100 k);
* the lag-vs-log picture is ``pz-excel bench``'s own (``--plot``).

Needs matplotlib (a dev extra); every figure is also printed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench._util import contacts_workbook, percentile
from bench.bench_agent import (
    AgentProcess,
    WireClock,
    _phones,
    _wait,
    isolate_home,
    play_transfer_load,
)


def e2e_samples(contacts: int, rate: float, count: int) -> dict[str, list[float]]:
    """Wire latencies (s) of the agent and of the floor under the same load."""
    from bench.bench_floor import bench_floor
    from pz_excel.tools.testserver import ServerThread

    with tempfile.TemporaryDirectory(prefix="pz-plots-") as tmp:
        path = Path(tmp) / "crm.xlsx"
        shutil.copy(contacts_workbook(contacts), path)
        phones = _phones(path)
        clock = WireClock()
        server = ServerThread(host="127.0.0.1", port=0, on_log=clock).start()
        agent = AgentProcess(path, server.url)
        try:
            agent.wait_ready(server, 600)
            # a cold start writes the contacts index beside the journal next (seconds at
            # 1 M): the picture is of an agent at work, not of its start-up
            index = Path(f"{agent.journal()}.contacts-index")
            _wait(index.exists, 600, "the contacts index kept beside the journal")
            got = play_transfer_load(server, clock, [(rate, count)], phones)[0]
        finally:
            agent.stop()
            server.stop()
        floor = bench_floor([(rate, count)], phones)["transfers"][0]
    return {"agent": got["samples_s"], "floor": floor["samples_s"]}


def rss_points(rows: list[int]) -> list[tuple[int, float]]:
    """(rows, RSS above the empty log in MB): ``bench_calls_memory``, a fresh process each."""
    from bench.bench_calls_memory import measure

    with tempfile.TemporaryDirectory(prefix="pz-plots-rss-") as tmp:
        got = [(n, measure(n, None, Path(tmp))["rss_mb"]) for n in sorted({0, *rows})]
    empty = got[0][1]
    return [(n, mb - empty) for n, mb in got]


def draw(samples: dict[str, list[float]], rss: list[tuple[int, float]], contacts: int,
         folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # the thousands formatter

    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, xs in (("agent", samples["agent"]), ("floor (bare client)", samples["floor"])):
        xs = sorted(x * 1e3 for x in xs)
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("type 1 sent → Transfer received, ms (log scale)")
    ax.set_ylabel("share of requests")
    ax.set_title(f"Caller's wait at 50 requests/s, {contacts:,} contacts")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    made.append(_save(plt, fig, folder / "e2e_cdf_vs_floor.png"))
    if rss:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r for r, _ in rss], [m for _, m in rss], marker="o", label="as built")
        ax.axhline(60, color="grey", linestyle="--", label="target: ≤ 60 MB above empty")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("rows in the Calls sheet")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:,.0f}"))
        ax.set_ylabel("RSS above an empty log, MB")
        ax.set_title("Memory against the log's size")
        ax.grid(True, alpha=0.3)
        ax.legend()
        made.append(_save(plt, fig, folder / "rss_vs_log.png"))
    return made


def _save(plt, fig, path: Path) -> Path:
    """One picture as docs/ keeps them (laid out, 110 dpi), its figure freed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rows", default="0,100000,1000000")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    isolate_home()
    samples = e2e_samples(args.contacts, 50.0, args.requests)
    for label, xs in samples.items():
        print(f"{label:<6} n={len(xs)} p50 {percentile(xs, 50) * 1e3:.2f} ms, "
              f"p99 {percentile(xs, 99) * 1e3:.2f} ms, p99.9 {percentile(xs, 99.9) * 1e3:.2f} ms")
    rss: list[tuple[int, float]] = []
    try:
        rss = rss_points([int(r) for r in args.rows.split(",") if r.strip()])
        for n, mb in rss:
            print(f"Calls rows {n:>9,}: RSS {mb:+.1f} MB over the empty log")
    except Exception as exc:  # noqa: BLE001 - the other picture still comes
        print(f"RSS points not measured: {exc}")
    try:
        made = draw(samples, rss, args.contacts, args.out)
    except ImportError:
        print("matplotlib is not installed: pictures skipped (figures above)")
        return 0
    print("pictures: " + ", ".join(str(p) for p in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())

