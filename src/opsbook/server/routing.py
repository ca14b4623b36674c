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
  about its body from a 422;
- an endpoint marked raw (``opsbook.api.deps.raw_endpoint``: it takes the request and returns
  a response) is called directly, without FastAPI's request handler (dependency solving, exit
  stacks: ~30 µs); its declaration still documents it in the OpenAPI document.

:class:`StaticFirst` finds the route of a path without parameters by one dict lookup instead
of asking every route in order (the router matched ~27 regular expressions before
``/api/v1/me``); parameterised paths, 404s and 405s still go through the ordered match.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from opsbook.api.auth import context_of, principal_of
from opsbook.api.deps import BEFORE_BODY, RAW, Caller, Ctx

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class FlatRoute(APIRoute):
    """An API route added flat to the app (see the module docstring)."""

    allow: str = ""  # every method of this path, set once all routes are added

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.before: Callable[[Request], None] | None = getattr(endpoint, BEFORE_BODY, None)
        self.raw: Handler | None = (
            _checked(endpoint, self.before) if getattr(endpoint, RAW, False) else None
        )
        direct = None if kwargs.get("dependencies") else _direct(endpoint)
        self.authenticates = direct is not None
        super().__init__(path, direct or endpoint, **kwargs)

    def get_route_handler(self) -> Handler:
        handler = _checked(super().get_route_handler(), self.before)
        if not self.authenticates:
            return handler

        async def authenticated(request: Request) -> Response:
            # Where FastAPI solved the Caller dependency: before the parameters are checked,
            # so a caller who is not signed in gets a 401, not a 422.
            principal_of(request)
            return await handler(request)

        return authenticated

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(405, headers={"Allow": self.allow or ", ".join(self.methods)})
        if self.raw is None:
            await self.app(scope, receive, send)
            return
        # Errors propagate to the app's exception handlers (ExceptionMiddleware), as they
        # would from FastAPI's handler.
        response = await self.raw(Request(scope, receive, send))
        await response(scope, receive, send)


_REQUEST = "opsbook_request"


def _direct(endpoint: Callable[..., Any]) -> Callable[..., Any] | None:
    """``endpoint`` taking its ``Caller`` and ``Ctx`` parameters from the request instead of
    FastAPI's dependency solving (~15 µs a request in FastAPI 0.165), or None when it has
    none or is not a coroutine function (those keep FastAPI's machinery). The parameters
    FastAPI validates, and the OpenAPI document, stay the same: these two dependencies read
    only the request."""
    if not inspect.iscoroutinefunction(endpoint):
        return None
    try:
        hints = get_type_hints(endpoint, include_extras=True)
    except Exception:  # unresolvable annotations: leave it to FastAPI
        return None
    signature = inspect.signature(endpoint)
    fill: dict[str, Callable[[Request], Any]] = {}
    kept: list[inspect.Parameter] = []
    request_name: str | None = None
    for name, param in signature.parameters.items():
        hint = hints.get(name, param.annotation)
        given = _PROVIDED.get(_dependency_of(hint))
        if given is not None:
            fill[name] = given
            continue
        if hint is Request:
            request_name = name
        kept.append(param.replace(annotation=hint))
    if not fill:
        return None
    if request_name is None:
        request_name = _REQUEST
        kept.append(inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
    own_request = request_name == _REQUEST
    call = endpoint

    async def direct(**kwargs: Any) -> Any:
        request: Request = kwargs.pop(_REQUEST) if own_request else kwargs[request_name]
        for name, provide in fill.items():
            kwargs[name] = provide(request)
        return await call(**kwargs)

    direct.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=sorted(kept, key=lambda p: p.kind)
    )
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(direct, attr, getattr(endpoint, attr, None))
    return direct


def _dependency_of(hint: Any) -> Any:
    for meta in getattr(hint, "__metadata__", ()):
        dependency = getattr(meta, "dependency", None)
        if dependency is not None:
            return dependency
    return None


_PROVIDED: dict[Any, Callable[[Request], Any]] = {
    _dependency_of(Caller): principal_of,
    _dependency_of(Ctx): context_of,
}


def _checked(handler: Handler, before: Callable[[Request], None] | None) -> Handler:
    """``handler`` running ``before`` (the permission-first check) first, if there is one."""
    if before is None:
        return handler

    async def checked(request: Request) -> Response:
        before(request)
        return await handler(request)

    return checked


class StaticFirst:
    """The router's entry point: a path without parameters goes straight to its route.

    A (method, path) is in the table only when the ordered match would pick the same route
    (no earlier route matches it fully), so the answer is the same either way. Anything else
    (parameters, a wrong method, 404, a root path, lifespan) is the router's ordered match.
    The table is built at the first request and again whenever routes are added.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.fallback: ASGIApp = router.app
        self.table: dict[tuple[str, str], BaseRoute] = {}
        self.built_for = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):
            await self.fallback(scope, receive, send)
            return
        if self.built_for != len(self.router.routes):
            self._build()
        route = self.table.get((scope["method"], scope["path"]))
        if route is None or getattr(self.router, "form_limits", None):
            await self.fallback(scope, receive, send)
            return
        match, child_scope = route.matches(scope)
        if match is not Match.FULL or "fastapi" in child_scope:
            await self.fallback(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self.router
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)

    def _build(self) -> None:
        routes = list(self.router.routes)
        table: dict[tuple[str, str], BaseRoute] = {}
        for i, route in enumerate(routes):
            if not isinstance(route, APIRoute) or route.param_convertors or not route.methods:
                continue
            for method in route.methods:
                probe = {"type": "http", "method": method, "path": route.path, "headers": []}
                if route.matches(probe)[0] is not Match.FULL:
                    continue
                if any(r.matches(probe)[0] is Match.FULL for r in routes[:i]):
                    continue  # an earlier route wins: leave it to the ordered match
                table.setdefault((method, route.path), route)
        self.table = table
        self.built_for = len(routes)


def route_static_first(app: FastAPI) -> None:
    """Put :class:`StaticFirst` in front of ``app``'s router (a router with middleware of its
    own keeps its ordered match)."""
    if app.router.middleware_stack == app.router.app:
        app.router.middleware_stack = StaticFirst(app.router)


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
