"""Console pages for diagnosis and known errors (issue 12).

``/diagnose`` is the form (service, alert or incident; an alert's "Diagnose" link on the
monitoring page fills it in) and the recent diagnoses; ``POST /diagnose`` runs a diagnosis
through opsbook.troubleshoot.diagnose (CSRF checked, stored and audited by it) and redirects to
``/diagnoses/{id}``, which shows a stored one: the top cause, its confidence and evidence, the
fix as a link to that procedure's run form, the other causes, the sources that could not be
read and the bundle. ``/known-errors`` lists known errors; ``/known-errors/{id}`` shows one;
``POST /known-errors/confirm`` confirms a diagnosis by the execution that ran its fix.

Reading and running a diagnosis need ``monitoring:read`` (a diagnosis reads, it changes
nothing but its own record); confirming a known error needs ``incidents:manage`` (it is part
of the review of what went wrong).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError
from opsbook.users.access import require
from opsbook.web.forms import form_principal
from opsbook.web.render import render, with_flash

router = APIRouter(include_in_schema=False)
READ = "monitoring:read"
MANAGE = "incidents:manage"
_LIMIT = 100

_ASCII = str.maketrans({"→": "->", "—": "-", "–": "-", "…": "...", "‘": "'", "’": "'"})


def _flash(url: str, message: str) -> Response:
    """The flash travels in a cookie (latin-1 only): keep it ASCII."""
    text = message.translate(_ASCII).encode("ascii", "replace").decode()
    return with_flash(RedirectResponse(url, status_code=303), text)


@router.get("/diagnose", response_class=HTMLResponse)
async def diagnose_page(request: Request) -> Response:
    from opsbook.troubleshoot.model import SERVICES  # noqa: PLC0415
    from opsbook.troubleshoot.store import list_recent  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject="diagnoses")
    q = request.query_params
    values = {k: (q.get(k) or "")[:200] for k in ("service", "alert", "incident", "environment")}
    return render(
        request,
        "diagnose.html",
        principal=who,
        values=values,
        services=SERVICES,
        environments=ctx.workspace.environment_names(),
        default_env=ctx.workspace.default_environment,
        recent=list_recent(ctx.db, limit=30),
    )


@router.post("/diagnose")
async def run_diagnosis(request: Request) -> Response:
    from opsbook.troubleshoot.diagnose import diagnose_async  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=READ, subject="diagnoses")

    def pick(name: str) -> str | None:
        return form.get(name).strip()[:200] or None

    env = pick("environment") or ctx.workspace.default_environment
    try:
        d = await diagnose_async(
            workspace=ctx.workspace,
            environment=env,
            service=pick("service"),
            alert=pick("alert"),
            incident=pick("incident"),
            db=ctx.db,
            actor=who.username,
        )
    except OpsbookError as exc:
        return _flash("/diagnose", f"The diagnosis did not run: {exc.message}.")
    return RedirectResponse(f"/diagnoses/{quote(d.id)}", status_code=303)


@router.get("/diagnoses/{diagnosis_id}", response_class=HTMLResponse)
async def diagnosis_page(request: Request, diagnosis_id: str) -> Response:
    from opsbook.troubleshoot.store import get  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject=f"diagnosis:{diagnosis_id}")
    d = get(ctx.db, diagnosis_id[:64])
    return render(
        request,
        "diagnosis.html",
        principal=who,
        d=d,
        top=d.get("top"),
        failed={k: v for k, v in (d.get("sources") or {}).items() if not v.get("ok")},
        changes=list((d.get("facts") or {}).get("changes") or [])[:10],
        can_confirm=who.can(MANAGE),
    )


@router.get("/known-errors", response_class=HTMLResponse)
async def known_errors_page(request: Request) -> Response:
    from opsbook.troubleshoot.known_errors import list_known_errors  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject="known_errors")
    retired = request.query_params.get("retired") == "1"
    return render(
        request,
        "known_errors.html",
        principal=who,
        rows=list_known_errors(db=ctx.db, include_retired=retired, limit=_LIMIT),
        retired=retired,
        can_confirm=who.can(MANAGE),
        values={k: (request.query_params.get(k) or "")[:64] for k in ("diagnosis", "execution")},
    )


@router.get("/known-errors/{known_error_id}", response_class=HTMLResponse)
async def known_error_page(request: Request, known_error_id: str) -> Response:
    from opsbook.troubleshoot.known_errors import get  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject=f"known_error:{known_error_id}")
    return render(
        request,
        "known_error.html",
        principal=who,
        k=get(db=ctx.db, known_error_id=known_error_id[:64]),
    )


@router.post("/known-errors/confirm")
async def confirm_known_error(request: Request) -> Response:
    from opsbook.troubleshoot.known_errors import confirm_from_fix  # noqa: PLC0415

    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=MANAGE, subject="known_errors")
    diagnosis = form.get("diagnosis").strip()[:64]
    execution = form.get("execution").strip()[:64]
    try:
        with ctx.db.transaction():
            k = confirm_from_fix(
                db=ctx.db, actor=who.username, diagnosis_id=diagnosis, execution_id=execution
            )
    except OpsbookError as exc:
        return _flash("/known-errors", f"Not confirmed: {exc.message}")
    return _flash(
        f"/known-errors/{quote(str(k['id']))}",
        f"Confirmed {k['id']} ({k['cause']}): {k['confirmed']} time(s).",
    )
