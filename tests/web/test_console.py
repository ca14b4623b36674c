"""The console over real HTTP: sign-in, CSRF, lockout, session expiry, pages per role, the run
form, attest and approve forms, tokens and accounts pages, escaping, security headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.api.harness import Served, serve
from tests.web.console import csrf_of, signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("console")) / "ws", lockout_failures=3) as s:
        for name, roles in (
            ("admin1", ["admin"]),
            ("op1", ["operator"]),
            ("appr", ["engineer", "approver"]),
            ("view", ["viewer"]),
            ("lock", ["viewer"]),
        ):
            s.account(name, roles, password=PW)
        yield s


def test_pages_need_sign_in(site: Served) -> None:
    r = httpx.get(site.url + "/executions?state=waiting")
    assert r.status_code == 303
    assert r.headers["location"] == "/signin?next=/executions%3Fstate%3Dwaiting"
    r = httpx.post(site.url + "/executions/abc/abort")
    assert r.status_code == 401


def test_sign_in_needs_the_form_token(site: Served) -> None:
    with httpx.Client(base_url=site.url) as c:
        c.get("/signin")
        r = c.post("/signin", data={"username": "op1", "password": PW, "csrf": "forged"})
        assert r.status_code == 403


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(site: Served) -> None:
    with httpx.Client(base_url=site.url) as c:
        page = c.get("/signin?next=/runbooks")
        r = c.post(
            "/signin",
            data={
                "csrf": csrf_of(page.text),
                "username": "op1",
                "password": PW,
                "next": "/runbooks",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/runbooks"
        cookie = next(
            v
            for k, v in r.headers.multi_items()
            if k == "set-cookie" and v.startswith("opsbook_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        home = c.get("/")
        assert "op1" in home.text
        assert c.post("/signout", data={"csrf": "wrong"}).status_code == 403
        assert c.post("/signout", data={"csrf": csrf_of(home.text)}).status_code == 303
        assert c.get("/").status_code == 303
    assert site.audit_actions(action="auth.signout", actor="op1")


def test_next_never_leaves_the_site(site: Served) -> None:
    with httpx.Client(base_url=site.url) as c:
        page = c.get("/signin")
        r = c.post(
            "/signin",
            data={
                "csrf": csrf_of(page.text),
                "username": "view",
                "password": PW,
                "next": "//evil.example/",
            },
        )
        assert r.headers["location"] == "/"


def test_wrong_password_and_lockout(site: Served) -> None:
    with httpx.Client(base_url=site.url) as c:
        for _ in range(3):
            page = c.get("/signin")
            r = c.post(
                "/signin",
                data={"csrf": csrf_of(page.text), "username": "lock", "password": "nope nope nope"},
            )
            assert r.status_code == 401 and "wrong username or password" in r.text
        page = c.get("/signin")
        r = c.post("/signin", data={"csrf": csrf_of(page.text), "username": "lock", "password": PW})
        assert r.status_code == 401
    seen = [e["action"] for e in site.audit_actions(subject="user:lock")]
    assert seen.count("auth.signin.failed") == 3 and "auth.account.locked" in seen
    assert "auth.signin.refused" in seen


def test_idle_sessions_expire(tmp_path: Path) -> None:
    with serve(tmp_path / "ws", idle_minutes=0.02) as s:
        s.account("sleepy", ["viewer"], password=PW)
        c, _ = signin(s.url, "sleepy", PW)
        with closing(c):
            time.sleep(1.6)
            assert c.get("/").status_code == 303


def test_pages_for_a_viewer(site: Served) -> None:
    c, _ = signin(site.url, "view", PW)
    with closing(c):
        for path in (
            "/",
            "/runbooks",
            "/runbooks?q=check&tag=demo",
            "/runbooks/checks",
            "/executions",
            "/reference",
            "/reference?environment=production",
            "/account",
        ):
            r = c.get(path)
            assert r.status_code == 200, path
            assert "content-security-policy" in r.headers
        doc = c.get("/runbooks/checks").text
        assert "<script>alert" not in doc and "&lt;script&gt;alert" in doc
        assert "Run…" not in doc  # a viewer cannot run
        assert c.get("/audit").status_code == 403
        assert c.get("/users").status_code == 403
        assert c.get("/runbooks/nope").status_code == 404
        assert c.get("/no/such/page").status_code == 404
        assert c.get("/runbooks/checks/quick/run").status_code == 403


def test_run_form_validates_then_starts(site: Served) -> None:
    c, csrf = signin(site.url, "op1", PW)
    with closing(c):
        form = c.get("/runbooks/checks/quick/run")
        assert 'name="param.service"' in form.text and 'name="param.count"' in form.text
        r = c.post(
            "/runbooks/checks/quick/run",
            data={"csrf": csrf, "environment": "sandbox", "param.count": "99"},
        )
        assert r.status_code == 422, r.text
        assert 'aria-invalid="true"' in r.text and "at most 5" in r.text
        r = c.post("/runbooks/checks/quick/run", data={"environment": "sandbox"})
        assert r.status_code == 403  # no CSRF token
        r = c.post(
            "/runbooks/checks/quick/run",
            data={
                "csrf": csrf,
                "environment": "sandbox",
                "param.count": "2",
                "param.service": "account",
            },
        )
        assert r.status_code == 303
        eid = r.headers["location"].rsplit("/", 1)[1]
        page = c.get(r.headers["location"])
        assert "Started checks#quick" in page.text
        deadline = time.monotonic() + 20
        while "state-succeeded" not in c.get(f"/executions/{eid}/fragment").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "json.ok == true" in c.get(f"/executions/{eid}").text


def test_attest_and_four_eyes_in_the_console(site: Served) -> None:
    op, op_csrf = signin(site.url, "op1", PW)
    ap, ap_csrf = signin(site.url, "appr", PW)
    with closing(op), closing(ap):
        r = op.post(
            "/runbooks/checks/change/run",
            data={"csrf": op_csrf, "environment": "sandbox", "confirm": "1"},
        )
        eid = r.headers["location"].rsplit("/", 1)[1]
        page = op.get(f"/executions/{eid}").text
        assert "someone else must approve" in page and 'value="approve"' not in page
        r = op.post(f"/executions/{eid}/approval", data={"csrf": op_csrf, "decision": "approve"})
        assert r.status_code == 403 and "cannot approve" in r.text
        page = ap.get(f"/executions/{eid}").text
        assert 'value="approve"' in page
        r = ap.post(f"/executions/{eid}/approval", data={"csrf": ap_csrf, "decision": "approve"})
        assert r.status_code == 303
        deadline = time.monotonic() + 20
        while "Succeeded" not in op.get(f"/executions/{eid}/fragment").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = op.post("/runbooks/checks/manual/run", data={"csrf": op_csrf, "environment": "sandbox"})
        eid = r.headers["location"].rsplit("/", 1)[1]
        page = op.get(f"/executions/{eid}").text
        assert "first thing" in page and "Attest and continue" in page
        r = op.post(f"/executions/{eid}/attest", data={"csrf": op_csrf, "item": "0"})
        assert r.status_code == 422
        r = op.post(
            f"/executions/{eid}/attest", data={"csrf": op_csrf, "item": ["0", "1"], "note": "CHG-7"}
        )
        assert r.status_code == 303
        dash = ap.get("/").text
        assert "Needs your action" in dash


def test_account_tokens_and_users(site: Served) -> None:
    c, csrf = signin(site.url, "admin1", PW)
    with closing(c):
        r = c.post(
            "/account/tokens",
            data={"csrf": csrf, "name": "cli", "scope": ["read"], "expires_in_days": "30"},
        )
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        secret = r.text.split('id="new-token">', 1)[1].split("<", 1)[0]
        assert (
            httpx.get(
                site.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"}
            ).status_code
            == 200
        )
        assert secret not in c.get("/account").text
        r = c.post("/users", data={"csrf": csrf, "username": "newbie", "role": ["operator"]})
        assert r.status_code == 200 and 'id="new-password"' in r.text
        r = c.post("/users/newbie/grant", data={"csrf": csrf, "role": "approver"})
        assert r.status_code == 303
        r = c.post("/users/newbie/grant", data={"csrf": csrf, "role": "wizard"})
        assert r.status_code == 422
        r = c.post("/users/newbie/disable", data={"csrf": csrf})
        assert r.status_code == 303
        audit_page = c.get("/audit?action=user.").text
        assert "user.disabled" in audit_page
        verify = c.get("/audit/verify").text
        assert "Audit chain OK" in verify
        assert c.get("/audit?since=notadate").status_code == 422
        export = c.get("/audit/export")
        assert export.headers["content-type"] == "application/zip"
