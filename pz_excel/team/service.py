"""The whole of ``pz-excel team run``: the team API (on the leader and on a standby alike)
beside the ``TeamServer`` (standby → leader → …).

The API starts first, so its address is known when the leadership row is written: a
standby's 503 and ``team status`` name where the leader's API is. The API keeps a journal
of its own on the team database for the process's life — a standby answers reads and
merges the desktop agents' reports too — while the leader's Agent has its own for the
connector's events; the database merges both per call ID (Journal.apply_event's per-call
lock). Dials go through the leader's connector connection only.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pz_excel.agent.calllog import CallMapper
from pz_excel.agent.journal import Journal
from pz_excel.connector.state import ConnectorError
from pz_excel.crm import phones
from pz_excel.i18n import Text, UserError
from pz_excel.team.api import TeamApi
from pz_excel.team.config import DEFAULT_LISTEN, TeamConfig
from pz_excel.team.server import LEADER, TeamServer
from pz_excel.team.users import Users

log = logging.getLogger("pz_excel.team.service")

#: How long a dial waits for the connector's answer before the manager is told.
DIAL_TIMEOUT = 10.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); a clear error otherwise."""
    value = (text or DEFAULT_LISTEN).strip()
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(Text(
            f"--listen {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN} or 0.0.0.0:10190",
            f"--listen {value!r}: нужно ХОСТ:ПОРТ, например {DEFAULT_LISTEN} или 0.0.0.0:10190"))
    return host, int(port)


class TeamService:
    """``start()`` → API listening and the server on its way; ``stop()`` ends both."""

    def __init__(self, config: TeamConfig, *, listen: str = DEFAULT_LISTEN,
                 certfile: str | None = None, keyfile: str | None = None) -> None:
        self.config = config
        self.host, self.port = parse_listen(listen)
        self.certfile, self.keyfile = certfile, keyfile
        self.journal: Journal | None = None
        self.api: TeamApi | None = None
        self.server: TeamServer | None = None

    def start(self) -> TeamService:
        cfg = self.config
        cfg.check()  # a wrong book or path is said before anything listens
        self.journal = Journal(
            cfg.db, normalize=functools.partial(phones.normalize, area_code=cfg.area_code))
        try:
            self.api = TeamApi(
                self.journal, users=Users(self.journal.db), host=self.host, port=self.port,
                certfile=self.certfile, keyfile=self.keyfile, role=self._role,
                dial=self._dial, leader_address=self._leader_address,
                mapper=CallMapper(lookup=self._lookup), status=self._status,
                area_code=cfg.area_code,
            ).start()
            cfg.api_address = self.api.url
            self.server = TeamServer(cfg).start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, timeout: float | None = None) -> bool:
        assert self.server is not None
        return self.server.wait(timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.api is not None:
            self.api.stop()
        if self.journal is not None:
            self.journal.close()

    # ------------------------------------------------------------------ the API's view

    def _role(self) -> str:
        server = self.server
        return server.role if server is not None else "standby"

    def _leader_address(self) -> str:
        server = self.server
        info = server.current_leader() if server is not None else None
        return info.api if info is not None else ""

    def _lookup(self, number: str) -> tuple[str, str] | None:
        """A reported call's contact and owner, from the leader's contacts (a standby has
        none loaded: the row gets them when the leader applies the call's own events)."""
        agent = self.server.agent if self.server is not None else None
        watcher = agent.watcher if agent is not None else None
        return watcher.name_and_owner(number) if watcher is not None else None

    def _dial(self, extension: str, number: str) -> Any:
        client = self.server.leader_client() if self.server is not None else None
        if client is None or self._role() != LEADER:
            raise ConnectorError(Text("not connected to the connector right now",
                                      "сейчас нет подключения к коннектору"))
        return client.call_async(number, from_ext=extension).result(timeout=DIAL_TIMEOUT)

    def _status(self) -> dict[str, Any]:
        agent = self.server.agent if self.server is not None else None
        client = agent.client if agent is not None else None
        state = client.state if client is not None else None
        return {"connector": state.kind if state is not None else "",
                # the calls alone: stats() would count the whole event log on each request
                "calls": self.journal.count_calls() if self.journal is not None else 0}
