"""Console pages for incidents, the signed acknowledgement link, and the public status page.

The console forms (declare, acknowledge, status, roles, resolve, close, updates, publish, start
a suggested procedure) follow opsbook.web.actions: a urlencoded body read by
opsbook.web.forms (CSRF checked against the session), the same services as the REST API,
``incidents:manage`` required on the server (refusals are audited), then a redirect with a
flash message. A refused change of state (e.g. closing an unresolved incident) comes back as
a flash on the incident page, not as an error page.

``/status``, ``POST /status/subscribe``, ``/status/confirm?t=…``, ``/status/unsubscribe?t=…``
and ``/incidents/{ref}/ack?t=…``
need no sign-in: the status page shows only what customers may see (no drills, no notes, no
people), subscribing is double opt-in and throttled per client, and the confirmation and
acknowledgement links carry their own HMAC signatures (opsbook.incidents.subscribers, .links).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError, PermissionDenied
from opsbook.executions.context import AppContext
from opsbook.users.access import Principal, require
from opsbook.users.errors import AuthenticationError
from opsbook.users.throttle import Throttle, TooManyRequests, client_key
from opsbook.web.forms import Form, form_principal, read_form
from opsbook.web.render import render, with_flash

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Query(max_length=600)]
MANAGE = "incidents:manage"


def _declare_form(
    request: Request,
    who: Principal,
    *,
    values: dict[str, Any] | None = None,
    error: OpsbookError | None = None,
) -> Response:
    from opsbook.incidents.model import IMPACTS, SEVERITIES, TYPES, URGENCIES  # noqa: PLC0415
    from opsbook.incidents.policy import load_policy  # noqa: PLC0415
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    ctx = context_of(request)
    try:
        services = load_policy(ctx.workspace).services
    except OpsbookError:
        services = {}
    return render(
        request,
        "incidents.html",
        status=error.http_status if error else 200,
        principal=who,
        rows=list_incidents(db=ctx.db, limit=200),
        can_manage=who.can(MANAGE),
        services=services,
        types=TYPES,
        impacts=IMPACTS,
        urgencies=URGENCIES,
        severities=SEVERITIES,
        values=values or {},
        error=error,
    )


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(request: Request) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="incidents:read", subject="incidents")
    return _declare_form(request, who)


@router.post("/incidents")
async def declare(request: Request) -> Response:
    from opsbook.errors import ValidationError  # noqa: PLC0415
    from opsbook.incidents.background import deliver_soon  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.incidents.service import declare as declare_incident  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=MANAGE, subject="incidents")
    values: dict[str, Any] = dict(form.pairs)
    values["services"] = form.getlist("services")
    try:
        out = declare_incident(
            db=ctx.db,
            config=load_config(ctx.workspace),
            title=form.get("title")[:300],
            actor=who.username,
            type_=form.get("type") or "outage",
            services=form.getlist("services"),
            impact=form.get("impact") or None,
            urgency=form.get("urgency") or None,
            severity=form.get("severity") or None,
            summary=form.get("summary")[:4000],
            commander=form.get("commander").strip()[:64] or None,
            drill=form.get("drill") == "1",
            source="console",
        )
    except ValidationError as exc:
        return _declare_form(request, who, values=values, error=exc)
    deliver_soon(ctx, out.notifications)
    inc = out.incident
    pages = len(out.notifications)
    return _back(
        inc.ref,
        f"Declared {inc.ref} {inc.severity}; {pages} page{'s' if pages != 1 else ''} queued.",
    )


@router.get("/incidents/{ref}", response_class=HTMLResponse)
async def incident(request: Request, ref: str) -> Response:
    from opsbook.incidents.comms import updates_of  # noqa: PLC0415
    from opsbook.incidents.model import ROLES, STATUSES  # noqa: PLC0415
    from opsbook.incidents.review import _describe  # noqa: PLC0415
    from opsbook.incidents.service import get, timeline  # noqa: PLC0415
    from opsbook.incidents.suggest import suggest_for  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="incidents:read", subject=ref)
    inc = get(db=ctx.db, ref=ref)
    events = [(e, _describe(e)) for e in timeline(db=ctx.db, incident=inc)]
    try:
        suggestions = suggest_for(db=ctx.db, catalogue=ctx.catalogue(), incident=inc)
    except OpsbookError:
        suggestions = []
    from opsbook.troubleshoot.store import latest_for_incident  # noqa: PLC0415

    return render(
        request,
        "incident.html",
        principal=who,
        inc=inc,
        events=events,
        can_manage=who.can(MANAGE),
        statuses=[s for s in STATUSES if s not in ("resolved", "closed")],
        roles=ROLES,
        updates=updates_of(db=ctx.db, incident_id=inc.id),
        suggestions=suggestions,
        diagnosis=latest_for_incident(ctx.db, inc.ref),
    )


@router.post("/incidents/{ref}/diagnose")
async def diagnose_incident(request: Request, ref: str) -> Response:
    """Diagnose now, focused on the incident's service (issue 12); the diagnosis is stored and
    shown on the incident's page."""
    from opsbook.incidents.service import get  # noqa: PLC0415
    from opsbook.troubleshoot.diagnose import diagnose_async  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission="incidents:read", subject=ref)
    inc = get(db=ctx.db, ref=ref)
    env = (form.get("environment") or ctx.workspace.default_environment)[:64]
    try:
        d = await diagnose_async(
            workspace=ctx.workspace,
            environment=env,
            incident=inc.ref,
            db=ctx.db,
            actor=who.username,
        )
    except OpsbookError as exc:
        return _back(inc.ref, f"The diagnosis did not run: {exc.message}.")
    top = d.top
    found = (
        f"{top.cause} on {top.service or env} ({top.confidence}); fix: {top.procedure}"
        if top
        else "nothing above low confidence"
    )
    return _back(inc.ref, f"Diagnosis {d.id}: {found}.")


