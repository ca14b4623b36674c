"""/api/v1/known-errors over real HTTP (uvicorn): record (matchers validated, field named),
list in pages, show, confirm refused for an unknown diagnosis, permissions (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.harness import Served, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("known-errors-api")) / "ws") as s:
        yield s


def test_record_list_show_and_confirm(served: Served) -> None:
    op = served.user("olga", ["operator"])
    made = []
    for n in range(3):
        r = op.post(
            "/api/v1/known-errors",
            json={
                "title": f"Payment crash loop {n}",
                "cause": "crash",
                "service": "payment",
                "symptoms": [{"log": "worker exited"}],
            },
        )
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    r = op.post(
        "/api/v1/known-errors",
        json={"title": "t", "cause": "crash", "symptoms": [{"evidence": "tea-leaves"}]},
    )
    assert r.status_code == 422 and r.json()["field"].startswith("symptoms.0"), r.text
    assert "symptoms.0.EvidenceMatcher.evidence" in [e["field"] for e in r.json()["errors"]]

    first = op.get("/api/v1/known-errors", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = op.get(
        "/api/v1/known-errors", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert rest["next_cursor"] is None
    assert [k["id"] for k in first["items"] + rest["items"]] == sorted(made)

    one = op.get(f"/api/v1/known-errors/{made[0]}").json()
    assert one["symptoms"] == [{"log": "worker exited"}] and one["params"] == {"service": "payment"}
    assert op.get("/api/v1/known-errors/ke-00000000").status_code == 404

    r = op.post(
        "/api/v1/known-error-confirmations",
        json={"diagnosis": "dg-000000000000", "execution": "x"},
    )
    assert r.status_code == 404 and "no diagnosis" in r.text

    viewer = served.user("vic", ["viewer"])
    assert viewer.get("/api/v1/known-errors").status_code == 200
    r = viewer.post(
        "/api/v1/known-errors",
        json={"title": "t", "cause": "crash", "symptoms": [{"log": "x"}]},
    )
    assert r.status_code == 403
