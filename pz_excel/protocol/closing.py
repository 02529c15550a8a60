"""Close codes and refused upgrades: what they mean to the user, and retry or not."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pz_excel.i18n import Text


@dataclass(frozen=True)
class CloseInfo:
    """What a close (or a refused upgrade) means to the user, and whether to retry."""

    code: int
    text: Text
    retry: bool
    http: bool = False


CLOSE_CODES: dict[int, Text] = {
    4001: Text("licence key check failed", "ошибка проверки лицензионного ключа"),
    4002: Text("licence key is invalid", "лицензионный ключ недействителен"),
    4003: Text("licence key has expired", "срок действия лицензионного ключа истёк"),
    4004: Text(
        "licence key is not valid for this PBX connector type",
        "лицензионный ключ не подходит для этого типа коннектора АТС",
    ),
    4005: Text(
        "licence key is not valid for this connector version",
        "лицензионный ключ не подходит для этой версии коннектора",
    ),
    4006: Text(
        "no licence for this client type (CT)",
        "нет лицензии для этого типа клиента (CT)",
    ),
    4007: Text("maximum number of users exceeded", "превышено максимальное число пользователей"),
    4008: Text("authorisation error: wrong password", "ошибка авторизации: неверный пароль"),
    4009: Text(
        "disconnected: the same user (GUID) connected elsewhere",
        "отключено: тот же пользователь (GUID) подключился в другом месте",
    ),
}

_NETWORK_CLOSES: dict[int, Text] = {
    1000: Text("connection closed by the connector", "коннектор закрыл соединение"),
    1001: Text("connector is going away (restart?)", "коннектор завершает работу (перезапуск?)"),
    1006: Text("connection lost", "соединение потеряно"),
    1011: Text("connector internal error", "внутренняя ошибка коннектора"),
    1012: Text("connector is restarting", "коннектор перезапускается"),
    1013: Text("connector is overloaded, try later", "коннектор перегружен, повторим позже"),
}


def describe_close(code: int | None, reason: str = "") -> CloseInfo:
    """Close code → user text (RU/EN) and retry-or-not.

    4001–4009 (and any other 4xxx: an application refusal we don't know) need the user:
    no automatic reconnect — after 4009 it would fight the other instance forever.
    """
    code = 1006 if code is None else int(code)
    suffix = f" ({reason})" if reason and code not in CLOSE_CODES else ""
    if code in CLOSE_CODES:
        return CloseInfo(code, CLOSE_CODES[code], retry=False)
    if 4000 <= code <= 4999:
        return CloseInfo(
            code,
            Text(
                f"connector refused the connection, code {code}{suffix}",
                f"коннектор отказал в подключении, код {code}{suffix}",
            ),
            retry=False,
        )
    base = _NETWORK_CLOSES.get(
        code, Text(f"connection closed, code {code}", f"соединение закрыто, код {code}")
    )
    return CloseInfo(code, Text(base.en + suffix, base.ru + suffix), retry=True)


def describe_http_status(status: int) -> CloseInfo:
    """A refused upgrade. 401/403: wrong password (TestServer 1.1.2 answers 403)."""
    if status in (401, 403):
        return CloseInfo(
            status,
            Text(
                f"wrong password or access denied (HTTP {status})",
                f"неверный пароль или доступ запрещён (HTTP {status})",
            ),
            retry=False,
            http=True,
        )
    if status == 404:
        return CloseInfo(
            status,
            Text(
                "no connector at this address (HTTP 404)",
                "по этому адресу нет коннектора (HTTP 404)",
            ),
            False,
            True,
        )
    return CloseInfo(
        status,
        Text(
            f"connector refused the upgrade (HTTP {status})",
            f"коннектор отклонил подключение (HTTP {status})",
        ),
        retry=True,
        http=True,
    )


def parse_close_payload(data: bytes) -> tuple[int, str]:
    """A close frame's payload → ``(code, reason)``; 1005 when it carries no status."""
    if len(data) >= 2:
        return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")
    return 1005, ""
