"""``python -m opsbook.sandbox.serve SETTINGS_JSON``: one sandbox process (a service replica or
the payment network) serving on the listening socket the supervisor passed as ``fd``."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, so no replica outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> None:
    spec: dict[str, Any] = json.loads(argv[0])
    _die_with_parent(int(spec["parent"]))
    import uvicorn  # noqa: PLC0415 - after the cheap checks above

    data_dir = Path(spec["data_dir"])
    app: Any
    ssl: dict[str, Any] = {}
    if spec["kind"] == "network":
        from opsbook.sandbox.network import build_network_app  # noqa: PLC0415
        from opsbook.sandbox.tls import cert_paths  # noqa: PLC0415

        crt, key = cert_paths(data_dir)
        if spec.get("cert") and spec.get("key"):  # a rotation's new certificate
            crt, key = Path(spec["cert"]), Path(spec["key"])
        # forward secrecy and AEAD only (Mozilla "intermediate"); TLS 1.3 suites are fixed
        ssl = {
            "ssl_certfile": str(crt),
            "ssl_keyfile": str(key),
            "ssl_ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20",
        }
        app = build_network_app(
            data_dir=data_dir,
            latency_ms=float(spec["latency_ms"]),
            failure_rate=float(spec["failure_rate"]),
        )
    else:
        from opsbook.sandbox.app import build_app  # noqa: PLC0415
        from opsbook.sandbox.runtime import ReplicaSettings  # noqa: PLC0415

        app = build_app(
            ReplicaSettings(
                service=spec["service"],
                replica=spec["replica"],
                version=spec["version"],
                revision=int(spec["revision"]),
                bug=bool(spec["bug"]),
                data_dir=data_dir,
                database_url=spec["database_url"],
                network_port=int(spec["network_port"]),
                disk_quota_bytes=int(spec["disk_quota_bytes"]),
                latency_ms=int(spec.get("latency_ms") or 0),
                fail_rate=float(spec.get("fail_rate") or 0.0),
                requires=tuple((str(t), str(c)) for t, c in spec.get("requires") or ()),
            )
        )
    sock = socket.socket(fileno=int(spec["fd"]))
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="asyncio",
        http="h11",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        **ssl,
    )
    if spec.get("weak_tls"):
        # the weak-tls fault: TLS 1.0 and every cipher suite OpenSSL still has
        import ssl as ssl_module  # noqa: PLC0415

        config.load()
        assert config.ssl is not None
        config.ssl.minimum_version = ssl_module.TLSVersion.TLSv1
        config.ssl.set_ciphers("ALL:@SECLEVEL=0")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
