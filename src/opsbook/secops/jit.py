"""Just-in-time privileged access (issue 14, PCI DSS 7.2.x and 8.2.x): a person asks for a role
for a while and a reason; a second person approves; the role counts from the approval until it
expires by itself (:func:`opsbook.users.accounts.jit_roles` stops counting it at
``expires_at``, with nobody sweeping). Everything the person did under the grant is marked in
the audit trail: the record that ends the grant (``access.jit.ended``) lists the ids of every
audit record the person wrote while it was active, and `opsbook access show JIT-N` lists
them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.secops.settings import SecuritySettings

if TYPE_CHECKING:
    from opsbook.db import Database


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ref(grant_id: int) -> str:
    return f"JIT-{grant_id}"


def parse_ref(text: str) -> int:
    raw = text.strip().upper().removeprefix("JIT-")
    if not raw.isdigit():
        raise ValidationError(
            f"{text!r} is not a grant id", field="grant", hint="e.g. JIT-3 (opsbook access grants)"
        )
    return int(raw)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "ref": ref(int(row["id"]))}


def get(db: Database, grant: str | int) -> dict[str, Any]:
    gid = grant if isinstance(grant, int) else parse_ref(grant)
    row = db.one("SELECT * FROM jit_grants WHERE id = ?", (gid,))
    if row is None:
        raise NotFoundError(f"no grant {ref(gid)}", hint="opsbook access grants")
    return _out(row)


def list_grants(
    db: Database, *, username: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    where, args = ["1 = 1"], []
    if username:
        where.append("username = ?")
        args.append(username)
    if state:
        where.append("state = ?")
        args.append(state)
    sql = "SELECT * FROM jit_grants WHERE " + " AND ".join(where) + " ORDER BY id DESC"  # noqa: S608
    return [_out(r) for r in db.query(sql, args)]


def request(
    db: Database,
    *,
    username: str,
    role: str,
    duration_s: float,
    reason: str | None,
    known_roles: Sequence[str],
    settings: SecuritySettings | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    cfg = settings or SecuritySettings()
    if role not in known_roles:
        raise ValidationError(
            f"unknown role {role!r}", field="--role", hint=f"roles are: {', '.join(known_roles)}"
        )
    why = (reason or "").strip()
    if not why:
        raise ValidationError(
            "just-in-time access needs a reason", field="--reason", hint="--reason INC-7"
        )
    if duration_s <= 0 or duration_s > cfg.max_jit:
        raise ValidationError(
            f"--for must be more than 0 and at most {cfg.max_jit / 3600:g}h",
            field="--for",
            hint="e.g. --for 1h ([security] max_jit)",
        )
    stamp = _z(now or datetime.now(UTC))
    with db.transaction():
        gid = db.insert(  # RETURNING id: two requests at once on PostgreSQL get their own
            "INSERT INTO jit_grants (username, role, reason, duration_s, state, requested_at)"
            " VALUES (?, ?, ?, ?, 'pending', ?)",
            (username, role, why, int(duration_s), stamp),
        )
        audit.record(
            db=db,
            actor=username,
            action="access.jit.requested",
            subject=f"grant:{ref(gid)}",
            payload={"role": role, "for_s": int(duration_s), "reason": why},
        )
    return get(db, gid)


def approve(
    db: Database,
    *,
    grant: str,
    actor: str,
    roles: Sequence[str],
    settings: SecuritySettings | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A second person approves: the grant is active from now for its duration."""
    cfg = settings or SecuritySettings()
    g = get(db, grant)
    if g["state"] != "pending":
        raise ConflictError(f"{g['ref']} is {g['state']}, not waiting for approval")
    if actor == g["username"]:
        raise PermissionDenied(
            f"{actor} may not approve their own access (admins included): a second person must",
            field="--as",
        )
    from opsbook.users.roles import expand  # noqa: PLC0415

    if not set(expand(list(roles))) & set(cfg.approve_roles):
        raise PermissionDenied(
            f"{actor} may not approve privileged access",
            field="--as",
            hint=f"roles that may: {', '.join(cfg.approve_roles)} ([security] approve_roles)",
        )
    when = now or datetime.now(UTC)
    ends = when + timedelta(seconds=int(g["duration_s"]))
    with db.transaction():
        if not db.execute(
            "UPDATE jit_grants SET state = 'active', approved_by = ?, approved_at = ?,"
            " expires_at = ? WHERE id = ? AND state = 'pending'",
            (actor, _z(when), _z(ends), g["id"]),
        ):  # another approver or a rejection got there first: no second record
            now_state = get(db, g["id"])["state"]
            raise ConflictError(f"{g['ref']} is {now_state}, not waiting for approval")
        audit.record(
            db=db,
            actor=actor,
            action="access.jit.approved",
            subject=f"grant:{g['ref']}",
            payload={"username": g["username"], "role": g["role"], "expires_at": _z(ends)},
        )
    return get(db, g["id"])


