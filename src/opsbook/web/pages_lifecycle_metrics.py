"""Console pages for runbook metrics (issue 15): every runbook's stats (/runbooks/stats), one
runbook's stats with charts (/runbooks/{id}/stats: server-side SVG, no script), and the
feedback form's POST on a finished execution's page (CSRF checked, audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import ConflictError, UsageError
from opsbook.users.access import require
from opsbook.web.forms import form_principal
from opsbook.web.render import render, with_flash

router = APIRouter(include_in_schema=False)
Since = Annotated[str, Query(max_length=12, pattern=r"^$|^[0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)$")]


def _numbers(request: Request, since: str, runbook: str | None) -> dict[str, Any]:
    from opsbook.lifecycle import metrics, quality  # noqa: PLC0415
    from opsbook.lifecycle import runbook_report as rr  # noqa: PLC0415

    ctx = context_of(request)
    start, end = metrics.window_since(since or metrics.DEFAULT_SINCE, now=datetime.now(UTC))
    cat = ctx.catalogue()
    stats = metrics.runbook_stats(ctx.db, catalogue=cat, since=start, until=end, ref=runbook)
    procs = stats.procedures()
    q = quality.quality(
        ctx.db,
        catalogue=cat,
        since=metrics.iso(start),
        until=metrics.iso(end),
        today=end.date(),
        runbook=runbook,
    )
    return {
        "stats": stats,
        "procs": procs,
        "quality": q,
        "since": since or metrics.DEFAULT_SINCE,
        "chart": Markup(rr.success_bars([p for p in procs if p.runs])),  # noqa: S704 - built with escape()
        "pct": rr.pct,
        "dur": rr.dur,
    }


@router.get("/runbooks/stats")
async def all_stats(request: Request, since: Since = "") -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="runbooks:stats")
    return render(
        request, "lifecycle_metrics.html", principal=who, **_numbers(request, since, None)
    )


@router.get("/runbooks/{runbook_id}/stats")
async def runbook_stats(request: Request, runbook_id: str, since: Since = "") -> Response:
    from opsbook.lifecycle import feedback, metrics  # noqa: PLC0415
    from opsbook.lifecycle import runbook_report as rr  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"runbook:{runbook_id}")
    rb = ctx.catalogue().get(runbook_id)  # 404 naming the closest runbooks
    values = _numbers(request, since, rb.id)
    stats = values["stats"]
    daily = rr.daily_runs(
        ctx.db, since=metrics.iso(stats.since), until=metrics.iso(stats.until), runbook=rb.id
    )
    return render(
        request,
        "lifecycle_metrics_runbook.html",
        principal=who,
        rb=rb,
        total=stats.runbooks[0].total if stats.runbooks else None,
        daily_chart=Markup(rr.daily_bars(daily)),  # noqa: S704 - built with escape()
        comments=feedback.comments(
            ctx.db,
            since=metrics.iso(stats.since),
            until=metrics.iso(stats.until),
            runbook=rb.id,
            limit=20,
        ),
        **values,
    )


@router.post("/executions/{execution_id}/feedback")
async def give_feedback(request: Request, execution_id: str) -> Response:
    from opsbook.lifecycle import feedback  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(
        db=ctx.db, principal=who, permission="executions:read", subject=f"execution:{execution_id}"
    )
    back = RedirectResponse(f"/executions/{execution_id[:64]}", status_code=303)
    try:
        row = feedback.give_feedback(
            ctx.db,
            execution_id=execution_id,
            person=who.username,
            rating=form.get("rating"),
            comment=form.get("comment") or None,
        )
    except (UsageError, ConflictError) as exc:  # a bad rating or a run not finished yet
        return with_flash(back, f"Feedback not recorded: {exc.render()}")
    return with_flash(back, f"Thanks: rated {row.rating}/5 by {who.username}.")
