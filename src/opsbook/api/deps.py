"""FastAPI dependencies shared by the routers (imported only by ``opsbook serve``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path
from starlette.requests import Request

from opsbook.api.auth import context_of, principal_of
from opsbook.executions.context import AppContext
from opsbook.users.access import Principal, require

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

#: The attribute an endpoint carries when a check must run before its body is read: a
#: callable taking the request that raises (e.g. a 401 or 403) or returns None. Read by
#: opsbook.server.routing.FlatRoute.
BEFORE_BODY = "__opsbook_before_body__"
#: The attribute of an endpoint served raw (see :func:`raw_endpoint`).
RAW = "__opsbook_raw__"


async def _caller(request: Request) -> Principal:
    return principal_of(request)


async def _ctx(request: Request) -> AppContext:
    return context_of(request)


Caller = Annotated[Principal, Depends(_caller)]
Ctx = Annotated[AppContext, Depends(_ctx)]
ExecutionId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{1,32}$", description="Execution id (a unique prefix is enough)")
]


def permission_first(permission: str, subject: str) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint whose permission does not depend on its body: the caller is
    authenticated (401) and ``permission`` checked (403, audited with ``subject``, formatted
    with the path parameters) before the body is read, so a caller who may not use the route
    never sees a 422 describing its body. The endpoint keeps its own, finer checks (they may
    depend on the body). Put it under the route decorator; ``add_routes`` does the rest."""

    def check(request: Request) -> None:
        principal = principal_of(request)  # kept on the request: Caller reuses it
        if principal.can(permission):
            return
        require(
            db=context_of(request).db,
            principal=principal,
            permission=permission,
            subject=subject.format_map(request.path_params),
        )

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, BEFORE_BODY, check)
        return endpoint

    return mark


def raw_endpoint(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint that takes only the request and returns a Response: the flat route
    calls it directly, without FastAPI's request handler (a hot path: the Alertmanager
    webhook). Its route declaration still documents it. Put it under the route decorator."""
    setattr(endpoint, RAW, True)
    return endpoint
