"""Runbook change management: the seed's seven steps as a proposal with states.

1. **Identify** and 2. **draft**: ``propose`` records the reason (the need) and the runbook
   file's text and SHA-256 as it stands (the digest executions record as ``runbook_hash``).
   A file that does not lint (any error finding) is refused.
3. **Review**: a technical and an operational review by two different people, neither of them
   the proposer (admins included), each holding a reviewing role (``[changes]`` in
   opsbook.toml). Either may reject.
4. **Test**: a succeeded, non-dry run of exactly the proposed digest on the sandbox or a
   staging-class environment, linked as evidence.
5. **Approve**: by someone holding an approving role who did not propose the change.
6. **Publish**: the file is committed to git and tagged ``runbook/<id>/v<N>``; production-class
   runs accept only published digests (:mod:`opsbook.lifecycle.change_guard`).
7. **Train**: the people who must know acknowledge the change; when all have, it is trained.

States move along :data:`TRANSITIONS` only; every move is audited (``runbook.change.*``) in the
same transaction as the change; bad input changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.errors import (
    ConflictError,
    Location,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from opsbook.lifecycle import gitrepo
from opsbook.lifecycle.changes_config import ChangeSettings, load_settings
from opsbook.lifecycle.changes_model import (
    OPEN_STATES,
    REVIEW_KINDS,
    TRANSITIONS,
    Ack,
    Change,
    ChangeState,
    Publication,
    Review,
    check_transition,
    get_change,
    latest_publication,
    list_changes,
    publications,
    published,
)

__all__ = [
    "OPEN_STATES",
    "REVIEW_KINDS",
    "TRANSITIONS",
    "Ack",
    "Change",
    "ChangeState",
    "Proposed",
    "Publication",
    "Review",
    "acknowledge",
    "approve",
    "check_transition",
    "get_change",
    "is_test_environment",
    "latest_publication",
    "list_changes",
    "propose",
    "publications",
    "publish",
    "published",
    "record_test",
    "review",
    "withdraw",
]

S = ChangeState

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace


@dataclass(frozen=True)
class Proposed:
    change: Change
    git_initialised: bool
    warnings: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------------------ writing
def _subject(cid: int) -> str:
    return f"runbook-change:{cid}"


def _move(
    db: Database,
    change: Change,
    to: ChangeState,
    *,
    actor: str,
    action: str,
    sets: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Check the transition, update the row (only if it is still in the state read) and audit
    it, in the caller's transaction."""
    check_transition(change.state, to, change_id=change.id)
    cols = {"state": str(to), "updated_at": utcnow(), **(sets or {})}
    assignments = ", ".join(f"{k} = ?" for k in cols)
    n = db.execute(
        f"UPDATE runbook_changes SET {assignments} WHERE id = ? AND state = ?",  # noqa: S608 - column names are ours
        (*cols.values(), change.id, str(change.state)),
    )
    if n != 1:
        raise ConflictError(
            f"change {change.id} changed meanwhile",
            hint="look at it again and retry",
            retryable=True,
        )
    audit.record(
        db=db,
        actor=actor,
        action=action,
        subject=_subject(change.id),
        payload={
            "runbook": change.runbook_id,
            "from": str(change.state),
            "to": str(to),
            **(payload or {}),
        },
    )


def _deny(
    db: Database, *, actor: str, change: Change, what: str, why: str, hint: str
) -> PermissionDenied:
    audit.record(
        db=db,
        actor=actor,
        action="runbook.change.denied",
        subject=_subject(change.id),
        payload={"runbook": change.runbook_id, "attempted": what, "reason": why},
    )
    return PermissionDenied(f"{actor} may not {what} change {change.id}: {why}", hint=hint)


def _holds(roles: Collection[str], wanted: Sequence[str]) -> bool:
    from opsbook.users.roles import expand  # noqa: PLC0415

    return bool(set(expand(list(roles))) & set(wanted))


def _runbook_file(ws: Workspace, path: Path) -> tuple[Path, str]:
    """The file, resolved, and its path relative to the workspace root (it must be a runbook
    of the workspace)."""
    full = (path if path.is_absolute() else Path.cwd() / path).resolve()
    runbooks = ws.runbooks_dir.resolve()
    if not full.is_relative_to(runbooks) or full.suffix != ".md":
        raise ValidationError(
            f"{path} is not a runbook of this workspace",
            field="runbook_file",
            hint=f"propose a Markdown file under {runbooks}",
        )
    if not full.is_file():
        raise NotFoundError(f"no runbook file {path}", hint="check the path")
    return full, full.relative_to(ws.root.resolve()).as_posix()


