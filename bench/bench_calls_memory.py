"""Memory of the Calls sheet's model against the log's size (issue 14, target 3).

    python -m bench.bench_calls_memory [--rows 0,100000,1000000] [--code DIR]

Each size in a fresh child process, as the agent holds the book: ``FileBook`` opened on a
copy of a cached log workbook (``bench_sheet.log_workbook``: the CRM template with N calls,
written by the zip-level writer itself), then saves of 10 rows (5 updates of recent calls, 5
new ones), then one update of the log's oldest call (a replayed history event). Reported:
RSS after the saves (``VmRSS``, after a ``gc``), the peak (``VmHWM``, the load), and the
time of a steady save and of the old-row save. The figure that matters is RSS at N rows
minus RSS at 0 rows: what the log itself costs.

``--code DIR`` imports ``pz_excel`` from DIR instead (a copy of an older version: the
"before" figures of docs/performance.md were taken that way). ``--links``: logs whose calls
carry recording links (the links and relationships are held per link, up to Excel's cap).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import gc, json, shutil, statistics, sys, time
from pathlib import Path

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0

from bench.bench_sheet import FIRST_ID, call_rows, log_workbook
from pz_excel.books.filebook import FileBook

rows, folder, links = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "links"
src = log_workbook(rows, links=links)
path = folder / src.name
shutil.copy(src, path)
gc.collect()
base = status("VmRSS")
t = time.perf_counter()
book = FileBook(path)
book.write_calls(call_rows(1, first=FIRST_ID + rows))  # the first save reads the book
open_s = time.perf_counter() - t
next_id = FIRST_ID + rows + 1
times = []
for b in range(20):
    recent = call_rows(5, first=next_id - 5, seed=100 + b, links=links)
    for row in recent:
        row.status = "missed"
    t = time.perf_counter()
    book.write_calls([*recent, *call_rows(5, first=next_id, seed=200 + b, links=links)])
    times.append(time.perf_counter() - t)
    next_id += 5
old = call_rows(1, first=FIRST_ID, seed=7)
old[0].status = "missed"
t = time.perf_counter()
book.write_calls(old)
old_s = time.perf_counter() - t
gc.collect()
print(json.dumps({"rows": rows, "links": links, "rss_mb": status("VmRSS"),
                  "rss_before_open_mb": base,
                  "peak_mb": status("VmHWM"), "open_and_first_save_s": open_s,
                  "save_p50_s": statistics.median(times), "save_max_s": max(times),
                  "old_row_save_s": old_s, "file_mb": path.stat().st_size / 2**20}))
book.close()
"""


def measure(rows: int, code: Path | None, folder: Path, links: bool = False) -> dict:
    env = dict(os.environ)
    repo = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in ([code] if code else []) + [repo])
    out = subprocess.run([sys.executable, "-c", _CHILD, str(rows), str(folder),
                          "links" if links else "plain"], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="0,100000,1000000")
    parser.add_argument("--code", type=Path, default=None)
    parser.add_argument("--links", action="store_true",
                        help="logs with recording links (Excel keeps at most 65 530 a sheet)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="pz-calls-mem-") as tmp:
        for n in (int(x) for x in args.rows.split(",")):
            r = measure(n, args.code, Path(tmp), args.links)
            results.append(r)
            print(json.dumps(r), flush=True)
    base = next((r["rss_mb"] for r in results if r["rows"] == 0), None)
    if base is not None:
        for r in results:
            print(f"{r['rows']:>9} rows: RSS {r['rss_mb']:.0f} MB (+{r['rss_mb'] - base:.1f} MB "
                  f"over an empty log), peak {r['peak_mb']:.0f} MB, save p50 "
                  f"{r['save_p50_s'] * 1000:.1f} ms, old-row save "
                  f"{r['old_row_save_s'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
