"""Rotating the payment network's certificate with traffic flowing (issue 14): no request fails.

1. A new key and certificate are made (``tls/next.crt``/``next.key``, the key owner-only).
2. Clients trust both for the overlap (``tls/trust.pem`` = old + new); each service rebuilds its
   network client on its next request.
3. A second payment network process starts on the same listening socket with the new
   certificate; once a handshake with it verifies, the old process stops gracefully (it
   finishes what it is serving; new connections already go to the new one).
4. The new files replace the sandbox certificate, and the trust bundle goes: clients trust the
   new certificate only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.sandbox.procs import stop
from opsbook.sandbox.tls import NORMAL_DAYS, cert_paths, make_certificate

if TYPE_CHECKING:
    from opsbook.sandbox.host import Host

SETTLE = 1.5  # seconds for every service to have rebuilt its client on a trust change


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _serves(port: int, cafile: Path) -> bool:
    """Whether a handshake on ``port`` verifies against ``cafile`` alone."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _not_after(pem: bytes) -> str:
    from cryptography import x509  # noqa: PLC0415

    return x509.load_pem_x509_certificate(pem).not_valid_after_utc.isoformat()


async def rotate_certificate(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    actor = str(args.get("actor") or "operator")
    days = int(args.get("days") or NORMAL_DAYS)
    started = time.monotonic()
    crt, key = cert_paths(sup.data_dir)
    tls_dir = crt.parent
    next_crt, next_key, trust = tls_dir / "next.crt", tls_dir / "next.key", tls_dir / "trust.pem"
    old_pem = crt.read_bytes()
    new_pem, new_key = await asyncio.to_thread(make_certificate, days=days)
    _write_private(next_key, new_key)
    _write(next_crt, new_pem)
    _write(trust, old_pem + new_pem)
    await asyncio.sleep(SETTLE)
    old = sup.network
    await sup.start_network(cert=next_crt, key=next_key)
    deadline = time.monotonic() + 10
    while not await asyncio.to_thread(_serves, sup.config.network_port, next_crt):
        if time.monotonic() > deadline:
            raise RuntimeError("the new payment network process did not answer in 10 s")
        await asyncio.sleep(0.1)
    if old is not None:
        await stop(old, grace=5.0)
    next_key.replace(key)
    next_crt.replace(crt)
    await asyncio.sleep(SETTLE)  # clients still on the bundle finish with it
    _write(trust, new_pem)  # the old certificate is no longer trusted...
    await asyncio.sleep(SETTLE)
    trust.unlink(missing_ok=True)  # ...and clients go back to the sandbox certificate
    sup.save()
    out = {
        "rotated": "payment-network certificate",
        "old_not_after": _not_after(old_pem),
        "new_not_after": _not_after(new_pem),
        "took_s": round(time.monotonic() - started, 2),
        "actor": actor,
    }
    sup.log("info", "payment network certificate rotated", **out)
    return out
