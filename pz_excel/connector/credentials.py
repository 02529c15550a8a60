"""The connector password: from an environment variable or the OS keyring, never a file.

The Settings sheet deliberately has no password row: workbooks get mailed around.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import ProtocolError, normalize_server_url

SERVICE = "pz-excel"


def keyring_user(server: str, phone: str) -> str:
    try:
        server = normalize_server_url(server)
    except ProtocolError:
        pass
    return f"{phone}@{server}"


@dataclass(frozen=True)
class PasswordLookup:
    """The password found (``""``: none) and where it was looked for, so a refused login
    can say that none was found, and where, rather than "wrong password"."""

    password: str
    looked_in: Text

    @property
    def found(self) -> bool:
        return bool(self.password)


def keyring_place(server: str, phone: str) -> Text:
    user = keyring_user(server, phone)
    return Text(
        f"the OS keyring entry {SERVICE!r} / {user!r}",
        f"системное хранилище паролей, запись {SERVICE!r} / {user!r}",
    )


def find_password(server: str, phone: str, env_var: str | None = None) -> PasswordLookup:
    """``env_var`` if given (it must exist), else the keyring, else empty (no password)."""
    if env_var:
        if env_var not in os.environ:
            raise UserError(
                Text(
                    f"environment variable {env_var} is not set (--password-env)",
                    f"переменная окружения {env_var} не задана (--password-env)",
                )
            )
        where = Text(
            f"the environment variable {env_var} (--password-env)",
            f"переменная окружения {env_var} (--password-env)",
        )
        return PasswordLookup(os.environ[env_var], where)
    where = keyring_place(server, phone)
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            found = keyring.get_password(SERVICE, keyring_user(server, phone)) or ""
        except KeyringError as exc:
            found, where = "", _unavailable(where, exc)
    except Exception as exc:  # noqa: BLE001 - a broken keyring backend must not stop the agent
        found, where = "", _unavailable(where, exc)
    return PasswordLookup(found, where)


def _unavailable(where: Text, exc: BaseException) -> Text:
    return Text(f"{where.en} (not readable: {exc})", f"{where.ru} (прочитать не удалось: {exc})")


def get_password(server: str, phone: str, env_var: str | None = None) -> str:
    """The password alone (see :func:`find_password`)."""
    return find_password(server, phone, env_var).password


def set_password(server: str, phone: str, password: str) -> None:
    import keyring

    keyring.set_password(SERVICE, keyring_user(server, phone), password)


def delete_password(server: str, phone: str) -> bool:
    """Remove the stored password; False when there was none."""
    import keyring
    from keyring.errors import PasswordDeleteError

    try:
        keyring.delete_password(SERVICE, keyring_user(server, phone))
    except PasswordDeleteError:
        return False
    return True


def no_password_text(lookup: PasswordLookup, code: str) -> Text:
    """A login refused (``code``: "HTTP 403", "4008") when no password was found: say so,
    where it was looked for, and how to store one; "wrong password" sends users hunting."""
    return Text(
        f"the connector refused the login ({code}) and no password was found (looked in "
        f"{lookup.looked_in.en}); store it with: pz-excel password set -w <workbook> "
        "(or give --password-env VAR)",
        f"коннектор отказал во входе ({code}), а пароль не найден (искали: "
        f"{lookup.looked_in.ru}); сохраните его командой: pz-excel password set -w <книга> "
        "(или укажите --password-env VAR)",
    )
