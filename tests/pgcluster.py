"""A throwaway PostgreSQL cluster for the tests: a real server, never a mock.

``PZ_TEST_PG_DSN`` (e.g. ``postgresql://postgres@127.0.0.1:5433/postgres``) points the tests
at a server someone started (``.ci/run`` does); without it, each test worker starts its own
cluster from the installed binaries (``initdb``/``pg_ctl``) in a temporary folder, on a free
loopback port, and stops it at the end. As root the server runs as the ``postgres`` user
(PostgreSQL refuses root). With neither, the tests that need it skip, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

#: Why PostgreSQL tests skip, when they do ("" when a server is there).
SKIP_REASON = ""


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return Path(dirs[0]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One cluster: ``dsn(db)`` names a database on it; ``new_database()`` makes one."""

    def __init__(self) -> None:
        self.base = ""  # postgresql://user@host:port
        self._dir: Path | None = None
        self._run_as: list[str] = []
        self._bin: Path | None = None

    def dsn(self, db: str = "postgres") -> str:
        return f"{self.base}/{db}"

    def start(self) -> Cluster:
        given = os.environ.get("PZ_TEST_PG_DSN", "").strip()
        if given:
            self.base = given.rsplit("/", 1)[0]
            return self
        self._bin = _bin_dir()
        if self._bin is None or not (self._bin / "initdb").exists():
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl found); "
                               "set PZ_TEST_PG_DSN or install postgresql")
        user = pwd.getpwuid(os.getuid()).pw_name
        self._dir = Path(tempfile.mkdtemp(prefix="pz-pg-"))
        if os.getuid() == 0:  # PostgreSQL will not run as root
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", user, "--"]
        data = self._dir / "data"
        port = _free_port()
        self._pg("initdb", "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8",
                 "--no-locale", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c fsync=off "
                f"-c unix_socket_directories={self._dir} -c max_connections=200")
        self._pg("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self._dir / "log"),
                 "-w", "-t", "60", "start")
        self.base = f"postgresql://{user}@127.0.0.1:{port}"
        return self

    def _pg(self, tool: str, *args: str) -> None:
        assert self._bin is not None
        done = subprocess.run([*self._run_as, str(self._bin / tool), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self._dir is None:
            return
        data = self._dir / "data"
        try:
            self._pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
