"""Why a connection attempt or a connection ended: the user's text, retry or not."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import websocket

from pz_excel.connector.dial import PinMismatch, TlsSetupError
from pz_excel.i18n import Text
from pz_excel.protocol.closing import CloseInfo, describe_close, describe_http_status


@dataclass(frozen=True)
class Outcome:
    """Why a connection attempt or a connection ended."""

    text: Text
    retry: bool
    close: CloseInfo | None = None
    by_user: bool = False
    refused: bool = False  # the connect was refused: nothing listens (Backoff's fast lane)
    unexpected: bool = False  # not a network failure we know: a bug? (worth a log line)


def classify_open_error(exc: BaseException, host: str, ca_file: str | None) -> Outcome:
    """Why a connection attempt failed (``host``, ``ca_file``: for the texts)."""
    if isinstance(exc, PinMismatch):
        text = Text(
            "the server certificate does not match the pinned fingerprint "
            f"(expected {exc.expected}, got {exc.got}); the password was not sent",
            "сертификат сервера не совпадает с закреплённым отпечатком "
            f"(ожидался {exc.expected}, получен {exc.got}); пароль не отправлен",
        )
        return Outcome(text, retry=False)
    if isinstance(exc, TlsSetupError):
        text = Text(
            f"cannot set up TLS (CA file {ca_file!r}?): {exc.exc}",
            f"не удалось настроить TLS (файл CA {ca_file!r}?): {exc.exc}",
        )
        return Outcome(text, retry=False)
    if isinstance(exc, websocket.WebSocketBadStatusException):
        info = describe_http_status(int(exc.status_code))
        return Outcome(info.text, retry=info.retry, close=info)
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        text = Text(
            f"the server certificate is not trusted ({why}): give a CA file or pin its "
            "fingerprint",
            f"сертификат сервера не признан доверенным ({why}): укажите файл CA или "
            "закрепите его отпечаток",
        )
        return Outcome(text, retry=False)
    if isinstance(exc, (TimeoutError, websocket.WebSocketTimeoutException)):
        return Outcome(Text("connection timed out", "превышено время подключения"), True)
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        # Retried (a restart looks the same), but old connectors close here too.
        text = Text(
            "connection closed during the TLS handshake (an old connector may need the "
            "legacy TLS mode with a pinned certificate)",
            "соединение закрыто во время согласования TLS (старому коннектору может "
            "понадобиться режим устаревшего TLS с закреплённым сертификатом)",
        )
        return Outcome(text, retry=True)
    if isinstance(exc, ssl.SSLError):
        why = exc.reason or str(exc)
        text = Text(
            f"TLS handshake failed ({why}); an old connector may need the legacy TLS mode "
            "with a pinned certificate",
            f"ошибка TLS ({why}); старому коннектору может понадобиться режим "
            "устаревшего TLS с закреплённым сертификатом",
        )
        return Outcome(text, retry=False)
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(
            Text("connection refused", "в подключении отказано"), retry=True, refused=True
        )
    if isinstance(exc, socket.gaierror):
        return Outcome(
            Text(f"server name {host!r} not found", f"имя сервера {host!r} не найдено"),
            retry=True,
        )
    if isinstance(exc, websocket.WebSocketConnectionClosedException):
        return Outcome(Text("connection closed during login", "соединение закрыто при входе"), True)
    if isinstance(exc, websocket.WebSocketException):
        text = Text(
            f"the server did not answer as a WebSocket connector: {exc}",
            f"сервер ответил не как WebSocket-коннектор: {exc}",
        )
        return Outcome(text, retry=True)
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        return Outcome(Text(f"network error: {why}", f"ошибка сети: {why}"), retry=True)
    return Outcome(
        Text(f"unexpected error: {exc!r}", f"непредвиденная ошибка: {exc!r}"),
        retry=True,
        unexpected=True,
    )


def classify_session_error(exc: BaseException) -> Outcome:
    """Why a connection that was up ended in an error."""
    if isinstance(
        exc, (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException)
    ):
        text = Text(f"WebSocket protocol error: {exc}", f"ошибка протокола WebSocket: {exc}")
        return Outcome(text, retry=True, close=describe_close(1002))
    if isinstance(exc, (OSError, websocket.WebSocketException)):
        info = describe_close(1006)
        return Outcome(info.text, retry=True, close=info)
    info = describe_close(1006)
    text = Text(f"unexpected error: {exc!r}", f"непредвиденная ошибка: {exc!r}")
    return Outcome(text, retry=True, close=info, unexpected=True)


def answer_lost_text(outcome: Outcome) -> Text:
    """Why a request still waiting when its connection ended got no answer."""
    if outcome.by_user:
        return Text("stopped before the answer came", "остановлено до получения ответа")
    return Text(
        f"connection lost before the answer came: {outcome.text.en}",
        f"соединение потеряно до получения ответа: {outcome.text.ru}",
    )
