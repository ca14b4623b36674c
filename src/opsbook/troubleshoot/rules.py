"""The ranking rules (issue 12): each reads the gathered facts of one service and, when its
symptoms are there, proposes a cause with a score and the evidence — sentences with the numbers
that support it. Transparent on purpose: an operator can read why a cause ranks first.

| cause | symptoms read |
| --- | --- |
| crash | status crashed, or no replica ready with an exit code other than 137 |
| hang | replicas running but none ready; health does not answer |
| memory-leak | resident memory growing fast or high; memory check not UP; exit 137 (OOM) |
| bad-deploy | a revision newer than the first, with failed requests or health flapping since |
| error-rate | HTTP 500 on a large share of requests while health stays UP (same release) |
| latency | slow requests (p95 or mean at 1 s or more) without a slow dependency |
| db-down | health database check DOWN |
| db-connections-exhausted | the connection pool fully in use, or "pool exhausted" errors |
| dependency-slow | the payment network check slow or timing out; payments 504 |
| disk-full | health disk check DOWN or usage at 95 % or more; "No space left on device" |
| cert-expiring | the payment network certificate expires within 30 days |
| suspicious-logins | a burst of failed logins from a few addresses |

Faults that hit every service are reported once, on the service with the strongest symptom.
The sandbox's record of injected faults is not among the facts these rules read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsbook.troubleshoot.model import Evidence, Hypothesis

Facts = dict[str, Any]


def _svc(
    facts: Facts, name: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    platform: dict[str, Any] = next(
        (s for s in (facts.get("platform") or {}).get("services", []) if s.get("name") == name), {}
    )
    health = (facts.get("health") or {}).get(name) or {}
    signals = (facts.get("signals") or {}).get(name) or {}
    logs = (facts.get("logs") or {}).get(name) or {}
    return platform, health, signals, logs


def _check(health: dict[str, Any], name: str) -> dict[str, Any]:
    value = (health.get("checks") or {}).get(name)
    return value if isinstance(value, dict) else {"status": value} if value else {}


def _template(logs: dict[str, Any], *needles: str) -> dict[str, Any] | None:
    for t in logs.get("templates") or []:
        text = f"{t.get('template')} {t.get('example')}".lower()
        if any(n.lower() in text for n in needles):
            return dict(t)
    return None


def _log_evidence(t: dict[str, Any] | None) -> list[Evidence]:
    if not t:
        return []
    new = " (new in the last minute)" if t.get("new") else ""
    return [Evidence("logs", f"{t['count']} log line(s) like: {t['example'][:160]}{new}", t)]


Rule = Callable[[str, Facts], Hypothesis | None]
#: What only the logs of the last half minute show, with the live signals not (or no longer)
#: showing it: a medium hypothesis ("it was happening"), never a high one.
RECENT_ONLY = 0.45


def _live_traffic(s: dict[str, Any]) -> bool:
    return float(s.get("request_rate") or 0) >= 2.0


def crash(name: str, facts: Facts) -> Hypothesis | None:
    p, h, _, logs = _svc(facts, name)
    codes = [c for c in p.get("exit_codes", []) if c not in (None, 137)]
    crashed = p.get("state") == "crashed" or (p.get("ready") == 0 and codes)
    if not crashed:
        return None
    ev = [
        Evidence(
            "platform",
            f"{name}: status {p.get('state')}, {p.get('ready')}/{p.get('replicas')} replicas ready,"
            f" exit code {', '.join(map(str, codes)) or 'unknown'}",
            {"state": p.get("state"), "ready": p.get("ready"), "exit_codes": codes},
        )
    ]
    if h.get("http_status"):
        ev.append(
            Evidence(
                "health", f"health {h.get('http_status')} {h.get('error') or h.get('status')}", {}
            )
        )
    if logs.get("exits"):
        ev.append(
            Evidence(
                "logs",
                f"{len(logs['exits'])} replica exit(s) in the last minute",
                {"exits": logs["exits"]},
            )
        )
    return Hypothesis(
        "crash",
        name,
        f"{name} has crashed: {p.get('ready')}/{p.get('replicas')} replicas ready,"
        f" exit {', '.join(map(str, codes)) or '?'}",
        0.95,
        tuple(ev),
    )


def hang(name: str, facts: Facts) -> Hypothesis | None:
    p, h, _, _ = _svc(facts, name)
    if p.get("state") != "running" or p.get("ready") not in (0,) or h.get("http_status"):
        return None
    return Hypothesis(
        "hang",
        name,
        f"{name} is hung: its processes run but none is ready and health does not answer",
        0.9,
        (
            Evidence(
                "platform",
                f"{name}: status running, {p.get('ready')}/{p.get('replicas')} ready",
                {"state": p.get("state"), "ready": p.get("ready")},
            ),
            Evidence("health", f"health check: {h.get('error') or 'no answer'} within 2 s", {}),
        ),
    )


def memory_leak(name: str, facts: Facts) -> Hypothesis | None:
    p, h, s, logs = _svc(facts, name)
    growth = float(s.get("rss_growth_mb_s") or 0)
    rss = float(s.get("rss_mb") or p.get("memory_mb") or 0)
    mem = _check(h, "memory")
    oom = 137 in (p.get("exit_codes") or [])
    heap = _template(logs, "heap growing")
    score = 0.0
    if oom:
        score = 0.9
    if growth >= 10 and rss >= 80:
        score = max(score, 0.9)
    elif rss >= 200 or (mem.get("status") and mem.get("status") != "UP"):
        score = max(score, 0.75)
    if heap:
        score = max(score, RECENT_ONLY)
    if score == 0:
        return None
    ev = [
        Evidence(
            "signals",
            f"{name}: resident memory {rss:.0f} MiB, growing {growth:.0f} MiB/s",
            {"rss_mb": rss, "growth_mb_s": growth},
        )
    ]
    if oom:
        ev.append(
            Evidence(
                "platform", f"{name}: a replica was killed with exit code 137 (out of memory)", {}
            )
        )
    if mem:
        ev.append(
            Evidence(
                "health",
                f"memory check {mem.get('status')}"
                f" ({mem.get('rss_mb')} of {mem.get('limit_mb')} MiB)",
                mem,
            )
        )
    ev += _log_evidence(heap)
    return Hypothesis(
        "memory-leak",
        name,
        f"{name} leaks memory: {rss:.0f} MiB, +{growth:.0f} MiB/s",
        score,
        tuple(ev),
    )


def bad_deploy(name: str, facts: Facts) -> Hypothesis | None:
    p, _, _, logs = _svc(facts, name)
    revision = int(p.get("revision") or 1)
    if revision <= 1 and len(p.get("versions") or []) <= 1:
        return None
    if (p.get("version") or "") == _first_version(facts) and len(p.get("versions") or []) <= 1:
        return None  # rolled back to the release the others run
    failures = int(logs.get("errors_5xx") or 0)
    flaps = int((logs.get("events") or {}).get("health check failed", 0))
    stack = _template(logs, "KeyError", "unhandled exception", "Traceback")
    score = 0.85 if (failures or flaps or stack) else RECENT_ONLY
    ev = [
        Evidence(
            "changes",
            f"{name} runs revision {revision} (version {p.get('version')}), a newer release than"
            " the first",
            {"revision": revision, "versions": p.get("versions")},
        )
    ]
    if failures:
        ev.append(
            Evidence(
                "logs",
                f"{failures} request(s) failed with 5xx in the last minute",
                {"status_codes": logs.get("status_codes")},
            )
        )
    if flaps:
        ev.append(
            Evidence(
                "logs", f"the health check failed {flaps} time(s) in the last minute (flapping)", {}
            )
        )
    ev += _log_evidence(stack)
    return Hypothesis(
        "bad-deploy",
        name,
        f"{name}'s new release (revision {revision}) is failing",
        score,
        tuple(ev),
    )


def error_rate(name: str, facts: Facts) -> Hypothesis | None:
    p, h, s, logs = _svc(facts, name)
    if int(p.get("revision") or 1) > 1 and (p.get("version") or "") != _first_version(facts):
        return None  # a new release: bad-deploy reads it
    requests = int(logs.get("requests") or 0)
    e500 = int((logs.get("status_codes") or {}).get("500", 0))
    ratio = e500 / requests if requests else 0.0
    sig = s.get("error_ratio")
    live = isinstance(sig, float) and _live_traffic(s)
    if requests < 5 or ratio < 0.15:
        return None
    fresh = logs.get("fresh") or {}
    fresh_share = int(fresh.get("http_500") or 0) / max(1, int(fresh.get("requests") or 0))
    stopped = (live and float(sig or 0) < 0.05) or (
        int(fresh.get("requests") or 0) >= 3 and fresh_share < 0.1
    )
    if stopped or not fresh.get("http_500"):
        score = RECENT_ONLY  # the failures stopped: the last half minute still shows them
    else:
        score = 0.8 if h.get("status") in ("UP", None) else 0.6
    stack = _template(logs, "unhandled exception", "Traceback")
    ev = [
        Evidence(
            "logs",
            f"{e500} of {requests} requests answered HTTP 500 in the last half minute"
            f" ({ratio:.0%})",
            {"requests": requests, "http_500": e500},
        )
    ]
    if isinstance(sig, float):
        ev.append(
            Evidence(
                "signals",
                f"error ratio now {sig:.0%} of {s.get('request_rate')} requests/s",
                {"error_ratio": sig},
            )
        )
    ev.append(
        Evidence("health", f"health {h.get('status')} (the failures do not show in health)", {})
    )
    ev += _log_evidence(stack)
    return Hypothesis(
        "error-rate",
        name,
        f"{name} fails {ratio:.0%} of its requests with HTTP 500",
        score,
        tuple(ev),
    )


def _first_version(facts: Facts) -> str:
    """The version most services run (a service on another one runs a new release)."""
    from collections import Counter  # noqa: PLC0415

    versions = Counter(
        str(s.get("version")) for s in (facts.get("platform") or {}).get("services", [])
    )
    return versions.most_common(1)[0][0] if versions else ""


def _dependency_slow(h: dict[str, Any]) -> dict[str, Any] | None:
    deps = _check(h, "dependencies")
    net = deps.get("payment_network") if isinstance(deps.get("payment_network"), dict) else None
    if net and (net.get("status") != "UP" or float(net.get("latency_ms") or 0) >= 1000):
        return dict(net)
    return None


def latency(name: str, facts: Facts) -> Hypothesis | None:
    _, h, s, logs = _svc(facts, name)
    if _dependency_slow(h):
        return None
    p95 = logs.get("p95_ms")
    mean = s.get("mean_latency_ms")
    slow = int(logs.get("slow") or 0)
    requests = int(logs.get("requests") or 0)
    slow_share = slow / requests if requests else 0.0
    fresh = logs.get("fresh") or {}
    fresh_slow = int(fresh.get("slow") or 0)
    fresh_share = fresh_slow / max(1, int(fresh.get("requests") or 0))
    health_ms = float(h.get("latency_ms") or 0)
    # slow now: the live mean, most requests of the last seconds, or the health check itself
    live_slow = bool(mean and mean >= 1000) or (fresh_slow >= 2 and fresh_share >= 0.5)
    live_slow = live_slow or (health_ms >= 1000 and h.get("status") == "UP")
    if not (live_slow or (p95 and p95 >= 1000 and slow_share >= 0.3)):
        return None
    score = 0.8 if live_slow else RECENT_ONLY
    ev = [
        Evidence(
            "logs",
            f"{slow} of {requests} requests took 1 s or more in the last half minute"
            f" ({fresh_slow} of {fresh.get('requests', 0)} in the last seconds); p95 {p95} ms",
            {"p95_ms": p95, "slow": slow, "fresh": fresh},
        )
    ]
    if mean:
        ev.append(
            Evidence("signals", f"mean request time now {mean} ms", {"mean_latency_ms": mean})
        )
    if health_ms >= 1000:
        ev.append(Evidence("health", f"the health check took {health_ms:.0f} ms", {}))
    return Hypothesis("latency", name, f"{name} is slow: p95 {p95} ms", score, tuple(ev))


def db_down(name: str, facts: Facts) -> Hypothesis | None:
    _, h, _, logs = _svc(facts, name)
    db = _check(h, "database")
    if db.get("status") != "DOWN" or "pool" in str(db.get("error") or "").lower():
        return None  # a full pool is db-connections-exhausted
    t = _template(logs, "database")
    ev = [
        Evidence(
            "health",
            f"{name}: database check DOWN: {db.get('error') or db.get('message') or ''}".strip(),
            db,
        )
    ]
    ev += _log_evidence(t)
    return Hypothesis("db-down", name, f"{name} cannot reach the ledger database", 0.9, tuple(ev))


def db_pool(name: str, facts: Facts) -> Hypothesis | None:
    _, h, s, logs = _svc(facts, name)
    db = _check(h, "database")
    pool: dict[str, Any] = db["pool"] if isinstance(db.get("pool"), dict) else {}
    in_use = pool.get("in_use", s.get("db_pool_in_use"))
    size = pool.get("size", s.get("db_pool_size"))
    gauge_full = bool(in_use is not None and size and float(in_use) >= float(size))
    # the gauge counts connections handed out; health proves whether one can be had now
    full = "pool exhausted" in str(db.get("error") or "") or (
        gauge_full and db.get("status") not in ("UP", None)
    )
    t = _template(logs, "pool exhausted", "connection pool")
    if not (full or t):
        return None
    score = 0.9 if full else RECENT_ONLY
    ev = [
        Evidence(
            "signals",
            f"{name}: {in_use} of {size} pooled database connections in use",
            {"in_use": in_use, "size": size},
        )
    ]
    ev += _log_evidence(t)
    return Hypothesis(
        "db-connections-exhausted",
        name,
        f"{name}'s database connection pool is exhausted ({in_use}/{size})",
        score,
        tuple(ev),
    )


def dependency_slow(name: str, facts: Facts) -> Hypothesis | None:
    _, h, _, logs = _svc(facts, name)
    net = _dependency_slow(h)
    direct = facts.get("payment_network") or {}
    slow_direct = float(direct.get("latency_ms") or 0) >= 1000
    if not net and not (name == "payment" and slow_direct):
        return None
    ev = []
    if net:
        ev.append(
            Evidence(
                "health",
                f"payment network check {net.get('status')}: {net.get('error') or ''}"
                f" ({net.get('latency_ms')} ms)",
                net,
            )
        )
    if slow_direct:
        ev.append(
            Evidence(
                "payment_network",
                f"the payment network answered in {direct.get('latency_ms')} ms",
                direct,
            )
        )
    e504 = int((logs.get("status_codes") or {}).get("504", 0))
    if e504:
        ev.append(
            Evidence(
                "logs", f"{e504} payment request(s) timed out (HTTP 504) in the last minute", {}
            )
        )
    ev += _log_evidence(_template(logs, "timed out"))
    return Hypothesis(
        "dependency-slow", name, "the payment network is slow: payments time out", 0.9, tuple(ev)
    )


def disk_full(name: str, facts: Facts) -> Hypothesis | None:
    _, h, s, logs = _svc(facts, name)
    disk = _check(h, "disk")
    used = disk.get("used_percent", s.get("disk_used_percent"))
    t = _template(logs, "No space left")
    full = disk.get("status") == "DOWN" or (used is not None and float(used) >= 95)
    if not (full or t):
        return None
    ev = [
        Evidence(
            "health", f"disk check {disk.get('status')}: {used} % of the data volume used", disk
        )
    ]
    ev += _log_evidence(t)
    return Hypothesis(
        "disk-full",
        name,
        f"the data volume is full ({used} %)",
        0.95 if full else RECENT_ONLY,
        tuple(ev),
    )


def cert_expiring(name: str, facts: Facts) -> Hypothesis | None:
    _, h, s, logs = _svc(facts, name)
    tls = _check(h, "tls")
    days = tls.get("days_left")
    if days is None and s.get("tls_days_left"):  # a service that serves no certificate says 0
        days = s.get("tls_days_left")
    if days is None and name == "payment":
        days = (facts.get("payment_network") or {}).get("tls_days_left")
    if days is None or float(days) >= 30:
        return None
    ev = [
        Evidence(
            "health",
            f"TLS check {tls.get('status')}: the payment network certificate expires in"
            f" {days} days",
            tls,
        )
    ]
    ev += _log_evidence(_template(logs, "certificate"))
    return Hypothesis(
        "cert-expiring",
        name,
        f"the payment network certificate expires in {days} days",
        0.8,
        tuple(ev),
    )


def suspicious_logins(name: str, facts: Facts) -> Hypothesis | None:
    _, _, s, logs = _svc(facts, name)
    failed = int(logs.get("failed_logins") or 0)
    rate = float(s.get("login_failures_per_s") or 0)
    if failed < 30 and rate < 3:
        return None
    sources = logs.get("failed_login_sources") or {}
    ev = [
        Evidence(
            "logs",
            f"{failed} failed logins in the last half minute, from {len(sources)}"
            f" address(es): {', '.join(sources)}",
            {"sources": sources},
        )
    ]
    if rate:
        ev.append(Evidence("signals", f"{rate} failed logins per second now", {"per_second": rate}))
    score = 0.85 if sources and len(sources) <= 10 else 0.7
    if rate < 1:
        score = RECENT_ONLY  # the burst is over
    return Hypothesis(
        "suspicious-logins",
        name,
        f"credential stuffing against {name}: {failed} failed logins",
        score,
        tuple(ev),
    )


RULES: tuple[Rule, ...] = (
    crash,
    hang,
    memory_leak,
    bad_deploy,
    error_rate,
    latency,
    db_down,
    db_pool,
    dependency_slow,
    disk_full,
    cert_expiring,
    suspicious_logins,
)
WIDE = {
    "latency",
    "error-rate",
    "db-down",
    "db-connections-exhausted",
    "disk-full",
    "cert-expiring",
}


def rank(facts: Facts, *, services: list[str], focus: str | None = None) -> list[Hypothesis]:
    """Every rule on every service; a cause seen on several services is kept once, on the one
    with the strongest symptom (the focus service on a tie), noting how many showed it."""
    found: dict[str, list[Hypothesis]] = {}
    for name in services:
        for rule in RULES:
            h = rule(name, facts)
            if h is not None:
                found.setdefault(h.cause, []).append(h)
    out: list[Hypothesis] = []
    for cause, hs in found.items():
        hs.sort(key=lambda h: (h.score, h.service == focus, len(h.evidence)), reverse=True)
        best = hs[0]
        if len(hs) > 1 and cause in WIDE:
            seen = ", ".join(sorted(str(h.service) for h in hs))
            best = Hypothesis(
                best.cause,
                best.service,
                f"{best.title} (also on {len(hs) - 1} other service(s))",
                min(1.0, best.score + 0.03),
                (
                    *best.evidence,
                    Evidence("signals", f"the same symptom on: {seen}", {"services": seen}),
                ),
            )
            out.append(best)
            continue
        out.extend(hs[:1] if cause in WIDE else hs)
    out.sort(key=lambda h: (h.score, h.service == focus), reverse=True)
    return out
