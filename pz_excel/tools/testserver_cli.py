"""``pz-excel testserver``: the test connector as a console process for people."""

from __future__ import annotations

import contextlib
import ssl
import sys
import tempfile
import threading
from pathlib import Path

import click

from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import Text, UserError, tr
from pz_excel.protocol import codec as protocol
from pz_excel.signals import sigterm_sets
from pz_excel.tools.testserver import PING_INTERVAL, ServerThread

# --------------------------------------------------------------------------- CLI


@click.command(
    "testserver",
    help=tr(
        "A stand-in for the vendor's TestServer 1.1.2 (Prostie Zvonki test connector), as "
        "strict as it. Clients log in with either form; drive it with "
        "`pz-excel diag ws://127.0.0.1:10150`. Ctrl+C stops it.",
        "Замена TestServer 1.1.2 производителя (тестовый коннектор «Простых Звонков»), "
        "такая же строгая. Клиенты входят любым способом; управляйте им через "
        "`pz-excel diag ws://127.0.0.1:10150`. Ctrl+C — остановить.",
    ),
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=tr("Interface to listen on.", "Адрес, на котором слушать."),
)
@click.option(
    "--port",
    default=protocol.DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help=tr("TCP port (0: any free port).", "TCP-порт (0 — любой свободный)."),
)
@click.option(
    "--password",
    default="",
    help=tr("Connector password (default: empty).", "Пароль коннектора (по умолчанию пустой)."),
)
@click.option(
    "--ssl",
    "use_ssl",
    is_flag=True,
    help=tr("Serve wss:// (raw XML frames).", "Работать по wss:// (XML без base64)."),
)
@click.option(
    "--cert",
    type=click.Path(dir_okay=False),
    help=tr("TLS certificate (PEM).", "Сертификат TLS (PEM)."),
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False),
    help=tr("TLS private key (PEM).", "Закрытый ключ TLS (PEM)."),
)
@click.option(
    "--self-signed",
    is_flag=True,
    help=tr(
        "Make a throwaway self-signed certificate for TLS.",
        "Создать временный самоподписанный сертификат для TLS.",
    ),
)
@click.option(
    "--legacy-tls",
    is_flag=True,
    help=str(
        Text(
            "Serve TLS 1.0 only with AES256-SHA, as the vendor's TestServer -s (its "
            "Diagnostic offers nothing newer). Implies --ssl; never a default.",
            "TLS 1.0 и только AES256-SHA, как TestServer -s производителя (его Diagnostic "
            "не умеет новее). Включает --ssl; только по явному выбору.",
        )
    ),
)
@click.option(
    "--production-like",
    is_flag=True,
    help=str(
        Text(
            "Add what production connectors do and TestServer 1.1.2 does not: wrong "
            "password closes 4008 'Authorization error', a taken transfer rings (type 2), "
            "Generate's GUID is honoured, call progress is simulated after Call/Transfer.",
            "Добавить то, что делают рабочие коннекторы, а TestServer 1.1.2 нет: неверный "
            "пароль — закрытие 4008 «Authorization error», звонок после перевода (тип 2), "
            "GUID в Generate учитывается, ход звонка имитируется после Call/Transfer.",
        )
    ),
)
@click.option(
    "--ping-interval",
    default=PING_INTERVAL,
    show_default=True,
    type=click.FloatRange(0),
    help=tr(
        "Seconds between pings to all clients (0: none).",
        "Секунд между пингами всем клиентам (0 — без пингов).",
    ),
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    help=tr("Append the log here.", "Дописывать журнал в этот файл."),
)
def command(
    host: str,
    port: int,
    password: str,
    use_ssl: bool,
    cert: str | None,
    key: str | None,
    self_signed: bool,
    legacy_tls: bool,
    production_like: bool,
    ping_interval: float,
    log_path: str | None,
) -> None:
    """A stand-in for the vendor's TestServer 1.1.2 (Prostie Zvonki test connector).

    Clients log in with either form (query string or headers); drive it with
    `pz-excel diag ws://127.0.0.1:10150`. Ctrl+C stops it.
    """
    if len(password) > protocol.MAX_PASSWORD_LENGTH:
        raise UserError(
            Text(
                f"the password is longer than {protocol.MAX_PASSWORD_LENGTH} characters",
                f"пароль длиннее {protocol.MAX_PASSWORD_LENGTH} символов",
            )
        )
    with contextlib.ExitStack() as stack:
        context, fingerprint = tls_context(
            stack, use_ssl or legacy_tls, cert, key, self_signed, host, legacy=legacy_tls
        )
        server = ServerThread(
            host,
            port,
            password,
            ssl_context=context,
            production_like=production_like,
            simulate=production_like,
            ping_interval=ping_interval or None,
            log_path=log_path,
            on_log=lambda line: click.echo(line),
        )
        server.start()
        stack.callback(server.stop)
        click.echo(
            str(
                Text(
                    f"Test connector listening on {server.url} "
                    f"(password {'set' if password else 'empty'}). Ctrl+C stops it.",
                    f"Тестовый коннектор слушает {server.url} "
                    f"(пароль {'задан' if password else 'пустой'}). Ctrl+C — остановить.",
                )
            )
        )
        if fingerprint:
            click.echo(
                str(
                    Text(
                        f"TLS certificate SHA-256 fingerprint (pin it in the client): "
                        f"{fingerprint}",
                        f"Отпечаток SHA-256 сертификата TLS (для закрепления в клиенте): "
                        f"{fingerprint}",
                    )
                )
            )
        wait_for_interrupt(server)
    click.echo(str(Text("Test connector stopped.", "Тестовый коннектор остановлен.")))


def tls_context(
    stack: contextlib.ExitStack,
    use_ssl: bool,
    cert: str | None,
    key: str | None,
    self_signed: bool,
    host: str,
    *,
    legacy: bool = False,
) -> tuple[ssl.SSLContext | None, str]:
    """--ssl with --cert/--key or --self-signed (either of those implies --ssl); ``legacy``:
    TLS 1.0 as TestServer -s (a self-signed certificate is then RSA, as AES256-SHA needs)."""
    if not (use_ssl or cert or key or self_signed):
        return None, ""
    if self_signed and (cert or key):
        raise UserError(
            Text(
                "use either --cert/--key or --self-signed, not both",
                "укажите либо --cert/--key, либо --self-signed, но не оба",
            )
        )
    if self_signed:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pz-testserver-"))
        cert_name = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        cert_path, key_path, fingerprint = tlsutil.self_signed_cert(tmp, cert_name, rsa=legacy)
        return tlsutil.server_context(cert_path, key_path, legacy=legacy), fingerprint
    if not (cert and key):
        raise UserError(
            Text(
                "TLS needs --cert FILE and --key FILE, or --self-signed",
                "для TLS нужны --cert ФАЙЛ и --key ФАЙЛ, либо --self-signed",
            )
        )
    try:
        context = tlsutil.server_context(cert, key, legacy=legacy)
        fingerprint = tlsutil.fingerprint_sha256(Path(cert).read_bytes())
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise UserError(
            Text(
                f"cannot load the TLS certificate or key: {exc}",
                f"не удалось загрузить сертификат или ключ TLS: {exc}",
            )
        ) from exc
    return context, fingerprint


def wait_for_interrupt(server: ServerThread) -> None:
    """Block until Ctrl+C (or SIGTERM, so `kill` also stops cleanly)."""
    try:
        with sigterm_sets(threading.Event()) as stop:
            # A timed wait keeps Ctrl+C responsive on Windows, where a bare wait ignores it.
            while not stop.wait(0.5) and server.running:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
