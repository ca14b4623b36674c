"""Console pages for incidents, the signed acknowledgement link, and the public status page.

``/status`` and ``/incidents/{ref}/ack?t=…`` need no sign-in: the status page shows only what
customers may see (no drills, no notes, no people), and the acknowledgement link carries its
own HMAC signature (opsbook.incidents.links).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Query(max_length=600)]


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(request: Request) -> Response:
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="incidents:read", subject="incidents")
    rows = list_incidents(db=ctx.db, limit=200)
    return render(request, "incidents.html", principal=who, rows=rows)


@router.get("/incidents/{ref}", response_class=HTMLResponse)
async def incident(request: Request, ref: str) -> Response:
    from opsbook.incidents.review import _describe  # noqa: PLC0415
    from opsbook.incidents.service import get, timeline  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="incidents:read", subject=ref)
    inc = get(db=ctx.db, ref=ref)
    events = [(e, _describe(e)) for e in timeline(db=ctx.db, incident=inc)]
    return render(request, "incident.html", principal=who, inc=inc, events=events)


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
async def ack_link_post(
    request: Request, ref: str, t: Annotated[str, Form(max_length=600)]
) -> Response:
    from opsbook.incidents.lifecycle import acknowledge  # noqa: PLC0415
    from opsbook.incidents.links import verify_token  # noqa: PLC0415
    from opsbook.incidents.model import id_of  # noqa: PLC0415
    from opsbook.notify.keys import workspace_key  # noqa: PLC0415

    ctx = context_of(request)
    claim = verify_token(
        key=workspace_key(ctx.workspace.state_dir), token=t, incident_id=id_of(ref)
    )
    inc = acknowledge(db=ctx.db, ref=ref, actor=f"link:{claim.who}", via="signed-link")
    return render(request, "incident_ack.html", inc=inc, who=claim.who, token="", done=True)


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request) -> Response:
    """Public: components (services), current incidents and the last 30 days' history."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from opsbook.incidents.model import fmt_ts, rank  # noqa: PLC0415
    from opsbook.incidents.policy import load_policy  # noqa: PLC0415
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    ctx = context_of(request)
    services = load_policy(ctx.workspace).services
    since = fmt_ts(datetime.now(UTC) - timedelta(days=30))
    recent = [i for i in list_incidents(db=ctx.db, since=since, limit=500) if not i.drill]
    current = [i for i in recent if i.is_open]
    history = [i for i in recent if not i.is_open]
    from opsbook.incidents.comms import public_updates  # noqa: PLC0415

    updates = public_updates(db=ctx.db, incident_ids=[i.id for i in current])
    components = []
    for sid, name in services.items():
        hit = [i for i in current if sid in i.services]
        worst = min((rank(i.severity) for i in hit), default=0)
        state = (
            "Major outage"
            if worst and worst <= 1
            else "Partial outage"
            if worst == 2
            else "Degraded performance"
            if worst
            else "Operational"
        )
        components.append({"id": sid, "name": name, "state": state})
    return render(
        request,
        "status.html",
        components=components,
        current=current,
        history=history,
        updates=updates,
        services=services,
    )
