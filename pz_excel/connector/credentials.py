"""The connector password: from an environment variable or the OS keyring, never a file.

The Settings sheet deliberately has no password row: workbooks get mailed around.
"""

from __future__ import annotations

import os

from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import ProtocolError, normalize_server_url

SERVICE = "pz-excel"


def keyring_user(server: str, phone: str) -> str:
    try:
        server = normalize_server_url(server)
    except ProtocolError:
        pass
    return f"{phone}@{server}"


def get_password(server: str, phone: str, env_var: str | None = None) -> str:
    """``env_var`` if given (it must exist), else the keyring, else empty (no password)."""
    if env_var:
        if env_var not in os.environ:
            raise UserError(
                Text(
                    f"environment variable {env_var} is not set (--password-env)",
                    f"переменная окружения {env_var} не задана (--password-env)",
                )
            )
        return os.environ[env_var]
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(SERVICE, keyring_user(server, phone)) or ""
        except KeyringError:
            return ""
    except Exception:  # noqa: BLE001 - a broken keyring backend must not stop the agent
        return ""


def set_password(server: str, phone: str, password: str) -> None:
    import keyring

    keyring.set_password(SERVICE, keyring_user(server, phone), password)