def propose(
    *,
    db: Database,
    workspace: Workspace,
    path: Path,
    reason: str,
    actor: str,
    today: date | None = None,
) -> Proposed:
    """Steps 1 and 2: record the need and the draft (the file as it is now). The file must
    lint without errors and differ from the published version; the workspace is put under git
    (``git init``) if it is not in a repository yet."""
    from opsbook.runbooks.lint import format_finding, lint_paths  # noqa: PLC0415
    from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

    reason = reason.strip()
    if not reason:
        raise ValidationError(
            "a change needs a reason (the need it answers)",
            field="reason",
            hint="--reason 'what gap or improvement this is for, e.g. INC-12 review'",
        )
    full, rel = _runbook_file(workspace, path)
    findings = lint_paths([full], today=today or date.today())
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        first = errors[0]
        raise ValidationError(
            f"the runbook does not lint: {len(errors)} error(s), first:"
            f" {first.code} {first.message}",
            location=Location(str(first.path), first.line, first.col),
            hint="fix what `opsbook lint " + rel + "` reports, then propose again",
        )
    rb = parse_file(full)
    settings_check = load_settings(workspace)  # a bad [changes] section is refused up front
    del settings_check
    latest = latest_publication(db=db, runbook_id=rb.id)
    if latest is not None and latest.content_hash == rb.content_hash:
        raise ValidationError(
            f"{rel} is unchanged since {latest.git_tag}",
            field="runbook_file",
            hint="edit the runbook first; a proposal carries a change",
        )
    dup = next(
        (
            c
            for c in list_changes(db=db, state="open", runbook_id=rb.id)
            if c.content_hash == rb.content_hash
        ),
        None,
    )
    if dup is not None:
        raise ConflictError(
            f"change {dup.id} already proposes exactly this text of {rel}",
            hint=f"follow it with `opsbook changes show {dup.id}`",
        )
    initialised = gitrepo.ensure_repository(workspace.root)
    warnings = tuple(format_finding(f) for f in findings if f.severity != "error")
    now = utcnow()
    with db.transaction():
        cid = db.insert(
            "INSERT INTO runbook_changes (runbook_id, path, content_hash, content, base_version,"
            " reason, state, proposed_by, created_at, updated_at, lint_warnings)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rb.id,
                rel,
                rb.content_hash,
                rb.source,
                latest.version if latest else None,
                reason[:2000],
                str(S.DRAFT),
                actor,
                now,
                now,
                json.dumps(list(warnings)),
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="runbook.change.proposed",
            subject=_subject(cid),
            payload={
                "runbook": rb.id,
                "path": rel,
                "digest": rb.content_hash,
                "base_version": latest.version if latest else None,
                "reason": reason[:2000],
                "git_initialised": initialised,
            },
        )
    return Proposed(get_change(db=db, change_id=cid), initialised, warnings)


def review(
    *,
    db: Database,
    workspace: Workspace,
    change_id: int | str,
    kind: str,
    actor: str,
    actor_roles: Collection[str],
    approve: bool = True,
    comment: str = "",
) -> Change:
    """Step 3: one technical or operational review. Both approved → ``reviewed``; a rejection
    → ``rejected`` (propose again after fixing)."""
    if kind not in REVIEW_KINDS:
        raise ValidationError(
            f"no review kind {kind!r}", field="kind", hint="technical or operational"
        )
    comment = comment.strip()
    if not approve and not comment:
        raise ValidationError(
            "a rejection needs a comment saying what to fix", field="comment", hint="--comment TEXT"
        )
    settings = load_settings(workspace)
    change = get_change(db=db, change_id=change_id)
    # Checks first, outside the transaction: a refusal's audit record must stay.
    if change.state is not S.DRAFT:
        raise ConflictError(
            f"change {change.id} is {change.state}: reviews are given to drafts",
            hint=f"see `opsbook changes show {change.id}`",
        )
    if change.review(kind) is not None:
        done = change.review(kind)
        assert done is not None
        raise ConflictError(
            f"change {change.id} has its {kind} review already"
            f" ({done.decision} by {done.reviewer})",
            hint="each change gets one technical and one operational review",
        )
    if actor == change.proposed_by:
        raise _deny(
            db,
            actor=actor,
            change=change,
            what=f"give the {kind} review of",
            why="nobody reviews their own change",
            hint="ask a colleague holding the reviewing role",
        )
    other = change.review("operational" if kind == "technical" else "technical")
    if other is not None and other.reviewer == actor:
        raise _deny(
            db,
            actor=actor,
            change=change,
            what=f"give the {kind} review of",
            why=f"they gave the {other.kind} review; the two reviews need two people",
            hint="ask a second reviewer",
        )
    wanted = settings.technical_roles if kind == "technical" else settings.operational_roles
    if not _holds(actor_roles, wanted):
        raise _deny(
            db,
            actor=actor,
            change=change,
            what=f"give the {kind} review of",
            why=f"the {kind} review needs one of the roles {', '.join(wanted)}",
            hint=f"[changes] {kind}_roles in opsbook.toml says who reviews",
        )
    decision = "approved" if approve else "rejected"
    now = utcnow()
    with db.transaction():
        if get_change(db=db, change_id=change.id).state is not S.DRAFT:
            raise ConflictError(
                f"change {change.id} changed meanwhile", hint="look at it again", retryable=True
            )
        db.execute(
            "INSERT INTO runbook_change_reviews (change_id, kind, reviewer, decision, comment, ts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (change.id, kind, actor, decision, comment[:4000], now),
        )
        audit.record(
            db=db,
            actor=actor,
            action=f"runbook.change.review.{decision}",
            subject=_subject(change.id),
            payload={"runbook": change.runbook_id, "kind": kind, "comment": comment[:4000]},
        )
        if not approve:
            _move(
                db,
                change,
                S.REJECTED,
                actor=actor,
                action="runbook.change.rejected",
                sets={"closed_reason": f"{kind} review: {comment[:2000]}"},
                payload={"by": "review", "kind": kind},
            )
        else:
            after = get_change(db=db, change_id=change.id)
            if all(
                (r := after.review(k)) is not None and r.decision == "approved"
                for k in REVIEW_KINDS
            ):
                _move(db, after, S.REVIEWED, actor=actor, action="runbook.change.reviewed")
    return get_change(db=db, change_id=change.id)


