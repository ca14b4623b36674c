"""Routers are added to the app as flat routes with the API's shared responses (ADR 0008)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.routing import APIRoute
from starlette.routing import Route

from opsbook.api.deps import Caller, Ctx
from opsbook.server.routing import add_routes


def test_routes_keep_path_methods_and_documentation() -> None:
    router = APIRouter(prefix="/things", tags=["things"])

    @router.get("/{thing_id}", summary="One thing", responses={404: {"description": "none"}})
    async def one(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = FastAPI()
    assert add_routes(app, router, prefix="/api", responses={403: {"description": "no"}}) == 1
    assert all(isinstance(r, APIRoute) for r in app.router.routes if r.path.startswith("/api"))

    async def calls() -> tuple[Any, ...]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (
                (await client.get("/api/things/7")).json(),
                (await client.get("/api/things/x")).status_code,
                (await client.post("/api/things/7")).status_code,
                (await client.get("/openapi.json")).json(),
            )

    found, bad, wrong_method, spec = asyncio.run(calls())
    assert (found, bad, wrong_method) == ({"id": 7}, 422, 405)
    op = spec["paths"]["/api/things/{thing_id}"]["get"]
    assert op["summary"] == "One thing" and op["tags"] == ["things"]
    assert {"403", "404"} <= set(op["responses"])


def test_other_route_kinds_are_refused_not_dropped() -> None:
    router = APIRouter()
    router.routes.append(Route("/plain", lambda request: None))
    with pytest.raises(TypeError, match="cannot add Route"):
        add_routes(FastAPI(), router)


def test_static_paths_answer_as_the_ordered_match_would() -> None:
    """StaticFirst looks a parameterless path up in a dict, but an earlier route matching
    the same path still wins, a wrong method is a 405 naming every method, an unknown path a
    404: every answer is the one of the ordered match."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    from opsbook.api.deps import raw_endpoint
    from opsbook.server.routing import StaticFirst, route_static_first

    def make(static_first: bool) -> FastAPI:
        router = APIRouter()

        @router.get("/items/{name}")
        async def by_name(name: str) -> dict[str, str]:
            return {"by": "name", "name": name}

        @router.get("/items/new")
        async def new() -> dict[str, str]:  # shadowed by /items/{name}, as in plain FastAPI
            return {"by": "new"}

        @router.get("/static")
        async def static() -> dict[str, str]:
            return {"by": "static"}

        @router.post("/static")
        @raw_endpoint
        async def raw(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"raw {(await request.body()).decode()}")

        app = FastAPI()
        add_routes(app, router)
        if static_first:
            route_static_first(app)
        return app

    async def calls(app: FastAPI) -> tuple[Any, ...]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            wrong = await client.put("/static")
            return (
                (await client.get("/items/new")).json(),
                (await client.get("/static")).json(),
                (await client.head("/static")).status_code,
                (await client.post("/static", content=b"body")).text,
                (wrong.status_code, wrong.headers["allow"]),
                (await client.get("/nowhere")).status_code,
            )

    fast = make(static_first=True)
    answers = asyncio.run(calls(fast))
    assert answers == (
        {"by": "name", "name": "new"},
        {"by": "static"},
        405,  # FastAPI routes do not add HEAD
        "raw body",
        (405, "GET, POST"),
        404,
    )
    assert answers == asyncio.run(calls(make(static_first=False)))
    assert isinstance(fast.router.middleware_stack, StaticFirst)
    table = fast.router.middleware_stack.table
    assert ("GET", "/static") in table and ("GET", "/items/new") not in table


def test_caller_is_taken_from_the_request_before_the_parameters_are_checked() -> None:
    """Flat routes give Caller and Ctx without FastAPI's dependency solving, still first: an
    anonymous caller with a bad query parameter gets a 401, not a 422; the OpenAPI operation
    lists only the real parameters."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from opsbook.errors import OpsbookError

    router = APIRouter()

    @router.get("/things")
    async def things(
        caller: Caller, ctx: Ctx, limit: Annotated[int, Query(ge=1)] = 10
    ) -> dict[str, Any]:
        return {"who": caller.username, "limit": limit}

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OpsbookError)
        return JSONResponse({"status": exc.http_status}, status_code=exc.http_status)

    app = FastAPI()
    app.state.ctx = object()  # no session cookie is sent: the context is not consulted
    app.add_exception_handler(OpsbookError, refused)
    add_routes(app, router)

    async def calls() -> tuple[Any, ...]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (
                (await client.get("/things?limit=0")).status_code,
                (await client.get("/things", headers={"Authorization": "Basic x"})).status_code,
                (await client.get("/openapi.json")).json(),
            )

    assert [
        getattr(r, "authenticates", None) for r in app.router.routes if r.path == "/things"
    ] == [True]
    anonymous, wrong_scheme, spec = asyncio.run(calls())
    assert (anonymous, wrong_scheme) == (401, 401)
    params = spec["paths"]["/things"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["limit"]
