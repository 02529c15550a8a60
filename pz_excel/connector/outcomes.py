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
    #: The connector was not reached at all: "dns", "refused", "timeout" or "network"
    #: (what :func:`unreachable_hint` says to check); "" when it was.
    unreachable: str = ""


def classify_open_error(
    exc: BaseException, host: str, ca_file: str | None, *, legacy: bool = False
) -> Outcome:
    """Why a connection attempt failed (``host``, ``ca_file``: for the texts; ``legacy``:
    whether the legacy TLS mode was on)."""
    if isinstance(exc, PinMismatch):
        text = Text(
            "the server certificate does not match the pinned fingerprint "
            f"(expected {exc.expected}, got {exc.got}); the password was not sent",
            "сертификат сервера не совпадает с закреплённым отпечатком "
            f"(ожидался {exc.expected}, получен {exc.got}); пароль не отправлен",
        )
        return Outcome(text, retry=False, close=tls_close(text))
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
            f"the server certificate is not trusted ({why}): give a CA file or pin its fingerprint",
            f"сертификат сервера не признан доверенным ({why}): укажите файл CA или "
            "закрепите его отпечаток",
        )
        return Outcome(text, retry=False, close=tls_close(text))
    if isinstance(exc, (TimeoutError, websocket.WebSocketTimeoutException)):
        return Outcome(
            Text("connection timed out", "превышено время подключения"), True, unreachable="timeout"
        )
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
        return tls_handshake_outcome(exc, legacy)
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(
            Text("connection refused", "в подключении отказано"),
            retry=True,
            refused=True,
            unreachable="refused",
        )
    if isinstance(exc, socket.gaierror):
        return Outcome(
            Text(f"server name {host!r} not found", f"имя сервера {host!r} не найдено"),
            retry=True,
            unreachable="dns",
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
        return Outcome(
            Text(f"network error: {why}", f"ошибка сети: {why}"), retry=True, unreachable="network"
        )
    return Outcome(
        Text(f"unexpected error: {exc!r}", f"непредвиденная ошибка: {exc!r}"),
        retry=True,
        unexpected=True,
    )


def unreachable_hint(outcome: Outcome, host: str, port: int) -> Text | None:
    """What to check when the connector was not reached at all (``None``: it was). One
    rule for ``pz-excel run`` (said once, on a first failure) and ``pz-excel diag``."""
    if outcome.unreachable == "dns":
        return Text(
            "check how the name is spelt (this computer's DNS does not know it), or give "
            "the connector's IP address",
            "проверьте, как написано имя (DNS этого компьютера его не знает), или укажите "
            "IP-адрес коннектора",
        )
    if outcome.unreachable == "refused":
        return Text(
            f"nothing accepts connections on port {port} of {host}: check the port and "
            "that the connector is running",
            f"на порту {port} компьютера {host} никто не принимает подключения: проверьте "
            "порт и что коннектор запущен",
        )
    if outcome.unreachable in ("timeout", "network"):
        return Text(
            f"{host}:{port} does not answer: check the address and port, that the "
            f"connector is running and that no firewall blocks port {port}",
            f"{host}:{port} не отвечает: проверьте адрес и порт, что коннектор запущен и "
            f"что брандмауэр не закрывает порт {port}",
        )
    return None


#: OpenSSL reasons that mean the two sides share no TLS version, cipher or key size they
#: both accept: the same on every attempt, so retrying can't help (PROTOCOL.md §5: an old
#: connector serves TLS 1.0 only, with a 1024-bit RSA key and a 512-bit DH group).
TLS_MISMATCH_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "WRONG_VERSION_NUMBER",
        "NO_PROTOCOLS_AVAILABLE",
        "VERSION_TOO_LOW",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
        "NO_SHARED_CIPHER",
        "NO_CIPHERS_AVAILABLE",
        "NO_SUITABLE_SIGNATURE_ALGORITHM",
        "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED",
        "DH_KEY_TOO_SMALL",
        "EE_KEY_TOO_SMALL",
        "CA_KEY_TOO_SMALL",
        "CA_MD_TOO_WEAK",
        "UNSAFE_LEGACY_RENEGOTIATION_DISABLED",
    }
)

