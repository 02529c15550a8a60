"""Wall time of ``pz-excel status`` and ``pz-excel call`` against a running agent, as a
user's shell sees it (a fresh process each time), next to two baselines from the same run:
a bare ``python -c pass`` and ``pz-excel --help`` (the CLI without the command's work)
(issue 14, target 5: under 150 ms).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

TARGET_S = 0.150


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
