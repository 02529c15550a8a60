"""The team API's TLS certificate: the admin's own (``--cert/--key``), or a self-signed one
made on the first start into the team's data folder and reused afterwards — so the
fingerprint the managers pinned (``run --team-pin``) stays valid across restarts.

The fingerprint is the form ``--pin-sha256`` already takes for a connector (SHA-256 of the
DER certificate, lowercase hex, ``connector/tls.fingerprint_sha256``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pz_excel import paths
from pz_excel.connector import tls as tlsutil
from pz_excel.i18n import Text, UserError

#: A self-signed certificate lives this long: a pin is the managers' trust anchor, and a
#: pinned certificate that expired would make them all re-pin (clients that pin do not
#: check dates; clients that trust it as a CA file do).
DAYS = 10 * 365
PEM_END = b"-----END CERTIFICATE-----"


@dataclass(frozen=True)
class TeamCert:
    cert: Path
    key: Path
    fingerprint: str
    made: bool  # made just now (first start): the fingerprint is new

    def context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2 or newer) with this certificate."""
        try:
            ctx = tlsutil.server_context(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(Text(
                f"cannot use the certificate {self.cert} with the key {self.key}: {exc}",
                f"не удаётся использовать сертификат {self.cert} с ключом {self.key}: "
                f"{exc}")) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def team_dir() -> Path:
    """The team server's data folder (``<pz-excel home>/team``), only its user may read."""
    path = paths.home() / "team"
    path.mkdir(parents=True, exist_ok=True)
    try:
        path.chmod(0o700)  # the private key lives here
    except OSError:  # pragma: no cover - e.g. FAT volumes
        pass
    return path


def host_names(host: str) -> list[str]:
    """The names a client may reach ``host`` by: it, this machine's names, localhost."""
    names = [host] if host and host not in ("0.0.0.0", "::") else []
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return [*names, "localhost", "127.0.0.1"]


def load(
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    *,
    hosts: Sequence[str] = (),
    folder: Path | None = None,
) -> TeamCert:
    """The admin's certificate when ``certfile``/``keyfile`` are given (both, or neither);
    else ``folder``'s (default :func:`team_dir`) ``cert.pem``/``key.pem``, made self-signed
    for ``hosts`` + localhost the first time."""
    if (certfile is None) != (keyfile is None):
        raise UserError(Text("give both --cert and --key, or neither",
                             "укажите и --cert, и --key — или ни одного"))
    if certfile is not None and keyfile is not None:
        cert, key = Path(certfile).expanduser(), Path(keyfile).expanduser()
        for path in (cert, key):
            if not path.is_file():
                raise UserError(Text(f"{path} does not exist", f"файла {path} нет"))
        made = False
    else:
        folder = folder or team_dir()
        cert, key = folder / "cert.pem", folder / "key.pem"
        made = not (cert.is_file() and key.is_file())
        if made:
            names = [*hosts, "localhost", "127.0.0.1"]
            tlsutil.self_signed_cert(folder, names[0], also=names[1:], days=DAYS)
    try:
        text = cert.read_bytes()
        # A chain file: the server's own certificate is the first one.
        first = text.find(PEM_END)
        fingerprint = tlsutil.fingerprint_sha256(
            text[: first + len(PEM_END)] if first >= 0 else text)
    except (OSError, ValueError) as exc:
        raise UserError(Text(f"cannot read the certificate {cert}: {exc}",
                             f"не удаётся прочитать сертификат {cert}: {exc}")) from exc
    found = TeamCert(cert, key, fingerprint, made)
    found.context()  # a key that does not match the certificate is said now, not per client
    return found