def is_test_environment(workspace: Workspace, name: str, settings: ChangeSettings) -> bool:
    """The sandbox, a staging-class environment, or one named in ``[changes]
    test_environments``; never a production-class one."""
    from opsbook.engine.guards import is_production  # noqa: PLC0415
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    try:
        env = load_environment(workspace, name)
    except OpsbookError:
        return False  # an environment that is gone cannot be judged
    if is_production(env):
        return False
    declared = env.data.get("class")
    if declared is not None and str(declared) in ("sandbox", "staging"):
        return True
    return name in settings.test_environments


def _test_candidates(db: Database, change: Change) -> list[dict[str, Any]]:
    return db.query(
        "SELECT id, environment, state, dry_run, runbook_id, runbook_hash FROM executions"
        " WHERE runbook_id = ? AND runbook_hash = ? AND state = 'succeeded' AND dry_run = 0"
        " ORDER BY created_at DESC LIMIT 100",
        (change.runbook_id, change.content_hash),
    )


def record_test(
    *,
    db: Database,
    workspace: Workspace,
    change_id: int | str,
    actor: str,
    execution_id: str | None = None,
) -> Change:
    """Step 4: link a succeeded run of exactly the proposed digest on a test environment (the
    newest one when ``execution_id`` is None)."""
    from opsbook.engine import _journal as journal  # noqa: PLC0415

    settings = load_settings(workspace)
    change = get_change(db=db, change_id=change_id)
    if execution_id:
        run = journal.get_execution(db=db, execution_id=execution_id)
        problems = []
        if run.runbook_id != change.runbook_id or run.runbook_hash != change.content_hash:
            problems.append(
                f"it ran {run.runbook_id} with digest {run.runbook_hash[:12]}, not the proposed"
                f" {change.runbook_id} digest {change.content_hash[:12]}"
            )
        if run.dry_run:
            problems.append("it was a dry run")
        if str(run.state) != "succeeded":
            problems.append(f"it is {run.state}, not succeeded")
        if not is_test_environment(workspace, run.environment, settings):
            problems.append(f"{run.environment} is not the sandbox or a staging environment")
        if problems:
            raise ValidationError(
                f"execution {run.id} is no test of change {change.id}: " + "; ".join(problems),
                field="execution",
                hint="run the proposed file on the sandbox (opsbook run RUNBOOK#PROCEDURE --env"
                " sandbox) and record that run",
            )
        found = (run.id, run.environment)
    else:
        rows = [
            r
            for r in _test_candidates(db, change)
            if is_test_environment(workspace, str(r["environment"]), settings)
        ]
        if not rows:
            raise ValidationError(
                f"no succeeded run of change {change.id}'s digest {change.content_hash[:12]} on"
                " the sandbox or a staging environment",
                field="execution",
                hint=f"with {change.path} as proposed, run `opsbook run"
                f" {change.runbook_id}#PROCEDURE --env sandbox`,"
                f" then `opsbook changes test {change.id}`",
            )
        found = (str(rows[0]["id"]), str(rows[0]["environment"]))
    with db.transaction():
        current = get_change(db=db, change_id=change.id)
        if current.state is S.DRAFT:
            raise ConflictError(
                f"change {change.id} is still waiting for its reviews",
                hint="the seed's order is review, then test: ask for the technical and"
                " operational reviews",
            )
        _move(
            db,
            current,
            S.TESTED,
            actor=actor,
            action="runbook.change.tested",
            sets={
                "test_execution_id": found[0],
                "test_environment": found[1],
                "tested_by": actor,
                "tested_at": utcnow(),
            },
            payload={"execution": found[0], "environment": found[1]},
        )
    return get_change(db=db, change_id=change.id)


