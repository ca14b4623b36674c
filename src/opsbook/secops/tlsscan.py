"""One sslyze scan of a TLS endpoint: the protocols and cipher suites it accepts and the
certificate it serves (used by the TLS checks; no dependency on the check machinery)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime

LEGACY = ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1")


@dataclass
class TlsScan:
    host: str
    port: int
    accepted: dict[str, list[str]] = field(default_factory=dict)  # protocol -> suite names
    not_after: datetime | None = None
    subject: str | None = None
    error: str | None = None


def scan(host: str, port: int) -> TlsScan:
    """Scan ``host:port`` (blocking; about half a second on loopback)."""
    # heavy imports, only when a scan runs
    from sslyze.plugins.scan_commands import ScanCommand  # noqa: PLC0415
    from sslyze.scanner.models import ServerScanRequest, ServerScanStatusEnum  # noqa: PLC0415
    from sslyze.scanner.scanner import Scanner  # noqa: PLC0415
    from sslyze.server_setting import ServerNetworkLocation  # noqa: PLC0415

    out = TlsScan(host, port)
    commands = {
        ScanCommand.SSL_2_0_CIPHER_SUITES,
        ScanCommand.SSL_3_0_CIPHER_SUITES,
        ScanCommand.TLS_1_0_CIPHER_SUITES,
        ScanCommand.TLS_1_1_CIPHER_SUITES,
        ScanCommand.TLS_1_2_CIPHER_SUITES,
        ScanCommand.TLS_1_3_CIPHER_SUITES,
        ScanCommand.CERTIFICATE_INFO,
    }
    with warnings.catch_warnings():
        # sslyze's bundled trust stores hold a certificate newer cryptography warns about
        warnings.simplefilter("ignore")
        scanner = Scanner()
        scanner.queue_scans(
            [
                ServerScanRequest(
                    server_location=ServerNetworkLocation(host, port), scan_commands=commands
                )
            ]
        )
        for result in scanner.get_results():
            if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
                out.error = f"cannot connect to {host}:{port}: " + str(
                    getattr(result.connectivity_error_trace, "exc_value", None)
                    or result.connectivity_status
                    or "no TLS answer"
                )
                return out
            res = result.scan_result
            for proto in (*LEGACY, "tls_1_2", "tls_1_3"):
                attempt = getattr(res, f"{proto}_cipher_suites")
                if attempt.result is not None:
                    out.accepted[proto] = [
                        s.cipher_suite.openssl_name or s.cipher_suite.name
                        for s in attempt.result.accepted_cipher_suites
                    ]
            info = res.certificate_info
            if info.result is not None and info.result.certificate_deployments:
                leaf = info.result.certificate_deployments[0].received_certificate_chain[0]
                out.not_after = leaf.not_valid_after_utc
                out.subject = leaf.subject.rfc4514_string()
    return out
