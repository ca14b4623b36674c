"""The sandbox TLS certificate: the payment network's self-signed server certificate (an EC
P-256 key and an X.509 certificate made with ``cryptography``).

The payment service trusts exactly this certificate and reads its expiry from the TLS handshake,
as a blackbox prober would in production (``probe_ssl_earliest_cert_expiry``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

NORMAL_DAYS = 365
COMMON_NAME = "payment-network.sandbox"


def cert_paths(data_dir: Path) -> tuple[Path, Path]:
    tls = data_dir / "tls"
    return tls / "sandbox.crt", tls / "sandbox.key"


def make_certificate(*, days: int, now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost valid for ``days`` days from
    ``now``: (certificate PEM, unencrypted PKCS#8 private key PEM)."""
    from cryptography import x509  # noqa: PLC0415 - deferred: import cost
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    start = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def issue_certificate(data_dir: Path, *, days: int, now: dt.datetime | None = None) -> Path:
    """(Re-)issue the self-signed certificate valid for ``days`` days; its path. The key file
    is written owner-only, and both files are replaced atomically."""
    cert_pem, key_pem = make_certificate(days=days, now=now)
    crt, key = cert_paths(data_dir)
    crt.parent.mkdir(parents=True, exist_ok=True)
    tmp_crt, tmp_key = crt.with_suffix(".crt.new"), key.with_suffix(".key.new")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    tmp_key.chmod(0o600)
    tmp_crt.write_bytes(cert_pem)
    tmp_key.replace(key)
    tmp_crt.replace(crt)
    return crt


def trust_path(data_dir: Path) -> Path:
    """What clients of the payment network trust: ``tls/trust.pem`` while a rotation overlaps
    the old and the new certificate, else the sandbox certificate itself."""
    crt, _ = cert_paths(data_dir)
    bundle = crt.parent / "trust.pem"
    return bundle if bundle.is_file() else crt


def ensure_certificate(data_dir: Path) -> Path:
    crt, key = cert_paths(data_dir)
    if crt.is_file() and key.is_file():
        return crt
    return issue_certificate(data_dir, days=NORMAL_DAYS)


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts only the sandbox certificate."""
    return ssl.create_default_context(cafile=str(cafile))


def probe_expiry(port: int, cafile: Path, *, timeout: float = 1.0) -> float:
    """The ``notAfter`` (epoch seconds) of the certificate served on 127.0.0.1:``port``."""
    ctx = client_context(cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
    if not cert or "notAfter" not in cert:
        raise ssl.SSLError("the peer sent no certificate")
    return float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
