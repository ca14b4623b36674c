"""OpenID Connect sign-in (e.g. Entra ID): authorization code flow with PKCE and nonce.

authlib builds the authorization and token requests (RFC 6749, RFC 7636); joserfc (authlib's
JOSE library) verifies the ID token's signature against the provider's JWKS and checks
``iss``, ``aud``, ``exp``, ``iat`` and ``nonce``. Pending logins (state, nonce, verifier) live
in the database, so any replica can finish a login another one started, and each is used once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook.errors import OpsbookError
from opsbook.executions.context import AppContext
from opsbook.users import accounts
from opsbook.users.accounts import Account
from opsbook.users.errors import AuthenticationError

META_TTL = 3600.0
STATE_TTL = timedelta(minutes=10)
TIMEOUT = 10.0


class OidcError(AuthenticationError):
    code = "oidc"


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def _get_json(url: str) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            r = await client.get(url, headers={"Accept": "application/json"})
            r.raise_for_status()
            data = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError(
            f"the identity provider did not answer {url}: {type(exc).__name__}",
            hint="check OPSBOOK_OIDC_ISSUER and that the provider is reachable",
            retryable=True,
        ) from exc
    if not isinstance(data, dict):
        raise OidcError(f"{url} did not return a JSON object", hint="check OPSBOOK_OIDC_ISSUER")
    return data


async def metadata(ctx: AppContext) -> dict[str, Any]:
    cached = ctx.cache.get("oidc_meta")
    if cached and time.monotonic() - cached[0] < META_TTL:
        return dict(cached[1])
    issuer = str(ctx.server.oidc_issuer).rstrip("/")
    meta = await _get_json(issuer + "/.well-known/openid-configuration")
    if str(meta.get("issuer", "")).rstrip("/") != issuer:
        raise OidcError(
            "the provider's metadata names another issuer",
            hint=f"set OPSBOOK_OIDC_ISSUER to exactly {meta.get('issuer')!r}",
        )
    ctx.cache["oidc_meta"] = (time.monotonic(), meta)
    return meta


async def _keys(ctx: AppContext, uri: str, *, refresh: bool = False) -> Any:
    from joserfc.jwk import KeySet  # noqa: PLC0415

    cached = ctx.cache.get("oidc_jwks")
    if cached and not refresh and time.monotonic() - cached[0] < META_TTL:
        return cached[1]
    keys = KeySet.import_key_set(await _get_json(uri))  # type: ignore[arg-type]
    ctx.cache["oidc_jwks"] = (time.monotonic(), keys)
    return keys


def redirect_uri(ctx: AppContext, base_url: str) -> str:
    base = (ctx.server.public_url or base_url).rstrip("/")
    return base + "/auth/oidc/callback"


async def begin(ctx: AppContext, *, base_url: str, next_url: str) -> str:
    """Store a pending login and return the provider's authorization URL to redirect to."""
    from authlib.common.security import generate_token  # noqa: PLC0415
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # noqa: PLC0415
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: PLC0415

    meta = await metadata(ctx)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    now = datetime.now(UTC)
    ctx.db.execute(
        "INSERT INTO auth_states (state, nonce, code_verifier, next_url, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (state, nonce, verifier, next_url, _iso(now + STATE_TTL)),
    )
    uri: str = prepare_grant_uri(
        str(meta["authorization_endpoint"]),
        str(ctx.server.oidc_client_id),
        "code",
        redirect_uri=redirect_uri(ctx, base_url),
        scope=ctx.server.oidc_scopes,
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    return uri


async def finish(ctx: AppContext, *, base_url: str, code: str, state: str) -> tuple[Account, str]:
    """Exchange the code, verify the ID token, sign the account in (created on first use).
    Returns the account and the page to go to."""
    import httpx  # noqa: PLC0415
    from authlib.oauth2.rfc6749.parameters import prepare_token_request  # noqa: PLC0415
    from joserfc import jwt  # noqa: PLC0415
    from joserfc.errors import JoseError  # noqa: PLC0415
    from joserfc.jwt import JWTClaimsRegistry  # noqa: PLC0415

    with ctx.db.transaction():
        row = ctx.db.one("SELECT * FROM auth_states WHERE state = ?", (state[:200],))
        ctx.db.execute("DELETE FROM auth_states WHERE state = ?", (state[:200],))
    if row is None or accounts.parse_ts(str(row["expires_at"])) <= datetime.now(UTC):
        raise OidcError("this sign-in link expired or was used already", hint="sign in again")
    meta = await metadata(ctx)
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri(ctx, base_url),
        code_verifier=row["code_verifier"],
        client_id=ctx.server.oidc_client_id,
    )
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            r = await client.post(
                str(meta["token_endpoint"]),
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
                auth=(str(ctx.server.oidc_client_id), ctx.server.oidc_client_secret or ""),
            )
        token = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError("the token request failed", hint="try again", retryable=True) from exc
    if r.status_code != 200 or not isinstance(token, dict) or "id_token" not in token:
        raise OidcError(
            f"the provider refused the sign-in ({token.get('error', r.status_code)})"
            if isinstance(token, dict)
            else "the provider refused the sign-in",
            hint="check the client id, secret and redirect URL registered with the provider",
        )
    keys = await _keys(ctx, str(meta["jwks_uri"]))
    try:
        try:
            decoded = jwt.decode(str(token["id_token"]), keys, algorithms=["RS256", "ES256"])
        except JoseError:
            keys = await _keys(ctx, str(meta["jwks_uri"]), refresh=True)  # key rotation
            decoded = jwt.decode(str(token["id_token"]), keys, algorithms=["RS256", "ES256"])
        JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": str(meta["issuer"])},
            aud={"essential": True, "value": str(ctx.server.oidc_client_id)},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": str(row["nonce"])},
            sub={"essential": True},
        ).validate(decoded.claims)
    except JoseError as exc:
        raise OidcError(
            f"the ID token is not valid: {exc.error}",
            hint="check the client id and the clocks of both systems",
        ) from exc
    claims = decoded.claims
    return _account_from(ctx, claims), str(row["next_url"])


def _account_from(ctx: AppContext, claims: dict[str, Any]) -> Account:
    raw_name = claims.get(ctx.server.oidc_username_claim) or claims.get("email") or claims["sub"]
    username = str(raw_name).strip().lower()[:64]
    known = ctx.known_roles()
    roles: list[str] | None = None
    raw_roles = claims.get(ctx.server.oidc_roles_claim)
    if isinstance(raw_roles, list):
        mapping = ctx.server.role_map()
        roles = []
        for value in raw_roles:
            role = mapping.get(str(value), str(value))
            if role in known and role not in roles:
                roles.append(role)
    default = [r.strip() for r in ctx.server.oidc_default_roles.split(",") if r.strip()]
    try:
        return accounts.upsert_external(
            db=ctx.db,
            username=username,
            display_name=str(claims.get("name") or ""),
            email=str(claims["email"]) if claims.get("email") else None,
            roles=roles,
            default_roles=default,
            known=known,
        )
    except OpsbookError as exc:
        if isinstance(exc, AuthenticationError):
            raise
        raise OidcError(exc.message, hint=exc.hint) from exc
