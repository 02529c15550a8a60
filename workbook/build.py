"""Build the shipped add-ins from the package's sources.

    python workbook/build.py          # build workbook/prebuilt/<lang>/pz_excel.xlam
    python workbook/build.py --check  # only report whether they are up to date (exit 1)

The VBA module and the ribbon XML have one copy, in ``pz_excel/excel/resources/`` (as
xlwings keeps its ``.bas`` files in its package): ``pz-excel addin build/install`` reads them
there. ``workbook/prebuilt/<lang>/pz_excel.xlam`` are built from them without Excel (the
offline engine) with the installed xlwings' template. Rebuild after changing a source or
upgrading xlwings: the xlwings VBA inside must match the xlwings version RunPython calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIST = HERE / "prebuilt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pz_excel.excel import addin

    stale = []
    for lang in addin.LANGS:
        out = DIST / lang / addin.ADDIN_FILE  # keep the installed name: copy as is to XLSTART
        built = addin.build_offline(lang)
        if args.check:
            if not out.exists() or out.read_bytes() != built:
                stale.append(str(out.relative_to(ROOT)))
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(built)
        print(f"{out.relative_to(ROOT)} (xlwings {addin.xlwings_version()})")
    if args.check:
        for line in stale:
            print(f"{line} is out of date: run python workbook/build.py")
        return 1 if stale else 0
    (DIST / "XLWINGS_VERSION").write_text(addin.xlwings_version() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
