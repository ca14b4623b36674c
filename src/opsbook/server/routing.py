"""Adding routers to the app as flat routes (ADR 0008).

FastAPI 0.16x keeps an included router as one nested route and matches a request by walking
every level, juggling scope keys for each candidate route: ~0.2 ms a request with our ~100
routes, more than half of a cheap API call. Adding each route to the app itself, as
``include_router`` did before that change, keeps the same paths, OpenAPI operations and
handlers and matches with one regular expression per route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


def add_routes(
    app: FastAPI,
    router: APIRouter,
    *,
    prefix: str = "",
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> int:
    """Add every route of ``router`` to ``app`` under ``prefix``; returns how many.

    ``responses`` are documented for every route (a route's own entries win). Only plain
    ``APIRoute``s are supported: anything else is refused rather than silently dropped.
    """
    added = 0
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"cannot add {type(route).__name__} {route!r} as a flat route")
        app.add_api_route(
            prefix + route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=list(route.dependencies),
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses={**(responses or {}), **route.responses},
            deprecated=route.deprecated,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            openapi_extra=route.openapi_extra,
        )
        added += 1
    return added
