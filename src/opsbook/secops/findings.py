"""Findings (issue 14), in the DefectDojo manner: a problem reported by a check, a scan, an import
or a detection keeps its identity across scans by its fingerprint, and moves between states::

    new (open) ── absent from a complete scan ──> fixed ── seen again ──> open (reintroduced)
       │                                                                       │
       └─ accept (reason, until) + approve by a second person ──> accepted ─── until passes ──> open

An open finding has an owner and a due date from the severity SLA (``[security] sla``); risk
acceptance needs a reason, an end date within ``max_acceptance``, and a second person who is
neither the requester nor the finding's owner (admins included). Every change is audited. The
caller owns the transaction boundaries of nothing here: each service function is one
transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.secops.model import SEVERITY_RANK, FindingInput
from opsbook.secops.settings import SecuritySettings

if TYPE_CHECKING:
    from opsbook.db import Database

STATES = ("open", "accepted", "fixed")


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def ref(finding_id: int) -> str:
    return f"FND-{finding_id}"


def parse_ref(text: str) -> int:
    raw = text.strip().upper().removeprefix("FND-")
    if not raw.isdigit():
        raise ValidationError(
            f"{text!r} is not a finding id",
            field="finding",
            hint="e.g. FND-12 (opsbook findings list)",
        )
    return int(raw)


def _row_dict(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["ref"] = ref(int(row["id"]))
    out["detail"] = json.loads(row["detail"])
    out["requirements"] = json.loads(row["requirements"])
    return out


def ingest(
    db: Database,
    *,
    kind: str,
    environment: str,
    source: str,
    inputs: Sequence[FindingInput],
    complete: bool,
    actor: str,
    settings: SecuritySettings | None = None,
    scope_rules: Iterable[str] | None = None,
    results: Sequence[dict[str, Any]] = (),
    started_at: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record one scan and move findings through their lifecycle.

    ``complete``: the scan looked at everything its scope covers, so an open finding of the same
    ``source`` and environment (and, with ``scope_rules``, of those rules) that it did not report
    is fixed. ``results``: per-check results for ``security_results`` (check_id, status,
    severity, failures, detail)."""
    cfg = settings or SecuritySettings()
    when = now or datetime.now(UTC)
    stamp = _z(when)
    scan_id = "sc-" + secrets.token_hex(6)
    seen: dict[str, FindingInput] = {}
    for f in inputs:  # the worst report of one fingerprint wins
        prev = seen.get(f.identity)
        if prev is None or SEVERITY_RANK[f.severity] > SEVERITY_RANK[prev.severity]:
            seen[f.identity] = f
    sources = {f.source for f in inputs} | {source}
    new: list[str] = []
    still: list[str] = []
    back: list[str] = []
    fixed: list[str] = []
    with db.transaction():
        existing = {
            str(r["fingerprint"]): r
            for r in db.query(
                "SELECT * FROM security_findings WHERE environment = ?", (environment,)
            )
        }
        for fp, f in seen.items():
            row = existing.get(fp)
            body = (
                f.title,
                f.severity,
                f.subject,
                f.location,
                json.dumps(f.detail, default=str),
                json.dumps(list(f.requirements)),
            )
            if row is None:
                due = _z(when + timedelta(seconds=cfg.sla.get(f.severity, cfg.sla["low"])))
                db.execute(
                    "INSERT INTO security_findings (fingerprint, source, rule_id, title, severity,"
                    " environment, subject, location, detail, requirements, state, owner, due_at,"
                    " first_seen, last_seen, last_scan, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        fp,
                        f.source,
                        f.rule_id,
                        *body[:2],
                        environment,
                        *body[2:],
                        cfg.default_owner,
                        due,
                        stamp,
                        stamp,
                        scan_id,
                        stamp,
                        stamp,
                    ),
                )
                new.append(fp)
            elif row["state"] == "fixed":
                due = _z(when + timedelta(seconds=cfg.sla.get(f.severity, cfg.sla["low"])))
                db.execute(
                    "UPDATE security_findings SET state = 'open', title = ?, severity = ?,"
                    " subject = ?, location = ?, detail = ?, requirements = ?, due_at = ?,"
                    " fixed_at = NULL, reintroduced = reintroduced + 1, last_seen = ?,"
                    " last_scan = ?, overdue_alerted_at = NULL, updated_at = ? WHERE id = ?",
                    (*body, due, stamp, scan_id, stamp, row["id"]),
                )
                back.append(fp)
            else:
                db.execute(
                    "UPDATE security_findings SET title = ?, severity = ?, subject = ?,"
                    " location = ?, detail = ?, requirements = ?, last_seen = ?, last_scan = ?,"
                    " updated_at = ? WHERE id = ?",
                    (*body, stamp, scan_id, stamp, row["id"]),
                )
                still.append(fp)
        if complete:
            rules = set(scope_rules) if scope_rules is not None else None
            for fp, row in existing.items():
                if (
                    fp not in seen
                    and row["state"] in ("open", "accepted")
                    and row["source"] in sources
                    and (rules is None or row["rule_id"] in rules)
                ):
                    db.execute(
                        "UPDATE security_findings SET state = 'fixed', fixed_at = ?,"
                        " updated_at = ? WHERE id = ?",
                        (stamp, stamp, row["id"]),
                    )
                    fixed.append(fp)
        summary = {
            "new": len(new),
            "still_open": len(still),
            "reintroduced": len(back),
            "fixed": len(fixed),
            "reported": len(seen),
        }
        db.execute(
            "INSERT INTO security_scans (id, kind, environment, source, complete, actor,"
            " started_at, finished_at, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scan_id,
                kind,
                environment,
                source,
                1 if complete else 0,
                actor,
                started_at or stamp,
                stamp,
                json.dumps(summary),
            ),
        )
        for r in results:
            db.execute(
                "INSERT INTO security_results (scan_id, check_id, status, severity, failures,"
                " detail) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    scan_id,
                    r["check_id"],
                    r["status"],
                    r["severity"],
                    int(r.get("failures", 0)),
                    json.dumps(r.get("detail", {}), default=str),
                ),
            )
        ids = {
            str(r["fingerprint"]): int(r["id"])
            for r in db.query(
                "SELECT id, fingerprint FROM security_findings WHERE last_scan = ? OR fixed_at = ?",
                (scan_id, stamp),
            )
        }
        audit.record(
            db=db,
            actor=actor,
            action="security.scanned",
            subject=f"scan:{scan_id}",
            payload={
                "kind": kind,
                "environment": environment,
                "source": source,
                "complete": complete,
                **summary,
                "new_findings": [ref(ids[fp]) for fp in new if fp in ids],
                "fixed_findings": [ref(ids[fp]) for fp in fixed if fp in ids],
                "reintroduced_findings": [ref(ids[fp]) for fp in back if fp in ids],
            },
        )
    return {
        "scan": scan_id,
        **summary,
        "findings": {
            "new": [ref(ids[fp]) for fp in new if fp in ids],
            "still_open": [ref(ids[fp]) for fp in still if fp in ids],
            "reintroduced": [ref(ids[fp]) for fp in back if fp in ids],
            "fixed": [ref(ids[fp]) for fp in fixed if fp in ids],
        },
    }


