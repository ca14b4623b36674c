"""`opsbook compliance report` (issue 14): per PCI DSS 4.0.1 requirement, the evidence of a
period, each item pointing at the audit records behind it, exported as a pack an assessor can
verify offline.

Per requirement: the security checks mapped to it and their results over the period (runs,
passes, failures, the latest), the findings mapped to it (opened, fixed, accepted and by whom,
overdue), access review campaigns (7.2.4, 7.2.5, 7.2.5.1, 8.2.6), just-in-time grants (7.2.2,
10.2.1.2), and the executions of the security-operations runbook's procedures with their
approvals. A requirement with nothing in the period says "no evidence".

The pack: ``compliance.json`` and ``COMPLIANCE.md``, ``audit/`` (the audit export of the period
up to now, with its own ``verify_chain.py``), ``verify_compliance.py`` (stdlib only) and
``manifest.sha256``, as a directory or one ``.zip``. The SHA-256 of the report, ``COMPLIANCE.md``
and the verifier are written into the audit trail (``security.compliance.reported``) before the
export, so the signed chain vouches for them. docs/security-compliance.md describes it all."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.secops.catalogue import CATALOGUE
from opsbook.secops.pci import REQUIREMENTS, STANDARD, check_requirement

if TYPE_CHECKING:
    from opsbook.audit import WitnessConfig
    from opsbook.db import Database

PROCEDURES = {
    "daily-security-checks": ("10.4.1", "11.5.2"),
    "vulnerability-management": ("6.3.1", "6.3.3", "11.3.1"),
    "access-review": ("7.2.4", "7.2.5.1", "8.2.6"),
    "incident-containment": ("12.10.1",),
}
ACCESS_REVIEW = ("7.2.4", "7.2.5", "7.2.5.1", "8.2.6")
JIT = ("7.2.2", "10.2.1.2")
POINTERS = 25  # audit record ids listed per item at most


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ids(db: Database, sql: str, params: Sequence[Any]) -> list[int]:
    return [int(r["id"]) for r in db.query(sql + f" ORDER BY id LIMIT {POINTERS}", params)]


def _checks(db: Database, req: str, since: str, until: str) -> list[dict[str, Any]]:
    out = []
    for c in CATALOGUE.values():
        if req not in c.requirements:
            continue
        rows = db.query(
            "SELECT r.status, r.failures, s.id AS scan, s.started_at FROM security_results r"
            " JOIN security_scans s ON s.id = r.scan_id WHERE r.check_id = ?"
            " AND s.started_at >= ? AND s.started_at < ? ORDER BY s.started_at",
            (c.id, since, until),
        )
        if not rows:
            out.append({"check": c.id, "title": c.title, "runs": 0})
            continue
        scans = [r["scan"] for r in rows]
        marks = ",".join("?" * len(scans[-POINTERS:]))
        out.append(
            {
                "check": c.id,
                "title": c.title,
                "runs": len(rows),
                "passed": sum(1 for r in rows if r["status"] == "pass"),
                "failed": sum(1 for r in rows if r["status"] == "fail"),
                "errors": sum(1 for r in rows if r["status"] == "error"),
                "latest": {"status": rows[-1]["status"], "at": rows[-1]["started_at"]},
                "audit_records": _ids(
                    db,
                    f"SELECT id FROM events WHERE action = 'security.scanned' AND subject IN ({marks})",  # noqa: E501, S608 - placeholders only
                    [f"scan:{s}" for s in scans[-POINTERS:]],
                ),
            }
        )
    return out


def _findings(db: Database, req: str, since: str, until: str, now: str) -> dict[str, Any]:
    rows = [
        r
        for r in db.query(
            "SELECT id, title, severity, state, first_seen, fixed_at, due_at, owner, requirements"
            " FROM security_findings WHERE first_seen < ?",
            (until,),
        )
        if req in json.loads(r["requirements"])
    ]
    opened = [r for r in rows if since <= r["first_seen"] < until]
    fixed = [r for r in rows if r["fixed_at"] and since <= r["fixed_at"] < until]
    overdue = [r for r in rows if r["state"] == "open" and r["due_at"] < now]
    # missed in the period: due before the period's end (and before now), not fixed by then,
    # and no risk acceptance approved by then
    cutoff = min(until, now)
    missed = []
    for r in rows:
        due = r["due_at"]
        if not (since <= due < cutoff) or (r["fixed_at"] and r["fixed_at"] <= due):
            continue
        if not db.query(
            "SELECT id FROM security_acceptances WHERE finding_id = ? AND approved_at <= ?",
            (r["id"], due),
        ):
            missed.append(r)
    accepted = []
    for r in rows:
        for a in db.query(
            "SELECT reason, until, requested_by, approved_by, approved_at FROM"
            " security_acceptances WHERE finding_id = ? AND approved_at >= ? AND approved_at < ?",
            (r["id"], since, until),
        ):
            accepted.append(
                {
                    "finding": f"FND-{r['id']}",
                    **a,
                    "audit_records": _ids(
                        db,
                        "SELECT id FROM events WHERE subject = ?",
                        [f"finding:FND-{r['id']}"],
                    ),
                }
            )
    return {
        "opened": [f"FND-{r['id']}" for r in opened],
        "fixed": [f"FND-{r['id']}" for r in fixed],
        "accepted": accepted,
        "overdue_now": [f"FND-{r['id']}" for r in overdue],
        "overdue_in_period": [f"FND-{r['id']}" for r in missed],
    }


def _reviews(db: Database, since: str, until: str) -> list[dict[str, Any]]:
    out = []
    for c in db.query(
        "SELECT id, name, environment, state, created_at, closed_at, closed_by, result"
        " FROM access_campaigns WHERE created_at < ? AND (closed_at IS NULL OR closed_at >= ?)",
        (until, since),
    ):
        out.append(
            {
                "campaign": f"AR-{c['id']}",
                "name": c["name"],
                "state": c["state"],
                "closed_at": c["closed_at"],
                "closed_by": c["closed_by"],
                "result": json.loads(c["result"]) if c["result"] else None,
                "audit_records": _ids(
                    db,
                    "SELECT id FROM events WHERE subject = ?",
                    [f"campaign:AR-{c['id']}"],
                ),
            }
        )
    return out


def _grants(db: Database, since: str, until: str) -> list[dict[str, Any]]:
    return [
        {
            "grant": f"JIT-{g['id']}",
            "username": g["username"],
            "role": g["role"],
            "reason": g["reason"],
            "approved_by": g["approved_by"],
            "state": g["state"],
            "audit_records": _ids(
                db, "SELECT id FROM events WHERE subject = ?", [f"grant:JIT-{g['id']}"]
            ),
        }
        for g in db.query(
            "SELECT * FROM jit_grants WHERE requested_at >= ? AND requested_at < ?",
            (since, until),
        )
    ]


def _executions(db: Database, req: str, since: str, until: str) -> list[dict[str, Any]]:
    procs = [p for p, reqs in PROCEDURES.items() if req in reqs]
    if not procs:
        return []
    marks = ",".join("?" * len(procs))
    out = []
    sql = (
        "SELECT id, procedure_id, environment, state, started_by, created_at, finished_at"  # noqa: S608 - placeholders only
        " FROM executions WHERE runbook_id = 'security-operations'"
        f" AND procedure_id IN ({marks})"
        " AND created_at >= ? AND created_at < ? AND dry_run = 0 ORDER BY created_at"
    )
    for e in db.query(sql, (*procs, since, until)):
        approvals = db.query(
            "SELECT approver, decision, created_at FROM approvals WHERE execution_id = ?",
            (e["id"],),
        )
        out.append(
            {
                "execution": e["id"],
                "procedure": e["procedure_id"],
                "environment": e["environment"],
                "state": e["state"],
                "started_by": e["started_by"],
                "at": e["created_at"],
                "approvals": approvals,
                "audit_records": _ids(
                    db, "SELECT id FROM events WHERE execution_id = ?", [e["id"]]
                ),
            }
        )
    return out


CHANGE_CONTROL = "6.5.1"


def _change_records(db: Database, since: str, until: str) -> list[dict[str, Any]]:
    """The change record of every production-tier release requested in the period (refused
    ones included: an attempted change in a freeze is evidence too)."""
    from opsbook.deploy import records  # noqa: PLC0415

    rows = db.query(
        "SELECT id FROM releases WHERE tier = 'production' AND requested_at >= ? "
        "AND requested_at < ? ORDER BY requested_at",
        (since, until),
    )
    out = []
    for r in rows:
        rec = records.change_record(db, str(r["id"]))
        rec["decisions"] = [d for d in rec["decisions"] if d.get("kind") != "measurement"]
        rec["audit_records"] = _ids(
            db, "SELECT id FROM events WHERE subject = ?", [f"release:{r['id']}"]
        )
        out.append(rec)
    return out


def build_report(
    db: Database,
    *,
    start: datetime,
    end: datetime,
    label: str,
    requirements: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    reqs = [check_requirement(r) for r in requirements] or list(REQUIREMENTS)
    since, until = _z(start), _z(end)
    when = _z(now or datetime.now(UTC))
    reviews = _reviews(db, since, until)
    grants = _grants(db, since, until)
    items = []
    for req in reqs:
        checks = _checks(db, req, since, until)
        findings = _findings(db, req, since, until, when)
        entry: dict[str, Any] = {
            "requirement": req,
            "title": REQUIREMENTS[req],
            "checks": checks,
            "findings": findings,
            "executions": _executions(db, req, since, until),
        }
        if req in ACCESS_REVIEW:
            entry["access_reviews"] = reviews
        if req in JIT:
            entry["jit_grants"] = grants
        if req == CHANGE_CONTROL:
            entry["change_records"] = _change_records(db, since, until)
        has = (
            any(c["runs"] for c in checks)
            or any(findings[k] for k in ("opened", "fixed", "accepted"))
            or entry["executions"]
            or entry.get("access_reviews")
            or entry.get("jit_grants")
            or entry.get("change_records")
        )
        failing = any(c.get("latest", {}).get("status") == "fail" for c in checks) or bool(
            findings["overdue_now"] or findings["overdue_in_period"]
        )
        entry["status"] = "no evidence" if not has else "gaps" if failing else "evidence"
        items.append(entry)
    return {
        "standard": STANDARD,
        "period": {"label": label, "from": since, "until": until},
        "generated_at": when,
        "summary": {
            "requirements": len(items),
            "with_evidence": sum(1 for i in items if i["status"] == "evidence"),
            "with_gaps": sum(1 for i in items if i["status"] == "gaps"),
            "no_evidence": [i["requirement"] for i in items if i["status"] == "no evidence"],
        },
        "requirements": items,
    }


def to_markdown(report: dict[str, Any]) -> str:
    p = report["period"]
    lines = [
        f"# Compliance evidence: {report['standard']}, {p['label']}",
        "",
        f"Period {p['from'][:10]} to {p['until'][:10]} (exclusive), generated"
        f" {report['generated_at'][:19]}Z. Each item names the audit records behind it"
        " (`audit/events.jsonl`, verified by `audit/verify_chain.py`).",
        "",
        "| Requirement | Status | Checks run | Findings opened / fixed / accepted | Executions |",
        "|---|---|---|---|---|",
    ]
    for r in report["requirements"]:
        f = r["findings"]
        runs = sum(c["runs"] for c in r["checks"])
        lines.append(
            f"| {r['requirement']} {r['title']} | {r['status']} | {runs} |"
            f" {len(f['opened'])} / {len(f['fixed'])} / {len(f['accepted'])} |"
            f" {len(r['executions'])} |"
        )
    for r in report["requirements"]:
        if r["status"] == "no evidence":
            continue
        lines += ["", f"## {r['requirement']} {r['title']}", ""]
        for c in r["checks"]:
            if c["runs"]:
                lines.append(
                    f"- check `{c['check']}`: {c['runs']} runs, {c['passed']} passed,"
                    f" {c['failed']} failed; latest {c['latest']['status']}"
                    f" ({c['latest']['at'][:19]}Z); audit records {c['audit_records'][:10]}"
                )
        f = r["findings"]
        if any(f.values()):
            lines.append(
                f"- findings: opened {f['opened']}, fixed {f['fixed']},"
                f" past due in the period {f['overdue_in_period']},"
                f" overdue now {f['overdue_now']}"
            )
            for a in f["accepted"]:
                lines.append(
                    f"- risk accepted on {a['finding']} until {a['until'][:10]} by"
                    f" {a['approved_by']} (asked by {a['requested_by']}): {a['reason']}"
                )
        for e in r["executions"]:
            by = ", ".join(a["approver"] for a in e["approvals"]) or "none needed"
            lines.append(
                f"- execution {e['execution']} `{e['procedure']}` {e['state']} on"
                f" {e['environment']} by {e['started_by']}; approvals: {by}"
            )
        for c in r.get("access_reviews", []):
            res = c["result"] or {}
            lines.append(
                f"- access review {c['campaign']} {c['name']} {c['state']}: kept"
                f" {res.get('kept', '-')}, revoked {res.get('revoked', '-')}"
            )
        for g in r.get("jit_grants", []):
            lines.append(
                f"- JIT {g['grant']}: {g['username']} as {g['role']} ({g['reason']}),"
                f" approved by {g['approved_by'] or '-'}, {g['state']}"
            )
        for c in r.get("change_records", []):
            by = ", ".join(a["approver"] for a in c["approvals"]) or "none"
            ev = c.get("testing_evidence") or {}
            tested = ", ".join(e["execution_id"] for e in ev.get("checklist", [])) or "none"
            lines.append(
                f"- change {c['release']} {c['ticket']}: {c['change']} ({c['strategy']}) on"
                f" {c['environment']}, {c['outcome']}; reason: {c['reason']}; security impact:"
                f" {c['security_impact']}; approvals: {by}; testing evidence: {tested};"
                f" back-out: {c['backout']}"
            )
    return "\n".join(lines) + "\n"


def canonical(report: dict[str, Any]) -> bytes:
    return json.dumps(report, sort_keys=True, separators=(",", ":"), default=str).encode()


def write_pack(
    db: Database,
    *,
    report: dict[str, Any],
    out_dir: Path,
    actor: str,
    witness: WitnessConfig | None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the pack to ``out_dir``, or, when it ends in ``.zip``, to that zip file (the same
    files under one top-level folder, so ``unzip`` gives a directory ``verify`` accepts)."""
    if is_zip(out_dir):
        import tempfile  # noqa: PLC0415

        check_out(out_dir, force=force)
        with tempfile.TemporaryDirectory(prefix="opsbook-compliance-") as tmp:
            inner = Path(tmp) / out_dir.stem
            packed = write_pack(
                db, report=report, out_dir=inner, actor=actor, witness=witness, force=force
            )
            _zip(inner, out_dir)
        return {**packed, "out": str(out_dir)}
    from opsbook.audit._export import check_out_dir, export  # noqa: PLC0415
    from opsbook.audit._signer import sign_now  # noqa: PLC0415
    from opsbook.secops.compliance_script import VERIFY_SCRIPT  # noqa: PLC0415

    check_out_dir(out_dir, force=force)
    body = canonical(report)
    digest = hashlib.sha256(body).hexdigest()
    markdown = to_markdown(report).encode("utf-8")
    script = VERIFY_SCRIPT.encode("utf-8")
    audit.record(
        db=db,
        actor=actor,
        action="security.compliance.reported",
        subject=f"compliance:{report['standard']}:{report['period']['label']}",
        payload={
            "sha256": digest,
            "files": {
                "compliance.json": digest,
                "COMPLIANCE.md": hashlib.sha256(markdown).hexdigest(),
                "verify_compliance.py": hashlib.sha256(script).hexdigest(),
            },
            "summary": report["summary"],
        },
    )
    if witness is not None:
        sign_now(db=db, cfg=witness, signer="compliance")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = export(
        db=db,
        out_dir=out_dir / "audit",
        since=report["period"]["from"],
        until=None,
        witness=witness,
        force=force,
    )
    (out_dir / "compliance.json").write_bytes(body)
    (out_dir / "COMPLIANCE.md").write_bytes(markdown)
    (out_dir / "verify_compliance.py").write_bytes(script)
    names = ["compliance.json", "COMPLIANCE.md", "verify_compliance.py"] + [
        f"audit/{p.name}" for p in sorted((out_dir / "audit").iterdir()) if p.is_file()
    ]
    manifest = "".join(
        f"{hashlib.sha256((out_dir / n).read_bytes()).hexdigest()}  {n}\n" for n in names
    )
    (out_dir / "manifest.sha256").write_text(manifest, encoding="utf-8")
    return {
        "out": str(out_dir),
        "sha256": digest,
        "audit_records": res.records,
        "chain_ok": res.chain_ok,
    }


