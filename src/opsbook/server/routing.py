"""Adding routers to the app as flat routes (ADR 0008).

FastAPI 0.16x keeps an included router as one nested route and matches a request by walking
every level, juggling scope keys for each candidate route: ~0.2 ms a request with our ~100
routes, more than half of a cheap API call. Adding each route to the app itself, as
``include_router`` did before that change, keeps the same paths, OpenAPI operations and
handlers and matches with one regular expression per route.

Flat routes are :class:`FlatRoute`\\ s, which add two things at no cost to other requests:

- a 405 names every method of the path in ``Allow`` (Starlette's route names only its own,
  and with flat routes ``GET /x`` and ``POST /x`` are two routes);
- an endpoint marked with a check (``opsbook.api.deps.permission_first``) runs it before
  FastAPI reads and validates the body, so a caller who may not use the route learns nothing
  about its body from a 422.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from opsbook.api.deps import BEFORE_BODY


class FlatRoute(APIRoute):
    """An API route added flat to the app (see the module docstring)."""

    allow: str = ""  # every method of this path, set once all routes are added

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        before: Callable[[Request], None] | None = getattr(self.endpoint, BEFORE_BODY, None)
        if before is None:
            return handler

        async def checked(request: Request) -> Response:
            before(request)
            return await handler(request)

        return checked

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(405, headers={"Allow": self.allow or ", ".join(self.methods)})
        await self.app(scope, receive, send)


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
        app.router.add_api_route(
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
            route_class_override=FlatRoute,
        )
        added += 1
    _set_allow(app)
    return added


def _set_allow(app: FastAPI) -> None:
    """Give each flat route the methods of every route with its path (at start-up)."""
    methods: dict[str, set[str]] = defaultdict(set)
    flat = [r for r in app.router.routes if isinstance(r, FlatRoute)]
    for route in flat:
        methods[route.path_format] |= route.methods or set()
    for route in flat:
        route.allow = ", ".join(sorted(methods[route.path_format]))
