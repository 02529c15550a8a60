"""Screen pop for incoming calls: the text, and a desktop toast where Windows has one.

``notify`` never blocks the caller (the agent's event thread) and never raises: it returns
``False`` when it could not show anything, and the caller falls back to Excel's status bar.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pz_excel.i18n import Text

log = logging.getLogger("pz_excel.agent.notify")

APP_NAME = "Prostie Zvonki"
# Toasts need a registered app id; PowerShell's is present on every Windows 10/11.
POWERSHELL_APP_ID = (
    "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\WindowsPowerShell\\v1.0\\powershell.exe"
)


def screen_pop_text(number: str, contact: Mapping[str, Any] | None = None) -> Text:
    """``Incoming: name — company (owner)``; just the number for an unknown caller."""
    if not contact or not str(contact.get("name") or "").strip():
        who = number or "?"
        return Text(f"Incoming: {who}", f"Входящий: {who}")
    who = str(contact["name"]).strip()
    company = str(contact.get("company") or "").strip()
    owner = str(contact.get("owner") or "").strip()
    if company:
        who += f" — {company}"
    if owner:
        who += f" ({owner})"
    return Text(f"Incoming: {who}", f"Входящий: {who}")


# The script reads title and text from environment variables: caller names come from a
# workbook and must never become PowerShell code or XML markup.
_TOAST_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
[void][Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime]
[void][Windows.Data.Xml.Dom.XmlDocument, Windows.Data.Xml.Dom.XmlDocument, ContentType = WindowsRuntime]
$t = [Security.SecurityElement]::Escape($env:PZ_TOAST_TITLE)
$b = [Security.SecurityElement]::Escape($env:PZ_TOAST_TEXT)
$xml = New-Object Windows.Data.Xml.Dom.XmlDocument
$xml.LoadXml("<toast><visual><binding template='ToastGeneric'><text>$t</text><text>$b</text></binding></visual></toast>")
$toast = [Windows.UI.Notifications.ToastNotification]::new($xml)
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier($env:PZ_TOAST_APP).Show($toast)
"""  # noqa: E501


def toast_command(title: str, text: str) -> tuple[list[str], dict[str, str]]:
    """The PowerShell command line and environment that show one toast."""
    encoded = base64.b64encode(_TOAST_SCRIPT.encode("utf-16-le")).decode("ascii")
    argv = [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-WindowStyle",
        "Hidden",
        "-EncodedCommand",
        encoded,
    ]
    env = dict(os.environ)
    env.update(PZ_TOAST_TITLE=title, PZ_TOAST_TEXT=text, PZ_TOAST_APP=POWERSHELL_APP_ID)
    return argv, env


def _toast_library(title: str, text: str) -> bool:
    """The optional ``windows-toasts`` package, when installed (no console flash)."""
    try:
        from windows_toasts import Toast, WindowsToaster  # type: ignore[import-not-found]
    except ImportError:
        return False
    toast = Toast()
    toast.text_fields = [title, text]
    WindowsToaster(APP_NAME).show_toast(toast)
    return True


class Spawner:
    """Starts toast processes, at most ``limit`` alive at once: a burst of ringing calls
    must not start a PowerShell per call (each is ~60 MB); the rest fall back to Excel's
    status bar."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self._alive: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> bool:
        with self._lock:
            self._alive = [p for p in self._alive if p.poll() is None]
            if len(self._alive) >= self.limit:
                return False
            self._alive.append(subprocess.Popen(
                argv,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
                close_fds=True,
            ))
            return True


_TOASTS = Spawner()


def notify(title: str, text: str) -> bool:
    """Show a desktop notification without waiting for it; ``False`` if none was shown."""
    if sys.platform != "win32":
        return False  # Excel's status bar carries the pop elsewhere
    try:
        if _toast_library(title, text):
            return True
        argv, env = toast_command(title, text)
        return _TOASTS.spawn(argv, env)
    except Exception as exc:  # noqa: BLE001 - a pop-up must never stop the call log
        log.debug("toast not shown: %s", exc)
        return False
