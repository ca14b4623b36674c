"""Console pages for runbook changes (issue 15): /changes lists proposals, published versions,
emergency overrides, reviews and drills due; /changes/{id} shows one change with its seven
steps, reviews, test evidence and diff, and the forms the signed-in person may use (review,
record the test run, approve, publish, acknowledge, withdraw).

Proposing stays on the command line (``opsbook changes propose FILE``): a proposal is a file in
the workspace, which the console does not edit. Forms follow opsbook.web.actions: CSRF checked,
``executions:approve`` required (viewers and auditors change nothing; acknowledging a published
change needs only ``runbooks:read``), the domain's own rules
(reviewing roles, nobody reviews or approves their own change) refuse with a flash; every
change and refusal is audited by opsbook.lifecycle.changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError
from opsbook.users.access import Principal, require
from opsbook.users.errors import AuthenticationError
from opsbook.web.forms import Form, form_principal
from opsbook.web.render import render, with_flash

router = APIRouter(include_in_schema=False)
READ = "runbooks:read"
#: Every role but viewer and auditor holds it (approver-only people review and approve).
ACT = "executions:approve"


@router.get("/changes", response_class=HTMLResponse)
async def changes_page(request: Request) -> Response:
    from opsbook.audit._log import utcnow  # noqa: PLC0415
    from opsbook.lifecycle.change_guard import list_overrides  # noqa: PLC0415
    from opsbook.lifecycle.changes import list_changes, publications  # noqa: PLC0415
    from opsbook.lifecycle.changes_config import load_settings  # noqa: PLC0415
    from opsbook.lifecycle.reviews_due import drills_due, reviews_due  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject="runbook-changes")
    error = None
    due: list[Any] = []
    drills: list[Any] = []
    settings = None
    try:
        settings = load_settings(ctx.workspace)
        due = reviews_due(db=ctx.db, workspace=ctx.workspace)
        drills = drills_due(db=ctx.db, workspace=ctx.workspace)
    except OpsbookError as exc:
        error = exc
    now = utcnow()
    return render(
        request,
        "lifecycle_changes.html",
        principal=who,
        changes=list_changes(db=ctx.db, limit=200),
        publications=list(reversed(publications(db=ctx.db)))[:100],
        overrides=[(o, o.active(now)) for o in list_overrides(db=ctx.db, limit=50)],
        due=due,
        drills=drills,
        settings=settings,
        error=error,
    )


def _allowed(change: Any, who: Principal, settings: Any) -> dict[str, Any]:
    """The actions the page offers this person (the services check again on POST)."""
    from opsbook.lifecycle.changes import OPEN_STATES  # noqa: PLC0415
    from opsbook.lifecycle.changes import ChangeState as S  # noqa: PLC0415

    roles = set(who.roles)
    mine = who.username == change.proposed_by
    can_act = who.can(ACT)
    reviews = []
    if can_act and change.state is S.DRAFT and not mine:
        for kind, wanted in (
            ("technical", settings.technical_roles),
            ("operational", settings.operational_roles),
        ):
            other = change.review("operational" if kind == "technical" else "technical")
            if (
                change.review(kind) is None
                and roles & set(wanted)
                and not (other and other.reviewer == who.username)
            ):
                reviews.append(kind)
    approver = bool(roles & set(settings.approve_roles))
    return {
        "reviews": reviews,
        "test": can_act and change.state is S.REVIEWED,
        "approve": can_act and change.state is S.TESTED and approver and not mine,
        "publish": can_act and change.state is S.APPROVED and (mine or approver),
        "ack": who.can(READ)
        and change.state in (S.PUBLISHED, S.TRAINED)
        and all(a.person != who.username for a in change.acks),
        "withdraw": can_act and mine and change.state in OPEN_STATES,
    }


@router.get("/changes/{change_id}", response_class=HTMLResponse)
async def change_page(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import get_change  # noqa: PLC0415
    from opsbook.lifecycle.changes_config import load_settings  # noqa: PLC0415
    from opsbook.lifecycle.diffs import change_diff  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject=f"runbook-change:{change_id}")
    change = get_change(db=ctx.db, change_id=change_id[:20])
    error = None
    diff = None
    allowed: dict[str, Any] = {}
    try:
        diff = change_diff(db=ctx.db, workspace=ctx.workspace, change=change)
        allowed = _allowed(change, who, load_settings(ctx.workspace))
    except OpsbookError as exc:
        error = exc
    return render(
        request,
        "lifecycle_changes_change.html",
        principal=who,
        change=change,
        steps=change.steps(),
        diff=diff,
        diff_lines=_classed(diff.unified) if diff else [],
        allowed=allowed,
        error=error,
    )


def _classed(unified: str) -> list[tuple[str, str]]:
    """Each diff line with a CSS class (added, removed, hunk), for a readable <pre>."""
    out = []
    for line in unified.splitlines()[:4000]:
        if line.startswith(("+++", "---")):
            cls = "diff-file"
        elif line.startswith("@@"):
            cls = "diff-hunk"
        elif line.startswith("+"):
            cls = "diff-add"
        elif line.startswith("-"):
            cls = "diff-del"
        else:
            cls = ""
        out.append((cls, line))
    return out


_ASCII = str.maketrans({"→": "->", "—": "-", "–": "-", "…": "...", "‘": "'", "’": "'"})


def _back(cid: str, message: str) -> Response:
    """The flash travels in a cookie, which takes only latin-1: keep it ASCII."""
    text = message.translate(_ASCII).encode("ascii", "replace").decode()
    return with_flash(RedirectResponse(f"/changes/{cid}", status_code=303), text)


async def _act(
    request: Request, cid: str, do: Callable[[Principal, Form], str], *, permission: str = ACT
) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=permission, subject=f"runbook-change:{cid[:20]}")
    try:
        message = do(who, form)
    except AuthenticationError:
        raise
    except OpsbookError as exc:  # refusals are audited by the service
        if exc.http_status == 404:
            raise
        fix = f" Fix: {exc.hint}" if exc.hint else ""
        return _back(cid[:20], f"Not done: {exc.message}.{fix}")
    return _back(cid[:20], message)


@router.post("/changes/{change_id}/review")
async def review(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import review as review_change  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        ctx = context_of(request)
        reject = form.get("decision") == "reject"
        change = review_change(
            db=ctx.db,
            workspace=ctx.workspace,
            change_id=change_id[:20],
            kind=form.get("kind"),
            actor=who.username,
            actor_roles=who.roles,
            approve=not reject,
            comment=form.get("comment")[:4000],
        )
        verdict = "rejected" if reject else "approved"
        return f"{form.get('kind')} review {verdict}; the change is {change.state}."

    return await _act(request, change_id, do)


@router.post("/changes/{change_id}/test")
async def test(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import record_test  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        ctx = context_of(request)
        change = record_test(
            db=ctx.db,
            workspace=ctx.workspace,
            change_id=change_id[:20],
            actor=who.username,
            execution_id=form.get("execution").strip()[:64] or None,
        )
        return f"Test run {change.test_execution_id} on {change.test_environment} recorded."

    return await _act(request, change_id, do)


@router.post("/changes/{change_id}/approve")
async def approve(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import approve as approve_change  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        ctx = context_of(request)
        change = approve_change(
            db=ctx.db,
            workspace=ctx.workspace,
            change_id=change_id[:20],
            actor=who.username,
            actor_roles=who.roles,
            reject=form.get("decision") == "reject",
            comment=form.get("comment")[:2000],
        )
        return f"The change is {change.state}."

    return await _act(request, change_id, do)


@router.post("/changes/{change_id}/publish")
async def publish(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import publish as publish_change  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        ctx = context_of(request)
        names = [n.strip()[:64] for n in form.get("inform").replace(",", " ").split()][:50]
        change = publish_change(
            db=ctx.db,
            workspace=ctx.workspace,
            change_id=change_id[:20],
            actor=who.username,
            actor_roles=who.roles,
            inform=names,
        )
        return f"Published {change.runbook_id} v{change.version} ({change.git_tag})."

    return await _act(request, change_id, do)


@router.post("/changes/{change_id}/ack")
async def ack(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import acknowledge  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        change = acknowledge(
            db=context_of(request).db,
            change_id=change_id[:20],
            person=who.username,
            note=form.get("note")[:2000],
        )
        return f"Acknowledged; the change is {change.state}."

    # Acknowledging is a record about oneself: whoever may read runbooks may do it.
    return await _act(request, change_id, do, permission=READ)


@router.post("/changes/{change_id}/withdraw")
async def withdraw(request: Request, change_id: str) -> Response:
    from opsbook.lifecycle.changes import withdraw as withdraw_change  # noqa: PLC0415

    def do(who: Principal, form: Form) -> str:
        withdraw_change(
            db=context_of(request).db,
            change_id=change_id[:20],
            actor=who.username,
            reason=form.get("reason")[:2000],
        )
        return "Withdrawn."

    return await _act(request, change_id, do)
