"""/api/v1/releases (issue 11, read-only) on a real server: the releases newest first with
their states, filtered and paged; a release's change record exactly as `opsbook releases show
--json` builds it; problems for an unknown or malformed id; refused (and audited) without
runbooks:read. The rows are made by the real domain functions (see tests/web)."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.api import pages
from opsbook.api.routes_releases import ReleaseState
from opsbook.deploy import records
from tests.api.harness import Served, serve
from tests.web.test_release_pages import SANDBOX_ORDER, Seeded, seed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Seeded]]:
    root = Path(tmp_path_factory.mktemp("releases-api")) / "ws"
    with serve(root) as s:
        yield s, seed(s)


def test_the_list_is_newest_first_with_states_and_filters(site: tuple[Served, Seeded]) -> None:
    served, seeded = site
    api = served.user("reader", ["viewer"])
    r = api.get("/api/v1/releases", params={"environment": "sandbox"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert [i["id"] for i in body["items"]] == [seeded.ids[k] for k in SANDBOX_ORDER]
    assert [i["state"] for i in body["items"]] == list(SANDBOX_ORDER)
    promoted = body["items"][1]
    assert (promoted["service"], promoted["previous_version"], promoted["version"]) == (
        "payment",
        "2.4.0",
        "2.4.1",
    )
    assert promoted["ticket"] == "CHG-103" and promoted["execution_id"] == seeded.deploy
    assert promoted["emergency"] is False and promoted["production"] is True
    assert len(promoted["rollout"]["decisions"]) == 5
    everywhere = api.get("/api/v1/releases").json()["items"]
    assert everywhere[0]["id"] == seeded.ids["production"] and len(everywhere) == 6
    payment = api.get("/api/v1/releases", params={"service": "payment"}).json()["items"]
    assert [i["id"] for i in payment] == [seeded.ids["production"], seeded.ids["promoted"]]
    prod = api.get("/api/v1/releases", params={"environment": "production"}).json()["items"]
    assert [i["id"] for i in prod] == [seeded.ids["production"]]


def test_pages_walk_the_whole_list_once(site: tuple[Served, Seeded]) -> None:
    served, seeded = site
    api = served.user("reader", ["viewer"])
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"environment": "sandbox", "limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/releases", params=params).json()
        assert len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [seeded.ids[k] for k in SANDBOX_ORDER]
    forged = api.get("/api/v1/releases", params={"cursor": "bm9wZQ"})
    assert forged.status_code == 422 and forged.json()["field"] == "cursor"
    negative = api.get("/api/v1/releases", params={"cursor": pages.encode(-1)})
    assert negative.status_code == 422 and negative.json()["field"] == "cursor"
    assert api.get("/api/v1/releases", params={"limit": "0"}).status_code == 422


def test_one_release_is_its_change_record(site: tuple[Served, Seeded]) -> None:
    served, seeded = site
    api = served.user("reader", ["viewer"])
    rid = seeded.ids["promoted"]
    r = api.get(f"/api/v1/releases/{rid}")
    assert r.status_code == 200, r.text
    body = r.json()
    # What `opsbook releases show --json` prints, field for field.
    assert body == json.loads(json.dumps(records.change_record(served.db, rid), default=str))
    assert body["outcome"] == "promoted" and body["ticket"] == "CHG-103"
    assert [(a["approver"], a["decision"], a["comment"]) for a in body["approvals"]] == [
        ("ana", "approved", "checked the canary plan")
    ]
    assert [e["execution_id"] for e in body["testing_evidence"]["checklist"]] == [seeded.checklist]
    assert [(x["id"], x["state"]) for x in body["executions"]] == [(seeded.deploy, "succeeded")]
    assert [d["kind"] for d in body["decisions"]] == [
        "started",
        "weight",
        "measurement",
        "analysis",
        "promoted",
    ]
    frozen = api.get(f"/api/v1/releases/{seeded.ids['aborted']}").json()
    assert frozen["emergency"] is True and frozen["freeze"][0]["name"] == "year-end"
    assert frozen["approvals"] == [] and frozen["testing_evidence"]["ok"] is False


def test_unknown_and_malformed_ids_are_problems(site: tuple[Served, Seeded]) -> None:
    served, _ = site
    api = served.user("reader", ["viewer"])
    r = api.get("/api/v1/releases/rel-20261204000000-000000")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "not_found"
    assert problem["detail"] == "no release rel-20261204000000-000000"
    assert problem["hint"] == "opsbook releases list"
    bad = api.get("/api/v1/releases/not-a-release")
    assert bad.status_code == 422 and bad.json()["field"] == "release_id"


def test_without_runbooks_read_it_is_refused_and_audited(site: tuple[Served, Seeded]) -> None:
    served, seeded = site
    approver_only = served.api(served.token("ana", ["approve"]))  # no runbooks:read
    listing = approver_only.get("/api/v1/releases")
    assert listing.status_code == 403, listing.text
    assert "the token's scopes do not allow it" in listing.json()["detail"]
    rid = seeded.ids["promoted"]
    one = approver_only.get(f"/api/v1/releases/{rid}")
    assert one.status_code == 403 and "CHG-103" not in one.text
    assert served.api().get("/api/v1/releases").status_code == 401
    denied = served.audit_actions(action="access.denied", actor="ana")
    assert [d["subject"] for d in denied][-2:] == ["releases", f"release:{rid}"]


def test_the_documented_states_are_the_domains() -> None:
    assert typing.get_args(ReleaseState) == (*records.OPEN_STATES, *records.DONE_STATES)
