"""Running agents and which one is meant: the discovery files, and the one rule that picks
an agent for a workbook or an extension (CLI ``status``/``call``, ribbon buttons, UDFs).

Each running agent writes a discovery file (``paths.agents_dir()``, see
``pz_excel.agent.api.LocalApi``); :func:`running_agents` reads those whose process lives.
:func:`choose_agent` never guesses: a workbook given means that workbook's agent
(:func:`pz_excel.books.identity.same_workbook`) or an error naming the workbooks agents
run for; no workbook means the one running agent, or an error asking to choose with ``-w``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pz_excel import paths
from pz_excel.books.identity import same_workbook
from pz_excel.i18n import Text, UserError


class AgentUnavailable(UserError):
    """No running agent answers (not started, stopped, or too slow)."""


class NoAgentForWorkbook(AgentUnavailable):
    """Agents run, but none for the workbook asked for."""


class AgentChoiceNeeded(UserError):
    """Several agents run and nothing says which one is meant."""


NO_AGENT = Text(
    "no pz-excel agent is running (start it: pz-excel run, or Connect on the ribbon)",
    "агент pz-excel не запущен (запустите: pz-excel run или «Подключить» на ленте)",
)


@dataclass(frozen=True)
class AgentInfo:
    """The discovery file's content."""

    pid: int
    port: int
    token: str
    phone: str
    workbook: str
    server: str
    journal: str
    started: float
    key: str
    guid: str = ""  # the client GUID it logs in with (files of older versions lack it)

    @property
    def file(self) -> Path:
        return paths.agents_dir() / f"{self.key}.json"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """The process runs and is no zombie. On Linux straight from /proc (``pz-excel status``
    and ``call`` must answer fast, and psutil costs 10 ms to import); elsewhere psutil."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="ascii", errors="replace")
        except (OSError, ValueError):
            return False
        fields = stat.rsplit(")", 1)[-1].split()  # after "(comm)", which may hold spaces
        return bool(fields) and fields[0] != "Z"
    import psutil

    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    except psutil.Error:
        return False


def running_agents() -> list[AgentInfo]:
    """Discovery files of agents whose process is alive (stale files are ignored)."""
    found = []
    for file in sorted(paths.agents_dir().glob("*.json")):
        try:
            info = AgentInfo(**json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if info.alive():
            found.append(info)
    return found


def agent_for_workbook(
    workbook: str | Path, agents: list[AgentInfo] | None = None
) -> AgentInfo | None:
    """The running agent of ``workbook``, if any: never another workbook's agent."""
    for info in running_agents() if agents is None else agents:
        if same_workbook(info.workbook, workbook):
            return info
    return None


def choose_agent(
    agents: list[AgentInfo], workbook: str | Path | None = None, phone: str | None = None
) -> AgentInfo:
    """The one agent meant by a workbook and/or an extension; never a guess.

    * no agent running: :class:`AgentUnavailable`;
    * a workbook given: its agent, else :class:`NoAgentForWorkbook` naming the workbooks
      the running agents serve;
    * no workbook: the one agent (of ``phone`` when given); with several,
      :class:`AgentChoiceNeeded` asking to pick one with ``-w``.
    """
    if not agents:
        raise AgentUnavailable(NO_AGENT)
    if phone:
        theirs = [a for a in agents if a.phone == phone]
        if not theirs:
            raise AgentUnavailable(
                Text(
                    f"no pz-excel agent is running for extension {phone}; "
                    f"agents are running for: {_workbooks(agents)}",
                    f"агент pz-excel для добавочного {phone} не запущен; "
                    f"агенты запущены для: {_workbooks(agents)}",
                )
            )
        agents = theirs
    if workbook is not None:
        found = agent_for_workbook(workbook, agents)
        if found is None:
            raise NoAgentForWorkbook(
                Text(
                    f"no pz-excel agent is running for {workbook}; "
                    f"agents are running for: {_workbooks(agents)}",
                    f"для книги {workbook} агент pz-excel не запущен; "
                    f"агенты запущены для: {_workbooks(agents)}",
                )
            )
        return found
    if len(agents) > 1:
        raise AgentChoiceNeeded(
            Text(
                f"{len(agents)} pz-excel agents are running, for: {_workbooks(agents)}; "
                "choose the workbook with -w",
                f"запущено агентов pz-excel: {len(agents)}, для: {_workbooks(agents)}; "
                "выберите книгу ключом -w",
            )
        )
    return agents[0]


def _workbooks(agents: list[AgentInfo]) -> str:
    return ", ".join(sorted(a.workbook for a in agents))
