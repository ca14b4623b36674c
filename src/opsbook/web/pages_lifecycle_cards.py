"""Console pages for the quick reference cards (issue 15): /cards lists them, /cards/{kind}
shows one (?env= for the system and commands cards), printable with the console's print
stylesheet (A4; navigation hidden)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)
Env = Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")]


@router.get("/cards")
async def cards_index(request: Request) -> Response:
    from opsbook.lifecycle.cards import KINDS, TITLES  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="cards")
    return render(
        request,
        "lifecycle_cards.html",
        principal=who,
        kinds=[(k, TITLES[k]) for k in KINDS],
        environments=ctx.workspace.environment_names(),
        card=None,
        body=None,
        env="",
    )


@router.get("/cards/{kind}")
async def card_page(request: Request, kind: str, env: Env = "") -> Response:
    from opsbook.lifecycle import cards  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"cards:{kind}")
    built = cards.build(kind, workspace=ctx.workspace, environment=env or None)
    return render(
        request,
        "lifecycle_cards.html",
        principal=who,
        kinds=[(k, cards.TITLES[k]) for k in cards.KINDS],
        environments=ctx.workspace.environment_names(),
        card=built,
        body=Markup(cards.render_body(built)),  # noqa: S704 - every value escaped by render_body
        env=env,
    )
