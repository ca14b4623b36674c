"""Issue 16 §4: request bodies were validated before authorization, so a read-only token
learned every request schema from the 422s. Now a route whose permission does not depend on
its body checks the caller first: a garbage body from an unprivileged token is a 403 (audited)
and from an anonymous caller a 401, never a 422.

The attack, as a script would run it: every operation of the served OpenAPI document that
takes a body, path parameters filled with placeholders, bodies that are not JSON, JSON of the
wrong type and an object of unknown fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.harness import Served, serve

GARBAGE: dict[str, bytes] = {
    "not JSON": b"{not json",
    "wrong type": b"[1, 2, 3]",
    "unknown fields": b'{"zzz": "\\u0000", "ref": 12, "title": []}',
}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("attack")) / "ws") as s:
        yield s


@pytest.fixture(scope="module")
def reader_token(attacked: Served) -> str:
    attacked.account("reader", ["viewer"])
    return attacked.token("reader", scopes=["read"])


@pytest.fixture(scope="module")
def admin_token(attacked: Served) -> str:
    attacked.account("boss", ["admin"])
    return attacked.token("boss")


def _body_operations(served: Served) -> list[tuple[str, str]]:
    spec: dict[str, Any] = served.api().get("/api/v1/openapi.json").json()
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                # placeholders: the check comes before the path is looked at
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return found


def test_every_body_operation_is_found(attacked: Served) -> None:
    ops = _body_operations(attacked)
    assert ("POST", "/api/v1/executions") in ops
    assert ("POST", "/api/v1/incidents/1/update") in ops
    assert len(ops) >= 15


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_read_only_token_gets_403_not_the_schema(
    attacked: Served, reader_token: str, garbage: str
) -> None:
    client = attacked.api(reader_token)
    leaked = []
    for method, path in _body_operations(attacked):
        before = attacked.db.one("SELECT MAX(id) AS m FROM events")["m"]  # type: ignore[index]
        r = client.request(
            method, path, content=GARBAGE[garbage], headers={"Content-Type": "application/json"}
        )
        if r.status_code != 403:
            leaked.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
            continue
        assert r.json()["code"] == "permission_denied"
        denied = attacked.db.query(
            "SELECT actor FROM events WHERE id > ? AND action = 'access.denied'", (before,)
        )
        assert [d["actor"] for d in denied] == ["reader"], f"{method} {path}: not audited once"
    assert not leaked, "\n".join(leaked)


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_anonymous_gets_401(attacked: Served, garbage: str) -> None:
    client = attacked.api()
    for method, path in _body_operations(attacked):
        r = client.request(
            method, path, content=GARBAGE[garbage], headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 401, f"{method} {path}: {r.status_code} {r.text[:200]}"
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_permitted_caller_still_gets_the_field_by_field_422(
    attacked: Served, admin_token: str
) -> None:
    client = attacked.api(admin_token)
    r = client.post("/api/v1/users", json={"roles": "not a list"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"username", "roles"}
