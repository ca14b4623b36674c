"""Who is acting and what they may do. ``require`` is the one permission check: the CLI, the
REST API and the console all call it, and every refusal is audited before it is raised."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import PermissionDenied
from opsbook.users.accounts import Account, find_account, jit_roles
from opsbook.users.roles import ROLE_DESCRIPTIONS, expand, permissions_of

#: Actors that are not people; they can never hold an account (usernames cannot contain ':').
SCHEDULER = "system:scheduler"


@dataclass(frozen=True)
class Principal:
    username: str
    roles: tuple[str, ...]  # expanded
    permissions: frozenset[str]
    via: str  # session | token | cli | system
    token_id: str | None = None
    scopes: tuple[str, ...] | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def to_dict(self) -> dict[str, object]:
        return {
            "username": self.username,
            "roles": list(self.roles),
            "permissions": sorted(self.permissions),
            "via": self.via,
            "token": self.token_id,
            "scopes": list(self.scopes) if self.scopes is not None else None,
        }


def principal_for(
    account: Account,
    *,
    via: str,
    scopes: Iterable[str] | None = None,
    token_id: str | None = None,
    extra_roles: Iterable[str] = (),
) -> Principal:
    """``extra_roles``: roles held just in time (:func:`opsbook.users.accounts.jit_roles`)."""
    scope_t = tuple(scopes) if scopes is not None else None
    roles = (*account.roles, *extra_roles)
    return Principal(
        username=account.username,
        roles=expand(roles),
        permissions=permissions_of(roles, scope_t),
        via=via,
        token_id=token_id,
        scopes=scope_t,
    )


def local_admin(username: str) -> Principal:
    """Someone at a shell with the state database: administrative by construction (they can
    change the database directly), so the CLI's user and token commands act as admin."""
    return Principal(
        username=username,
        roles=expand(["admin"]),
        permissions=permissions_of(["admin"]),
        via="cli",
    )


def require(*, db: Database, principal: Principal, permission: str, subject: str) -> None:
    """Raise PermissionDenied (HTTP 403, exit 2) unless ``principal`` holds ``permission``;
    the refusal is recorded in the audit trail first."""
    if principal.can(permission):
        return
    audit.record(
        db=db,
        actor=principal.username,
        action="access.denied",
        subject=subject,
        payload={
            "permission": permission,
            "roles": list(principal.roles),
            "via": principal.via,
            "token": principal.token_id,
        },
    )
    holders = [r for r, d in ROLE_DESCRIPTIONS.items() if permission in permissions_of([r])]
    why = "the token's scopes do not allow it" if principal.scopes is not None else ""
    raise PermissionDenied(
        f"{principal.username} may not {permission.replace(':', ' ')}"
        + (f" ({why})" if why else ""),
        hint=f"roles that may: {', '.join(holders)}; ask an admin to grant one",
    )


def roles_resolver(
    *, db: Database, fallback: Callable[[str], tuple[str, ...]]
) -> Callable[[str], tuple[str, ...]]:
    """``roles_of`` for the engine: an account's roles (expanded) when the user has an
    account, nothing when it is disabled, ``fallback`` (opsbook.toml ``[users]``) otherwise."""

    def roles_of(user: str) -> tuple[str, ...]:
        if user == SCHEDULER:
            return expand(["admin"])  # schedules are written in reviewed runbooks
        account = find_account(db=db, username=user)
        jit, _ = jit_roles(db=db, username=user)
        if account is None:
            return expand((*fallback(user), *jit))
        if account.disabled:
            return ()
        return expand((*account.roles, *jit))

    return roles_of
