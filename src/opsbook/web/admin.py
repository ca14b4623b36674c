"""Console pages for the audit log, quick reference, your account (tokens, password) and
accounts (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from opsbook.api import catalogue
from opsbook.api.auth import context_of, principal_of
from opsbook.audit._signer import server_witness, verify_live
from opsbook.errors import OpsbookError, ValidationError
from opsbook.executions import queries
from opsbook.users import accounts, passwords, tokens
from opsbook.users.access import require
from opsbook.users.roles import ROLE_DESCRIPTIONS, SCOPES
from opsbook.web.forms import form_principal
from opsbook.web.render import render, with_flash

router = APIRouter(include_in_schema=False)
Q = Annotated[str, Query(max_length=100)]


def _audit_page(
    request: Request, f: dict[str, str], *, report: Any = None, error: OpsbookError | None = None
) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    rows: list[dict[str, Any]] = []
    next_before = None
    try:
        page = queries.audit_log(
            ctx=ctx,
            principal=who,
            actor=f["actor"] or None,
            action=f["action"] or None,
            execution_id=f["execution_id"] or None,
            since=queries.parse_when(f["since"], "since"),
            until=queries.parse_when(f["until"], "until"),
            limit=100,
            before_id=int(f["before_id"]) if f["before_id"].isdigit() else None,
        )
        rows, next_before = page.items, page.next_cursor
    except ValidationError as exc:
        error = exc
    return render(
        request,
        "audit.html",
        status=422 if error else 200,
        principal=who,
        rows=rows,
        next_before=next_before,
        f=f,
        report=report,
        error=error,
        can_export=who.can("audit:export"),
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    actor: Q = "",
    action: Q = "",
    execution_id: Q = "",
    since: Q = "",
    until: Q = "",
    before_id: Q = "",
) -> Response:
    f = {
        "actor": actor,
        "action": action,
        "execution_id": execution_id,
        "since": since,
        "until": until,
        "before_id": before_id,
    }
    return _audit_page(request, f)


@router.get("/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="audit:read", subject="audit")
    report = verify_live(db=ctx.db, cfg=server_witness(ctx))
    f = dict.fromkeys(("actor", "action", "execution_id", "since", "until", "before_id"), "")
    return _audit_page(request, f, report=report)


@router.get("/audit/export")
async def audit_export(request: Request, since: Q = "", until: Q = "") -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    data = queries.evidence_zip(
        ctx=ctx,
        principal=who,
        since=queries.parse_when(since, "since"),
        until=queries.parse_when(until, "until"),
    )
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="opsbook-evidence.zip"'},
    )


@router.get("/reference", response_class=HTMLResponse)
async def reference(request: Request, environment: Q = "") -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    ref = catalogue.quick_reference(
        ctx=ctx, principal=who, environment=environment or ctx.workspace.default_environment
    )
    return render(request, "reference.html", principal=who, ref=ref)


# -- your account -----------------------------------------------------------------------------
def _account_page(
    request: Request, *, new_token: str | None = None, error: OpsbookError | None = None
) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    account = accounts.get_account(db=ctx.db, username=who.username)
    return render(
        request,
        "account.html",
        status=error.http_status if error else 200,
        principal=who,
        roles=account.roles,
        tokens=tokens.list_tokens(db=ctx.db, username=who.username),
        scopes=list(SCOPES),
        new_token=new_token,
        error=error,
        can_password=account.has_password,
    )


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request) -> Response:
    return _account_page(request)


@router.post("/account/tokens")
async def create_token(request: Request) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission="tokens:own", subject="tokens")
    try:
        days = int(form.get("expires_in_days") or "90")
    except ValueError:
        days = 0
    try:
        _, secret = tokens.create_token(
            db=ctx.db,
            actor=who.username,
            username=who.username,
            name=form.get("name"),
            scopes=form.getlist("scope"),
            expires_in_days=days,
        )
    except ValidationError as exc:
        return _account_page(request, error=exc)
    response = _account_page(request, new_token=secret)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    ctx = context_of(request)
    who, _ = await form_principal(request)
    token = tokens.get_token(db=ctx.db, token_id=token_id)
    if token.username != who.username:
        require(db=ctx.db, principal=who, permission="tokens:manage", subject=f"token:{token_id}")
    tokens.revoke_token(db=ctx.db, actor=who.username, token_id=token_id)
    return with_flash(RedirectResponse("/account", status_code=303), f"Token {token_id} revoked.")


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    try:
        accounts.authenticate(
            db=ctx.db, username=who.username, password=form.get("current"), policy=ctx.lockout
        )
        accounts.set_password(
            db=ctx.db, actor=who.username, username=who.username, password=form.get("new")
        )
    except OpsbookError as exc:
        return _account_page(request, error=exc)
    return with_flash(
        RedirectResponse("/signin", status_code=303), "Password changed; sign in again."
    )


# -- accounts (admins) ------------------------------------------------------------------------
def _users_page(
    request: Request, *, created: dict[str, str] | None = None, error: OpsbookError | None = None
) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="users:read", subject="users")
    return render(
        request,
        "users.html",
        status=error.http_status if error else 200,
        principal=who,
        users=accounts.list_accounts(db=ctx.db),
        known_roles=ctx.known_roles(),
        descriptions=ROLE_DESCRIPTIONS,
        can_manage=who.can("users:manage"),
        created=created,
        error=error,
    )


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request) -> Response:
    return _users_page(request)


@router.post("/users")
async def add_user(request: Request) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission="users:manage", subject="users")
    password = passwords.generate_password()
    try:
        account = accounts.create_account(
            db=ctx.db,
            actor=who.username,
            username=form.get("username").strip().lower(),
            roles=form.getlist("role"),
            known=ctx.known_roles(),
            password=password,
            display_name=form.get("display_name"),
        )
    except OpsbookError as exc:
        return _users_page(request, error=exc)
    response = _users_page(request, created={"username": account.username, "password": password})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/users/{username}/{change}")
async def change_user(request: Request, username: str, change: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    require(db=ctx.db, principal=who, permission="users:manage", subject=f"user:{username}")
    try:
        if change == "grant":
            accounts.grant_role(
                db=ctx.db,
                actor=who.username,
                username=username,
                role=form.get("role"),
                known=ctx.known_roles(),
            )
        elif change == "revoke":
            accounts.revoke_role(
                db=ctx.db, actor=who.username, username=username, role=form.get("role")
            )
        elif change in ("disable", "enable"):
            accounts.set_disabled(
                db=ctx.db, actor=who.username, username=username, disabled=change == "disable"
            )
        else:
            raise ValidationError(f"unknown change {change[:20]!r}", field="change", hint="reload")
    except OpsbookError as exc:
        return _users_page(request, error=exc)
    return with_flash(RedirectResponse("/users", status_code=303), f"{username}: {change} done.")