_ASCII = str.maketrans({"→": "->", "—": "-", "–": "-", "×": "x", "…": "...", "‘": "'", "’": "'"})


def _back(ref: str, message: str) -> Response:
    """The flash travels in a cookie, which takes only latin-1: keep it ASCII (error hints
    have arrows; names may be in any script)."""
    text = message.translate(_ASCII).encode("ascii", "replace").decode()
    return with_flash(RedirectResponse(f"/incidents/{ref}", status_code=303), text)


async def _act(request: Request, ref: str, change: Callable[[Principal, Form], str]) -> Response:
    """Check the form's CSRF token and ``incidents:manage``, make the change, flash the
    outcome. A change the incident's state or rules refuse (e.g. only the commander
    publishes) is flashed back; no ``incidents:manage`` or a missing incident is an error
    page (403/404)."""
    from opsbook.incidents.model import id_of, ref_of  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=MANAGE, subject=ref)
    canonical = ref_of(id_of(ref))
    try:
        message = change(who, form)
    except AuthenticationError:
        raise
    except PermissionDenied as exc:  # a rule of the incident (commander only): audited
        from opsbook import audit  # noqa: PLC0415

        audit.record(
            db=ctx.db,
            actor=who.username,
            action="access.denied",
            subject=canonical,
            payload={"reason": exc.message, "via": who.via},
        )
        return _back(canonical, f"Not allowed: {exc.message}.")
    except OpsbookError as exc:
        if exc.http_status == 404:
            raise
        fix = f" Fix: {exc.hint}" if exc.hint else ""
        return _back(canonical, f"Not done: {exc.message}.{fix}")
    return _back(canonical, message)


@router.post("/incidents/{ref}/acknowledge")
async def acknowledge(request: Request, ref: str) -> Response:
    from opsbook.incidents.lifecycle import acknowledge as ack  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        inc = ack(db=context_of(request).db, ref=ref, actor=who.username, via="console")
        return f"{inc.ref} acknowledged by {inc.acknowledged_by}; escalation stopped."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/status")
