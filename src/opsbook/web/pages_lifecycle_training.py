"""Console pages for training (issue 15): /training shows each person's progress (onboarding,
assessments, drills, certifications), the certifications due for renewal and the drills;
/training/drills/{id} shows a drill and its debrief. Read-only: training is recorded by the
`opsbook training` commands."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/training")
async def training(request: Request) -> Response:
    from opsbook.lifecycle import certifications, simulations  # noqa: PLC0415
    from opsbook.lifecycle.training_config import load_training  # noqa: PLC0415
    from opsbook.lifecycle.training_report import progress  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="training")
    config = load_training(ctx.workspace)
    return render(
        request,
        "lifecycle_training.html",
        principal=who,
        config=config,
        people=progress(db=ctx.db, config=config),
        due=certifications.due(db=ctx.db, config=config),
        drills=simulations.list_drills(db=ctx.db, limit=50),
        drill=None,
    )


@router.get("/training/drills/{drill_id}")
async def drill_page(request: Request, drill_id: int) -> Response:
    from opsbook.lifecycle import simulations  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"drill:{drill_id}")
    return render(
        request,
        "lifecycle_training.html",
        principal=who,
        drill=simulations.get(db=ctx.db, drill_id=drill_id),
    )
