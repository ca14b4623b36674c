"""/api/v1/me, /health, /audit (log, verify, export), /users, /tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from opsbook import __version__
from opsbook.api import schemas
from opsbook.api.deps import Caller, Ctx, permission_first
from opsbook.audit._signer import server_witness, verify_live
from opsbook.errors import ValidationError
from opsbook.executions import queries
from opsbook.users import accounts, passwords, tokens
from opsbook.users.access import require

router = APIRouter()
Username = Annotated[str, Query(max_length=64)]
TS = Annotated[str | None, Query(max_length=40, description="ISO 8601 UTC")]


@router.get(
    "/health",
    operation_id="getHealth",
    response_model=schemas.Health,
    tags=["meta"],
    openapi_extra={"security": []},
)
async def health() -> dict[str, str]:
    """Liveness: no sign-in needed."""
    return {"status": "ok", "version": __version__}


@router.get("/me", operation_id="getMe", response_model=schemas.Me, tags=["meta"])
async def me(caller: Caller) -> dict[str, Any]:
    return {
        "username": caller.username,
        "roles": list(caller.roles),
        "permissions": sorted(caller.permissions),
        "via": caller.via,
        "token": caller.token_id,
        "scopes": list(caller.scopes) if caller.scopes is not None else None,
    }


@router.get(
    "/audit", operation_id="listAuditEvents", response_model=schemas.AuditPage, tags=["audit"]
)
async def audit_events(
    ctx: Ctx,
    caller: Caller,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=100, description="prefix, e.g. auth.")] = None,
    execution_id: Annotated[str | None, Query(max_length=64)] = None,
    since: TS = None,
    until: TS = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=300, description="next_cursor of the previous page")
    ] = None,
    before_id: Annotated[
        int | None,
        Query(ge=1, le=2**62, deprecated=True, description="Older form of cursor (kept)"),
    ] = None,
) -> dict[str, Any]:
    if cursor is not None:
        before_id = _audit_cursor(cursor)
    page = queries.audit_log(
        ctx=ctx,
        principal=caller,
        actor=actor,
        action=action,
        execution_id=execution_id,
        since=queries.parse_when(since, "since"),
        until=queries.parse_when(until, "until"),
        limit=limit,
        before_id=before_id,
    )
    return {
        "items": page.items,
        "next_cursor": page.next_cursor,
        "next_before_id": int(page.next_cursor) if page.next_cursor else None,
    }


def _audit_cursor(cursor: str) -> int:
    """The audit log's cursor: opaque to callers (today the id to continue before)."""
    if not cursor.isdigit() or not 1 <= int(cursor) <= 2**62:
        raise ValidationError(
            "the cursor is not one this server issued",
            field="cursor",
            hint="use next_cursor from the previous page, or leave it out for the first page",
        )
    return int(cursor)


