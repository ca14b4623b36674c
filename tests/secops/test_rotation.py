"""Rotating the payment network's certificate on the real sandbox with the load generator
running: no request fails, and the network serves the new certificate afterwards."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time

import pytest

from opsbook.sandbox.load import LoadReport, run_load
from opsbook.sandbox.tls import cert_paths, probe_expiry
from tests.sandbox.harness import Sandbox

pytestmark = pytest.mark.slow


def test_certificate_rotation_under_load_fails_no_request(sb: Sandbox) -> None:
    crt, _ = cert_paths(sb.data_dir)
    before = crt.read_bytes()
    port = sb.environment()["sandbox"]["payment_network_port"]
    urls = {s["name"]: s["url"] for s in sb.status()["services"]}
    report: list[LoadReport] = []
    loader = threading.Thread(
        target=lambda: report.append(asyncio.run(run_load(urls=urls, rate=40, duration=9))),
        daemon=True,
    )
    loader.start()
    time.sleep(2)
    out = sb.control().call("rotate-cert", {"actor": "pytest"})
    loader.join(timeout=60)
    (load,) = report
    d = load.as_dict()
    assert d["sent"] > 250 and d["ops"]["payment"]["count"] > 20, d
    assert d["errors"] == 0, d["error_samples"]
    assert crt.read_bytes() != before
    assert out["new_not_after"] > out["old_not_after"]
    assert not (crt.parent / "trust.pem").exists() and not (crt.parent / "next.key").exists()
    # the network now serves the new certificate: it verifies against the new file only
    assert probe_expiry(int(port), crt) > time.time() + 300 * 86400
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=before.decode())
    with (  # the old certificate no longer verifies it
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s,
        ctx.wrap_socket(s, server_hostname="127.0.0.1"),
    ):
        pass