async def status(request: Request, ref: str) -> Response:
    from opsbook.incidents.lifecycle import add_note, set_status  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        db, note = context_of(request).db, form.get("note").strip()[:8000]
        if not form.get("status"):
            add_note(db=db, ref=ref, actor=who.username, text=note)
            return "Note added to the timeline."
        inc = set_status(db=db, ref=ref, actor=who.username, status=form.get("status"), note=note)
        return f"{inc.ref} is {inc.status}."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/assign")
async def assign(request: Request, ref: str) -> Response:
    from opsbook.incidents.lifecycle import assign as assign_role  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        person = form.get("person").strip()[:64]
        role = form.get("role")
        assign_role(
            db=context_of(request).db, ref=ref, actor=who.username, role=role, person=person
        )
        return f"{person} is {role.replace('_', ' ')}."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/resolve")
async def resolve(request: Request, ref: str) -> Response:
    from opsbook.incidents.lifecycle import resolve as resolve_incident  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        db = context_of(request).db
        inc = resolve_incident(db=db, ref=ref, actor=who.username, note=form.get("note")[:4000])
        return f"{inc.ref} resolved; escalation and reminders stopped."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/close")
async def close(request: Request, ref: str) -> Response:
    from opsbook.incidents.lifecycle import close as close_incident  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        db = context_of(request).db
        inc = close_incident(db=db, ref=ref, actor=who.username, note=form.get("note")[:4000])
        return f"{inc.ref} closed."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/updates")
async def post_update(request: Request, ref: str) -> Response:
    from opsbook.incidents import comms  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        ctx = context_of(request)
        audience = form.get("audience") or "internal"
        up = comms.post_update(
            db=ctx.db,
            config=load_config(ctx.workspace),
            ref=ref,
            actor=who.username,
            text=form.get("text")[:4000],
            audience=audience,
        )
        if audience == "public":
            return "Customer update drafted: the incident commander publishes it."
        from opsbook.incidents.background import deliver_soon  # noqa: PLC0415

        deliver_soon(ctx, list(up["notifications"]))
        return f"Internal update posted and sent to {len(up['notifications'])} responder(s)."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/updates/{update_id}/publish")
async def publish(request: Request, ref: str, update_id: int) -> Response:
    from opsbook.incidents import comms  # noqa: PLC0415
    from opsbook.incidents.background import deliver_soon  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        from opsbook.errors import NotFoundError  # noqa: PLC0415
        from opsbook.incidents.model import id_of  # noqa: PLC0415

        ctx = context_of(request)
        row = ctx.db.one("SELECT incident_id FROM status_updates WHERE id = ?", (update_id,))
        if row is None or int(row["incident_id"]) != id_of(ref):
            raise NotFoundError(f"{ref} has no update {update_id}", hint="reload the page")
        out = comms.approve_update(
            db=ctx.db, config=load_config(ctx.workspace), update_id=update_id, actor=who.username
        )
        mails = list(out.get("notifications", []))
        deliver_soon(ctx, mails)
        return f"Published on the status page; emailed to {len(mails)} subscriber(s)."

    return await _act(request, ref, change)


