"""Production runs accept only published runbook digests (issue 15), with emergency overrides.

The start guard (:func:`require_published`, one of :func:`opsbook.lifecycle.guards.start_guards`)
refuses a run against a production-class environment (:func:`opsbook.engine.guards.is_production`)
when the runbook's SHA-256 is not one that ``opsbook changes publish`` published — unless an
emergency override for exactly that digest was approved, by someone other than the person who
asked for it, less than ``[changes] override_valid_for`` ago (default 4 hours). A run under an
override is audited as ``execution.start.override`` (the override's id, reason, requester and
approver), and the override counts its uses. Refusals are audited as
``execution.start.denied``. Dry runs are never refused; child runs (``decide``/``on_failure:
run``) are judged by their parent. The gate is on only with ``[changes] require_published =
true`` (``opsbook init`` writes it for new workspaces).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.lifecycle.changes_config import load_settings

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.engine.guards import StartRequest
    from opsbook.workspace import Workspace


@dataclass(frozen=True)
class Override:
    id: int
    runbook_id: str
    content_hash: str
    reason: str
    state: str  # requested | approved | rejected
    requested_by: str
    requested_at: str
    decided_by: str | None
    decided_at: str | None
    expires_at: str | None
    uses: int

    def active(self, now: str) -> bool:
        return self.state == "approved" and self.expires_at is not None and self.expires_at > now

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "active": self.active(utcnow())}


def _override(row: Mapping[str, Any]) -> Override:
    return Override(
        id=int(row["id"]),
        runbook_id=str(row["runbook_id"]),
        content_hash=str(row["content_hash"]),
        reason=str(row["reason"]),
        state=str(row["state"]),
        requested_by=str(row["requested_by"]),
        requested_at=str(row["requested_at"]),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        expires_at=row["expires_at"],
        uses=int(row["uses"]),
    )


def list_overrides(*, db: Database, limit: int = 100) -> list[Override]:
    rows = db.query("SELECT * FROM runbook_overrides ORDER BY id DESC LIMIT ?", (limit,))
    return [_override(r) for r in rows]


def get_override(*, db: Database, override_id: int | str) -> Override:
    text = str(override_id).strip()
    if not text.isdigit():
        raise ValidationError(f"{override_id!r} is not an override id", field="id", hint="a number")
    row = db.one("SELECT * FROM runbook_overrides WHERE id = ?", (int(text),))
    if row is None:
        raise NotFoundError(
            f"no override {text}", hint="list them with `opsbook changes overrides`"
        )
    return _override(row)


def request_override(
    *, db: Database, workspace: Workspace, runbook: str, reason: str, actor: str
) -> Override:
    """Ask to run a runbook's current text (its file as it is now) in production although it
    is not published: someone holding an approving role must approve it."""
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415
    from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

    reason = reason.strip()
    if not reason:
        raise ValidationError(
            "an emergency override needs a reason (the incident or change it is for)",
            field="reason",
            hint="--reason INC-12",
        )
    path = Path(runbook)
    if path.suffix == ".md" and (path.is_file() or (workspace.root / path).is_file()):
        rb = parse_file(path if path.is_file() else workspace.root / path)
    else:
        rb = load_catalogue(workspace.runbooks_dir).get(runbook)
    now = utcnow()
    with db.transaction():
        oid = db.insert(
            "INSERT INTO runbook_overrides (runbook_id, content_hash, reason, state,"
            " requested_by, requested_at) VALUES (?, ?, ?, 'requested', ?, ?)",
            (rb.id, rb.content_hash, reason[:2000], actor, now),
        )
        audit.record(
            db=db,
            actor=actor,
            action="runbook.override.requested",
            subject=f"runbook-override:{oid}",
            payload={"runbook": rb.id, "digest": rb.content_hash, "reason": reason[:2000]},
        )
    return get_override(db=db, override_id=oid)


def decide_override(
    *,
    db: Database,
    workspace: Workspace,
    override_id: int | str,
    actor: str,
    actor_roles: Collection[str],
    reject: bool = False,
) -> Override:
    """Approve (valid for ``[changes] override_valid_for`` from now) or reject an override;
    never by the person who asked for it."""
    from opsbook.users.roles import expand  # noqa: PLC0415

    settings = load_settings(workspace)
    ov = get_override(db=db, override_id=override_id)
    subject = f"runbook-override:{ov.id}"
    why = None
    if actor == ov.requested_by:
        why = "nobody approves their own override"
    elif not set(expand(list(actor_roles))) & set(settings.approve_roles):
        why = "deciding needs one of the roles " + ", ".join(settings.approve_roles)
    if why:
        audit.record(
            db=db,
            actor=actor,
            action="runbook.override.denied",
            subject=subject,
            payload={"runbook": ov.runbook_id, "reason": why},
        )
        raise PermissionDenied(
            f"{actor} may not decide override {ov.id}: {why}",
            hint="ask someone holding " + " or ".join(settings.approve_roles),
        )
    if ov.state != "requested":
        raise ConflictError(
            f"override {ov.id} is {ov.state} already", hint="request a new one if needed"
        )
    now_dt = datetime.now(UTC)
    now = utcnow()
    expires = (
        None
        if reject
        else (now_dt + timedelta(seconds=settings.override_valid_for))
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
    state = "rejected" if reject else "approved"
    with db.transaction():
        n = db.execute(
            "UPDATE runbook_overrides SET state = ?, decided_by = ?, decided_at = ?,"
            " expires_at = ? WHERE id = ? AND state = 'requested'",
            (state, actor, now, expires, ov.id),
        )
        if n != 1:
            raise ConflictError(f"override {ov.id} was decided meanwhile", hint="look again")
        audit.record(
            db=db,
            actor=actor,
            action=f"runbook.override.{state}",
            subject=subject,
            payload={
                "runbook": ov.runbook_id,
                "digest": ov.content_hash,
                "requested_by": ov.requested_by,
                "expires_at": expires,
            },
        )
    return get_override(db=db, override_id=ov.id)


def active_override(*, db: Database, runbook_id: str, content_hash: str) -> Override | None:
    now = utcnow()
    row = db.one(
        "SELECT * FROM runbook_overrides WHERE runbook_id = ? AND content_hash = ?"
        " AND state = 'approved' AND expires_at > ? ORDER BY expires_at DESC LIMIT 1",
        (runbook_id, content_hash, now),
    )
    return _override(row) if row else None


def require_published(request: StartRequest) -> None:
    """The start guard: see the module's docstring."""
    from opsbook.engine.guards import is_production  # noqa: PLC0415
    from opsbook.lifecycle.changes import published  # noqa: PLC0415

    if request.dry_run or request.parent_id is not None:
        return
    if not is_production(request.environment):
        return
    if not load_settings(request.workspace).require_published:
        return
    db, rb = request.db, request.runbook
    if published(db=db, runbook_id=rb.id, content_hash=rb.content_hash) is not None:
        return
    ref = f"{rb.id}#{request.procedure.id}"
    ov = active_override(db=db, runbook_id=rb.id, content_hash=rb.content_hash)
    if ov is not None:
        with db.transaction():
            db.execute("UPDATE runbook_overrides SET uses = uses + 1 WHERE id = ?", (ov.id,))
            audit.record(
                db=db,
                actor=request.user,
                action="execution.start.override",
                subject=ref,
                payload={
                    "environment": request.environment.name,
                    "digest": rb.content_hash,
                    "override": ov.id,
                    "reason": ov.reason,
                    "requested_by": ov.requested_by,
                    "approved_by": ov.decided_by,
                    "expires_at": ov.expires_at,
                },
            )
        return
    audit.record(
        db=db,
        actor=request.user,
        action="execution.start.denied",
        subject=ref,
        payload={
            "environment": request.environment.name,
            "digest": rb.content_hash,
            "reason": "unpublished runbook digest",
            "guard": "changes.require_published",
        },
    )
    raise PermissionDenied(
        f"{rb.id} as it is now (sha256 {rb.content_hash[:12]}) is not a published runbook:"
        f" production environment {request.environment.name} runs only published versions",
        hint=f"propose and publish it (`opsbook changes propose {rb.path.name} --reason …`, "
        "reviews, `changes test`, `changes approve`, `changes publish`), restore the published"
        f" text, or in an emergency `opsbook changes override {rb.id} --reason INC-…` approved"
        " by a second person",
    )
