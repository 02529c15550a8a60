"""Transfer decisions and contact index builds, in printed figures.

    python -m bench.bench_routing [--sizes 10000,100000,1000000] [--quick] [--json]

For each size: the decision latency (p50/p99, in-process) of ``routing.decide`` next to
``routing.linear_scan_decide`` (the vendor tutorials' way: normalise every row's phone per
call) over the same rows, and the ratio. Then the index build from an .xlsx of the largest
size, measured in a fresh child process so its peak RSS is the load's own: once as openpyxl
writes the file (inline strings; the agent's own saves look like this) and once as Excel
saves it (shared strings). Targets: p99 < 1 ms and ≥ 1000× the scan at 1 M contacts; build
< 20 s and < 500 MB.

Generated workbooks are cached (``PZ_BENCH_CACHE``, else the temp folder): writing a
million rows with openpyxl takes about a minute the first time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from bench._util import contacts_workbook, fmt_us, load_in_child, percentile
from pz_excel.books.template import DEMO_MANAGERS, _demo_rows
from pz_excel.crm.contacts import build_index
from pz_excel.crm.routing import decide, linear_scan_decide

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
TARGET_P99_S = 1e-3
TARGET_RATIO = 1000
TARGET_BUILD_S = 20.0
TARGET_RSS_MB = 500.0


def _callers(rows: list[tuple], count: int, rng: random.Random) -> list[str]:
    """Known callers in the forms connectors send (E.164 digits, +7…, 8…) and 10 %
    strangers, in random order."""
    out = []
    for _ in range(count):
        if rng.random() < 0.1:
            out.append(f"7999{rng.randrange(10_000_000):07d}")  # area 999 is never generated
            continue
        phone = rng.choice(rows)[1]
        digits = "".join(ch for ch in phone if ch.isdigit())
        national = digits[-10:]
        out.append(rng.choice((f"7{national}", f"+7{national}", f"8{national}", phone)))
    return out


def _latencies(func: Callable[[str], object], callers: list[str]) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for caller in callers:
        start = clock()
        func(caller)
        out.append((clock() - start) / 1e9)
    return out


def bench_decisions(size: int, *, samples: int, scan_samples: int, seed: int = 1) -> dict:
    rows = [row[:4] for row in _demo_rows(size, DEMO_MANAGERS, seed)]
    started = time.perf_counter()
    index = build_index(
        [("Name", "Phone", "Owner", "Company"), *rows], [("Owner", "Extension"), *DEMO_MANAGERS]
    )
    build_s = time.perf_counter() - started
    rng = random.Random(seed)
    callers = _callers(rows, samples, rng)
    for caller in callers[:200]:  # warm-up (first phonenumbers import, caches)
        decide("1", caller, index, fallback="103")
    fast = _latencies(lambda c: decide("1", c, index, fallback="103"), callers)
    scan_callers = callers[:scan_samples]
    scan = _latencies(
        lambda c: linear_scan_decide("1", c, rows, DEMO_MANAGERS, fallback="103"), scan_callers
    )
    agree = all(
        decide("1", c, index, fallback="103")
        == linear_scan_decide("1", c, rows, DEMO_MANAGERS, fallback="103")
        for c in scan_callers[:3]
    )
    p50, p99 = percentile(fast, 50), percentile(fast, 99)
    s50, s99 = percentile(scan, 50), percentile(scan, 99)
    return {
        "size": size,
        "build_in_memory_s": build_s,
        "samples": len(fast),
        "decide_p50_s": p50,
        "decide_p99_s": p99,
        "decide_max_s": max(fast),
        "scan_samples": len(scan),
        "scan_p50_s": s50,
        "scan_p99_s": s99,
        "ratio_p50": s50 / p50,
        "ratio_p99": s99 / p99,
        "same_decisions": agree,
    }


def bench_file_build(size: int) -> list[dict]:
    out = []
    for label, sst in (
        ("openpyxl-saved (inline strings)", False),
        ("Excel-saved (shared strings)", True),
    ):
        path = contacts_workbook(size, shared_strings=sst)
        result = load_in_child(path)
        result.update(size=size, format=label, file_mb=path.stat().st_size / 2**20)
        out.append(result)
    return out


def run(
    sizes: tuple[int, ...] | None = None,
    *,
    quick: bool = False,
    file_size: int | None = None,
    out: Callable[[str], None] = print,
) -> dict:
    """Run the benchmark, print a table through ``out`` and return the figures."""
    sizes = tuple(sizes or (QUICK_SIZES if quick else DEFAULT_SIZES))
    file_size = file_size or max(sizes)
    samples = 5_000 if quick else 20_000
    decisions = []
    out(f"Transfer decision latency (decide vs linear scan), {samples:,} calls per size")
    out(
        f"{'contacts':>10} {'build':>8} {'decide p50':>11} {'decide p99':>11} "
        f"{'scan p50':>11} {'scan p99':>11} {'× p50':>10} {'× p99':>10}"
    )
    for size in sizes:
        scan_samples = max(3, min(200, (1 if quick else 5) * 1_000_000 // size))
        r = bench_decisions(size, samples=samples, scan_samples=scan_samples)
        decisions.append(r)
        out(
            f"{size:>10,} {r['build_in_memory_s']:>7.2f}s {fmt_us(r['decide_p50_s']):>11} "
            f"{fmt_us(r['decide_p99_s']):>11} {fmt_us(r['scan_p50_s']):>11} "
            f"{fmt_us(r['scan_p99_s']):>11} {r['ratio_p50']:>9,.0f}× {r['ratio_p99']:>9,.0f}×"
        )
    out("")
    out(f"Index build from an .xlsx of {file_size:,} contacts (fresh child process)")
    out(f"{'format':<34} {'file':>8} {'build':>8} {'peak RSS':>10}")
    builds = bench_file_build(file_size)
    for b in builds:
        out(
            f"{b['format']:<34} {b['file_mb']:>6.1f}MB {b['build_s']:>7.2f}s "
            f"{b['peak_rss_mb']:>7.0f} MB"
        )
    largest = decisions[-1]
    targets = {
        "decide_p99_under_1ms": largest["decide_p99_s"] < TARGET_P99_S,
        "ratio_at_least_1000x": largest["ratio_p50"] >= TARGET_RATIO,
        "build_under_20s": all(b["build_s"] < TARGET_BUILD_S for b in builds),
        "rss_under_500mb": all(b["peak_rss_mb"] < TARGET_RSS_MB for b in builds),
    }
    out("")
    out(
        f"Targets at {largest['size']:,} / {file_size:,} contacts: "
        + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in targets.items())
    )
    return {
        "benchmark": "routing",
        "quick": quick,
        "decisions": decisions,
        "file_build": builds,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_routing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sizes",
        help="comma-separated contact counts (default 10000,100000,1000000; --quick: 10000,100000)",
    )
    parser.add_argument(
        "--file-size", type=int, help="contacts in the .xlsx build test (default: the largest size)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples and sizes")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(",")) if args.sizes else None
    result = run(sizes, quick=args.quick, file_size=args.file_size)
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
