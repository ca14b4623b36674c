"""Sign in and out: passwords (with lockout) and OpenID Connect."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opsbook import audit
from opsbook.api.auth import SESSION_COOKIE, context_of, session_of
from opsbook.errors import OpsbookError, PermissionDenied
from opsbook.executions.context import AppContext
from opsbook.logs import get_logger
from opsbook.users import accounts, sessions
from opsbook.users.accounts import Account
from opsbook.users.throttle import Throttle, TooManyRequests, client_key
from opsbook.web import oidc
from opsbook.web.forms import form_principal, read_form, safe_next
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)
SIGNIN_CSRF = "opsbook_signin"
Next = Annotated[str, Query(max_length=500)]


def _signin_page(
    request: Request, *, next_url: str, username: str = "", error: OpsbookError | None = None
) -> Response:
    ctx = context_of(request)
    token = request.cookies.get(SIGNIN_CSRF) or secrets.token_urlsafe(24)
    response = render(
        request,
        "signin.html",
        status=error.http_status if error else 200,
        signin_csrf=token,
        next=safe_next(next_url),
        username=username,
        error=error,
        oidc_label=ctx.server.oidc_label if ctx.server.oidc_enabled else None,
    )
    response.set_cookie(
        SIGNIN_CSRF,
        token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=ctx.server.secure_cookies,
    )
    return response


def start_session(ctx: AppContext, account: Account, method: str, target: str) -> Response:
    raw, _ = sessions.create_session(db=ctx.db, account=account, method=method, ttl=ctx.session_ttl)
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=int(ctx.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=ctx.server.secure_cookies,
        path="/",
    )
    response.delete_cookie(SIGNIN_CSRF)
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, next: Next = "/") -> Response:
    if session_of(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _signin_page(request, next_url=next)


@router.post("/signin")
async def signin(request: Request) -> Response:
    ctx = context_of(request)
    form = await read_form(request)
    expected = request.cookies.get(SIGNIN_CSRF, "")
    username = form.get("username")[:64]
    # Throttled first, so a flood (even with a forged form) costs no hash and no audit write.
    throttle, client = signin_throttle(ctx), client_key(request.client and request.client.host)
    try:
        throttle.check(client, what="sign-in attempts")
    except TooManyRequests as exc:
        # Logged, not audited: a flood must not turn into one database write per request.
        get_logger().warning(
            "auth.signin.throttled", fields={"client": client, "retry_after": exc.retry_after}
        )
        page = _signin_page(request, next_url=form.get("next", "/"), username=username, error=exc)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    if not expected or not hmac.compare_digest(expected, form.get("csrf")):
        audit.record(
            db=ctx.db,
            actor=username.strip().lower() or "-",
            action="access.denied",
            subject="signin",
            payload={"reason": "missing or wrong sign-in CSRF token"},
        )
        raise PermissionDenied(
            "the sign-in form expired", hint="reload the sign-in page and try again"
        )
    try:
        account = accounts.authenticate(
            db=ctx.db, username=username, password=form.get("password"), policy=ctx.lockout
        )
    except OpsbookError as exc:
        return _signin_page(request, next_url=form.get("next", "/"), username=username, error=exc)
    throttle.give_back(client)  # only refused attempts count towards the limit
    return start_session(ctx, account, "password", form.get("next", "/"))


SIGNIN_RATE, SIGNIN_BURST = 5.0, 10.0  # per client address: 5 attempts a second, bursts of 10


def signin_throttle(ctx: AppContext) -> Throttle:
    """The server's sign-in throttle (one per process, in the app context's cache)."""
    found = ctx.cache.get("signin.throttle")
    if isinstance(found, Throttle):
        return found
    made = Throttle(rate=SIGNIN_RATE, burst=SIGNIN_BURST)
    ctx.cache["signin.throttle"] = made
    return made


@router.post("/signout")
async def signout(request: Request) -> Response:
    ctx = context_of(request)
    who, _ = await form_principal(request)
    sessions.end_session(db=ctx.db, raw=request.cookies.get(SESSION_COOKIE, ""), actor=who.username)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/oidc/login")
async def oidc_login(request: Request, next: Next = "/") -> Response:
    ctx = context_of(request)
    if not ctx.server.oidc_enabled:
        raise PermissionDenied(
            "single sign-on is not configured",
            hint="set OPSBOOK_OIDC_ISSUER and OPSBOOK_OIDC_CLIENT_ID",
        )
    url = await oidc.begin(ctx, base_url=str(request.base_url), next_url=safe_next(next))
    return RedirectResponse(url, status_code=302)


@router.get("/auth/oidc/callback")
async def oidc_callback(
    request: Request,
    code: Annotated[str, Query(max_length=4000)] = "",
    state: Annotated[str, Query(max_length=200)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    ctx = context_of(request)
    if error or not code or not state:
        audit.record(
            db=ctx.db,
            actor="-",
            action="auth.signin.failed",
            subject="oidc",
            payload={"reason": error or "no code in the callback"},
        )
        return _signin_page(
            request,
            next_url="/",
            error=oidc.OidcError(
                f"single sign-on did not complete ({error or 'no code'})", hint="try again"
            ),
        )
    try:
        account, target = await oidc.finish(
            ctx, base_url=str(request.base_url), code=code, state=state
        )
    except OpsbookError as exc:
        audit.record(
            db=ctx.db,
            actor="-",
            action="auth.signin.failed",
            subject="oidc",
            payload={"reason": exc.message},
        )
        return _signin_page(request, next_url="/", error=exc)
    return start_session(ctx, account, "oidc", target)
