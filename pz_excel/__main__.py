"""``python -m pz_excel`` = ``pz-excel`` (used by the ribbon to start a detached agent)."""

import sys

from pz_excel.cli.main import main

sys.exit(main())
