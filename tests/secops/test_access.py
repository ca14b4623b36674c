"""Just-in-time privileged access and access review campaigns on a real SQLite database (and
the sandbox platform's identity file on disk): a JIT grant needs a second person, counts until
it expires by itself, and the records made under it are listed when it ends; a campaign's
revocations are applied and its result is evidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.db import Database, open_database
from opsbook.errors import ConflictError, PermissionDenied, ValidationError
from opsbook.sandbox import iam
from opsbook.secops import access, jit
from opsbook.users.access import roles_resolver
from opsbook.users.accounts import create_account, jit_roles, known_roles
from opsbook.users.tokens import VerifiedTokens, create_token

ROLES = known_roles()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    for name, roles in (("olga", ["operator"]), ("sam", ["security"]), ("ada", ["admin"])):
        create_account(db=d, actor="setup", username=name, roles=roles, known=ROLES)
    yield d
    d.close()


def _roles(db: Database, user: str) -> tuple[str, ...]:
    return roles_resolver(db=db, fallback=lambda u: ())(user)


def test_a_jit_grant_needs_a_second_person_and_expires_by_itself(db: Database) -> None:
    token, secret = create_token(db=db, actor="olga", username="olga", name="cli", scopes=["admin"])
    cache = VerifiedTokens(db)
    assert "admin" not in cache.principal(secret).roles
    with pytest.raises(ValidationError) as no_reason:
        jit.request(
            db, username="olga", role="admin", duration_s=3600, reason="", known_roles=ROLES
        )
    assert no_reason.value.field == "--reason"
    with pytest.raises(ValidationError, match="at most 8h"):
        jit.request(
            db, username="olga", role="admin", duration_s=86400, reason="INC-7", known_roles=ROLES
        )
    g = jit.request(
        db, username="olga", role="admin", duration_s=3600, reason="INC-7", known_roles=ROLES
    )
    assert g["ref"] == "JIT-1" and g["state"] == "pending"
    assert "admin" not in _roles(db, "olga")  # not before approval
    with pytest.raises(PermissionDenied, match="own access"):
        jit.approve(db, grant="JIT-1", actor="olga", roles=_roles(db, "olga"))
    with pytest.raises(PermissionDenied, match="may not approve"):
        jit.approve(db, grant="JIT-1", actor="olga2", roles=("operator",))
    started = datetime.now(UTC)
    g = jit.approve(db, grant="JIT-1", actor="sam", roles=_roles(db, "sam"), now=started)
    assert g["state"] == "active" and g["approved_by"] == "sam"
    assert "admin" in _roles(db, "olga")
    assert "admin" in cache.principal(secret).roles  # the token sees it at once
    # something done under the grant
    audit.record(db=db, actor="olga", action="users.role_granted", subject="user:x", payload={})
    # an hour later it no longer counts, with nobody sweeping
    later = started + timedelta(hours=1, seconds=1)
    assert jit_roles(db=db, username="olga", now=later) == ((), None)
    assert "admin" not in cache.principal(secret, now=later).roles
    assert jit.expire(db, now=later) == ["JIT-1"]
    ended = db.one("SELECT payload FROM events WHERE action = 'access.jit.ended'")
    assert ended is not None
    payload = json.loads(ended["payload"])
    marked = db.one("SELECT id FROM events WHERE action = 'users.role_granted' AND actor = 'olga'")
    assert marked is not None and marked["id"] in payload["records_under_grant"]
    assert payload["how"] == "expired"
    assert jit.get(db, "JIT-1")["state"] == "expired"
    assert token.id


def test_revoking_an_active_grant_ends_it_now(db: Database) -> None:
    jit.request(
        db, username="olga", role="admin", duration_s=3600, reason="CHG-9", known_roles=ROLES
    )
    jit.approve(db, grant="JIT-1", actor="ada", roles=_roles(db, "ada"))
    assert "admin" in _roles(db, "olga")
    assert jit.revoke(db, grant="JIT-1", actor="sam")["state"] == "revoked"
    assert "admin" not in _roles(db, "olga")


def test_a_grant_ended_by_another_writer_is_not_ended_twice(db: Database) -> None:
    """Replica A revoked the grant after replica B read it as active: B's revocation is a
    conflict and its expiry pass closes nothing (one `access.jit.ended` record)."""
    jit.request(
        db, username="olga", role="admin", duration_s=3600, reason="CHG-9", known_roles=ROLES
    )
    started = datetime.now(UTC)
    jit.approve(db, grant="JIT-1", actor="ada", roles=_roles(db, "ada"), now=started)
    stale = jit.get(db, "JIT-1")  # what replica B read
    assert stale["state"] == "active"
    jit.revoke(db, grant="JIT-1", actor="sam")  # replica A
    with db.transaction():
        assert not jit._end(db, stale, state="revoked", actor="ada", when=started)
    with pytest.raises(ConflictError, match="already revoked"):
        jit.revoke(db, grant="JIT-1", actor="ada")
    assert jit.expire(db, now=started + timedelta(hours=2)) == []
    ended = db.query("SELECT id FROM events WHERE action = 'access.jit.ended'")
    assert len(ended) == 1


def _k8s(tmp_path: Path) -> Path:
    path = tmp_path / "recorded-k8s-rbac.json"
    path.write_text(
        json.dumps(
            {
                "items": [
                    {
                        "kind": "ClusterRoleBinding",
                        "metadata": {"name": "ops-admins"},
                        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                        "subjects": [{"kind": "User", "name": "former-contractor@bank.example"}],
                    }
                ]
            }
        )
    )
    return path


def test_an_access_review_applies_its_revocations(db: Database, tmp_path: Path) -> None:
    data_dir = tmp_path / "sandbox"
    iam.ensure(data_dir)
    create_token(db=db, actor="olga", username="olga", name="old-automation", scopes=["read"])
    grants = (
        access.opsbook_grants(db, now=datetime.now(UTC))
        + access.sandbox_grants(data_dir)
        + access.kubernetes_grants(_k8s(tmp_path))
    )
    c = access.start(
        db,
        name="2026-Q4",
        environment="sandbox",
        reviewers=["sam", "ada"],
        actor="sam",
        grants=grants,
    )
    kinds = {it["kind"] for it in c["items"]}
    assert kinds == {"opsbook-role", "opsbook-token", "db-role", "k8s-binding"}
    # no one reviews their own access: sam's own role goes to ada
    own = [it for it in c["items"] if it["principal"] == "sam"]
    assert own and all(it["reviewer"] == "ada" for it in own)
    with pytest.raises(PermissionDenied, match="their own access"):
        access.decide(db, campaign="AR-1", item=int(own[0]["id"]), decision="keep", actor="sam")
    revoke = {
        ("opsbook-role", "olga"),
        ("opsbook-token", "olga"),
        ("db-role", "dba-oncall"),
        ("k8s-binding", "User:former-contractor@bank.example"),
    }
    with pytest.raises(Exception, match="nobody decided"):
        access.close(db, campaign="AR-1", actor="sam", data_dir=data_dir)
    for it in c["items"]:
        decision = "revoke" if (it["kind"], it["principal"]) in revoke else "keep"
        access.decide(
            db, campaign="AR-1", item=int(it["id"]), decision=decision, actor=it["reviewer"]
        )
    closed = access.close(db, campaign="AR-1", actor="sam", data_dir=data_dir)
    assert closed["state"] == "closed" and closed["result"]["revoked"] == 4
    assert "operator" not in _roles(db, "olga")  # the role is gone
    assert db.one("SELECT revoked_at FROM api_tokens")["revoked_at"]  # type: ignore[index]
    dba = next(a for a in iam.load(data_dir) if a["name"] == "dba-oncall")
    assert dba["roles"] == []
    k8s = next(a for a in closed["result"]["applied"] if a["principal"].startswith("User:"))
    assert (
        k8s["result"].startswith("to run")
        and "kubectl delete clusterrolebinding/ops-admins" in k8s["result"]
    )
    actions = [r["action"] for r in db.query("SELECT action FROM events ORDER BY id")]
    assert actions.count("access.review.revoked") == 4 and "access.review.closed" in actions
    assert audit.verify(db=db).ok


def test_a_malformed_export_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "az.json"
    bad.write_text(json.dumps([{"principalName": "x"}]))
    with pytest.raises(ValidationError) as err:
        access.azure_grants(bad)
    assert err.value.field == "[0]"
