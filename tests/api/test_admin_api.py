"""Users, tokens, audit, runbooks and reference endpoints; tokens' scopes and lifetimes."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from opsbook.users import tokens
from tests.api.harness import Served


def test_health_and_openapi_need_no_sign_in(served: Served) -> None:
    anon = served.api()
    assert anon.get("/api/v1/health").json()["status"] == "ok"
    spec = anon.get("/api/v1/openapi.json").json()
    assert "/api/v1/executions" in spec["paths"]
    assert "Problem" in spec["components"]["schemas"]
    r = anon.get("/api/v1/executions")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthenticated"


def test_bad_tokens_are_401(served: Served) -> None:
    for header in ("Bearer nope", "Bearer obk_000000000000_" + "x" * 40, "Basic abc", "Bearer"):
        r = httpx.get(served.url + "/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_me_shows_roles_and_scopes(served: Served) -> None:
    served.account("mel", ["engineer"])
    me = served.api(served.token("mel", ["read"])).get("/api/v1/me").json()
    assert me["username"] == "mel" and "operator" in me["roles"]  # engineer includes operator
    assert me["scopes"] == ["read"] and "executions:run" not in me["permissions"]


def test_scopes_limit_what_a_token_can_do(served: Served) -> None:
    served.account("sam", ["operator"])
    read_only = served.api(served.token("sam", ["read"]))
    assert read_only.get("/api/v1/executions").status_code == 200
    r = read_only.post("/api/v1/executions", json={"ref": "checks#quick"})
    assert r.status_code == 403 and "scopes" in r.json()["detail"]
    runner = served.api(served.token("sam", ["run"]))
    assert runner.post("/api/v1/executions", json={"ref": "checks#quick"}).status_code == 201


def test_expired_and_revoked_tokens_stop_working(served: Served) -> None:
    served.account("tess", ["viewer"])
    token, secret = tokens.create_token(
        db=served.db, actor="t", username="tess", name="short", scopes=["read"], expires_in_days=1
    )
    client = served.api(secret)
    assert client.get("/api/v1/me").status_code == 200
    later = datetime.now(UTC) + timedelta(days=2)
    served.db.execute(
        "UPDATE api_tokens SET expires_at = ? WHERE id = ?",
        ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(), token.id),
    )
    assert later > datetime.now(UTC)
    assert client.get("/api/v1/me").status_code == 401
    other = served.api(served.token("tess", ["read", "admin"]))
    mine = other.get("/api/v1/tokens").json()
    live = [t for t in mine if t["revoked_at"] is None and t["id"] != token.id]
    r = other.delete(f"/api/v1/tokens/{live[0]['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert other.get("/api/v1/me").status_code == 401


def test_create_token_shows_the_secret_once(served: Served) -> None:
    admin = served.user("ada", ["admin"])
    r = admin.post("/api/v1/tokens", json={"name": "ci", "scopes": ["read"], "user": "ada"})
    assert r.status_code == 201
    secret = r.json()["token"]
    assert secret.startswith("obk_")
    listed = admin.get("/api/v1/tokens").json()
    assert all("token" not in t for t in listed)
    stored = served.db.one("SELECT token_hash FROM api_tokens WHERE id = ?", (r.json()["id"],))
    assert stored is not None and secret not in stored["token_hash"]
    assert served.api(secret).get("/api/v1/me").json()["username"] == "ada"
    bad = admin.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
    # the scope names are an enum in the OpenAPI document; the 422 names the item
    assert bad.status_code == 422 and bad.json()["field"] == "scopes.0"
    bad = admin.post("/api/v1/tokens", json={"name": "x", "expires_in_days": 1000})
    assert bad.status_code == 422 and bad.json()["field"] == "expires_in_days"
    created = [e for e in served.audit_actions(action="token.created") if "ada" in e["subject"]]
    assert created


def test_user_management(served: Served) -> None:
    admin = served.user("boss", ["admin"])
    r = admin.post("/api/v1/users", json={"username": "nina", "roles": ["operator"]})
    assert r.status_code == 201
    password = r.json()["password"]
    assert password and len(password) >= 12
    assert admin.post("/api/v1/users", json={"username": "nina"}).status_code == 409
    bad = admin.post("/api/v1/users", json={"username": "Bad Name!"})
    assert bad.status_code == 422 and bad.json()["field"] == "username"
    bad = admin.post("/api/v1/users", json={"username": "x1", "roles": ["wizard"]})
    assert bad.status_code == 422 and bad.json()["field"] == "role"
    r = admin.post("/api/v1/users/nina/roles", json={"role": "approver"})
    assert r.json()["roles"] == ["approver", "operator"]
    r = admin.delete("/api/v1/users/nina/roles/operator")
    assert r.json()["roles"] == ["approver"]
    assert admin.delete("/api/v1/users/nina/roles/operator").status_code == 404
    nina = served.api(served.token("nina", ["read"]))
    assert nina.get("/api/v1/me").status_code == 200
    assert admin.post("/api/v1/users/nina/disable").json()["disabled"] is True
    assert nina.get("/api/v1/me").status_code == 401
    assert admin.post("/api/v1/users/nina/enable").json()["disabled"] is False
    assert admin.get("/api/v1/users/nobody").status_code == 404
    actions = [e["action"] for e in served.audit_actions(subject="user:nina")]
    for expected in (
        "user.created",
        "user.role.granted",
        "user.role.revoked",
        "user.disabled",
        "user.enabled",
    ):
        assert expected in actions


def test_the_last_admin_cannot_be_removed(served: Served, tmp_path: Path) -> None:
    from tests.api.harness import serve

    with serve(tmp_path / "ws") as solo:
        only = solo.user("only", ["admin"])
        r = only.post("/api/v1/users/only/disable")
        assert r.status_code == 409
        assert only.delete("/api/v1/users/only/roles/admin").status_code == 409


def test_audit_log_verify_and_export(served: Served, tmp_path: Path) -> None:
    auditor = served.user("aud", ["auditor"])
    page = auditor.get("/api/v1/audit", params={"limit": 5}).json()
    assert len(page["items"]) == 5 and page["next_before_id"]
    ids = [e["id"] for e in page["items"]]
    assert ids == sorted(ids, reverse=True)
    older = auditor.get("/api/v1/audit", params={"before_id": page["next_before_id"]}).json()
    assert older["items"][0]["id"] < ids[-1]
    only_users = auditor.get("/api/v1/audit", params={"action": "user."}).json()["items"]
    assert only_users and all(e["action"].startswith("user.") for e in only_users)
    assert auditor.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422
    report = auditor.get("/api/v1/audit/verify").json()
    assert report["ok"] is True and report["checked"] > 0
    r = auditor.get("/api/v1/audit/export")
    assert r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    check = subprocess.run(
        [sys.executable, "verify_chain.py", "events.jsonl"],
        cwd=tmp_path / "evidence",
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert served.audit_actions(action="audit.exported", actor="aud")


def test_runbooks_lint_and_reference(served: Served) -> None:
    viewer = served.user("vic", ["viewer"])
    listed = viewer.get("/api/v1/runbooks").json()
    assert [rb["id"] for rb in listed] == ["checks"]
    assert viewer.get("/api/v1/runbooks", params={"q": "approval nothing"}).json() == []
    assert viewer.get("/api/v1/runbooks", params={"tag": "demo"}).json()
    assert viewer.get("/api/v1/runbooks", params={"tag": "absent"}).json() == []
    rb = viewer.get("/api/v1/runbooks/checks").json()
    quick = next(p for p in rb["procedure_details"] if p["id"] == "quick")
    assert [p["name"] for p in quick["params"]] == ["service", "count"]
    assert viewer.get("/api/v1/runbooks/nope").status_code == 404
    p = viewer.get("/api/v1/runbooks/checks/procedures/change").json()
    assert p["steps"][0]["approval"] == {"quorum": 1, "roles": ["approver"]}
    assert viewer.get("/api/v1/runbooks/checks/procedures/nope").status_code == 404
    findings = viewer.get("/api/v1/lint").json()
    assert all({"path", "line", "code", "message"} <= set(f) for f in findings)
    assert viewer.get("/api/v1/lint", params={"today": "tomorrow"}).status_code == 422
    ref = viewer.get("/api/v1/reference").json()
    assert ref["environment"] == "sandbox"
    assert ref["contacts"]["levels"][0]["title"] == "Level 1 Operations"
    prod = viewer.get("/api/v1/reference", params={"environment": "production"}).json()
    assert any(
        "kubectl get pods -n banking-platform-prod" in c["command"] for c in prod["commands"]
    )
    assert viewer.get("/api/v1/reference", params={"environment": "mars"}).status_code == 404
    assert viewer.get("/api/v1/environments").json() == ["production", "sandbox"]


def test_metrics(served: Served) -> None:
    text = httpx.get(served.url + "/metrics").text
    assert "opsbook_http_requests_total" in text
    assert 'opsbook_executions{state="' in text


def test_audit_pages_with_limit_and_cursor_like_executions(served: Served) -> None:
    """One pagination style (issue 18): limit + the opaque next_cursor; before_id and
    next_before_id are kept for callers of the older form."""
    auditor = served.user("aud2", ["auditor"])
    first = auditor.get("/api/v1/audit", params={"limit": 2}).json()
    assert first["next_cursor"] and first["next_before_id"] == int(first["next_cursor"])
    second = auditor.get(
        "/api/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    older = auditor.get(
        "/api/v1/audit", params={"limit": 2, "before_id": first["next_before_id"]}
    ).json()
    assert second == older and second["items"][0]["id"] < first["items"][-1]["id"]
    bad = auditor.get("/api/v1/audit", params={"cursor": "abc"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    page = auditor.get("/api/v1/executions", params={"limit": 1}).json()
    assert set(page) == {"items", "next_cursor"}
