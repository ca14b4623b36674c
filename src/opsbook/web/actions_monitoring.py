"""Console actions on alerts (/monitoring): acknowledge an alert, silence alerts by matchers,
end a silence early. Each form carries the session's CSRF token and needs ``alerts:manage``
(a refusal is a 403, audited). What the rules refuse (an alert no longer firing, a matcher that
does not parse) comes back as a flash message on the Monitoring page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from opsbook.api.auth import context_of
from opsbook.errors import OpsbookError
from opsbook.users.access import Principal, require
from opsbook.web.forms import Form, form_principal
from opsbook.web.render import with_flash

router = APIRouter(include_in_schema=False)
MANAGE = "alerts:manage"


def _back(message: str) -> Response:
    """To the Monitoring page with ``message`` (``with_flash`` encodes any text)."""
    return with_flash(RedirectResponse("/monitoring#alerts", status_code=303), message)


async def _act(
    request: Request, subject: str, change: Callable[[Principal, Form], str]
) -> Response:
    """Check the form's CSRF token and ``alerts:manage``, make the change, flash the result."""
    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission=MANAGE, subject=subject)
    try:
        return _back(change(who, form))
    except OpsbookError as exc:
        if exc.http_status == 404:
            raise
        fix = f" Fix: {exc.hint}" if exc.hint else ""
        return _back(f"Not done: {exc.message}.{fix}")


@router.post("/monitoring/alerts/{alert_id}/ack")
async def acknowledge(request: Request, alert_id: int = Path(ge=1, le=2**62)) -> Response:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        row = alerts.acknowledge(
            context_of(request).db,
            ref=str(alert_id),
            actor=who.username,
            comment=form.get("comment").strip()[:1000],
        )
        return f"Alert {row['id']} ({row['alertname']}) acknowledged by {row['acked_by']}."

    return await _act(request, f"alert:{alert_id}", change)


@router.post("/monitoring/silences")
async def silence(request: Request) -> Response:
    from opsbook.durations import parse_duration  # noqa: PLC0415
    from opsbook.errors import ValidationError  # noqa: PLC0415
    from opsbook.monitoring import alerts  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        texts = [line.strip() for line in form.get("matchers").splitlines() if line.strip()]
        raw = form.get("duration").strip() or "2h"
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            raise ValidationError(
                f"{raw[:20]!r} is not a duration", field="duration", hint="e.g. 30m, 2h, 1d"
            ) from exc
        row = alerts.create_silence(
            context_of(request).db,
            matchers=texts[:20],
            duration=timedelta(seconds=seconds),
            actor=who.username,
            comment=form.get("comment").strip()[:1000],
        )
        return f"Silence {row['id']} ({' '.join(row['matchers'])}) until {row['ends_at']}."

    return await _act(request, "silences", change)


@router.post("/monitoring/silences/{silence_id}/expire")
async def expire(request: Request, silence_id: int = Path(ge=1, le=2**62)) -> Response:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    def change(who: Principal, form: Form) -> str:
        alerts.expire_silence(context_of(request).db, silence_id=silence_id, actor=who.username)
        return f"Silence {silence_id} ended by {who.username}."

    return await _act(request, f"silence:{silence_id}", change)