def _no_test(change: Change, what: str) -> ValidationError:
    return ValidationError(
        f"change {change.id} has no recorded test run: it cannot be {what}",
        field="test",
        hint=f"run it on the sandbox, then `opsbook changes test {change.id}`",
    )


def approve(
    *,
    db: Database,
    workspace: Workspace,
    change_id: int | str,
    actor: str,
    actor_roles: Collection[str],
    reject: bool = False,
    comment: str = "",
) -> Change:
    """Step 5: the operations approval of a reviewed and tested change (not by its proposer)."""
    settings = load_settings(workspace)
    comment = comment.strip()
    if reject and not comment:
        raise ValidationError(
            "a rejection needs a comment saying why", field="comment", hint="--comment TEXT"
        )
    change = get_change(db=db, change_id=change_id)
    # Checks first, outside the transaction: a refusal's audit record must stay.
    if change.test_execution_id is None and change.state in (S.DRAFT, S.REVIEWED):
        raise _no_test(change, "approved")
    if actor == change.proposed_by:
        raise _deny(
            db,
            actor=actor,
            change=change,
            what="approve",
            why="nobody approves their own change",
            hint="ask someone holding " + " or ".join(settings.approve_roles),
        )
    if not _holds(actor_roles, settings.approve_roles):
        raise _deny(
            db,
            actor=actor,
            change=change,
            what="approve",
            why="approving needs one of the roles " + ", ".join(settings.approve_roles),
            hint="[changes] approve_roles in opsbook.toml says who approves",
        )
    with db.transaction():
        if reject:
            _move(
                db,
                change,
                S.REJECTED,
                actor=actor,
                action="runbook.change.rejected",
                sets={"closed_reason": f"approval refused: {comment[:2000]}"},
                payload={"by": "approval", "comment": comment[:2000]},
            )
        else:
            _move(
                db,
                change,
                S.APPROVED,
                actor=actor,
                action="runbook.change.approved",
                sets={"approved_by": actor, "approved_at": utcnow()},
                payload={"comment": comment[:2000]},
            )
    return get_change(db=db, change_id=change.id)


