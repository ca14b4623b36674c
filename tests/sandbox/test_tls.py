"""The sandbox certificate, made with ``cryptography``: a real TLS handshake trusts it and
reads its expiry."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.sandbox.tls import (
    cert_paths,
    ensure_certificate,
    issue_certificate,
    probe_expiry,
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A one-connection-at-a-time TLS server on 127.0.0.1 with a 5-day certificate."""
    crt = issue_certificate(tmp_path, days=5)
    cert, key = cert_paths(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, crt
    stop.set()
    listener.close()
    thread.join(5)


def test_the_certificate_verifies_and_its_expiry_is_read(served: tuple[int, Path]) -> None:
    port, crt = served
    expiry = probe_expiry(port, crt, timeout=5)
    days_left = (expiry - time.time()) / 86400
    assert 4.9 < days_left <= 5


def test_the_key_is_owner_only_and_reissue_replaces_both_files(tmp_path: Path) -> None:
    first = issue_certificate(tmp_path, days=30)
    cert, key = cert_paths(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = (cert.read_bytes(), key.read_bytes())
    issue_certificate(tmp_path, days=365)
    assert (cert.read_bytes(), key.read_bytes()) != before
    assert first == cert
    assert sorted(p.name for p in cert.parent.iterdir()) == ["sandbox.crt", "sandbox.key"]


def test_ensure_certificate_keeps_an_existing_one(tmp_path: Path) -> None:
    crt = ensure_certificate(tmp_path)
    pem = crt.read_bytes()
    assert ensure_certificate(tmp_path).read_bytes() == pem
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
