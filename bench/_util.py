"""Helpers shared by the benchmarks: percentiles, a workbook cache, child-process runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

#: Bump when the generated workbooks change, so cached ones are rebuilt.
CACHE_VERSION = 1


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by nearest rank; samples need not be sorted."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.1f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"


def cache_dir() -> Path:
    """Where generated benchmark workbooks are kept between runs (a 1 M one takes a minute)."""
    base = os.environ.get("PZ_BENCH_CACHE") or os.path.join(tempfile.gettempdir(), "pz-excel-bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def contacts_workbook(n: int, *, shared_strings: bool = False, seed: int = 1) -> Path:
    """A template workbook with ``n`` demo contacts, written once and cached.

    ``shared_strings=False``: as openpyxl writes it (inline strings, which is also what
    the agent's own saves produce); ``True``: text moved to a shared-string table, as
    Excel saves it.
    """
    from pz_excel.books.template import write_contacts_fast

    inline = cache_dir() / f"contacts-{n}-s{seed}-v{CACHE_VERSION}.xlsx"
    if not inline.exists():
        write_contacts_fast(inline, n, seed=seed)
    if not shared_strings:
        return inline
    sst = inline.with_name(inline.stem + "-sst.xlsx")
    if not sst.exists():
        to_shared_strings(inline, sst)
    return sst


_INLINE = re.compile(
    r'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?) t="inlineStr">'
    r'(?:<is><t(?: xml:space="preserve")?>([^<]*)</t></is>)?</c>'
)
_SST_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
_SST_CONTENT = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def to_shared_strings(src: Path, dst: Path) -> Path:
    """Rewrite an openpyxl workbook the way Excel stores text: every inline string of every
    worksheet becomes an index into ``xl/sharedStrings.xml`` (UTF-8, de-duplicated)."""
    from pz_excel.xlsx.reader import unescape_many

    strings: dict[str, int] = {}

    def shared(m: re.Match[str]) -> str:
        index = strings.setdefault(m[3] or "", len(strings))
        return f'<c r="{m[1]}"{m[2]} t="s"><v>{index}</v></c>'

    tmp = dst.with_name(dst.name + ".tmp")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            name = info.filename
            if name.startswith("xl/worksheets/sheet") and name.endswith(".xml"):
                data = _INLINE.sub(shared, data.decode()).encode()
            elif name == "[Content_Types].xml" and b"sharedStrings" not in data:
                data = data.replace(
                    b"</Types>",
                    (
                        f'<Override PartName="/xl/sharedStrings.xml" '
                        f'ContentType="{_SST_CONTENT}"/></Types>'
                    ).encode(),
                )
            elif name == "xl/_rels/workbook.xml.rels" and b"sharedStrings" not in data:
                data = data.replace(
                    b"</Relationships>",
                    (
                        f'<Relationship Type="{_SST_TYPE}" Target="sharedStrings.xml" '
                        f'Id="rIdSst"/></Relationships>'
                    ).encode(),
                )
            zout.writestr(info, data)
        decoded = unescape_many(list(strings))  # Excel writes UTF-8, not &#1057; refs
        body = "".join(
            "<si><t>"
            + s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            + "</t></si>"
            for s in decoded
        )
        zout.writestr(
            "xl/sharedStrings.xml",
            (
                f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<sst xmlns="{_MAIN_NS}" count="{len(decoded)}" uniqueCount="{len(decoded)}">'
                f"{body}</sst>"
            ).encode(),
        )
    os.replace(tmp, dst)
    return dst


_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from pz_excel.crm.contacts import load_index
t1 = time.perf_counter()
index = load_index(sys.argv[1])
t2 = time.perf_counter()
def peak_rss():
    # VmHWM belongs to this process image; ru_maxrss on Linux also remembers the parent's
    # size at fork time, which would make every child look as big as the benchmark.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
        info = psutil.Process().memory_info()
        if hasattr(info, "peak_wset"):  # Windows
            return info.peak_wset
    except ImportError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
peak = peak_rss()
print(json.dumps({"contacts": len(index), "phones": index.phone_count,
                  "warnings": len(index.warnings), "import_s": t1 - t0,
                  "build_s": t2 - t1, "peak_rss_mb": peak / 2**20}))
"""


def load_in_child(path: Path, timeout: float = 600) -> dict:
    """Load an index in a fresh interpreter and report its build time and peak RSS, so
    nothing the benchmark allocated before counts."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child load failed: {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result
