"""``AgentConfig.freeze_gc`` (what ``run`` and ``team run`` set): once the contacts are
loaded, what is alive is out of the garbage collector's full passes, which would otherwise
walk the whole contacts index while a caller waits (docs/performance.md). Off by default:
a process hosting agents among other things keeps its collector as it is."""

from __future__ import annotations

import gc

from tests.test_agent import make_book, start_agent


def test_run_freezes_what_start_up_made_and_the_default_does_not(tmp_path, server):
    gc.unfreeze()
    try:
        agent = start_agent(make_book(tmp_path / "a.xlsx"), server)
        try:
            assert gc.get_freeze_count() == 0
        finally:
            agent.stop()
        agent = start_agent(make_book(tmp_path / "b.xlsx"), server, freeze_gc=True)
        try:
            assert gc.get_freeze_count() > 0
            made = agent.decisions  # a list the agent made at its start
            assert gc.is_tracked(made) and _frozen(made)
        finally:
            agent.stop()
    finally:
        gc.unfreeze()


def _frozen(obj: object) -> bool:
    """Out of the collector's generations: not among the objects it would walk."""
    return not any(o is obj for o in gc.get_objects())
