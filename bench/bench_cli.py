"""Wall time of ``pz-excel status`` and ``pz-excel call`` against a running agent, as a
user's shell sees it (a fresh process each time), next to two baselines from the same run:
a bare ``python -c pass`` and ``pz-excel --help`` (the CLI without the command's work)
(issue 14, target 5: under 150 ms); and the formulas' round trip to the agent with 200
requests at once (target: p99 under 20 ms).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TARGET_S = 0.150
TARGET_UDF_P99_S = 0.020


def _times(argv: list[str], n: int) -> list[float]:
    env = dict(os.environ, PZ_LANG="en")
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        out.append(time.perf_counter() - t)
    return out


def cli_wall_times(n: int = 10) -> dict[str, Any]:
    """Needs a running agent registered in ``PZ_EXCEL_HOME`` (the e2e section's)."""
    cli = [sys.executable, "-m", "pz_excel"]
    runs = {
        "python -c pass": _times([sys.executable, "-c", "pass"], n),
        "pz-excel --help": _times([*cli, "--help"], n),
        "pz-excel status": _times([*cli, "status"], n),
        "pz-excel call": _times([*cli, "call", "73430000001"], n),
    }
    return {name: {"p50_s": statistics.median(ts), "max_s": max(ts), "runs": n}
            for name, ts in runs.items()}


def print_cli(times: dict[str, Any], out: Callable[[str], None]) -> None:
    out(f"CLI wall time, a fresh process each ({next(iter(times.values()))['runs']} runs): "
        + "; ".join(f"{name} p50 {t['p50_s'] * 1e3:.0f} ms (max {t['max_s'] * 1e3:.0f})"
                    for name, t in times.items()))


def _released_together(concurrent: int, work: Callable[[int], object]) -> tuple[list[float], list]:
    """``work(i)`` on ``concurrent`` threads released by one barrier: each one's own time,
    and what each returned."""
    start = threading.Barrier(concurrent)
    lock = threading.Lock()
    lat: list[float] = []
    values: list = []

    def one(i: int) -> None:
        start.wait()
        t = time.perf_counter()
        value = work(i)
        took = time.perf_counter() - t
        with lock:
            lat.append(took)
            values.append(value)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return lat, values


def udf_round_trips(numbers: list[str], concurrent: int = 200) -> dict[str, Any]:
    """``=PZ_OWNER(number)`` from ``concurrent`` threads released together, through the
    UDFs' own link (discovery cached, the 200 ms budget), against the running agent. A
    result that is not an owner's name (e.g. "agent not answering") counts as failed.

    Baseline in the same run: the same threads doing nothing but a sleep of the gathering
    window (``GATHER``): what 200 threads waking at once in one process cost by themselves."""
    from bench._util import percentile
    from pz_excel.excel import udf_logic
    from pz_excel.excel.udf_logic import AgentLink, pz_owner

    link = AgentLink()
    pz_owner(numbers[0], link=link)  # discovery and the first connection: not counted
    lat, values = _released_together(
        concurrent, lambda i: pz_owner(numbers[i % len(numbers)], link=link))
    failed = [str(v) for v in values if not isinstance(v, str) or v.startswith(("agent", "#"))]
    base, _ = _released_together(concurrent, lambda i: time.sleep(udf_logic.GATHER))
    return {"requests": concurrent, "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
            "max_s": max(lat), "failed": len(failed), "errors": sorted(set(failed))[:3],
            "gather_s": udf_logic.GATHER, "threads_only_p50_s": percentile(base, 50),
            "threads_only_p99_s": percentile(base, 99)}


def print_udf(udf: dict[str, Any], out: Callable[[str], None]) -> None:
    out(f"PZ_OWNER round trip, {udf['requests']} at once: p50 {udf['p50_s'] * 1e3:.1f} ms, "
        f"p99 {udf['p99_s'] * 1e3:.1f} ms, max {udf['max_s'] * 1e3:.1f} ms, "
        f"failed {udf['failed']} {udf['errors'] or ''}")
    if "threads_only_p99_s" in udf:
        out(f"  baseline, same threads doing only the {udf['gather_s'] * 1e3:.0f} ms gathering "
            f"sleep: p50 {udf['threads_only_p50_s'] * 1e3:.1f} ms, "
            f"p99 {udf['threads_only_p99_s'] * 1e3:.1f} ms")