def publish(
    *,
    db: Database,
    workspace: Workspace,
    change_id: int | str,
    actor: str,
    actor_roles: Collection[str],
    inform: Sequence[str] = (),
) -> Change:
    """Step 6: commit the runbook file and tag it ``runbook/<id>/v<N>``. The file must still be
    exactly the proposed text, and no other version may have been published since the proposal
    was made. ``inform``: the people who must acknowledge it (step 7)."""
    settings = load_settings(workspace)
    change = get_change(db=db, change_id=change_id)
    if change.test_execution_id is None:
        raise _no_test(change, "published")
    if change.state is not S.APPROVED:
        raise ConflictError(
            f"change {change.id} is {change.state}: only an approved change is published",
            hint=f"see `opsbook changes show {change.id}`",
        )
    if actor != change.proposed_by and not _holds(actor_roles, settings.approve_roles):
        raise _deny(
            db,
            actor=actor,
            change=change,
            what="publish",
            why="the proposer or someone holding "
            + " or ".join(settings.approve_roles)
            + " publishes",
            hint="ask the proposer or an approver",
        )
    names = tuple(dict.fromkeys(n.strip() for n in inform if n.strip()))
    full = (workspace.root / change.path).resolve()
    try:
        data = full.read_bytes()
    except OSError:
        data = None
    import hashlib  # noqa: PLC0415

    if data is None or hashlib.sha256(data).hexdigest() != change.content_hash:
        raise ConflictError(
            f"{change.path} is not the text proposed in change {change.id}"
            + (" (the file is gone)" if data is None else " (it was edited since)"),
            hint=f"restore it (`opsbook changes show {change.id} --content > {change.path}`)"
            " or propose the new text",
        )
    latest = latest_publication(db=db, runbook_id=change.runbook_id)
    if (latest.version if latest else None) != change.base_version:
        base = f"v{change.base_version}" if change.base_version else "no version"
        raise ConflictError(
            f"{latest.git_tag if latest else 'a version'} was published after change {change.id}"
            f" was proposed from {base}",
            hint="merge the published text into the runbook and propose again",
        )
    root = workspace.root
    gitrepo.ensure_repository(root)
    relpath = gitrepo.relative_to_top(root, full)
    version = (
        max([0, *gitrepo.versions(root, change.runbook_id), latest.version if latest else 0]) + 1
    )
    tech, ops = change.review("technical"), change.review("operational")
    trailers = [
        ("Runbook-Change", str(change.id)),
        ("Runbook-Digest", change.content_hash),
        ("Proposed-by", change.proposed_by),
        ("Technical-review", tech.reviewer if tech else "-"),
        ("Operational-review", ops.reviewer if ops else "-"),
        ("Tested-by-execution", f"{change.test_execution_id} ({change.test_environment})"),
        ("Approved-by", change.approved_by or "-"),
        ("Published-by", actor),
    ]
    first_line = change.reason.splitlines()[0][:60] if change.reason else "update"
    commit, tag = gitrepo.publish_file(
        root,
        relpath=relpath,
        runbook_id=change.runbook_id,
        version=version,
        message=f"Publish runbook {change.runbook_id} v{version}: {first_line}",
        trailers=trailers,
    )
    now = utcnow()
    with db.transaction():
        current = get_change(db=db, change_id=change.id)
        db.execute(
            "INSERT INTO runbook_publications (runbook_id, version, content_hash, path, git_commit,"
            " git_tag, change_id, published_by, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                change.runbook_id,
                version,
                change.content_hash,
                relpath,
                commit,
                tag,
                change.id,
                actor,
                now,
            ),
        )
        _move(
            db,
            current,
            S.PUBLISHED,
            actor=actor,
            action="runbook.change.published",
            sets={
                "published_by": actor,
                "published_at": now,
                "version": version,
                "git_commit": commit,
                "git_tag": tag,
                "inform": json.dumps(list(names)),
            },
            payload={
                "version": version,
                "tag": tag,
                "commit": commit,
                "digest": change.content_hash,
                "inform": list(names),
            },
        )
    return get_change(db=db, change_id=change.id)


def acknowledge(*, db: Database, change_id: int | str, person: str, note: str = "") -> Change:
    """Step 7: ``person`` was informed of / trained on the published change. When everyone in
    its ``inform`` list has acknowledged (or, without a list, at the first acknowledgement) the
    change is ``trained``."""
    with db.transaction():
        change = get_change(db=db, change_id=change_id)
        if change.state not in (S.PUBLISHED, S.TRAINED):
            raise ConflictError(
                f"change {change.id} is {change.state}: only a published change is acknowledged",
                hint=f"see `opsbook changes show {change.id}`",
            )
        if any(a.person == person for a in change.acks):
            raise ConflictError(
                f"{person} acknowledged change {change.id} already", hint="nothing to do"
            )
        db.execute(
            "INSERT INTO runbook_change_acks (change_id, person, note, ts) VALUES (?, ?, ?, ?)",
            (change.id, person, note.strip()[:2000], utcnow()),
        )
        audit.record(
            db=db,
            actor=person,
            action="runbook.change.acknowledged",
            subject=_subject(change.id),
            payload={"runbook": change.runbook_id, "version": change.version, "note": note[:2000]},
        )
        after = get_change(db=db, change_id=change.id)
        if after.state is S.PUBLISHED and not after.pending_acks:
            _move(
                db,
                after,
                S.TRAINED,
                actor=person,
                action="runbook.change.trained",
                sets={"trained_at": utcnow()},
                payload={"acknowledged_by": [a.person for a in after.acks]},
            )
    return get_change(db=db, change_id=change.id)


def withdraw(*, db: Database, change_id: int | str, actor: str, reason: str) -> Change:
    """The proposer takes an open change back."""
    change = get_change(db=db, change_id=change_id)
    if actor != change.proposed_by:
        raise _deny(
            db,
            actor=actor,
            change=change,
            what="withdraw",
            why=f"only its proposer ({change.proposed_by}) withdraws a change",
            hint="a reviewer rejects instead (`opsbook changes review ID --reject`)",
        )
    with db.transaction():
        _move(
            db,
            change,
            S.WITHDRAWN,
            actor=actor,
            action="runbook.change.withdrawn",
            sets={"closed_reason": reason.strip()[:2000] or "withdrawn"},
        )
    return get_change(db=db, change_id=change.id)