#: RFC 6455 §7.4.1: the close code that reports a failed TLS handshake. It never goes on
#: the wire; it marks the state, so ``pz-excel run`` ends with the reason, as after 4008.
TLS_HANDSHAKE_FAILED = 1015

#: How the user turns on the legacy mode: the options of ``pz-excel run`` and ``diag``
#: (both take the same names).
LEGACY_HINT = Text(
    "to connect anyway, turn on the legacy TLS mode with the connector's certificate "
    "pinned: pz-excel run --legacy-tls --pin-sha256 <SHA-256 of its certificate> "
    "(the same options for pz-excel diag; pz-excel diag --show-cert wss://host:port "
    "prints the fingerprint)",
    "чтобы подключиться, включите режим устаревшего TLS с закреплённым сертификатом "
    "коннектора: pz-excel run --legacy-tls --pin-sha256 <SHA-256 его сертификата> "
    "(у pz-excel diag те же параметры; отпечаток покажет "
    "pz-excel diag --show-cert wss://host:port)",
)


def tls_close(text: Text) -> CloseInfo:
    """A handshake that can never succeed as configured: a final state, not a retry."""
    return CloseInfo(TLS_HANDSHAKE_FAILED, text, retry=False)


def tls_handshake_outcome(exc: ssl.SSLError, legacy: bool) -> Outcome:
    """A TLS handshake refused by either side. A version, cipher or key-size mismatch says
    so once, with the way out, and is not retried; so is any other TLS error (the same
    handshake fails the same way)."""
    why = exc.reason or str(exc)
    if why not in TLS_MISMATCH_REASONS:
        text = Text(
            f"TLS handshake failed ({why}); an old connector may need the legacy TLS mode "
            "with a pinned certificate",
            f"ошибка TLS ({why}); старому коннектору может понадобиться режим "
            "устаревшего TLS с закреплённым сертификатом",
        )
    elif legacy:
        text = Text(
            f"TLS handshake failed even in the legacy TLS mode ({why}): the connector and "
            "this computer share no TLS version or cipher (the legacy mode allows TLS 1.0 "
            "and RSA or ECDHE ciphers, not DH); retrying will not help: ask the "
            "connector's administrator to turn on TLS 1.2",
            f"не удалось согласовать TLS даже в режиме устаревшего TLS ({why}): у "
            "коннектора и этого компьютера нет общей версии TLS или шифра (режим "
            "устаревшего TLS допускает TLS 1.0 и шифры RSA или ECDHE, но не DH); повторные "
            "попытки не помогут: попросите администратора коннектора включить TLS 1.2",
        )
    elif why == "WRONG_VERSION_NUMBER":  # an answer that is not TLS a modern side reads
        text = Text(
            f"TLS handshake failed ({why}): the server's answer is not a TLS this computer "
            "accepts: if this port serves plain ws://, use ws://; if it is an old connector "
            "(TLS 1.0), retrying will not help; " + LEGACY_HINT.en,
            f"не удалось согласовать TLS ({why}): сервер ответил не тем TLS, который "
            "принимает этот компьютер: если на этом порту обычный ws://, укажите ws://; "
            "если это старый коннектор (TLS 1.0), повторные попытки не помогут; " + LEGACY_HINT.ru,
        )
    else:
        text = Text(
            f"TLS handshake failed ({why}): the connector offers only an old TLS version "
            "or old ciphers (TLS 1.0, as old connectors and the vendor's TestServer -s "
            "do), which this computer refuses by default; retrying will not help; "
            + LEGACY_HINT.en,
            f"не удалось согласовать TLS ({why}): коннектор предлагает только старую "
            "версию TLS или старые шифры (TLS 1.0, как старые коннекторы и TestServer -s "
            "вендора), а этот компьютер по умолчанию их не принимает; повторные попытки "
            "не помогут; " + LEGACY_HINT.ru,
        )
    return Outcome(text, retry=False, close=tls_close(text))


def classify_session_error(exc: BaseException) -> Outcome:
    """Why a connection that was up ended in an error."""
    if isinstance(exc, (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException)):
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
