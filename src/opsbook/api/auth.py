"""Who is calling: an API token (``Authorization: Bearer obk_…``) or a console session cookie.

Requests authenticated by the cookie must carry the session's CSRF token on every
state-changing method (the ``X-CSRF-Token`` header, or the ``csrf`` form field in the console).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from opsbook import audit
from opsbook.errors import PermissionDenied
from opsbook.executions.context import AppContext
from opsbook.users import sessions, tokens
from opsbook.users.access import Principal, principal_for
from opsbook.users.errors import AuthenticationError

SESSION_COOKIE = "opsbook_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
TOKENS = "auth.verified_tokens"  # key in ctx.cache


def context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def verified_tokens(ctx: AppContext) -> tokens.VerifiedTokens:
    """The process's tokens already checked (see :class:`opsbook.users.tokens.VerifiedTokens`)."""
    found: tokens.VerifiedTokens | None = ctx.cache.get(TOKENS)
    if found is None:
        found = ctx.cache[TOKENS] = tokens.VerifiedTokens(ctx.db)
    return found


def session_of(request: Request) -> sessions.Session | None:
    """The console session of this request (cached on the request), or None."""
    if "opsbook.session" in request.scope:
        cached: sessions.Session | None = request.scope["opsbook.session"]
        return cached
    ctx = context_of(request)
    raw = request.cookies.get(SESSION_COOKIE, "")
    found = (
        sessions.resolve_session(db=ctx.db, raw=raw, idle_timeout=ctx.idle_timeout) if raw else None
    )
    request.scope["opsbook.session"] = found
    return found


def csrf_ok(session: sessions.Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf_token, presented or "")


def principal_of(request: Request, *, csrf_field: str | None = None) -> Principal:
    """The caller, or AuthenticationError (401). ``csrf_field`` is the form value of a
    console POST; API calls with the cookie send the header instead."""
    cached: Principal | None = request.scope.get("opsbook.principal")
    if cached is not None:
        return cached  # already authenticated (and CSRF-checked) for this request
    principal = _authenticate(request, csrf_field)
    request.scope["opsbook.principal"] = principal
    return principal


def _authenticate(request: Request, csrf_field: str | None) -> Principal:
    ctx = context_of(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(
                "unsupported Authorization header", hint="send Authorization: Bearer obk_…"
            )
        return verified_tokens(ctx).principal(value)
    session = session_of(request)
    if session is None:
        raise AuthenticationError(
            "sign in first",
            hint="use an API token (Authorization: Bearer obk_…) or sign in to the console",
        )
    if request.method not in SAFE_METHODS:
        presented = csrf_field if csrf_field is not None else request.headers.get(CSRF_HEADER)
        if not csrf_ok(session, presented):
            audit.record(
                db=ctx.db,
                actor=session.account.username,
                action="access.denied",
                subject=f"http:{request.method} {request.url.path}",
                payload={"reason": "missing or wrong CSRF token", "via": "session"},
            )
            raise PermissionDenied(
                "missing or wrong CSRF token",
                hint="reload the page and try again (the form was older than your session)",
            )
    from opsbook.users.accounts import jit_roles  # noqa: PLC0415

    jit, _ = jit_roles(db=ctx.db, username=session.account.username)
    return principal_for(session.account, via="session", extra_roles=jit)
