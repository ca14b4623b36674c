"""Run the catalogue's checks concurrently, each with its own time limit; a check that raises
or times out is an ``error`` result (and the run says so), never a silent pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.secops.catalogue import CATALOGUE, CheckSpec, get_check
from opsbook.secops.checks import data, identity, program, tls, workspace
from opsbook.secops.checks._base import CheckContext, Outcome
from opsbook.secops.model import FindingInput, check_severity

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.workspace import Workspace

CheckFn = Callable[[CheckContext], Awaitable[Outcome]]
TIMEOUT = 8.0

IMPLEMENTATIONS: dict[str, CheckFn] = {
    "tls.protocols": tls.protocols,
    "tls.weak-ciphers": tls.weak_ciphers,
    "tls.cert-expiry": tls.cert_expiry,
    "tls.cert-expired": tls.cert_expired,
    "tls.plain-http": tls.plain_http,
    "auth.brute-force": identity.brute_force,
    "auth.token-new-address": identity.token_new_address,
    "accounts.dormant": identity.dormant,
    "tokens.never-expiring": identity.never_expiring,
    "tokens.unused": identity.unused,
    "tokens.too-broad": identity.too_broad,
    "data.pan-in-logs": data.pan_in_logs,
    "data.pan-in-ledger": data.pan_in_ledger,
    "workspace.secrets-in-files": workspace.secrets_in_files,
    "workspace.file-permissions": workspace.file_permissions,
    "audit.chain": workspace.audit_chain,
    "platform.health-exposure": workspace.health_exposure,
    "ledger.integrity": workspace.ledger_integrity,
    "findings.overdue": program.findings_overdue,
    "access.review-due": program.review_due,
}


@dataclass
class CheckResult:
    spec: CheckSpec
    outcome: Outcome
    took_ms: float

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": self.spec.id,
            "title": self.spec.title,
            "severity": self.spec.severity,
            "requirements": list(self.spec.requirements),
            "status": o.status,
            "failures": [
                {
                    "subject": f.subject,
                    "text": f.text,
                    "location": f.location,
                    "severity": f.severity or self.spec.severity,
                    "detail": f.detail,
                }
                for f in o.failures
            ],
            "evidence": o.evidence,
            "error": o.error,
            "fix": self.spec.fix if o.status == "fail" else None,
            "took_ms": round(self.took_ms, 1),
        }


@dataclass
class CheckRun:
    environment: str
    started_at: str
    took_ms: float
    results: list[CheckResult] = field(default_factory=list)

    def findings(self) -> list[FindingInput]:
        out = []
        for r in self.results:
            for f in r.outcome.failures:
                out.append(
                    FindingInput(
                        source="check",
                        rule_id=r.spec.id,
                        title=r.spec.title,
                        severity=check_severity(f.severity or r.spec.severity),
                        subject=f.subject,
                        environment=self.environment,
                        location=f.location,
                        detail={"text": f.text, **f.detail},
                        requirements=r.spec.requirements,
                    )
                )
        return out

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
        for r in self.results:
            out[r.outcome.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "started_at": self.started_at,
            "took_ms": round(self.took_ms, 1),
            "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
        }


async def _one(spec: CheckSpec, cx: CheckContext, timeout: float) -> CheckResult:
    t0 = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(IMPLEMENTATIONS[spec.id](cx), timeout)
    except TimeoutError:
        outcome = Outcome("error", error=f"no answer within {timeout:.0f} s")
    except Exception as exc:
        outcome = Outcome("error", error=f"{type(exc).__name__}: {exc}")
    return CheckResult(spec, outcome, (time.perf_counter() - t0) * 1000)


async def run_checks_async(
    *,
    workspace: Workspace,
    environment: str,
    db: Database | None,
    settings: Settings,
    only: Sequence[str] = (),
    sequential: bool = False,
    now: datetime | None = None,
    timeout: float = TIMEOUT,
) -> CheckRun:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    specs = [get_check(c) for c in only] if only else list(CATALOGUE.values())
    env = load_environment(workspace, environment)
    cx = CheckContext(workspace=workspace, environment=env, db=db, settings=settings, now=now)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    if sequential:
        results = [await _one(s, cx, timeout) for s in specs]
    else:
        results = list(await asyncio.gather(*(_one(s, cx, timeout) for s in specs)))
    return CheckRun(
        environment=env.name,
        started_at=started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        took_ms=(time.perf_counter() - t0) * 1000,
        results=results,
    )


def run_checks(**kwargs: Any) -> CheckRun:
    """:func:`run_checks_async` from synchronous code (the CLI, a background thread)."""
    return asyncio.run(run_checks_async(**kwargs))