def get(db: Database, finding: str | int) -> dict[str, Any]:
    fid = finding if isinstance(finding, int) else parse_ref(finding)
    row = db.one("SELECT * FROM security_findings WHERE id = ?", (fid,))
    if row is None:
        raise NotFoundError(f"no finding {ref(fid)}", hint="opsbook findings list")
    out = _row_dict(row)
    out["acceptances"] = db.query(
        "SELECT id, reason, until, requested_by, requested_at, approved_by, approved_at, state"
        " FROM security_acceptances WHERE finding_id = ? ORDER BY id",
        (fid,),
    )
    return out


def list_findings(
    db: Database,
    *,
    state: str | None = None,
    environment: str | None = None,
    severity: str | None = None,
    overdue: bool = False,
    limit: int = 500,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    if state is not None and state not in STATES:
        raise ValidationError(
            f"unknown state {state!r}", field="--state", hint=f"use one of: {', '.join(STATES)}"
        )
    where, args = ["1 = 1"], []
    if state:
        where.append("state = ?")
        args.append(state)
    if environment:
        where.append("environment = ?")
        args.append(environment)
    if severity:
        where.append("severity = ?")
        args.append(severity)
    if overdue:
        where.append("state = 'open' AND due_at < ?")
        args.append(_z(now or datetime.now(UTC)))
    sql = (
        "SELECT * FROM security_findings WHERE "  # noqa: S608 - fixed parts, values bound
        + " AND ".join(where)
        + " ORDER BY CASE state WHEN 'open' THEN 0 WHEN 'accepted' THEN 1 ELSE 2 END, due_at"
        " LIMIT ?"
    )
    rows = db.query(
        sql,
        (*args, limit),
    )
    return [_row_dict(r) for r in rows]


def assign(db: Database, *, finding: str, to: str, actor: str) -> dict[str, Any]:
    current = get(db, finding)
    owner = to.strip()
    if not owner:
        raise ValidationError("an owner is needed", field="--to", hint="--to alice")
    with db.transaction():
        db.execute(
            "UPDATE security_findings SET owner = ?, updated_at = ? WHERE id = ?",
            (owner, _z(datetime.now(UTC)), current["id"]),
        )
        audit.record(
            db=db,
            actor=actor,
            action="security.finding.assigned",
            subject=f"finding:{current['ref']}",
            payload={"from": current["owner"], "to": owner},
        )
    return get(db, current["ref"])


def request_acceptance(
    db: Database,
    *,
    finding: str,
    reason: str | None,
    until: str | None,
    actor: str,
    settings: SecuritySettings | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Ask to accept the risk of an open finding until a date; a second person approves."""
    cfg = settings or SecuritySettings()
    when = now or datetime.now(UTC)
    current = get(db, finding)
    if not (reason or "").strip():
        raise ValidationError(
            "a risk acceptance needs a reason",
            field="--reason",
            hint='--reason "compensating control: WAF rule 942100 blocks it; fix in 2027-Q1"',
        )
    end = _until(until, when, cfg)
    if current["state"] != "open":
        raise ConflictError(
            f"{current['ref']} is {current['state']}: only an open finding can be accepted",
            hint="opsbook findings show " + current["ref"],
        )
    if current["owner"] == actor:
        raise PermissionDenied(
            f"{actor} owns {current['ref']}: the owner of a finding may not accept its risk",
            field="--as",
            hint="ask the security lead or a manager to request the acceptance",
        )
    with db.transaction():
        if db.one(
            "SELECT id FROM security_acceptances WHERE finding_id = ? AND state = 'pending'",
            (current["id"],),
        ):
            raise ConflictError(
                f"{current['ref']} already has an acceptance waiting for approval",
                hint=f"opsbook findings accept-approve {current['ref']}",
            )
        db.execute(
            "INSERT INTO security_acceptances (finding_id, reason, until, requested_by,"
            " requested_at, state) VALUES (?, ?, ?, ?, ?, 'pending')",
            (current["id"], reason.strip(), _z(end), actor, _z(when)),  # type: ignore[union-attr]
        )
        audit.record(
            db=db,
            actor=actor,
            action="security.acceptance.requested",
            subject=f"finding:{current['ref']}",
            payload={"reason": reason.strip(), "until": _z(end)},  # type: ignore[union-attr]
        )
    return get(db, current["ref"])


def _until(until: str | None, when: datetime, cfg: SecuritySettings) -> datetime:
    if not until:
        raise ValidationError(
            "a risk acceptance needs an end date", field="--until", hint="--until 2027-03-31"
        )
    try:
        end = datetime.fromisoformat(until.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"--until {until!r} is not a date", field="--until", hint="--until 2027-03-31"
        ) from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    if end <= when:
        raise ValidationError(f"--until {until} is in the past", field="--until")
    if (end - when).total_seconds() > cfg.max_acceptance:
        days = int(cfg.max_acceptance // 86400)
        raise ValidationError(
            f"--until {until} is more than {days} days away",
            field="--until",
            hint=f"accept for at most {days} days ([security] max_acceptance)",
        )
    return end


def approve_acceptance(
    db: Database,
    *,
    finding: str,
    actor: str,
    roles: Sequence[str],
    settings: SecuritySettings | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The second person approves: not the requester, not the owner, holding an approve role."""
    cfg = settings or SecuritySettings()
    current = get(db, finding)
    pending = [a for a in current["acceptances"] if a["state"] == "pending"]
    if not pending:
        raise ConflictError(
            f"{current['ref']} has no acceptance waiting for approval",
            hint=f"opsbook findings accept {current['ref']} --reason ... --until ...",
        )
    acc = pending[-1]
    if acc["requested_by"] == actor:
        raise PermissionDenied(
            f"{actor} requested this acceptance and may not approve it (a second person must)",
            field="--as",
        )
    if current["owner"] == actor:
        raise PermissionDenied(
            f"{actor} owns {current['ref']} and may not approve accepting its risk", field="--as"
        )
    from opsbook.users.roles import expand  # noqa: PLC0415

    if not set(expand(list(roles))) & set(cfg.approve_roles):
        raise PermissionDenied(
            f"{actor} may not approve risk acceptances",
            field="--as",
            hint=f"roles that may: {', '.join(cfg.approve_roles)} ([security] approve_roles)",
        )
    stamp = _z(now or datetime.now(UTC))
    with db.transaction():
        db.execute(
            "UPDATE security_acceptances SET state = 'approved', approved_by = ?, approved_at = ?"
            " WHERE id = ?",
            (actor, stamp, acc["id"]),
        )
        db.execute(
            "UPDATE security_findings SET state = 'accepted', updated_at = ? WHERE id = ?",
            (stamp, current["id"]),
        )
        audit.record(
            db=db,
            actor=actor,
            action="security.acceptance.approved",
            subject=f"finding:{current['ref']}",
            payload={"requested_by": acc["requested_by"], "until": acc["until"]},
        )
    return get(db, current["ref"])


def expire_acceptances(db: Database, *, now: datetime | None = None) -> list[str]:
    """Acceptances past their end: the finding is open again (with its original due date, so
    it is overdue at once if that passed). Returns the findings reopened."""
    stamp = _z(now or datetime.now(UTC))
    reopened = []
    with db.transaction():
        for a in db.query(
            "SELECT a.id, a.finding_id, a.until FROM security_acceptances a"
            " WHERE a.state = 'approved' AND a.until <= ?",
            (stamp,),
        ):
            db.execute("UPDATE security_acceptances SET state = 'expired' WHERE id = ?", (a["id"],))
            db.execute(
                "UPDATE security_findings SET state = 'open', updated_at = ?"
                " WHERE id = ? AND state = 'accepted'",
                (stamp, a["finding_id"]),
            )
            reopened.append(ref(int(a["finding_id"])))
            audit.record(
                db=db,
                actor="opsbook",
                action="security.acceptance.expired",
                subject=f"finding:{ref(int(a['finding_id']))}",
                payload={"until": a["until"]},
            )
    return reopened


def newly_overdue(db: Database, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Open findings past their due date not yet alerted on; marked alerted (one alert each)."""
    stamp = _z(now or datetime.now(UTC))
    with db.transaction():
        rows = db.query(
            "SELECT * FROM security_findings WHERE state = 'open' AND due_at < ?"
            " AND overdue_alerted_at IS NULL",
            (stamp,),
        )
        for r in rows:
            db.execute(
                "UPDATE security_findings SET overdue_alerted_at = ? WHERE id = ?",
                (stamp, r["id"]),
            )
    return [_row_dict(r) for r in rows]
