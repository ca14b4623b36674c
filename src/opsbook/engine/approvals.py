"""Four-eyes approvals.

An approval binds to a digest of (runbook content hash, procedure, parameters, environment). If
any of those change, earlier approvals no longer count. The person who started a run can never
approve it, whatever their roles (admins included); ``quorum`` distinct people must approve; a
single rejection fails the step; approvals requested longer ago than ``expires`` have lapsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine._journal import ExecutionRow, note_event
from opsbook.engine.states import State
from opsbook.errors import ConflictError, PermissionDenied
from opsbook.runbooks.model import ApprovalSpec


def compute_digest(
    *, runbook_hash: str, procedure_id: str, params: Mapping[str, Any], environment: str
) -> str:
    material = audit.canonical_json(
        {
            "runbook_hash": runbook_hash,
            "procedure": procedure_id,
            "params": dict(params),
            "environment": environment,
        }
    )
    # Parameters are checked to be UTF-8 text before a run starts; "surrogatepass" keeps a
    # digest over anything else a hash rather than a crash (and equal to "utf-8" otherwise).
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApprovalStatus:
    verdict: str  # approved | rejected | expired | pending
    approvers: tuple[str, ...]
    quorum: int
    rejected_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "approved_by": list(self.approvers),
            "quorum": self.quorum,
            "rejected_by": self.rejected_by,
        }


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def status(
    *,
    db: Database,
    execution_id: str,
    step_seq: int,
    spec: ApprovalSpec,
    digest: str,
    requested_at: str | None,
    now: datetime | None = None,
) -> ApprovalStatus:
    rows = db.query(
        "SELECT approver, decision, digest, created_at FROM approvals"
        " WHERE execution_id = ? AND step_seq = ? ORDER BY id",
        (execution_id, step_seq),
    )
    deadline = _deadline(spec, requested_at)
    valid = [
        r
        for r in rows
        if r["digest"] == digest
        and (deadline is None or _parse_ts(str(r["created_at"])) <= deadline)
    ]
    for r in valid:
        if r["decision"] == "rejected":
            return ApprovalStatus("rejected", (), spec.quorum, rejected_by=str(r["approver"]))
    approvers = tuple(dict.fromkeys(str(r["approver"]) for r in valid))
    if len(approvers) >= spec.quorum:
        return ApprovalStatus("approved", approvers, spec.quorum)
    if deadline is not None and (now or datetime.now(UTC)) > deadline:
        return ApprovalStatus("expired", approvers, spec.quorum)
    return ApprovalStatus("pending", approvers, spec.quorum)


def _deadline(spec: ApprovalSpec, requested_at: str | None) -> datetime | None:
    """When an approval request stops accepting answers (``expires`` after it was made)."""
    if not spec.expires or not requested_at:
        return None
    return _parse_ts(requested_at) + timedelta(seconds=spec.expires)


def decide(
    *,
    db: Database,
    execution: ExecutionRow,
    step_seq: int,
    step_id: str,
    step_state: State,
    spec: ApprovalSpec,
    approver: str,
    approver_roles: Sequence[str],
    decision: str,
    digest: str,
    comment: str | None = None,
    requested_at: str | None = None,
) -> None:
    """Record one person's approval or rejection. Raises PermissionDenied for the starter
    (whoever they are) and for people without one of the step's roles; the refusal itself is
    audited. The caller owns the transaction, so it must commit before re-raising the refusal
    (catch ``PermissionDenied`` inside ``db.transaction()``, raise it after) or the audit
    record of the refusal is rolled back with it."""
    if decision not in ("approved", "rejected"):
        raise ConflictError(f"unknown decision {decision!r}", hint="approve or reject")
    if execution.state is not State.WAITING or step_state is not State.WAITING:
        raise ConflictError(
            f"execution {execution.id} is not waiting for an approval (it is {execution.state})",
            hint="`opsbook executions show ID` shows what it is waiting for",
        )
    deadline = _deadline(spec, requested_at)
    if deadline is not None and datetime.now(UTC) > deadline:
        raise ConflictError(
            f"the approval request of execution {execution.id} expired at "
            f"{deadline.isoformat(timespec='seconds')}",
            hint="answers after expiry do not count; the run fails when it continues "
            "(start it again to ask anew)",
        )
    refusal: str | None = None
    hint = ""
    if approver == execution.started_by:
        refusal = f"{approver} started execution {execution.id} and cannot approve it"
        hint = "four-eyes: another person must approve (this applies to admins too)"
    elif spec.roles and not set(spec.roles) & set(approver_roles):
        refusal = (
            f"{approver} has roles {', '.join(approver_roles) or 'none'}; approving step "
            f"{step_id!r} needs one of: {', '.join(spec.roles)}"
        )
        hint = "ask someone with one of those roles (roles come from [users] in opsbook.toml)"
    if refusal:
        note_event(
            db=db,
            execution_id=execution.id,
            action="execution.approval.denied",
            actor=approver,
            subject=f"execution:{execution.id}/step:{step_id}",
            payload={"seq": step_seq, "step": step_id, "reason": refusal},
        )
        raise PermissionDenied(refusal, hint=hint)
    existing = db.one(
        "SELECT id FROM approvals WHERE execution_id = ? AND step_seq = ? AND approver = ?"
        " AND digest = ?",
        (execution.id, step_seq, approver, digest),
    )
    if existing:
        raise ConflictError(
            f"{approver} has already answered this approval",
            hint="quorum needs distinct people",
        )
    db.execute(
        "DELETE FROM approvals WHERE execution_id = ? AND step_seq = ? AND approver = ?",
        (execution.id, step_seq, approver),
    )
    db.execute(
        "INSERT INTO approvals (execution_id, step_seq, approver, decision, digest, comment,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (execution.id, step_seq, approver, decision, digest, comment, utcnow()),
    )
    note_event(
        db=db,
        execution_id=execution.id,
        action="execution.approval." + ("granted" if decision == "approved" else "rejected"),
        actor=approver,
        subject=f"execution:{execution.id}/step:{step_id}",
        payload={"seq": step_seq, "step": step_id, "digest": digest, "comment": comment},
    )