@router.post("/incidents/{ref}/run")
async def start_procedure(request: Request, ref: str) -> Response:
    """Start a (suggested) procedure for the incident with its default parameters; the
    execution and its steps join the timeline. Procedures that need values: use its run form."""
    from opsbook.errors import ConflictError  # noqa: PLC0415
    from opsbook.executions import operations  # noqa: PLC0415
    from opsbook.incidents.lifecycle import link_execution  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=MANAGE, subject=ref)
    inc = get(db=ctx.db, ref=ref)
    procedure = form.get("procedure")[:200]
    try:
        if inc.status == "closed":
            raise ConflictError(f"{inc.ref} is closed", hint="declare a new incident")
        row = await operations.start_execution(
            ctx=ctx,
            principal=who,
            ref=procedure,
            environment=form.get("environment") or None,
            params={},
            dry_run=form.get("dry_run") == "1",
            confirm=form.get("confirm") == "1",
        )
    except (PermissionDenied, AuthenticationError):
        raise
    except OpsbookError as exc:
        fix = f" Fix: {exc.hint}" if exc.hint else ""
        return _back(inc.ref, f"Not started: {exc.message}.{fix}")
    link_execution(
        db=ctx.db,
        ref=inc.ref,
        actor=who.username,
        execution_id=row.id,
        procedure=f"{row.runbook_id}#{row.procedure_id}",
    )
    message = f"Started {row.runbook_id}#{row.procedure_id} for {inc.ref} (execution {row.id})."
    return with_flash(RedirectResponse(f"/executions/{row.id}", status_code=303), message)


@router.get("/incidents/{ref}/ack", response_class=HTMLResponse)
async def ack_link(request: Request, ref: str, t: Token = "") -> Response:
    """The link in a page: shows what will be acknowledged and a button (a GET never changes
    anything, so mail scanners that follow links cannot acknowledge)."""
    from opsbook.incidents.links import verify_token  # noqa: PLC0415
    from opsbook.incidents.model import id_of  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    claim = verify_token(
        key=workspace_key(ctx.workspace.state_dir), token=t, incident_id=id_of(ref)
    )
    inc = get(db=ctx.db, ref=ref)
    return render(request, "incident_ack.html", inc=inc, who=claim.who, token=t, done=False)


@router.post("/incidents/{ref}/ack", response_class=HTMLResponse)
async def ack_link_post(request: Request, ref: str) -> Response:
    """No session and so no CSRF token here: the signed token in the form is the authority."""
    from opsbook.incidents.lifecycle import acknowledge as ack  # noqa: PLC0415
    from opsbook.incidents.links import verify_token  # noqa: PLC0415
    from opsbook.incidents.model import id_of  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    form = await read_form(request)
    claim = verify_token(
        key=workspace_key(ctx.workspace.state_dir),
        token=form.get("t")[:600],
        incident_id=id_of(ref),
    )
    inc = ack(db=ctx.db, ref=ref, actor=f"link:{claim.who}", via="signed-link")
    return render(request, "incident_ack.html", inc=inc, who=claim.who, token="", done=True)


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request) -> Response:
    """Public: components (services), current incidents and the last 30 days' history."""
    from opsbook.incidents.statuspage import status_view  # noqa: PLC0415

    view = status_view(db=context_of(request).db, workspace=context_of(request).workspace)
    return render(request, "status.html", **view)


SUBSCRIBE_RATE, SUBSCRIBE_BURST = 5 / 60, 5.0  # per client address: 5 a minute
CHECK_INBOX = (
    "Check your inbox: unless this address is already subscribed, a confirmation link is on its"
    " way. Updates start once you follow it (within 24 hours)."
)


def subscribe_throttle(ctx: AppContext) -> Throttle:
    """The server's subscription throttle (one per process, in the app context's cache)."""
    found = ctx.cache.get("status.subscribe.throttle")
    if isinstance(found, Throttle):
        return found
    made = Throttle(rate=SUBSCRIBE_RATE, burst=SUBSCRIBE_BURST)
    ctx.cache["status.subscribe.throttle"] = made
    return made


