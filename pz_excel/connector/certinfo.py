"""Read a connector's TLS certificate to show its SHA-256 fingerprint, so the user can pin
it (``--pin-sha256``): the legacy mode requires a pin, and an old connector's self-signed
certificate has no other anchor.

The handshake here accepts anything (TLS 1.0 up, every cipher at security level 0, no
verification) because it only *reads* the certificate; nothing is sent and nothing is
trusted. The user compares the fingerprint with the one the connector's admin sees (or
``pz-excel testserver`` prints) before pinning it.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import Text, UserError
from pz_excel.protocol.codec import ProtocolError, normalize_server_url

#: Anything a connector may offer, old or new: only to read its certificate.
READ_ONLY_CIPHERS = "ALL:@SECLEVEL=0"


@dataclass(frozen=True)
class CertInfo:
    fingerprint: str  # SHA-256 hex, as --pin-sha256 takes it
    tls_version: str  # what the connector agreed to with an all-accepting client
    cipher: str

    @property
    def legacy(self) -> bool:
        """Whether a default client would refuse it (TLS older than 1.2)."""
        return self.tls_version in ("TLSv1", "TLSv1.1", "SSLv3")


def _reading_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLSv1 is deprecated: old connectors speak it
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers(READ_ONLY_CIPHERS)
    return ctx


def fetch_cert(server: str, timeout: float = 5.0) -> CertInfo:
    """The certificate of the ``wss://`` connector at ``server`` (a ``host:port`` without
    scheme is taken as wss). Raises :class:`UserError` with one clear line on failure."""
    text = server.strip()
    if "://" not in text:
        text = "wss://" + text
    try:
        url = normalize_server_url(text)
    except ProtocolError as exc:  # the one address rule says what is wrong, both tongues
        raise UserError(exc.text) from None
    parts = urlsplit(url)
    if parts.scheme != "wss":
        raise UserError(
            Text(
                f"{url} is not TLS (ws://): there is no certificate to pin; use wss://",
                f"{url} — без TLS (ws://): закреплять нечего; укажите wss://",
            )
        )
    host, port = parts.hostname or "", parts.port or 0
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            _reading_context().wrap_socket(raw, server_hostname=host) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
            version = conn.version() or ""
            cipher = (conn.cipher() or ("",))[0]
    except (OSError, ssl.SSLError) as exc:
        raise UserError(
            Text(
                f"cannot read the certificate of {host}:{port}: {exc}",
                f"не удалось прочитать сертификат {host}:{port}: {exc}",
            )
        ) from exc
    if not der:
        raise UserError(
            Text(f"{host}:{port} sent no certificate", f"{host}:{port} не прислал сертификат")
        )
    return CertInfo(tlsutil.fingerprint_sha256(der), version, cipher)