@router.get(
    "/audit/verify",
    operation_id="verifyAuditChain",
    response_model=schemas.VerifyReport,
    tags=["audit"],
)
async def audit_verify(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Walk the whole hash chain; names the first record that was altered or removed."""
    require(db=ctx.db, principal=caller, permission="audit:read", subject="audit")
    return verify_live(db=ctx.db, cfg=server_witness(ctx)).to_dict()


@router.get(
    "/audit/export",
    operation_id="exportAuditEvidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "evidence pack"}},
    tags=["audit"],
)
async def audit_export(ctx: Ctx, caller: Caller, since: TS = None, until: TS = None) -> Response:
    """An evidence pack (zip): events.jsonl, SUMMARY.md, verify_chain.py, manifest.sha256."""
    data = queries.evidence_zip(
        ctx=ctx,
        principal=caller,
        since=queries.parse_when(since, "since"),
        until=queries.parse_when(until, "until"),
    )
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="opsbook-evidence.zip"'},
    )


# -- users ------------------------------------------------------------------------------------
@router.get("/users", operation_id="listUsers", response_model=list[schemas.User], tags=["users"])
async def list_users(ctx: Ctx, caller: Caller) -> list[dict[str, Any]]:
    require(db=ctx.db, principal=caller, permission="users:read", subject="users")
    return [a.to_dict() for a in accounts.list_accounts(db=ctx.db)]


@router.post(
    "/users",
    operation_id="createUser",
    response_model=schemas.UserCreated,
    status_code=201,
    tags=["users"],
)
@permission_first("users:manage", "users")
async def create_user(ctx: Ctx, caller: Caller, body: schemas.UserCreate) -> dict[str, Any]:
    """Create an account. Without a password, a one-time password is generated and returned
    once."""
    require(db=ctx.db, principal=caller, permission="users:manage", subject="users")
    password = body.password or passwords.generate_password()
    account = accounts.create_account(
        db=ctx.db,
        actor=caller.username,
        username=body.username,
        roles=body.roles,
        known=ctx.known_roles(),
        password=password,
        display_name=body.display_name,
        email=body.email,
    )
    return {**account.to_dict(), "password": None if body.password else password}


@router.get(
    "/users/{username}", operation_id="getUser", response_model=schemas.User, tags=["users"]
)
async def show_user(ctx: Ctx, caller: Caller, username: str) -> dict[str, Any]:
    if username != caller.username:
        require(db=ctx.db, principal=caller, permission="users:read", subject=f"user:{username}")
    return accounts.get_account(db=ctx.db, username=username).to_dict()


@router.post(
    "/users/{username}/disable",
    operation_id="disableUser",
    response_model=schemas.User,
    tags=["users"],
)
async def disable_user(ctx: Ctx, caller: Caller, username: str) -> dict[str, Any]:
    require(db=ctx.db, principal=caller, permission="users:manage", subject=f"user:{username}")
    return accounts.set_disabled(
        db=ctx.db, actor=caller.username, username=username, disabled=True
    ).to_dict()


@router.post(
    "/users/{username}/enable",
    operation_id="enableUser",
    response_model=schemas.User,
    tags=["users"],
)
async def enable_user(ctx: Ctx, caller: Caller, username: str) -> dict[str, Any]:
    require(db=ctx.db, principal=caller, permission="users:manage", subject=f"user:{username}")
    return accounts.set_disabled(
        db=ctx.db, actor=caller.username, username=username, disabled=False
    ).to_dict()


@router.post(
    "/users/{username}/roles",
    operation_id="grantUserRole",
    response_model=schemas.User,
    tags=["users"],
)
@permission_first("users:manage", "user:{username}")
async def grant(ctx: Ctx, caller: Caller, username: str, body: schemas.RoleGrant) -> dict[str, Any]:
    require(db=ctx.db, principal=caller, permission="users:manage", subject=f"user:{username}")
    return accounts.grant_role(
        db=ctx.db, actor=caller.username, username=username, role=body.role, known=ctx.known_roles()
    ).to_dict()


@router.delete(
    "/users/{username}/roles/{role}",
    operation_id="revokeUserRole",
    response_model=schemas.User,
    tags=["users"],
)
async def revoke(ctx: Ctx, caller: Caller, username: str, role: str) -> dict[str, Any]:
    require(db=ctx.db, principal=caller, permission="users:manage", subject=f"user:{username}")
    return accounts.revoke_role(
        db=ctx.db, actor=caller.username, username=username, role=role
    ).to_dict()


# -- tokens -----------------------------------------------------------------------------------
@router.get(
    "/tokens", operation_id="listTokens", response_model=list[schemas.Token], tags=["tokens"]
)
async def list_tokens(
    ctx: Ctx, caller: Caller, all: Annotated[bool, Query(description="Everyone's")] = False
) -> list[dict[str, Any]]:
    require(db=ctx.db, principal=caller, permission="tokens:own", subject="tokens")
    if all:
        require(db=ctx.db, principal=caller, permission="tokens:manage", subject="tokens")
    found = tokens.list_tokens(db=ctx.db, username=None if all else caller.username)
    return [t.to_dict() for t in found]


@router.post(
    "/tokens",
    operation_id="createToken",
    response_model=schemas.TokenCreated,
    status_code=201,
    tags=["tokens"],
)
@permission_first("tokens:own", "tokens")
async def create_token(ctx: Ctx, caller: Caller, body: schemas.TokenCreate) -> dict[str, Any]:
    """Create an API token. The secret is in the answer once and never again."""
    require(db=ctx.db, principal=caller, permission="tokens:own", subject="tokens")
    owner = body.user or caller.username
    if owner != caller.username:
        require(db=ctx.db, principal=caller, permission="tokens:manage", subject=f"user:{owner}")
    token, secret = tokens.create_token(
        db=ctx.db,
        actor=caller.username,
        username=owner,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    return {**token.to_dict(), "token": secret}


@router.delete(
    "/tokens/{token_id}", operation_id="revokeToken", response_model=schemas.Token, tags=["tokens"]
)
async def revoke_token(ctx: Ctx, caller: Caller, token_id: str) -> dict[str, Any]:
    require(db=ctx.db, principal=caller, permission="tokens:own", subject="tokens")
    token = tokens.get_token(db=ctx.db, token_id=token_id)
    if token.username != caller.username:
        require(
            db=ctx.db, principal=caller, permission="tokens:manage", subject=f"token:{token_id}"
        )
    return tokens.revoke_token(db=ctx.db, actor=caller.username, token_id=token_id).to_dict()
