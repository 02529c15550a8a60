"""The TLS options of every command that connects (``pz-excel run`` and ``diag``): one
set of names and help texts, so what one command's message advises the other accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from pz_excel.i18n import tr

F = TypeVar("F", bound=Callable[..., object])


def tls_click_options(fn: F) -> F:
    """Adds ``pin_sha256``, ``pin_alias``, ``legacy_tls`` and ``ca_file`` parameters;
    :func:`chosen_pin` merges the first two (``--pin`` is the old name diag had)."""
    fn = click.option(
        "--ca-file",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help=tr(
            "wss://: trust the connector's certificate if this CA file (PEM) signed it.",
            "wss://: доверять сертификату коннектора, подписанному этим файлом CA (PEM).",
        ),
    )(fn)
    fn = click.option(
        "--legacy-tls",
        is_flag=True,
        help=tr(
            "wss://: allow TLS 1.0 of old connectors (needs --pin-sha256).",
            "wss://: разрешить TLS 1.0 старых коннекторов (нужен --pin-sha256).",
        ),
    )(fn)
    fn = click.option("--pin", "pin_alias", metavar="SHA256", default=None, hidden=True)(fn)
    fn = click.option(
        "--pin-sha256",
        metavar="SHA256",
        default=None,
        help=tr(
            "wss://: trust only the certificate with this SHA-256 fingerprint "
            "(pz-excel testserver and the connector's admin show it).",
            "wss://: доверять только сертификату с этим отпечатком SHA-256 "
            "(его показывают pz-excel testserver и администратор коннектора).",
        ),
    )(fn)
    return fn


def chosen_pin(pin_sha256: str | None, pin_alias: str | None) -> str | None:
    return pin_sha256 or pin_alias
