"""Releases and their change records (PCI DSS 4.0.1 6.5.1: reason, security impact, approval,
testing evidence, back-out procedure; and the outcome). A release row is written when a
deployment's run starts (or is refused: a refusal is a record too), its rollout's decisions
and outcome when the rollout ends, its rollback when one happens. Approvals and the executions
are read from the journal when a record is shown, so they cannot drift from it.

Services here are keyword-only and the caller owns the database; every change is audited."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, NotFoundError, UsageError

OPEN_STATES = ("requested", "running")
DONE_STATES = ("promoted", "aborted", "rolled_back", "failed", "refused", "cancelled")
CHECKLIST = ("deployment-procedures", "pre-deployment-checklist")
_JSON = ("evidence", "freeze", "rollout", "incident_ids")


def now_z() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tier_of(environment: Mapping[str, Any]) -> str:
    """``staging`` for a pre-production environment (``tier: staging``), else ``production``:
    an environment that does not say is treated as production (the safe default)."""
    return "staging" if str(environment.get("tier") or "") == "staging" else "production"


def _out(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON:
        out[key] = json.loads(row[key]) if row.get(key) else ([] if key == "incident_ids" else None)
    out["emergency"] = bool(row.get("emergency"))
    out["production"] = row.get("tier") == "production"
    return out


def get(db: Database, release_id: str) -> dict[str, Any]:
    row = db.one("SELECT * FROM releases WHERE id = ?", (release_id,))
    if row is None:
        raise NotFoundError(f"no release {release_id}", hint="opsbook releases list")
    return _reconciled(db, _out(row))


def list_releases(
    db: Database,
    *,
    environment: str | None = None,
    service: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    where, params = [], []
    if environment:
        where.append("environment = ?")
        params.append(environment)
    if service:
        where.append("service = ?")
        params.append(service)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = db.query(
        f"SELECT * FROM releases {clause}ORDER BY requested_at DESC LIMIT ?",  # noqa: S608
        (*params, limit),
    )
    return [_reconciled(db, _out(r)) for r in rows]


def _reconciled(db: Database, rel: dict[str, Any]) -> dict[str, Any]:
    """A release whose run ended before its rollout did (rejected, aborted, failed before the
    rollout) reads as ``cancelled``, with the run's state; the row is left as written."""
    if rel["state"] in OPEN_STATES and rel.get("execution_id"):
        run = db.one("SELECT state, reason FROM executions WHERE id = ?", (rel["execution_id"],))
        if run is not None and run["state"] in ("failed", "aborted", "succeeded"):
            rel["state"] = "cancelled"
            rel["detail"] = rel.get("detail") or (
                f"the run {rel['execution_id']} ended ({run['state']}) before the rollout did"
                + (f": {run['reason']}" if run.get("reason") else "")
            )
    return rel


def open_release(db: Database, *, environment: str, service: str) -> dict[str, Any] | None:
    for rel in list_releases(db, environment=environment, service=service, limit=20):
        if rel["state"] in OPEN_STATES:
            return rel
    return None


def refuse_overlap(db: Database, *, environment: str, service: str, version: str) -> None:
    held = open_release(db, environment=environment, service=service)
    if held is None:
        return
    raise ConflictError(
        f"{service} is already being deployed in {environment}: release {held['id']} "
        f"({held['version']}, {held['strategy']}, {held['ticket']}) by {held['requested_by']} "
        f"since {held['requested_at'][:19]}Z; {version} is refused",
        hint=f"wait for it, or see it: opsbook releases show {held['id']}",
    )


# -- testing evidence -------------------------------------------------------------------------


def evidence(db: Database, *, service: str, version: str) -> dict[str, Any]:
    """The testing evidence for ``service`` ``version``: successful runs of the pre-deployment
    checklist for that version (any environment), and its promoted staging releases."""
    runs = db.query(
        "SELECT id, environment, params, created_at, finished_at FROM executions "
        "WHERE runbook_id = ? AND procedure_id = ? AND state = 'succeeded' AND dry_run = 0 "
        "ORDER BY created_at",
        CHECKLIST,
    )
    checklist = []
    for run in runs:
        params = json.loads(run["params"] or "{}")
        if params.get("service") == service and params.get("version") == version:
            checklist.append(
                {
                    "execution_id": run["id"],
                    "environment": run["environment"],
                    "started_at": run["created_at"],
                    "finished_at": run["finished_at"],
                }
            )
    staged = db.query(
        "SELECT id, environment, requested_at, finished_at FROM releases WHERE service = ? "
        "AND version = ? AND tier = 'staging' AND state = 'promoted' ORDER BY requested_at",
        (service, version),
    )
    staging = [
        {
            "release_id": r["id"],
            "environment": r["environment"],
            "started_at": r["requested_at"],
            "finished_at": r["finished_at"],
        }
        for r in staged
    ]
    starts = [e["started_at"] for e in [*checklist, *staging] if e.get("started_at")]
    return {
        "checklist": checklist,
        "staging": staging,
        "ok": bool(checklist),
        "lead_started_at": min(starts) if starts else None,
    }


