"""RFC 9457 problem details: the one error body of the REST API.

``type`` is ``urn:opsbook:problem:<code>`` (the ``code`` of the opsbook error), ``title`` the
HTTP reason, ``detail`` the message; extensions carry the fix (``hint``), the offending
``field`` (validation errors list every one in ``errors``) and ``retryable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from opsbook.errors import OpsbookError

MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    code: str,
    instance: str | None = None,
    hint: str | None = None,
    field: str | None = None,
    errors: Sequence[dict[str, str]] | None = None,
    retryable: bool = False,
) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:opsbook:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "hint": hint,
        "field": field,
        "retryable": retryable,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    return body


def from_error(exc: OpsbookError, instance: str | None = None) -> dict[str, Any]:
    status = exc.http_status
    field = exc.field or (str(exc.location) if exc.location else None)
    return problem(
        status,
        exc.message,
        code=exc.code,
        instance=instance,
        hint=exc.hint,
        field=field,
        errors=[{"field": field, "message": exc.message}] if status == 422 and field else None,
        retryable=exc.retryable,
    )


def from_validation(errors: Sequence[Any], instance: str | None = None) -> dict[str, Any]:
    """FastAPI/pydantic request validation errors → one 422 naming every field."""
    items = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body",)]
        if loc and loc[0] in ("query", "path", "header", "cookie"):
            loc = loc[1:]
        items.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    first = items[0] if items else {"field": "body", "message": "invalid request"}
    return problem(
        422,
        f"{first['field']}: {first['message']}",
        code="validation",
        instance=instance,
        hint="fix the fields listed in errors and send the request again",
        field=first["field"],
        errors=items,
    )