@router.post("/status/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request) -> Response:
    """Public, double opt-in (opsbook.incidents.subscribers): a confirmation link is mailed and
    only confirmed addresses get updates. The answer is the same whether the address is new,
    pending or already subscribed: 202 ``{"pending": true, "detail": …}`` for a JSON body
    (``{"email": …}``), the status page with "check your inbox" for a form. 5 requests a minute
    per client address; past that 429 with ``Retry-After``."""
    from starlette.responses import JSONResponse  # noqa: PLC0415

    from opsbook.incidents.background import deliver_soon  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.incidents.statuspage import status_view  # noqa: PLC0415
    from opsbook.incidents.subscribers import email_of_json  # noqa: PLC0415
    from opsbook.incidents.subscribers import subscribe as add  # noqa: PLC0415

    ctx = context_of(request)
    wants_json = request.headers.get("content-type", "").startswith("application/json")
    client = client_key(request.client and request.client.host)
    email = ""
    try:
        subscribe_throttle(ctx).check(client, what="subscription requests")
        if wants_json:
            email = email_of_json(await request.body())
        else:
            email = (await read_form(request)).get("email")[:320]
        config = load_config(ctx.workspace)
        mail = add(
            db=ctx.db,
            email=email,
            client=client,
            key=config.key,
            public_url=config.policy.notify.public_url,
            source="status-page",
        )
    except OpsbookError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else {}
        if wants_json:
            return JSONResponse(
                {"detail": exc.message, "hint": exc.hint, "field": exc.field},
                status_code=exc.http_status,
                headers=headers,
            )
        view = status_view(db=ctx.db, workspace=ctx.workspace)
        page = render(
            request,
            "status.html",
            status=exc.http_status,
            error=exc,
            email=email,
            subscribed=False,
            **view,
        )
        page.headers.update(headers)
        return page
    if mail is not None:
        deliver_soon(ctx, (mail,))
    if wants_json:
        return JSONResponse({"pending": True, "detail": CHECK_INBOX}, status_code=202)
    view = status_view(db=ctx.db, workspace=ctx.workspace)
    return render(request, "status.html", subscribed=True, notice=CHECK_INBOX, **view)


@router.get("/status/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, t: Token = "") -> Response:
    """Public: the link in every update email. Shows which address will stop getting updates
    and a button (a POST: mail scanners that open links must not unsubscribe anyone)."""
    from opsbook.incidents.statuspage import status_view  # noqa: PLC0415
    from opsbook.incidents.subscribers import email_of_unsubscribe_token  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    view = status_view(db=ctx.db, workspace=ctx.workspace)
    try:
        email = email_of_unsubscribe_token(key=workspace_key(ctx.workspace.state_dir), token=t)
    except OpsbookError as exc:
        return render(
            request, "status.html", status=exc.http_status, error=exc, subscribed=False, **view
        )
    return render(
        request, "status.html", subscribed=False, unsubscribe={"email": email, "t": t}, **view
    )


@router.post("/status/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request) -> Response:
    """Public: stop the updates to the address the signed token names (audited)."""
    from opsbook.incidents.statuspage import status_view  # noqa: PLC0415
    from opsbook.incidents.subscribers import unsubscribe as remove  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    view = status_view(db=ctx.db, workspace=ctx.workspace)
    try:
        token = (await read_form(request)).get("t")[:800]
        email = remove(db=ctx.db, key=workspace_key(ctx.workspace.state_dir), token=token)
    except OpsbookError as exc:
        return render(
            request, "status.html", status=exc.http_status, error=exc, subscribed=False, **view
        )
    notice = f"Unsubscribed: {email} will get no more incident updates from us."
    return render(request, "status.html", subscribed=True, notice=notice, **view)


@router.get("/status/confirm", response_class=HTMLResponse)
async def confirm_subscription(request: Request, t: Token = "") -> Response:
    """Public: the link in the confirmation mail (signed with the workspace key). Following it
    confirms the address; a forged, expired or replaced link gets the status page with 403."""
    from opsbook.incidents.statuspage import status_view  # noqa: PLC0415
    from opsbook.incidents.subscribers import confirm  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    view = status_view(db=ctx.db, workspace=ctx.workspace)
    try:
        email = confirm(db=ctx.db, key=workspace_key(ctx.workspace.state_dir), token=t)
    except OpsbookError as exc:
        return render(
            request, "status.html", status=exc.http_status, error=exc, subscribed=False, **view
        )
    notice = f"Subscribed: {email} will get our incident updates by email."
    return render(request, "status.html", subscribed=True, notice=notice, **view)
