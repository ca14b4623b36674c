"""The REST API under /api/v1 (FastAPI; imported only by ``opsbook serve``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from opsbook.api import (
    routes_admin,
    routes_catalogue,
    routes_executions,
    routes_incidents,
    routes_known_errors,
    routes_monitoring,
    routes_releases,
    schemas,
)
from opsbook.api.problems import MEDIA_TYPE

PREFIX = "/api/v1"


def _problem(description: str) -> dict[str, Any]:
    return {
        "model": schemas.Problem,
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


#: Every endpoint may answer these; the body is always an RFC 9457 problem.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("Not signed in, or an unknown, expired or revoked token"),
    403: _problem("The caller's roles (or the token's scopes) do not allow it; audited"),
    404: _problem("No such runbook, procedure, execution, account or token"),
    409: _problem("Not possible in the current state (e.g. not waiting for this)"),
    422: _problem("Invalid input; `field` and `errors` name what to fix"),
    503: _problem("The database is unavailable"),
}


def api_routers() -> list[APIRouter]:
    """The API's routers, each to be added under ``PREFIX`` with ``PROBLEMS`` documented.

    Hottest routes first: routing tries routes in order. The executions list is what the
    console polls; the Alertmanager webhook takes bursts of deliveries.
    """
    return [
        routes_executions.router,
        routes_monitoring.router,
        routes_catalogue.router,
        routes_admin.router,
        routes_incidents.router,
        routes_known_errors.router,
        routes_known_errors.confirmations,
        routes_releases.router,
    ]
