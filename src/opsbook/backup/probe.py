"""What a failover waits for: every service healthy, and a write accepted through the gateway."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.sandbox.config import SandboxConfig


def services_healthy(cfg: SandboxConfig, timeout: float) -> float:
    """Wait until every service answers /health with UP; seconds waited."""
    import httpx  # noqa: PLC0415

    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    urls = [f"http://127.0.0.1:{s.port}/health" for s in cfg.services]
    with httpx.Client(timeout=2) as client:
        pending = list(urls)
        while pending and time.monotonic() < deadline:
            still = []
            for url in pending:
                try:
                    r = client.get(url)
                    ok = r.status_code == 200 and r.json().get("status") == "UP"
                except (httpx.HTTPError, ValueError):
                    ok = False
                if not ok:
                    still.append(url)
            pending = still
            if pending:
                time.sleep(0.05)
    if pending:
        raise OpsbookError(f"not healthy within {timeout:g}s: {', '.join(pending)}")
    return time.perf_counter() - t0


def ledger_write_ok(cfg: SandboxConfig) -> None:
    """A write through the gateway reaches the new primary (a health check may not write)."""
    import httpx  # noqa: PLC0415

    url = f"http://127.0.0.1:{cfg.gateway_port}/api/account/accounts"
    deadline = time.monotonic() + 30
    last = ""
    with httpx.Client(timeout=3) as client:
        while time.monotonic() < deadline:
            try:
                r = client.post(url, json={"owner": "dr-probe"})
                if r.status_code < 300:
                    return
                last = f"{r.status_code} {r.text[:120]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
    raise OpsbookError(f"the ledger does not take writes after the failover: {last}")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def record_failover(
    db: Database,
    *,
    environment: str,
    actor: str,
    execution_id: str | None,
    targets: dict[str, float],
    rto: float,
    rpo: dict[str, Any],
    reason: str,
    declared: datetime,
    old: str,
    new: str,
    mode: str,
    fenced_s: float,
    promoted_s: float,
    invariants_ok: bool,
    next_step: str,
) -> dict[str, Any]:
    """A failover's result, measured against the targets, and its audit record (one shape for
    both ledgers)."""
    out = {
        "environment": environment,
        "reason": reason,
        "declared_at": declared.isoformat().replace("+00:00", "Z"),
        "from": old,
        "to": new,
        "mode": mode,
        "fenced_s": round(fenced_s, 3),
        "promoted_s": round(promoted_s, 3),
        "rto_s": round(rto, 3),
        "rpo": rpo,
        "invariants_ok": invariants_ok,
        "targets": targets,
        "met": {
            "rto": rto <= targets["rto_s"],
            "rpo": rpo.get("transfers") is not None
            and rpo["transfers"] <= targets["rpo_transfers"],
        },
        "next": next_step,
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.failover",
            subject=f"ledger:{environment}",
            payload={**out, "execution": execution_id},
        )
    return out
