"""TLS of the payment network, scanned with sslyze (a real TLS scanner): protocols accepted,
TLS 1.2 cipher suites, the certificate served and its expiry. On the sandbox the payment
network listens on 127.0.0.1; in production the same scan runs against the endpoint."""

from __future__ import annotations

from opsbook.secops.checks._base import CheckContext, Failure, Outcome
from opsbook.secops.tlsscan import LEGACY, TlsScan

WEAK_MARKERS = ("NULL", "EXPORT", "anon", "RC4", "DES", "MD5", "PSK", "SRP")


def _weak(suite: str) -> bool:
    if any(m in suite for m in WEAK_MARKERS):
        return True
    aead = "GCM" in suite or "CHACHA20" in suite or "CCM" in suite
    forward_secret = suite.startswith(("ECDHE", "DHE", "TLS_"))
    return not (aead and forward_secret)


def _where(scan_: TlsScan) -> str:
    return f"https://{scan_.host}:{scan_.port}"


async def _scanned(cx: CheckContext) -> TlsScan | Outcome:
    if not cx.local or cx.network_port is None:
        return Outcome.skipped("scans the sandbox's payment network; production: the TLS probe")
    found = await cx.tls_scan()
    if found.error:
        return Outcome("error", error=found.error)
    return found


async def protocols(cx: CheckContext) -> Outcome:
    found = await _scanned(cx)
    if isinstance(found, Outcome):
        return found
    legacy = [p for p in LEGACY if found.accepted.get(p)]
    failures = [
        Failure(
            subject=f"payment-network {p}",
            text=f"the payment network accepts {p.replace('_', ' ').upper().replace(' ', '.', 1)}"
            f" ({len(found.accepted[p])} cipher suites)",
            location=_where(found),
            detail={"protocol": p, "suites": found.accepted[p][:10]},
        )
        for p in legacy
    ]
    return Outcome.of(
        failures,
        endpoint=_where(found),
        accepted=sorted(p for p, s in found.accepted.items() if s),
    )


async def weak_ciphers(cx: CheckContext) -> Outcome:
    found = await _scanned(cx)
    if isinstance(found, Outcome):
        return found
    weak = sorted({s for s in found.accepted.get("tls_1_2", []) if _weak(s)})
    failures = (
        [
            Failure(
                subject="payment-network tls_1_2 weak suites",
                text=f"{len(weak)} weak TLS 1.2 cipher suites accepted, e.g. {', '.join(weak[:3])}",
                location=_where(found),
                detail={"weak_suites": weak},
            )
        ]
        if weak
        else []
    )
    return Outcome.of(failures, tls_1_2_suites=len(found.accepted.get("tls_1_2", [])))


async def cert_expiry(cx: CheckContext) -> Outcome:
    found = await _scanned(cx)
    if isinstance(found, Outcome):
        return found
    if found.not_after is None:
        return Outcome("error", error="the payment network sent no certificate")
    days = (found.not_after - cx.now).total_seconds() / 86400
    evidence = {"not_after": found.not_after.isoformat(), "days_left": round(days, 1)}
    if 0 <= days < 30:
        return Outcome.of(
            [
                Failure(
                    subject=f"payment-network certificate {found.subject}",
                    text=f"the payment network certificate ({found.subject}) expires in"
                    f" {days:.1f} days ({found.not_after:%Y-%m-%d %H:%M} UTC)",
                    location=_where(found),
                    detail=evidence,
                )
            ],
            **evidence,
        )
    return Outcome.of([], **evidence)


async def cert_expired(cx: CheckContext) -> Outcome:
    found = await _scanned(cx)
    if isinstance(found, Outcome):
        return found
    if found.not_after is None:
        return Outcome("error", error="the payment network sent no certificate")
    days = (found.not_after - cx.now).total_seconds() / 86400
    evidence = {"not_after": found.not_after.isoformat(), "days_left": round(days, 1)}
    if days < 0:
        return Outcome.of(
            [
                Failure(
                    subject=f"payment-network certificate {found.subject}",
                    text=f"the payment network certificate ({found.subject}) EXPIRED"
                    f" {-days:.1f} days ago ({found.not_after:%Y-%m-%d %H:%M} UTC)",
                    location=_where(found),
                    detail=evidence,
                )
            ],
            **evidence,
        )
    return Outcome.of([], **evidence)


async def plain_http(cx: CheckContext) -> Outcome:
    if cx.local:
        return Outcome.skipped("the sandbox's services listen on loopback only")
    plain = [
        str(s.get("name"))
        for s in cx.environment.services
        if not str(s.get("health_url") or s.get("url") or "").startswith("https://")
    ]
    return Outcome.of(
        [
            Failure(subject=f"service {n}", text=f"service {n} is not served over HTTPS")
            for n in plain
        ],
        services=len(cx.environment.services),
    )
