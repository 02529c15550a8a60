"""Shared fixtures: isolated per-user state, a loopback test connector, workbooks."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own PZ_EXCEL_HOME: agents, tokens and journals never mix."""
    home = tmp_path / "pz-home"
    monkeypatch.setenv("PZ_EXCEL_HOME", str(home))
    monkeypatch.setenv("PZ_LANG", "en")
    return home


@pytest.fixture(autouse=True)
def _pz_logger_restored():
    """An in-process ``pz-excel run`` points the ``pz_excel`` logger at that test's stderr
    (``console_log.setup_logging``); put it back so later tests don't write into a closed
    capture."""
    import logging

    logger = logging.getLogger("pz_excel")
    saved = (list(logger.handlers), logger.level, logger.propagate, list(logger.filters))
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    logger.filters[:] = saved[3]


@pytest.fixture
def server():
    """Our test connector on a free loopback port, as strict as the vendor's TestServer."""
    from pz_excel.tools.testserver import ServerThread

    srv = ServerThread(host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
    """Poll a condition until it holds; fail with ``what`` on timeout (no sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def pg_cluster():
    """A real PostgreSQL for this test worker (tests/pgcluster.py); skips, saying why,
    when there is none to start."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    from tests.pgcluster import Cluster

    cluster = Cluster()
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster) -> str:
    """A fresh, empty PostgreSQL database for one test: its DSN."""
    return pg_cluster.new_database()
