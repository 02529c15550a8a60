"""How ``wss://`` is trusted: CA file, pinned certificate fingerprint, legacy TLS."""

from __future__ import annotations

import os
import ssl
import warnings
from dataclasses import dataclass

from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import Text

#: Legacy mode (PROTOCOL.md §5): no finite-field DH (the old connector offers a 512-bit
#: group), RSA key exchange allowed, SHA-1 and small keys accepted (security level 0).
LEGACY_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA:@SECLEVEL=0"
)


class TlsConfigError(ValueError):
    """Invalid TLS options; ``str()`` gives both languages, ``.text`` the bilingual text."""

    def __init__(self, text: Text):
        super().__init__(text.both())
        self.text = text


@dataclass(frozen=True)
class TlsOptions:
    """How ``wss://`` is trusted. Ignored for ``ws://``.

    * default: the chain and host name are verified against the system CAs, or only
      against ``ca_file`` when given;
    * ``pin_sha256``: the pin is the trust anchor. The server certificate must have
      exactly this SHA-256 fingerprint; chain and host name are not checked, so a
      self-signed certificate works. Checked before the login is sent;
    * ``verify=False`` without a pin: no check at all (explicit opt-out, not advised);
    * ``legacy``: old connectors (TLS 1.0, weak ciphers, security level 0); only with a pin.
    """

    verify: bool = True
    ca_file: str | None = None
    pin_sha256: str | None = None
    legacy: bool = False

    def __post_init__(self) -> None:
        pin = (self.pin_sha256 or "").strip() or None
        if pin is not None:
            try:
                pin = tlsutil.normalize_fingerprint(pin)
            except ValueError as exc:
                raise TlsConfigError(
                    Text(
                        f"bad certificate fingerprint {self.pin_sha256!r}: "
                        "a SHA-256 fingerprint is 64 hex digits",
                        f"неверный отпечаток сертификата {self.pin_sha256!r}: "
                        "отпечаток SHA-256 — это 64 шестнадцатеричные цифры",
                    )
                ) from exc
        object.__setattr__(self, "pin_sha256", pin)
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", os.fspath(self.ca_file) or None)
        if self.legacy and not pin:
            raise TlsConfigError(
                Text(
                    "legacy TLS (TLS 1.0, weak ciphers) is allowed only with a pinned "
                    "certificate fingerprint (pin_sha256): without it anyone on the network "
                    "could pose as the connector",
                    "устаревший TLS (TLS 1.0, слабые шифры) разрешён только с закреплённым "
                    "отпечатком сертификата (pin_sha256): без него любой в сети может "
                    "выдать себя за коннектор",
                )
            )

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh client context for these options (reads ``ca_file`` now)."""
        if self.pin_sha256 or not self.verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.legacy:
            with warnings.catch_warnings():  # TLSv1 is deprecated: that is the point here
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers(LEGACY_CIPHERS)
        return ctx
