"""TLS helpers shared by the client and the test connector: self-signed certificates
for tests and ``--self-signed``, and SHA-256 certificate fingerprints for pinning."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path


def fingerprint_sha256(cert: bytes | str) -> str:
    """SHA-256 of the DER certificate, as colon-free lowercase hex. Accepts PEM or DER."""
    if isinstance(cert, str) or cert.lstrip().startswith(b"-----BEGIN"):
        text = cert if isinstance(cert, str) else cert.decode("ascii")
        cert = ssl.PEM_cert_to_DER_cert(text)
    return hashlib.sha256(cert).hexdigest()


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:…`` or ``sha256:abcd…`` → ``abcd…``; raises ``ValueError`` if not SHA-256 hex."""
    text = value.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    text = text.replace(":", "").replace(" ", "")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits")
    return text


def self_signed_cert(
    directory: str | Path, host: str = "127.0.0.1", *, rsa: bool = False,
    also: Sequence[str] = (), days: int = 365,
) -> tuple[Path, Path, str]:
    """Write ``cert.pem`` and ``key.pem`` for ``host`` (and the names or IPs in ``also``)
    into ``directory``.

    Returns (cert path, key path, SHA-256 fingerprint). Valid for ``days`` from now. An EC
    key by default; ``rsa`` for the legacy mode, whose ``AES256-SHA`` needs an RSA key.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key: ec.EllipticCurvePrivateKey | rsa_keys.RSAPrivateKey
    if rsa:
        key = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    alts: list[x509.GeneralName] = []
    for one in dict.fromkeys([host, *also]):  # in order, once each
        try:
            alts.append(x509.IPAddress(ipaddress.ip_address(one)))
        except ValueError:
            alts.append(x509.DNSName(one))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alts), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path, fingerprint_sha256(cert.public_bytes(serialization.Encoding.DER))


#: What ``TestServer -s`` negotiated with a legacy client (PROTOCOL.md §5).
LEGACY_SERVER_CIPHERS = "AES256-SHA:@SECLEVEL=0"


def server_context(cert: str | Path, key: str | Path, *, legacy: bool = False) -> ssl.SSLContext:
    """A TLS server context; ``legacy``: TLS 1.0 only with ``AES256-SHA`` at security level
    0, as the vendor's ``TestServer -s`` (its Diagnostic offers nothing newer). Opt-in only:
    modern clients refuse it unless their own legacy mode is on."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if legacy:
        with warnings.catch_warnings():  # TLSv1 is deprecated: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers(LEGACY_SERVER_CIPHERS)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
