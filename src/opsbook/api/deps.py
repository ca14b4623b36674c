"""FastAPI dependencies shared by the routers (imported only by ``opsbook serve``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from starlette.requests import Request

from opsbook.api.auth import context_of, principal_of
from opsbook.api.context import AppContext
from opsbook.users.access import Principal


async def _caller(request: Request) -> Principal:
    return principal_of(request)


async def _ctx(request: Request) -> AppContext:
    return context_of(request)


Caller = Annotated[Principal, Depends(_caller)]
Ctx = Annotated[AppContext, Depends(_ctx)]
ExecutionId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{1,32}$", description="Execution id (a unique prefix is enough)")
]
