"""Sync the add-in sources into the package and rebuild the shipped add-ins.

    python workbook/build.py          # sync pz_excel/resources, build workbook/prebuilt/*
    python workbook/build.py --check  # only report drift (exit 1), change nothing

``workbook/`` is where people edit the ribbon XML and the VBA module. The installed package
needs them at run time (``pz-excel addin build/install``), and setuptools only ships files
inside ``pz_excel/``, so ``pz_excel/resources/`` holds byte-identical copies. This script makes
the copies; tests/test_workbook_static.py fails while they differ.

``workbook/prebuilt/<lang>/pz_excel.xlam`` are built without Excel (the offline engine) from the
installed xlwings' template. Rebuild after changing a source or upgrading xlwings: the xlwings
VBA inside must match the xlwings version RunPython calls.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESOURCES = ROOT / "pz_excel" / "resources"
SOURCES = {
    HERE / "PZExcel.bas": RESOURCES / "PZExcel.bas",
    HERE / "customUI" / "customUI14.ru.xml": RESOURCES / "customUI14.ru.xml",
    HERE / "customUI" / "customUI14.en.xml": RESOURCES / "customUI14.en.xml",
}
DIST = HERE / "prebuilt"


def drift() -> list[str]:
    return [
        f"{dst.relative_to(ROOT)} differs from {src.relative_to(ROOT)}"
        for src, dst in SOURCES.items()
        if not dst.exists() or dst.read_bytes() != src.read_bytes()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args()
    if args.check:
        problems = drift()
        for line in problems:
            print(line)
        return 1 if problems else 0
    RESOURCES.mkdir(exist_ok=True)
    for src, dst in SOURCES.items():
        shutil.copyfile(src, dst)
    sys.path.insert(0, str(ROOT))
    from pz_excel import addin

    DIST.mkdir(exist_ok=True)
    for lang in addin.LANGS:
        out = DIST / lang / addin.ADDIN_FILE  # keep the installed name: copy as is to XLSTART
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(addin.build_offline(lang))
        print(f"{out.relative_to(ROOT)} (xlwings {addin.xlwings_version()})")
    (DIST / "XLWINGS_VERSION").write_text(addin.xlwings_version() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
