"""Where pz-excel keeps its per-user state: journals, agent discovery files, history.

``PZ_EXCEL_HOME`` overrides the base folder (tests, portable installs); otherwise the
platform's user data folder (``%LOCALAPPDATA%\\pz-excel`` on Windows,
``~/.local/share/pz-excel`` on Linux, ``~/Library/Application Support/pz-excel`` on macOS).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs


def home() -> Path:
    forced = os.environ.get("PZ_EXCEL_HOME", "").strip()
    base = Path(forced) if forced else Path(platformdirs.user_data_dir("pz-excel", False))
    base.mkdir(parents=True, exist_ok=True)
    return base


def _private_dir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    try:
        path.chmod(0o700)  # only this user may read tokens and call logs
    except OSError:  # pragma: no cover - e.g. FAT volumes
        pass
    return path


def agents_dir() -> Path:
    return _private_dir("agents")


def journals_dir() -> Path:
    return _private_dir("journal")


def workbook_id(workbook: str | Path) -> str:
    """A short stable id of a workbook path (case-folded on Windows-like paths)."""
    resolved = str(Path(workbook).expanduser().resolve())
    if os.name == "nt":
        resolved = resolved.lower()
    return hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:10]


def agent_key(phone: str, workbook: str | Path) -> str:
    safe_phone = "".join(ch for ch in phone if ch.isalnum()) or "x"
    return f"{safe_phone}-{workbook_id(workbook)}"


def connector_key(url: str, guid: str) -> str:
    """One name per connector identity: the connector keeps one connection per client GUID
    (PROTOCOL.md §1, 4009), so two agents with the same address and GUID would drop each
    other whatever their workbooks."""
    digest = hashlib.sha256(f"{url}\n{guid}".encode()).hexdigest()[:16]
    return f"guid-{digest}"


def journal_path(phone: str, workbook: str | Path) -> Path:
    return journals_dir() / f"{agent_key(phone, workbook)}.sqlite"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (tokens), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
