"""Access review campaigns (issue 14, PCI DSS 7.2.4, 7.2.5.1, 8.2.6): every grant is listed for a
reviewer who keeps or revokes it; closing the campaign applies the revocations and its result
is evidence.

Grants come from opsbook itself (account roles, active API tokens), the sandbox platform's
database and operator accounts (``iam.json``), and recorded exports of Kubernetes RBAC
(``kubectl get rolebindings,clusterrolebindings -A -o json``) and Azure role assignments
(``az role assignment list --all -o json``). Revocations in opsbook and on the sandbox are
applied; for the recorded exports (no cluster or subscription here) the command that revokes
the grant is recorded as the action to take, and said so."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ref(campaign_id: int) -> str:
    return f"AR-{campaign_id}"


def parse_ref(text: str) -> int:
    raw = text.strip().upper().removeprefix("AR-")
    if not raw.isdigit():
        raise ValidationError(
            f"{text!r} is not a campaign id",
            field="campaign",
            hint="e.g. AR-1 (opsbook access review list)",
        )
    return int(raw)


@dataclass(frozen=True)
class Grant:
    kind: str  # opsbook-role | opsbook-token | db-role | k8s-binding | azure-assignment
    principal: str
    grant: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict)


def opsbook_grants(db: Database, *, now: datetime) -> list[Grant]:
    out = [
        Grant(
            "opsbook-role",
            str(r["username"]),
            str(r["role"]),
            "opsbook accounts",
            {
                "granted_by": r["granted_by"],
                "granted_at": r["granted_at"],
                "last_login_at": r["last_login_at"],
                "disabled": bool(r["disabled"]),
            },
        )
        for r in db.query(
            "SELECT u.username, r.role, r.granted_by, r.granted_at, u.last_login_at, u.disabled"
            " FROM user_roles r JOIN users u ON u.id = r.user_id ORDER BY u.username, r.role"
        )
    ]
    out += [
        Grant(
            "opsbook-token",
            str(t["username"]),
            f"token {t['id']} ({t['name']}): {', '.join(json.loads(t['scopes']))}",
            "opsbook API tokens",
            {"token": t["id"], "expires_at": t["expires_at"], "last_used_at": t["last_used_at"]},
        )
        for t in db.query(
            "SELECT t.id, t.name, t.scopes, t.expires_at, t.last_used_at, u.username"
            " FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.revoked_at IS NULL AND t.expires_at > ? ORDER BY t.id",
            (_z(now),),
        )
    ]
    return out


def sandbox_grants(data_dir: Path) -> list[Grant]:
    from opsbook.sandbox import iam  # noqa: PLC0415

    return [
        Grant(
            "db-role",
            str(a["name"]),
            role,
            "sandbox database roles (iam.json)",
            {"kind": a.get("kind"), "last_login": a.get("last_login")},
        )
        for a in iam.load(data_dir)
        if not a.get("disabled")
        for role in a.get("roles", [])
    ]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}", field="--import") from None
    except ValueError as exc:
        raise ValidationError(f"{path} is not JSON: {exc}", field="--import") from None


def kubernetes_grants(path: Path) -> list[Grant]:
    """``kubectl get rolebindings,clusterrolebindings -A -o json`` (a recorded export)."""
    doc = _load_json(path)
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValidationError(f"{path}: no items list (a kubectl -o json export)", field="items")
    out = []
    for i, item in enumerate(items):
        meta, role = item.get("metadata") or {}, item.get("roleRef") or {}
        if not meta.get("name") or not role.get("name"):
            raise ValidationError(
                f"{path}: items[{i}] has no metadata.name or roleRef.name", field=f"items[{i}]"
            )
        binding = f"{item.get('kind', 'RoleBinding')}/{meta['name']}"
        ns = meta.get("namespace")
        for s in item.get("subjects") or []:
            out.append(
                Grant(
                    "k8s-binding",
                    f"{s.get('kind', 'User')}:{s.get('name')}",
                    f"{role.get('kind', 'Role')}/{role['name']}"
                    + (f" in {ns}" if ns else " (cluster)"),
                    f"kubernetes export {path.name}",
                    {"binding": binding, "namespace": ns},
                )
            )
    return out


def azure_grants(path: Path) -> list[Grant]:
    """``az role assignment list --all -o json`` (a recorded export)."""
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise ValidationError(f"{path}: expected a JSON list of role assignments", field="[]")
    out = []
    for i, a in enumerate(doc):
        if not isinstance(a, dict) or not a.get("roleDefinitionName") or not a.get("scope"):
            raise ValidationError(
                f"{path}: [{i}] has no roleDefinitionName or scope", field=f"[{i}]"
            )
        out.append(
            Grant(
                "azure-assignment",
                str(a.get("principalName") or a.get("principalId")),
                f"{a['roleDefinitionName']} on {a['scope']}",
                f"azure export {path.name}",
                {"assignment_id": a.get("id"), "principal_type": a.get("principalType")},
            )
        )
    return out


def _reviewer_for(principal: str, reviewers: Sequence[str]) -> str:
    """The first reviewer who is not the person whose access it is (no self-review)."""
    name = principal.split(":", 1)[-1]
    for r in reviewers:
        if r != name:
            return r
    raise ValidationError(
        f"no reviewer for {principal}'s access other than themselves",
        field="--reviewer",
        hint="name a second reviewer: --reviewer alice --reviewer bob",
    )


def start(
    db: Database,
    *,
    name: str,
    environment: str,
    reviewers: Sequence[str],
    actor: str,
    grants: Sequence[Grant],
    due_days: int = 14,
    now: datetime | None = None,
) -> dict[str, Any]:
    if not reviewers:
        raise ValidationError("a campaign needs a reviewer", field="--reviewer")
    when = now or datetime.now(UTC)
    with db.transaction():
        db.execute(
            "INSERT INTO access_campaigns (name, environment, state, created_by, created_at,"
            " due_at) VALUES (?, ?, 'open', ?, ?, ?)",
            (name, environment, actor, _z(when), _z(when + timedelta(days=due_days))),
        )
        row = db.one("SELECT MAX(id) AS id FROM access_campaigns")
        assert row is not None
        cid = int(row["id"])
        for g in grants:
            db.execute(
                "INSERT INTO access_review_items (campaign_id, kind, principal, grant_name,"
                " source, detail, reviewer) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    g.kind,
                    g.principal,
                    g.grant,
                    g.source,
                    json.dumps(g.detail, default=str),
                    _reviewer_for(g.principal, reviewers),
                ),
            )
        audit.record(
            db=db,
            actor=actor,
            action="access.review.started",
            subject=f"campaign:{ref(cid)}",
            payload={
                "name": name,
                "environment": environment,
                "grants": len(grants),
                "reviewers": list(reviewers),
                "sources": sorted({g.source for g in grants}),
            },
        )
    return get(db, ref(cid))


def get(db: Database, campaign: str) -> dict[str, Any]:
    cid = parse_ref(campaign)
    row = db.one("SELECT * FROM access_campaigns WHERE id = ?", (cid,))
    if row is None:
        raise NotFoundError(f"no access review {ref(cid)}", hint="opsbook access review list")
    items = db.query("SELECT * FROM access_review_items WHERE campaign_id = ? ORDER BY id", (cid,))
    for it in items:
        it["detail"] = json.loads(it["detail"])
    out = {**row, "ref": ref(cid), "items": items}
    out["result"] = json.loads(row["result"]) if row["result"] else None
    out["pending"] = sum(1 for it in items if it["decision"] is None)
    return out


def list_campaigns(db: Database) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT c.*, (SELECT COUNT(*) FROM access_review_items i WHERE i.campaign_id = c.id)"
        " AS items, (SELECT COUNT(*) FROM access_review_items i WHERE i.campaign_id = c.id"
        " AND i.decision IS NULL) AS pending FROM access_campaigns c ORDER BY c.id DESC"
    )
    return [{**r, "ref": ref(int(r["id"]))} for r in rows]


def decide(
    db: Database,
    *,
    campaign: str,
    item: int,
    decision: str,
    actor: str,
    note: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if decision not in ("keep", "revoke"):
        raise ValidationError(
            f"unknown decision {decision!r}", field="decision", hint="keep or revoke"
        )
    c = get(db, campaign)
    if c["state"] != "open":
        raise ConflictError(f"{c['ref']} is closed")
    found = [it for it in c["items"] if int(it["id"]) == item]
    if not found:
        raise NotFoundError(
            f"{c['ref']} has no item {item}", hint=f"opsbook access review show {c['ref']}"
        )
    it = found[0]
    if it["principal"].split(":", 1)[-1] == actor:
        raise PermissionDenied(f"{actor} may not review their own access", field="--as")
    if it["reviewer"] != actor:
        raise PermissionDenied(
            f"item {item} is for {it['reviewer']} to review, not {actor}", field="--as"
        )
    stamp = _z(now or datetime.now(UTC))
    with db.transaction():
        db.execute(
            "UPDATE access_review_items SET decision = ?, decided_by = ?, decided_at = ?,"
            " note = ? WHERE id = ?",
            (decision, actor, stamp, note, item),
        )
        audit.record(
            db=db,
            actor=actor,
            action="access.review.decided",
            subject=f"campaign:{c['ref']}",
            payload={
                "item": item,
                "kind": it["kind"],
                "principal": it["principal"],
                "grant": it["grant_name"],
                "decision": decision,
                "note": note,
            },
        )
    return get(db, c["ref"])


def _apply(db: Database, it: dict[str, Any], *, actor: str, data_dir: Path | None) -> str:
    kind, principal, detail = it["kind"], it["principal"], it["detail"]
    if kind == "opsbook-role":
        from opsbook.users.accounts import revoke_role  # noqa: PLC0415

        revoke_role(db=db, actor=actor, username=principal, role=it["grant_name"])
        return f"revoked role {it['grant_name']} from {principal}"
    if kind == "opsbook-token":
        from opsbook.users.tokens import revoke_token  # noqa: PLC0415

        revoke_token(db=db, actor=actor, token_id=str(detail["token"]))
        return f"revoked token {detail['token']}"
    if kind == "db-role":
        if data_dir is None:
            return "not applied: no sandbox for this environment"
        from opsbook.sandbox import iam  # noqa: PLC0415

        held = iam.revoke_role(data_dir, name=principal, role=it["grant_name"])
        return f"revoked {it['grant_name']} from {principal}" if held else "already gone"
    if kind == "k8s-binding":
        return "to run (recorded export, no cluster here): " + shlex.join(
            ["kubectl", "delete", str(detail["binding"]).lower()]
            + (["-n", str(detail["namespace"])] if detail.get("namespace") else [])
        )
    if kind == "azure-assignment":
        return "to run (recorded export, no subscription here): " + shlex.join(
            ["az", "role", "assignment", "delete", "--ids", str(detail.get("assignment_id"))]
        )
    return "not applied: unknown kind"


def close(
    db: Database,
    *,
    campaign: str,
    actor: str,
    data_dir: Path | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply every revocation and close: the result (kept, revoked, applied) is evidence."""
    c = get(db, campaign)
    if c["state"] != "open":
        raise ConflictError(f"{c['ref']} is already closed")
    if c["pending"]:
        raise ConflictError(
            f"{c['ref']} has {c['pending']} grant(s) nobody decided yet",
            hint=f"opsbook access review show {c['ref']}",
        )
    stamp = _z(now or datetime.now(UTC))
    applied = []
    for it in c["items"]:
        if it["decision"] != "revoke":
            continue
        try:
            outcome = _apply(db, it, actor=actor, data_dir=data_dir)
        except (ConflictError, NotFoundError) as exc:
            outcome = f"not applied: {exc.message}"
        applied.append({"item": it["id"], "principal": it["principal"], "result": outcome})
        with db.transaction():
            db.execute(
                "UPDATE access_review_items SET applied_at = ?, apply_result = ? WHERE id = ?",
                (stamp, outcome, it["id"]),
            )
            audit.record(
                db=db,
                actor=actor,
                action="access.review.revoked",
                subject=f"campaign:{c['ref']}",
                payload={"item": it["id"], "principal": it["principal"], "result": outcome},
            )
    result = {
        "grants": len(c["items"]),
        "kept": sum(1 for it in c["items"] if it["decision"] == "keep"),
        "revoked": len(applied),
        "applied": applied,
        "reviewers": sorted({str(it["decided_by"]) for it in c["items"]}),
    }
    with db.transaction():
        db.execute(
            "UPDATE access_campaigns SET state = 'closed', closed_by = ?, closed_at = ?,"
            " result = ? WHERE id = ?",
            (actor, stamp, json.dumps(result), parse_ref(c["ref"])),
        )
        audit.record(
            db=db,
            actor=actor,
            action="access.review.closed",
            subject=f"campaign:{c['ref']}",
            payload=result,
        )
    return get(db, c["ref"])
