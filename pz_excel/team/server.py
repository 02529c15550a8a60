"""The team server process: standby until it leads, then the desktop agent's own assembly
(``agent.lifecycle.Agent``) configured for the team, until it stops or loses the lead.

    standby ──acquire──▶ grace (GRACE s) ──▶ leader: Agent started, connected
       ▲                                         │ lost: connector connection cut at once
       └─────────────────────────────────────────┘ (fencing, team/leader.py), Agent stopped

Only the leader has a connector connection, so the one team GID is never logged in twice.
Whatever else runs beside it (the team API, team/api.py) hooks in through ``on_role`` and
asks ``role`` / ``leader_client()``: it runs on the leader and on a standby alike.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from pz_excel.agent import sqldb
from pz_excel.agent.lifecycle import Agent
from pz_excel.connector.client import ConnectorClient
from pz_excel.crm.contacts import ContactsWatcher
from pz_excel.i18n import Text, UserError
from pz_excel.team.config import TeamConfig, ensure_team_book
from pz_excel.team.leader import FENCE_CLOSE, GRACE, LeaderInfo, Leadership

log = logging.getLogger("pz_excel.team.server")

STANDBY = "standby"
LEADER = "leader"
STOPPED = "stopped"

RoleCallback = Callable[[str, Agent | None], None]


class TeamServer:
    """``run()`` blocks (or ``start()`` runs it on a thread) until ``stop()``; a user
    error on the way (a bad book, a refused login) ends it and is raised by ``run`` /
    ``wait``. ``on_role(role, agent)`` is told every change: ("standby", None),
    ("leader", the running Agent), ("stopped", None)."""

    def __init__(self, config: TeamConfig, *, on_role: RoleCallback | None = None) -> None:
        self.config = config
        self.on_role = on_role
        self.leadership = Leadership(config.db, holder=f"{socket.gethostname()}/{os.getpid()}",
                                     api_address=config.api_address)
        self.leadership.on_lost = self._fence
        self.role = STOPPED
        self.agent: Agent | None = None
        #: monotonic time the current leader's Agent was started (failover measurements)
        self.led_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ public

    def leader_client(self) -> ConnectorClient | None:
        """The connector connection while this process leads, else None (a standby
        answers the API's dial with the leader's address instead)."""
        agent = self.agent
        return agent.client if agent is not None and self.role == LEADER else None

    def current_leader(self) -> LeaderInfo | None:
        return self.leadership.current()

    def start(self) -> TeamServer:
        self.config.check()
        self._thread = threading.Thread(target=self._run_caught, name="pz-team", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=40)

    def wait(self, timeout: float | None = None) -> bool:
        """True once the server ended (stopped or failed: a failure is raised here)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self._error is not None:
            raise self._error
        return True

    def run(self) -> None:
        self.config.check()
        warm = threading.Thread(target=self._warm_contacts, name="pz-team-warm", daemon=True)
        warm.start()
        try:
            while not self._stop.is_set():
                self._set_role(STANDBY, None)
                if not self.leadership.acquire(self._stop, on_wait=self._say_leader):
                    break
                warm.join()  # the index ready (a load at start), not built a second time
                self._lead()
        finally:
            self.leadership.release()
            self._set_role(STOPPED, None)

    # ------------------------------------------------------------------ the loop

    def _warm_contacts(self) -> None:
        """While a standby waits: the shared book's contacts index built (or found valid)
        and kept (``TeamConfig.index_store``), then let go — the leader's start loads it."""
        cfg = self.config
        try:
            watcher = ContactsWatcher(cfg.contacts, store=cfg.index_store,
                                      area_code=cfg.area_code, start=False)
            watcher.save_pending()
            watcher.stop()
        except Exception as exc:  # noqa: BLE001 - the leader reads the book itself then
            log.debug("contacts index not warmed: %s", exc)

    def _run_caught(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to wait()'s caller
            self._error = exc
            if not isinstance(exc, UserError):
                log.exception("team server failed")

    def _set_role(self, role: str, agent: Agent | None) -> None:
        if role == self.role:
            return
        self.role = role
        if self.on_role is not None:
            try:
                self.on_role(role, agent)
            except Exception:  # a listener's fault never stops the server
                log.exception("on_role listener failed")

    def _say_leader(self, info: LeaderInfo | None) -> None:
        if info is None:
            log.info("%s", Text("standby: waiting for the lead",
                                "резерв: ожидание лидерства"))
            return
        age = info.heartbeat_age
        who = info.describe()
        log.info("%s", Text(f"standby: leader is {who.en} (heartbeat {age:.0f} s ago)",
                            f"резерв: лидер — {who.ru} (пульс {age:.0f} с назад)"))

    def _lead(self) -> None:
        cfg = self.config
        url = cfg.agent_config().settings.url
        log.info("%s", Text(
            f"leader: lock taken; connecting to {url} in {GRACE:.1f} s (time for a previous "
            "leader to disconnect)",
            f"лидер: блокировка получена; подключение к {url} через {GRACE:.1f} с (время "
            "прежнему лидеру отключиться)"))
        lost = self.leadership.lost
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            if lost.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return  # lost before connecting: back to standby
            if self._stop.is_set():
                return
        created = ensure_team_book(cfg.team_book, cfg.lang)
        if created:
            log.info("%s", Text(f"team book created: {cfg.team_book}",
                                f"создана книга команды: {cfg.team_book}"))
        log.info("%s", Text(f"leader: connecting to {url} as {cfg.guid}, database "
                            f"{sqldb.redact(cfg.db)}",
                            f"лидер: подключение к {url} как {cfg.guid}, база данных "
                            f"{sqldb.redact(cfg.db)}"))
        agent = Agent(cfg.agent_config())
        self.agent = agent
        try:
            agent.start()
            self.led_at = time.monotonic()
            if lost.is_set():  # lost while starting: _fence ran before the client existed
                self._fence()
                return
            if created:
                self._first_dashboard(agent)
            self._set_role(LEADER, agent)
            self._watch(agent)
        finally:
            self.agent = None
            self._set_role(STANDBY, None)
            agent.stop()
            self.leadership.release()

    @staticmethod
    def _first_dashboard(agent: Agent) -> None:
        """A new team book shows its Dashboard at once, not with the first call."""
        try:
            agent.refresh_dashboard(force=True)
        except Exception as exc:  # noqa: BLE001 - the writer brings it with the first call anyway
            log.warning("%s", Text(f"Dashboard not written yet: {exc}",
                                   f"лист «Сводка» пока не записан: {exc}"))

    def _watch(self, agent: Agent) -> None:
        lost = self.leadership.lost
        while not self._stop.is_set():
            if lost.wait(0.2):
                log.warning("%s", Text(
                    "leader: lead lost, connector connection closed; back to standby",
                    "лидер: лидерство потеряно, соединение с коннектором закрыто; "
                    "снова в резерве"))
                return
            client = agent.client
            state = client.state if client is not None else None
            if state is not None and state.kind == "stopped" and state.close is not None:
                # a refused login (4008) or our GID taken (4009): not retried, said once
                raise UserError(state.text)

    def _fence(self) -> None:
        """On the watchdog's thread, the moment the lock may be gone: cut the connector
        connection (at most FENCE_CLOSE s), before a new leader's grace ends."""
        agent = self.agent
        client = agent.client if agent is not None else None
        if client is not None:
            client.stop(timeout=FENCE_CLOSE)