# -- the life of a release --------------------------------------------------------------------


def _insert(db: Database, row: dict[str, Any], *, actor: str, action: str) -> None:
    cols = list(row)
    with db.transaction():
        db.execute(
            f"INSERT INTO releases ({', '.join(cols)}) "  # noqa: S608 - fixed column names
            f"VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )
        audit.record(
            db=db,
            actor=actor,
            action=action,
            subject=f"release:{row['id']}",
            execution_id=row.get("execution_id"),
            payload={
                k: row.get(k)
                for k in ("environment", "service", "version", "strategy", "ticket", "state")
            }
            | ({"detail": row["detail"]} if row.get("detail") else {}),
        )


def begin(
    db: Database,
    *,
    environment_name: str,
    environment: Mapping[str, Any],
    service: str,
    version: str,
    strategy: str,
    ticket: str,
    reason: str,
    security_impact: str,
    backout: str,
    emergency: bool,
    actor: str,
    execution_id: str | None,
    freezes: Sequence[Mapping[str, Any]],
    previous_version: str | None,
) -> dict[str, Any]:
    """Open the change record of a deployment, or refuse it (recorded, audited, exit 2):
    inside a freeze window unless it is an emergency change; on a production-tier environment
    without testing evidence unless it is an emergency change; while another deployment of the
    service is open. ``freezes``: the change calendar's windows active now (``to_dict()``s)."""
    for name, value in (("reason", reason), ("ticket", ticket), ("backout", backout)):
        if not value.strip():
            raise UsageError(f"a release needs a {name}", field=name)
    held = open_release(db, environment=environment_name, service=service)
    if held is not None and execution_id and held.get("execution_id") == execution_id:
        return held  # this run's own record (the step ran again after a crash): the same one
    refuse_overlap(db, environment=environment_name, service=service, version=version)
    tier = tier_of(environment)
    found = evidence(db, service=service, version=version)
    row: dict[str, Any] = {
        "id": f"rel-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}",
        "environment": environment_name,
        "tier": tier,
        "service": service,
        "version": version,
        "previous_version": previous_version,
        "strategy": strategy,
        "ticket": ticket,
        "reason": reason,
        "security_impact": security_impact or "none stated",
        "backout": backout,
        "emergency": 1 if emergency else 0,
        "state": "running",
        "requested_by": actor,
        "requested_at": now_z(),
        "execution_id": execution_id,
        "evidence": json.dumps(found),
        "freeze": json.dumps(list(freezes)) if freezes else None,
        "lead_started_at": found["lead_started_at"],
        "incident_ids": "[]",
    }
    refusal = None
    if freezes and not emergency:
        names = ", ".join(str(f.get("name")) for f in freezes)
        refusal = (
            f"{service} {version} is inside the change freeze {names}: refused",
            "wait until the window ends (opsbook releases calendar), or make it an emergency "
            "change (--emergency: it needs an extra approval)",
        )
    elif tier == "production" and not found["ok"] and not emergency:
        refusal = (
            f"no testing evidence for {service} {version}: the pre-deployment checklist has "
            "not succeeded for this version",
            f"run it first: opsbook run deployment-procedures#pre-deployment-checklist "
            f"--param service={service} --param version={version}",
        )
    if refusal is not None:
        row |= {"state": "refused", "finished_at": now_z(), "detail": refusal[0]}
        _insert(db, row, actor=actor, action="release.refused")
        raise ConflictError(refusal[0], hint=refusal[1])
    _insert(db, row, actor=actor, action="release.started")
    return get(db, str(row["id"]))


def latest_running(
    db: Database, *, environment: str, service: str, version: str | None = None
) -> dict[str, Any] | None:
    held = open_release(db, environment=environment, service=service)
    if held is not None and (version is None or held["version"] == version):
        return held
    return None


def finish(
    db: Database,
    *,
    release_id: str,
    state: str,
    rollout: Mapping[str, Any],
    actor: str,
    detail: str | None = None,
) -> dict[str, Any]:
    """Record a rollout's outcome (``promoted``, ``aborted``, ``rolled_back``, ``failed``)."""
    if state not in DONE_STATES:
        raise UsageError(f"unknown release state {state!r}", field="state")
    rel = get(db, release_id)
    with db.transaction():
        db.execute(
            "UPDATE releases SET state = ?, finished_at = ?, rollout = ?, detail = ? WHERE id = ?",
            (state, now_z(), json.dumps(rollout, default=str), detail, release_id),
        )
        audit.record(
            db=db,
            actor=actor,
            action=f"release.{state}",
            subject=f"release:{release_id}",
            execution_id=rel.get("execution_id"),
            payload={
                "service": rel["service"],
                "version": rel["version"],
                "environment": rel["environment"],
                "outcome": rollout.get("outcome"),
                "reason": rollout.get("reason"),
            },
        )
    return get(db, release_id)


def rolled_back(
    db: Database,
    *,
    environment: str,
    service: str,
    from_version: str,
    actor: str,
    execution_id: str | None,
    ticket: str | None,
    rolled_back_at: str,
    restored_at: str,
) -> dict[str, Any] | None:
    """Mark the newest promoted release of ``service`` at ``from_version`` as rolled back (a
    change failure); an ``INC-`` ticket is linked as its incident."""
    row = db.one(
        "SELECT id, incident_ids FROM releases WHERE environment = ? AND service = ? AND "
        "version = ? AND state = 'promoted' ORDER BY requested_at DESC LIMIT 1",
        (environment, service, from_version),
    )
    if row is None:
        return None
    incidents = json.loads(row["incident_ids"] or "[]")
    if ticket and ticket.startswith("INC-") and ticket not in incidents:
        incidents.append(ticket)
    with db.transaction():
        db.execute(
            "UPDATE releases SET state = 'rolled_back', rolled_back_at = ?, restored_at = ?, "
            "rollback_execution_id = ?, incident_ids = ? WHERE id = ?",
            (rolled_back_at, restored_at, execution_id, json.dumps(incidents), row["id"]),
        )
        audit.record(
            db=db,
            actor=actor,
            action="release.rolled_back",
            subject=f"release:{row['id']}",
            execution_id=execution_id,
            payload={"service": service, "version": from_version, "ticket": ticket},
        )
    return get(db, str(row["id"]))


def link_incident(db: Database, *, release_id: str, incident_id: str, actor: str) -> dict[str, Any]:
    rel = get(db, release_id)
    incidents = list(rel["incident_ids"])
    if incident_id in incidents:
        return rel
    incidents.append(incident_id)
    with db.transaction():
        db.execute(
            "UPDATE releases SET incident_ids = ? WHERE id = ?",
            (json.dumps(incidents), release_id),
        )
        audit.record(
            db=db,
            actor=actor,
            action="release.incident_linked",
            subject=f"release:{release_id}",
            payload={"incident": incident_id},
        )
    return get(db, release_id)


# -- the change record as an auditor reads it -------------------------------------------------


def change_record(db: Database, release_id: str) -> dict[str, Any]:
    """Everything PCI DSS 6.5.1 asks of a change, with the journal's approvals and runs."""
    rel = get(db, release_id)
    runs = [e for e in (rel.get("execution_id"), rel.get("rollback_execution_id")) if e]
    approvals = []
    executions = []
    for eid in runs:
        run = db.one(
            "SELECT id, runbook_id, procedure_id, environment, state, started_by, created_at, "
            "finished_at FROM executions WHERE id = ?",
            (eid,),
        )
        if run is not None:
            executions.append(dict(run))
        approvals += [
            dict(a)
            for a in db.query(
                "SELECT execution_id, approver, decision, comment, created_at FROM approvals "
                "WHERE execution_id = ? ORDER BY created_at",
                (eid,),
            )
        ]
    rollout = rel.get("rollout") or {}
    return {
        "release": rel["id"],
        "ticket": rel["ticket"],
        "service": rel["service"],
        "environment": rel["environment"],
        "tier": rel["tier"],
        "change": f"{rel['service']} {rel.get('previous_version') or '?'} -> {rel['version']}",
        "strategy": rel["strategy"],
        "reason": rel["reason"],
        "security_impact": rel["security_impact"],
        "backout": rel["backout"],
        "emergency": rel["emergency"],
        "freeze": rel.get("freeze"),
        "requested_by": rel["requested_by"],
        "requested_at": rel["requested_at"],
        "approvals": approvals,
        "testing_evidence": rel.get("evidence"),
        "outcome": rel["state"],
        "outcome_detail": rel.get("detail") or rollout.get("reason"),
        "finished_at": rel.get("finished_at"),
        "rolled_back_at": rel.get("rolled_back_at"),
        "incidents": rel.get("incident_ids") or [],
        "executions": executions,
        "decisions": rollout.get("decisions", []),
    }


def dora_rows(db: Database, *, since: str, until: str) -> list[dict[str, Any]]:
    """The releases of a period in the shape :func:`opsbook.deploy.dora.compute` reads."""
    rows = db.query(
        "SELECT * FROM releases WHERE requested_at >= ? AND requested_at < ? ORDER BY requested_at",
        (since, until),
    )
    return [_reconciled(db, _out(r)) for r in rows]
