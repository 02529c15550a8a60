"""The agent process the ribbon's Connect starts: its command line, detached start, log file,
and the wait for its first connection result; and finding a workbook's own agent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pz_excel import paths
from pz_excel.agent.api import ApiClient
from pz_excel.agent.discovery import AgentUnavailable
from pz_excel.i18n import Text, UserError, current_lang

CONNECT_WAIT = 12.0  # s to wait for the new agent's first connection result
API_TIMEOUT = 3.0
PASSWORD_ENV = "PZ_EXCEL_PASSWORD"  # only when the OS keyring cannot store the password


def agent_for(workbook: str | Path, timeout: float = API_TIMEOUT) -> ApiClient | None:
    """This workbook's running agent, if any (never another workbook's)."""
    return ApiClient.for_workbook(workbook, timeout)


def agent_command(
    workbook: str | Path,
    values: Mapping[str, str],
    *,
    python: str | None = None,
    password_env: bool = False,
    windows: bool | None = None,
) -> list[str]:
    """``python -m pz_excel run --workbook PATH …``; live Settings values go on the command
    line, so the agent uses what the sheet shows even before the workbook is saved."""
    windows = (os.name == "nt") if windows is None else windows
    exe = python or sys.executable
    if windows:  # pythonw: no console window for a background process
        candidate = Path(exe).with_name("pythonw.exe")
        if candidate.exists():
            exe = str(candidate)
    argv = [exe, "-m", "pz_excel", "run", "--workbook", str(workbook)]
    for key, option in (
        ("server", "--server"),
        ("phone", "--phone"),
        ("client_type", "--client-type"),
        ("fallback", "--fallback"),
        ("area_code", "--area-code"),
    ):
        value = (values.get(key) or "").strip()
        if value:
            argv += [option, value]
    if password_env:
        argv += ["--password-env", PASSWORD_ENV]
    return argv


def spawn_options(windows: bool | None = None) -> dict[str, Any]:
    """Popen options that detach the agent from Excel's Python: it outlives the macro."""
    windows = (os.name == "nt") if windows is None else windows
    if windows:
        flags = (
            getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
            | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
            | getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
        )
        return {"creationflags": flags, "close_fds": True}
    return {"start_new_session": True, "close_fds": True}


def agent_log(workbook: str | Path) -> Path:
    folder = paths.home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"agent-{paths.workbook_id(workbook)}.log"


def start_agent(
    workbook: str | Path,
    values: Mapping[str, str],
    password: str | None = None,
    *,
    python: str | None = None,
) -> subprocess.Popen:
    """Start a detached agent for ``workbook``; its output goes to :func:`agent_log`.

    ``password`` is passed through the child's environment only when the OS keyring could
    not keep it (the agent otherwise reads the keyring itself); never on the command line.
    """
    log_path = agent_log(workbook)
    if log_path.exists() and log_path.stat().st_size > 2_000_000:
        log_path.replace(log_path.with_suffix(".log.1"))
    env = dict(os.environ)
    env["PZ_LANG"] = current_lang()  # the agent's messages in the user's language
    env["PYTHONIOENCODING"] = "utf-8"  # Cyrillic in the log on any Windows code page
    if password is not None:
        env[PASSWORD_ENV] = password
    argv = agent_command(workbook, values, python=python, password_env=password is not None)
    with open(log_path, "ab") as out:
        out.write(f"\n--- {datetime.now():%Y-%m-%d %H:%M:%S} start\n".encode())
        out.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            **spawn_options(),
        )


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    last = text.rsplit("\n--- ", 1)[-1].splitlines()[1:]  # this start's lines only
    return "\n".join(line.removeprefix("pz-excel: ") for line in last if line.strip())[-1500:]


def wait_for_agent(
    workbook: str | Path,
    proc: subprocess.Popen | None,
    timeout: float = CONNECT_WAIT,
) -> dict[str, Any]:
    """Wait until the new agent answers and its connection is past "connecting".

    Returns its status (possibly still "connecting" after ``timeout``). Raises a
    :class:`UserError` with the agent's own last words if the process ends first.
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            if status is not None and status.get("state") == "stopped":
                return status
            tail = _log_tail(agent_log(workbook))
            raise UserError(
                Text(
                    f"The agent stopped (exit code {proc.returncode}):\n{tail}",
                    f"Агент остановился (код {proc.returncode}):\n{tail}",
                )
            )
        client = agent_for(workbook, timeout=1.0)
        if client is not None:
            try:
                status = client.get("/status")
            except AgentUnavailable:
                status = None
            if status is not None and status.get("state") != "connecting":
                return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if status is not None:
                return status
            raise UserError(
                Text(
                    f"The agent did not start within {timeout:.0f} s; see {agent_log(workbook)}",
                    f"Агент не запустился за {timeout:.0f} с; см. {agent_log(workbook)}",
                )
            )
        if proc is not None:
            try:  # sleeps, but wakes at once if the agent exits
                proc.wait(min(0.1, remaining))
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(min(0.1, remaining))
