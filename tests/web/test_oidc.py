"""OpenID Connect sign-in against a stub provider (a real HTTP server on 127.0.0.1, named a
stub because no real identity provider can run here): code flow with PKCE and nonce, account
provisioning with mapped roles, and refusal of replayed, mis-addressed or forged tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opsbook.users import accounts
from tests.api.harness import Served, serve
from tests.conftest import free_port
from tests.web.oidc_stub import CLIENT_ID, CLIENT_SECRET, Stub, oidc_stub


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Stub]]:
    port = free_port()
    with (
        oidc_stub(port) as stub,
        serve(
            Path(tmp_path_factory.mktemp("oidc")) / "ws",
            oidc_issuer=stub.issuer,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            oidc_role_map="Ops.L1=operator,Ops.Approvers=approver",
            oidc_label="Stub ID",
        ) as served,
    ):
        yield served, stub


def sign_in(served: Served, next_path: str = "/") -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(base_url=served.url, timeout=30)
    served.clients.append(c)
    r = c.get("/auth/oidc/login", params={"next": next_path})
    assert r.status_code == 302
    at_idp = httpx.get(r.headers["location"])
    assert at_idp.status_code == 302
    callback = at_idp.headers["location"]
    assert callback.startswith(served.url + "/auth/oidc/callback?")
    return c, c.get(callback.removeprefix(served.url))


def test_sign_in_creates_the_account_with_mapped_roles(sso: tuple[Served, Stub]) -> None:
    served, stub = sso
    assert "Sign in with Stub ID" in httpx.get(served.url + "/signin").text
    stub.mode = "ok"
    stub.claims = {
        "preferred_username": "Carol@Example.com",
        "email": "carol@example.com",
        "name": "Carol",
        "roles": ["Ops.L1", "Ops.Approvers", "Unrelated"],
    }
    client, r = sign_in(served, "/runbooks")
    assert r.status_code == 303 and r.headers["location"] == "/runbooks"
    assert "carol@example.com" in client.get("/").text
    account = accounts.get_account(db=served.db, username="carol@example.com")
    assert account.roles == ("approver", "operator") and account.source == "oidc"
    assert not account.has_password
    ok = served.audit_actions(action="auth.signin.succeeded", actor="carol@example.com")
    assert ok and '"oidc"' in ok[-1]["payload"]
    stub.claims["roles"] = ["Ops.L1"]
    sign_in(served)
    assert accounts.get_account(db=served.db, username="carol@example.com").roles == ("operator",)


def test_a_callback_cannot_be_replayed(sso: tuple[Served, Stub]) -> None:
    served, stub = sso
    stub.mode = "ok"
    stub.claims = {"preferred_username": "dave"}
    c = httpx.Client(base_url=served.url, timeout=30)
    served.clients.append(c)
    at_idp = httpx.get(c.get("/auth/oidc/login").headers["location"])
    callback = at_idp.headers["location"].removeprefix(served.url)
    assert c.get(callback).status_code == 303
    again = httpx.get(served.url + callback)
    assert again.status_code == 401 and "expired or was used" in again.text


@pytest.mark.parametrize("mode", ["bad_aud", "bad_nonce", "bad_sig"])
def test_bad_id_tokens_are_refused(sso: tuple[Served, Stub], mode: str) -> None:
    served, stub = sso
    stub.mode = mode
    stub.claims = {"preferred_username": f"mallory-{mode}"}
    try:
        _, r = sign_in(served)
    finally:
        stub.mode = "ok"
    assert r.status_code == 401 and "opsbook_session" not in r.headers.get("set-cookie", "")
    assert accounts.find_account(db=served.db, username=f"mallory-{mode}") is None
    assert served.audit_actions(action="auth.signin.failed", subject="oidc")


def test_provider_errors_are_shown_and_audited(sso: tuple[Served, Stub]) -> None:
    served, _ = sso
    r = httpx.get(served.url + "/auth/oidc/callback", params={"error": "access_denied"})
    assert r.status_code == 401 and "access_denied" in r.text
    r = httpx.get(served.url + "/auth/oidc/callback", params={"code": "x", "state": "unknown"})
    assert r.status_code == 401


def test_disabled_accounts_cannot_sign_in_by_sso(sso: tuple[Served, Stub]) -> None:
    served, stub = sso
    stub.mode = "ok"
    stub.claims = {"preferred_username": "erin"}
    sign_in(served)
    accounts.set_disabled(db=served.db, actor="t", username="erin", disabled=True)
    _, r = sign_in(served)
    assert r.status_code == 401
