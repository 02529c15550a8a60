"""SIGTERM stops the long-running commands cleanly (``kill``, systemd, NSSM), also when it
comes at once: CI once stopped ``pz-excel run`` right after its first lines and the process
died by the signal (exit -15) because the handler was installed only after the agent had
started and announced itself."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pz_excel.signals import sigterm_sets
from pz_excel.tools.testserver import ServerThread
from tests.test_first_start import RunProcess
from tests.test_guid_lock import make_book


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="no SIGTERM on this OS")
def test_sigterm_sets_the_event_and_the_old_handler_comes_back():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can be installed from the main thread only")
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_sets(threading.Event()) as done:
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(5), "SIGTERM did not set the event"
    assert signal.getsignal(signal.SIGTERM) is before


def test_off_the_main_thread_it_is_a_no_op():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with sigterm_sets(threading.Event()) as done:
            seen.append((done.is_set(), signal.getsignal(signal.SIGTERM) is before))

    t = threading.Thread(target=body)
    t.start()
    t.join(5)
    assert seen == [(False, True)]


@pytest.mark.parametrize("first", ["contacts loaded", "connecting to"])
def test_run_stopped_at_its_first_line_exits_cleanly(tmp_path, first):
    """Every line the agent writes comes after the handler is in place: a SIGTERM on the
    first of them is a clean stop (exit 0), never a death by the signal."""
    book = make_book(tmp_path / "crm.xlsx")
    server = ServerThread(host="127.0.0.1", port=0).start()
    run = RunProcess("-w", str(book), "-s", server.url, "-p", "101")
    try:
        run.wait_count(first, 1)
    finally:
        code = run.stop()
        server.stop()
    assert code == 0, "\n".join(run.lines)
    assert any("stopped" in line for line in run.lines), run.lines
