"""Routers are added to the app as flat routes with the API's shared responses (ADR 0008)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

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