def is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def check_out(out: Path, *, force: bool) -> None:
    """Refuse (exit 2, nothing written) an ``--out`` that cannot take a pack: a directory as the
    audit export checks it, or a ``.zip`` that exists (without ``force``) or cannot be written."""
    import os  # noqa: PLC0415

    from opsbook.audit._export import check_out_dir  # noqa: PLC0415
    from opsbook.errors import UsageError  # noqa: PLC0415

    if not is_zip(out):
        check_out_dir(out, force=force)
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory, not a zip file", field="--out")
    if out.exists() and not force:
        raise UsageError(
            f"--out {out} already exists", hint="choose a new name or pass --force", field="--out"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {parent} is not a writable directory", field="--out")


def _zip(src: Path, dest: Path) -> None:
    import zipfile  # noqa: PLC0415

    tmp = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, f"{src.name}/{p.relative_to(src).as_posix()}")
    tmp.replace(dest)


def verify(pack: Path) -> list[str]:
    """The problems of a pack directory or zip (empty when it verifies): every file against the
    manifest, the audit chain, the report's digest against the one the chain recorded. A file
    that is not a pack is a UsageError naming it."""
    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.secops.compliance_script import verify_pack  # noqa: PLC0415

    if pack.is_file() and is_zip(pack):
        import tempfile  # noqa: PLC0415
        import zipfile  # noqa: PLC0415

        try:
            zf = zipfile.ZipFile(pack)
        except zipfile.BadZipFile as exc:
            raise UsageError(f"{pack} is not a zip file ({exc})", field="PACK") from None
        with zf, tempfile.TemporaryDirectory(prefix="opsbook-verify-") as tmp:
            names = zf.namelist()
            for n in names:
                parts = Path(n).parts
                if n.startswith(("/", "\\")) or ".." in parts:
                    return [f"{n}: unsafe path in the zip"]
            zf.extractall(tmp)
            roots = {Path(n).parts[0] for n in names if Path(n).parts}
            base = Path(tmp) / roots.pop() if len(roots) == 1 else Path(tmp)
            if not (base / "manifest.sha256").is_file():
                raise UsageError(f"{pack} holds no manifest.sha256", field="PACK")
            return verify_pack(str(base))
    if not (pack / "manifest.sha256").is_file():
        raise UsageError(
            f"{pack} is not a compliance pack (no manifest.sha256)",
            field="PACK",
            hint="a directory or .zip written by `opsbook compliance report --out`",
        )
    return verify_pack(str(pack))
