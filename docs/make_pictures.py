"""Regenerate the README's pictures: the demo's Calls and Dashboard sheets as LibreOffice
renders them.

    python docs/make_pictures.py            # writes docs/demo-calls.png, docs/demo-dashboard.png

Needs LibreOffice (``apt-get install libreoffice-calc-nogui``) and poppler's pdftoppm and
pdftotext (``apt-get install poppler-utils``). It runs ``pz-excel demo`` in a temporary
folder, prints the workbook to PDF with LibreOffice headless, finds the pages of the two
sheets by their titles, and turns each into a PNG.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = {  # picture → a text only that sheet's first page has, and the page's top to keep
    "demo-calls.png": ("Recording", 0.22),
    "demo-dashboard.png": ("Calls dashboard", 0.72),
}
DPI = 110
A4_LANDSCAPE = (11.69, 8.27)  # inches


def main() -> int:
    tools = ("soffice", "pdftoppm", "pdftotext", "pdfinfo")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install libreoffice-calc-nogui "
              "poppler-utils)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run([sys.executable, "-m", "pz_excel", "demo", "--dir", str(tmp / "demo"),
                        "--contacts", "20"], check=True, stdout=subprocess.DEVNULL)
        book = tmp / "demo" / "pz-excel-demo.xlsx"
        subprocess.run(["soffice", f"-env:UserInstallation=file://{tmp}/profile", "--headless",
                        "--norestore", "--convert-to", "pdf", "--outdir", str(tmp), str(book)],
                       check=True, stdout=subprocess.DEVNULL, timeout=180)
        pdf = tmp / "pz-excel-demo.pdf"
        pages = _page_count(pdf)
        for picture, (marker, keep) in PAGES.items():
            page = next(p for p in range(1, pages + 1) if marker in _page_text(pdf, p))
            width, height = (round(side * DPI) for side in A4_LANDSCAPE)
            subprocess.run(["pdftoppm", "-png", "-r", str(DPI), "-singlefile", "-f", str(page),
                            "-l", str(page), "-x", "0", "-y", "0", "-W", str(width), "-H",
                            str(round(height * keep)), str(pdf), str(tmp / "page")], check=True)
            shutil.copy(tmp / "page.png", HERE / picture)
            print(f"{HERE / picture}: page {page} of {pages}")
    return 0


def _page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    return int(next(line.split()[-1] for line in info.stdout.splitlines()
                    if line.startswith("Pages:")))


def _page_text(pdf: Path, page: int) -> str:
    done = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"],
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


if __name__ == "__main__":
    sys.exit(main())
