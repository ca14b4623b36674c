"""Role × endpoint: each role can do exactly what it should, and every refusal is a 403 that
is recorded in the audit trail."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from opsbook.users.roles import ROLES, permissions_of
from tests.api.harness import Served

Setup = Callable[[Served], str]


def _waiting(ref: str, state: str, **body: object) -> Setup:
    def make(served: Served) -> str:
        starter = served.user("starter", ["operator"])
        eid: str = starter.post("/api/v1/executions", json={"ref": ref, **body}).json()["id"]
        served.wait(starter, eid, [state])
        return eid

    return make


def _any_execution(served: Served) -> str:
    return _waiting("checks#manual", "waiting")(served)


# name: (method, path template, json body, setup) ; {id} is filled from setup
ENDPOINTS: dict[str, tuple[str, str, object, Setup | None]] = {
    "list runbooks": ("GET", "/api/v1/runbooks", None, None),
    "show runbook": ("GET", "/api/v1/runbooks/checks", None, None),
    "lint": ("GET", "/api/v1/lint", None, None),
    "reference": ("GET", "/api/v1/reference", None, None),
    "list executions": ("GET", "/api/v1/executions", None, None),
    "show execution": ("GET", "/api/v1/executions/{id}", None, _any_execution),
    "start operator procedure": ("POST", "/api/v1/executions", {"ref": "checks#quick"}, None),
    "start security procedure": ("POST", "/api/v1/executions", {"ref": "checks#secure"}, None),
    "attest": ("POST", "/api/v1/executions/{id}/attest", {}, _any_execution),
    "approve": (
        "POST",
        "/api/v1/executions/{id}/approval",
        {"decision": "approve"},
        _waiting("checks#change", "AwaitingApproval", confirm=True),
    ),
    "abort": ("POST", "/api/v1/executions/{id}/abort", {}, _any_execution),
    "audit log": ("GET", "/api/v1/audit", None, None),
    "audit verify": ("GET", "/api/v1/audit/verify", None, None),
    "audit export": ("GET", "/api/v1/audit/export", None, None),
    "list users": ("GET", "/api/v1/users", None, None),
    "create user": ("POST", "/api/v1/users", {"username": "new-{role}", "roles": ["viewer"]}, None),
    "grant role": ("POST", "/api/v1/users/starter/roles", {"role": "viewer"}, None),
    "own tokens": ("POST", "/api/v1/tokens", {"name": "mine", "scopes": ["read"]}, None),
    "everyone's tokens": ("GET", "/api/v1/tokens?all=true", None, None),
}

READ = {
    "list runbooks",
    "show runbook",
    "lint",
    "reference",
    "list executions",
    "show execution",
    "own tokens",
}
RUN = {"attest", "abort"}
AUDIT = {"audit log", "audit verify", "audit export"}

ALLOWED: dict[str, set[str]] = {
    "viewer": READ,
    "operator": READ | RUN | {"start operator procedure"},
    "engineer": READ | RUN | {"start operator procedure"},
    "manager": READ | RUN | AUDIT | {"start operator procedure", "approve"},
    "security": READ | RUN | AUDIT | {"start security procedure", "list users"},
    "auditor": READ | AUDIT | {"list users"},
    "admin": set(ENDPOINTS),
}


def test_the_matrix_covers_every_role() -> None:
    assert set(ALLOWED) == set(ROLES)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
def test_role_endpoint(served: Served, role: str, endpoint: str) -> None:
    method, path, body, setup = ENDPOINTS[endpoint]
    client: httpx.Client = served.user(f"user-{role}", [role])
    if setup is not None:
        path = path.format(id=setup(served))
    if isinstance(body, dict):
        body = {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()}
    before = served.db.one("SELECT MAX(id) AS m FROM events")["m"]  # type: ignore[index]
    r = client.request(method, path, json=body)
    if endpoint in ALLOWED[role]:
        assert r.status_code < 400, f"{role} should be able to {endpoint}: {r.text}"
    else:
        assert r.status_code == 403, f"{role} should not {endpoint}: {r.status_code} {r.text}"
        assert r.json()["code"] == "permission_denied"
        refusals = served.db.query(
            "SELECT action, actor FROM events WHERE id > ? AND action LIKE '%denied'", (before,)
        )
        assert any(x["actor"] == f"user-{role}" for x in refusals), "the 403 was not audited"


#: The permission each endpoint with a body checks before reading it; finer checks (the
#: procedure's roles, the approval step's approvers, four-eyes) need the body or the run.
BASE_PERMISSION = {
    "start operator procedure": "executions:run",
    "start security procedure": "executions:run",
    "attest": "executions:run",
    "approve": "executions:approve",
    "abort": "executions:abort",
    "create user": "users:manage",
    "grant role": "users:manage",
    "own tokens": "tokens:own",
}
WITH_BODY = [name for name, (_, _, body, _) in ENDPOINTS.items() if body is not None]


def test_every_endpoint_with_a_body_names_its_permission() -> None:
    assert set(WITH_BODY) == set(BASE_PERMISSION)


@pytest.mark.parametrize("endpoint", WITH_BODY)
@pytest.mark.parametrize("role", ROLES)
def test_role_endpoint_invalid_body(served: Served, role: str, endpoint: str) -> None:
    """Permission before the body (issue 16 §4): a role that may not use the endpoint gets
    403 whatever it sends, so 422s never describe the body to it; a role holding the
    permission gets 422."""
    method, path, _, _ = ENDPOINTS[endpoint]
    client: httpx.Client = served.user(f"user-{role}", [role])
    path = path.format(id="abc123")  # no setup: the body is refused before the id is looked at
    r = client.request(
        method, path, content=b'{"ref": [', headers={"Content-Type": "application/json"}
    )
    if BASE_PERMISSION[endpoint] in permissions_of([role]):
        assert r.status_code == 422, f"{role} {endpoint}: {r.status_code} {r.text}"
    else:
        assert r.status_code == 403, f"{role} {endpoint}: {r.status_code} {r.text}"
        assert r.json()["code"] == "permission_denied"
