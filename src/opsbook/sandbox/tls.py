"""The sandbox TLS certificate: the payment network's server certificate, issued by ``openssl``.

The payment service trusts exactly this certificate and reads its expiry from the TLS handshake,
as a blackbox prober would in production (``probe_ssl_earliest_cert_expiry``).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from opsbook.errors import OpsbookError

NORMAL_DAYS = 365


def cert_paths(data_dir: Path) -> tuple[Path, Path]:
    tls = data_dir / "tls"
    return tls / "sandbox.crt", tls / "sandbox.key"


def issue_certificate(data_dir: Path, *, days: int) -> Path:
    """(Re-)issue the self-signed certificate valid for ``days`` days; its path."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpsbookError(
            "openssl is not installed: the sandbox cannot issue its TLS certificate",
            hint="install openssl (apt-get install openssl)",
        )
    crt, key = cert_paths(data_dir)
    crt.parent.mkdir(parents=True, exist_ok=True)
    tmp_crt, tmp_key = crt.with_suffix(".crt.new"), key.with_suffix(".key.new")
    done = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_key),
            "-out",
            str(tmp_crt),
            "-days",
            str(days),
            "-subj",
            "/CN=payment-network.sandbox",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise OpsbookError(f"openssl could not issue the sandbox certificate: {done.stderr[-500:]}")
    tmp_key.chmod(0o600)
    tmp_key.replace(key)
    tmp_crt.replace(crt)
    return crt


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
