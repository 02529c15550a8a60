"""WAL checkpoints off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages, so every
few hundred events a caller waiting for a transfer would have waited for a checkpoint too.
The ``Checkpointer`` copies the WAL into the database file once a second from a connection
of its own; commits only checkpoint past ``COMMIT_CHECKPOINT_PAGES`` (a safety net).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("pz_excel.agent.checkpointer")

#: How often the background checkpointer copies the WAL into the database file.
CHECKPOINT_INTERVAL = 1.0
#: The commit path still checkpoints past this many WAL pages (~40 MB): a safety net for a
#: checkpointer that cannot keep up (a reader holding an old snapshot), never the rule.
COMMIT_CHECKPOINT_PAGES = 10_000
#: After a checkpoint the WAL file is cut back to this: on a small disk the journal's
#: footprint stays bounded, not at its busiest second's high mark.
WAL_SIZE_LIMIT = 8 << 20


class Checkpointer:
    """Copies the WAL into the database file every ``CHECKPOINT_INTERVAL`` seconds, from a
    connection of its own, so that no commit ever waits for it. PASSIVE never blocks the
    writer: frames it cannot copy yet wait for the next round."""

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="pz-journal-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            con = sqlite3.connect(
                str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:  # the commit path's safety net still checkpoints
            log.warning("journal %s: no background checkpoints (%s)", self.path, exc)
            return
        try:
            while not self._stopping.wait(self.interval):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or gone: try again next round
                    log.debug("journal %s: checkpoint skipped (%s)", self.path, exc)
        finally:
            con.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
