"""Production access follows training (issue 15): a run against a production-class
environment needs a certification in force for its runbook's area (``training.yaml``: the area
listing the runbook, else platform operations).

On with ``require_certification: true`` in training.yaml (``opsbook init`` writes it). Dry
runs are never refused; child runs are judged by their parent. A refusal is audited as
``execution.start.denied`` with the area and the reason, and the error names the training
commands that lead to the certification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsbook import audit
from opsbook.errors import PermissionDenied
from opsbook.lifecycle.training_config import load_training

if TYPE_CHECKING:
    from opsbook.engine.guards import StartRequest


def require_certification(request: StartRequest) -> None:
    """The start guard: see the module's docstring."""
    from opsbook.engine.guards import is_production  # noqa: PLC0415
    from opsbook.lifecycle.certifications import list_certifications, valid  # noqa: PLC0415

    if request.dry_run or request.parent_id is not None:
        return
    if not is_production(request.environment):
        return
    config = load_training(request.workspace)
    if not config.require_certification:
        return
    rb = request.runbook
    area = config.area_of(rb.id)
    if valid(db=request.db, config=config, person=request.user, area=area) is not None:
        return
    held = [
        c
        for c in list_certifications(db=request.db, config=config, person=request.user)
        if c.area == area
    ]
    why = (
        f"the {area} certification of {request.user} {held[0].status} on {held[0].expires_at[:10]}"
        if held and held[0].status == "expired"
        else f"{request.user} holds no {area} certification"
        if not held
        else f"the {area} certification of {request.user} is {held[0].status}"
    )
    ref = f"{rb.id}#{request.procedure.id}"
    audit.record(
        db=request.db,
        actor=request.user,
        action="execution.start.denied",
        subject=ref,
        payload={
            "environment": request.environment.name,
            "reason": why,
            "area": area,
            "guard": "training.require_certification",
        },
    )
    raise PermissionDenied(
        f"{why}: production environment {request.environment.name} runs {rb.id} only for"
        f" people certified in {config.area(area).title.lower()}",
        hint=f"pass the assessment (`opsbook training assess --area {area} --out quiz.yaml`,"
        f" then `opsbook training submit quiz.yaml`) and a graded drill (`opsbook training drill"
        f" start SCENARIO --trainee {request.user}`); `opsbook training certs` shows what is held",
    )