def _end(db: Database, g: dict[str, Any], *, state: str, actor: str, when: datetime) -> bool:
    """End an active grant: the closing audit record lists what was done under it. False when
    another writer (a replica's expiry, a revocation) ended it first: nothing is written."""
    until = min(_z(when), str(g["expires_at"]))
    done = [
        int(r["id"])
        for r in db.query(
            "SELECT id FROM events WHERE actor = ? AND ts >= ? AND ts <= ? ORDER BY id",
            (g["username"], g["approved_at"], until),
        )
    ]
    if not db.execute(
        "UPDATE jit_grants SET state = ?, ended_at = ?, ended_by = ? WHERE id = ?"
        " AND state = 'active'",
        (state, until, actor, g["id"]),
    ):
        return False
    audit.record(
        db=db,
        actor=actor,
        action="access.jit.ended",
        subject=f"grant:{g['ref']}",
        payload={
            "username": g["username"],
            "role": g["role"],
            "how": state,
            "active": [g["approved_at"], until],
            "records_under_grant": done,
        },
    )
    return True


def revoke(db: Database, *, grant: str, actor: str, now: datetime | None = None) -> dict[str, Any]:
    g = get(db, grant)
    when = now or datetime.now(UTC)
    with db.transaction():
        if g["state"] == "pending" and db.execute(
            "UPDATE jit_grants SET state = 'rejected', ended_at = ?, ended_by = ? WHERE id = ?"
            " AND state = 'pending'",
            (_z(when), actor, g["id"]),
        ):
            audit.record(
                db=db,
                actor=actor,
                action="access.jit.rejected",
                subject=f"grant:{g['ref']}",
                payload={"username": g["username"], "role": g["role"]},
            )
        elif g["state"] != "active" or not _end(db, g, state="revoked", actor=actor, when=when):
            now_state = get(db, g["id"])["state"]
            raise ConflictError(f"{g['ref']} is already {now_state}")
    return get(db, g["id"])


def expire(db: Database, *, now: datetime | None = None) -> list[str]:
    """Close the grants whose time is up (they stopped counting at ``expires_at`` already);
    returns the grants closed."""
    when = now or datetime.now(UTC)
    closed = []
    with db.transaction():
        for g in db.query(
            "SELECT * FROM jit_grants WHERE state = 'active' AND expires_at <= ?", (_z(when),)
        ):
            if _end(db, _out(g), state="expired", actor="opsbook", when=when):
                closed.append(ref(int(g["id"])))
    return closed


def records_under(db: Database, grant: str) -> list[dict[str, Any]]:
    """The audit records the grantee wrote while the grant was active."""
    g = get(db, grant)
    if not g["approved_at"]:
        return []
    until = g["ended_at"] or min(_z(datetime.now(UTC)), str(g["expires_at"]))
    return db.query(
        "SELECT id, ts, actor, action, subject FROM events WHERE actor = ? AND ts >= ?"
        " AND ts <= ? ORDER BY id",
        (g["username"], g["approved_at"], until),
    )
