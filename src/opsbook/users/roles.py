"""Roles and what they permit: one table, used by the CLI, the REST API and the console.

Roles are what people hold (``operator`` is L1, ``engineer`` L2, ``manager`` L3). A higher
escalation level includes the lower ones, so an engineer may do whatever an operator may. A
runbook names roles too: a procedure's ``permissions:`` says who may start it and an approval
step's ``roles:`` who may approve it; the engine checks those. Permissions below are the
coarser, server-wide checks (may this person start anything at all, read the audit log, manage
accounts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ROLES: tuple[str, ...] = (
    "viewer",
    "operator",
    "engineer",
    "manager",
    "security",
    "auditor",
    "admin",
)

#: Roles runbooks use that are not levels of their own (``approver`` may approve high-risk
#: steps). They can be granted like any role.
EXTRA_ROLES: tuple[str, ...] = ("approver",)

ROLE_DESCRIPTIONS: Mapping[str, str] = {
    "viewer": "read runbooks and executions",
    "operator": "L1 operations: run procedures, attest manual steps",
    "engineer": "L2 engineering: everything an operator does, deployments, recovery",
    "manager": "L3 management: everything an engineer does, approvals, audit log",
    "security": "security operations: run security procedures, read the audit log",
    "auditor": "read everything, verify and export the audit trail; changes nothing",
    "admin": "everything, including accounts and other people's tokens",
    "approver": "may approve high-risk steps that ask for the approver role",
}

#: Roles a role includes (transitively closed below).
IMPLIES: Mapping[str, tuple[str, ...]] = {
    "engineer": ("operator",),
    "manager": ("engineer", "operator", "approver"),
    "admin": (*ROLES, *EXTRA_ROLES),
}

PERMISSIONS: tuple[str, ...] = (
    "runbooks:read",
    "executions:read",
    "executions:run",  # start, attest a manual step, resume
    "executions:abort",
    "executions:approve",  # the approval step's roles and four-eyes still apply
    "audit:read",
    "audit:export",
    "users:read",
    "users:manage",
    "tokens:own",
    "tokens:manage",
    "monitoring:read",  # probes, KPIs, SLOs, alerts, SLA reports
    "alerts:manage",  # acknowledge and silence alerts
    "alerts:ingest",  # post alerts (the Alertmanager webhook)
    "incidents:read",
    "incidents:manage",  # declare, update, acknowledge, communicate, review
)

_READ = ("runbooks:read", "executions:read", "tokens:own", "monitoring:read", "incidents:read")
_RUN = (
    "executions:run",
    "executions:abort",
    "executions:approve",
    "alerts:manage",
    "alerts:ingest",
    "incidents:manage",
)

ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "viewer": frozenset(_READ),
    "operator": frozenset((*_READ, *_RUN)),
    "engineer": frozenset((*_READ, *_RUN)),
    "manager": frozenset((*_READ, *_RUN, "audit:read", "audit:export")),
    "security": frozenset((*_READ, *_RUN, "audit:read", "audit:export", "users:read")),
    "auditor": frozenset((*_READ, "audit:read", "audit:export", "users:read")),
    "admin": frozenset(PERMISSIONS),
    "approver": frozenset((*_READ, "executions:approve")),
}

#: What an API token may be limited to; its user's permissions still apply on top.
SCOPES: Mapping[str, frozenset[str]] = {
    "read": frozenset(("runbooks:read", "executions:read", "monitoring:read", "incidents:read")),
    "alerts": frozenset(("monitoring:read", "alerts:ingest")),
    "run": frozenset(
        (
            "runbooks:read",
            "executions:read",
            "executions:run",
            "executions:abort",
            "monitoring:read",
            "alerts:manage",
            "incidents:read",
            "incidents:manage",
        )
    ),
    "approve": frozenset(("executions:read", "executions:approve")),
    "audit": frozenset(("audit:read", "audit:export")),
    "admin": frozenset(("users:read", "users:manage", "tokens:own", "tokens:manage")),
}


def expand(roles: Iterable[str]) -> tuple[str, ...]:
    """The roles held plus every role they imply, sorted."""
    out: set[str] = set()
    todo = list(roles)
    while todo:
        role = todo.pop()
        if role in out:
            continue
        out.add(role)
        todo.extend(IMPLIES.get(role, ()))
    return tuple(sorted(out))


def permissions_of(roles: Iterable[str], scopes: Iterable[str] | None = None) -> frozenset[str]:
    """Permissions of someone holding ``roles`` (expanded first), limited to ``scopes``."""
    perms: set[str] = set()
    for role in expand(roles):
        perms |= ROLE_PERMISSIONS.get(role, frozenset())
    if scopes is not None:
        allowed: set[str] = set()
        for scope in scopes:
            allowed |= SCOPES.get(scope, frozenset())
        perms &= allowed
    return frozenset(perms)
