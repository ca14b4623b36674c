"""The executions API against a real server: start with params, validation, list and paging,
show, events and Server-Sent Events, attest, four-eyes approvals, abort, resume."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.harness import Served


@pytest.fixture(scope="module")
def op(served: Served) -> httpx.Client:
    return served.user("olivia", ["operator"])


@pytest.fixture(scope="module")
def approver(served: Served) -> httpx.Client:
    return served.user("andy", ["engineer", "approver"])


def start(client: httpx.Client, ref: str, **body: object) -> httpx.Response:
    return client.post("/api/v1/executions", json={"ref": ref, **body})


def test_start_with_params_runs_to_the_end(served: Served, op: httpx.Client) -> None:
    r = start(op, "checks#quick", params={"service": "account", "count": 3})
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/executions/{body['id']}"
    assert body["params"] == {"service": "account", "count": 3}
    assert body["started_by"] == "olivia"
    done = served.wait(op, body["id"], ["succeeded", "failed"])
    assert done["state"] == "succeeded"
    step = done["steps"][0]
    assert step["state"] == "succeeded" and step["duration"] is not None
    assert step["result"]["expectations"][0]["passed"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ref": "checks#quick", "params": {"service": "nope"}}, "params.service"),
        ({"ref": "checks#quick", "params": {"count": 9}}, "params.count"),
        ({"ref": "checks#quick", "params": {"count": "many"}}, "params.count"),
        ({"ref": "checks#quick", "params": {"colour": "red"}}, "params.colour"),
        ({"ref": "checks#quick", "params": {"service": ["a"]}}, "params.service"),
        ({"ref": "checks#nope"}, "ref"),
        ({"ref": "nope#quick"}, "ref"),
        ({"ref": "checks#quick", "environment": "mars"}, "environment"),
        ({"ref": "checks#quick", "surprise": 1}, "surprise"),
        ({"ref": ""}, "ref"),
        ({}, "ref"),
        ({"ref": "checks#change"}, "confirm"),
        ({"ref": "checks#quick", "environment": "production"}, "confirm"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    op: httpx.Client, body: dict[str, object], field: str
) -> None:
    r = op.post("/api/v1/executions", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == 422
    assert problem["field"].startswith(field), problem
    assert problem["type"].startswith("urn:opsbook:problem:")


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b"null", b'{"ref": 5}', b"\xff\xfe", b'{"ref": "checks#quick"' * 3]
)
def test_malformed_bodies_never_500(op: httpx.Client, raw: bytes) -> None:
    r = op.post("/api/v1/executions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text


def test_unknown_execution_is_404_and_bad_ids_422(op: httpx.Client) -> None:
    assert op.get("/api/v1/executions/abcdef123456").status_code == 404
    assert op.get("/api/v1/executions/not-an-id!").status_code == 422
    assert op.get("/api/v1/nothing-here").status_code == 404
    assert op.delete("/api/v1/executions").status_code == 405


def test_list_filters_and_pages(served: Served, op: httpx.Client) -> None:
    ids = [start(op, "checks#quick").json()["id"] for _ in range(3)]
    for i in ids:
        served.wait(op, i, ["succeeded"])
    page1 = op.get("/api/v1/executions", params={"limit": 2, "procedure": "quick"}).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = op.get(
        "/api/v1/executions",
        params={"limit": 2, "procedure": "quick", "cursor": page1["next_cursor"]},
    ).json()
    seen = [x["id"] for x in page1["items"] + page2["items"]]
    assert len(set(seen)) == len(seen)
    assert set(ids[-2:]) <= set(seen)
    assert all(x["procedure"] == "quick" for x in page2["items"])
    assert op.get("/api/v1/executions", params={"state": "bogus"}).status_code == 422
    assert op.get("/api/v1/executions", params={"cursor": "garbage"}).status_code == 422
    assert op.get("/api/v1/executions", params={"limit": 0}).status_code == 422
    mine = op.get("/api/v1/executions", params={"started_by": "olivia"}).json()["items"]
    assert mine and all(x["started_by"] == "olivia" for x in mine)


def test_manual_step_attest_then_finish(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#manual").json()["id"]
    waiting = served.wait(op, eid, ["waiting"])
    assert waiting["waiting"]["kind"] == "manual"
    assert [c["text"] for c in waiting["waiting"]["checklist"]] == ["first thing", "second thing"]
    assert waiting["can"]["attest"] is True
    r = op.post(f"/api/v1/executions/{eid}/attest", json={"items": [0]})
    assert r.status_code == 422 and r.json()["field"] == "items"
    r = op.post(f"/api/v1/executions/{eid}/attest", json={"items": [0, 1], "note": "TICKET-1"})
    assert r.status_code == 200, r.text
    done = served.wait(op, eid, ["succeeded", "failed"])
    assert done["state"] == "succeeded"
    attested = [
        e
        for e in served.audit_actions(execution_id=eid)
        if e["action"] == "execution.step.attested"
    ]
    assert attested[0]["actor"] == "olivia"
    assert json.loads(attested[0]["payload"])["note"] == "TICKET-1"
    again = op.post(f"/api/v1/executions/{eid}/attest", json={})
    assert again.status_code == 409


def test_four_eyes_the_starter_cannot_approve_even_as_admin(
    served: Served, approver: httpx.Client
) -> None:
    admin = served.user("root", ["admin"])
    eid = start(admin, "checks#change", confirm=True).json()["id"]
    waiting = served.wait(admin, eid, ["AwaitingApproval"])
    assert waiting["waiting"]["may_approve"] is False
    assert waiting["waiting"]["is_starter"] is True
    r = admin.post(f"/api/v1/executions/{eid}/approval", json={"decision": "approve"})
    assert r.status_code == 403
    assert "cannot approve" in r.json()["detail"]
    denied = [
        e
        for e in served.audit_actions(execution_id=eid)
        if e["action"] == "execution.approval.denied"
    ]
    assert denied and denied[0]["actor"] == "root"
    assert approver.get(f"/api/v1/executions/{eid}").json()["waiting"]["may_approve"] is True
    r = approver.post(
        f"/api/v1/executions/{eid}/approval", json={"decision": "approve", "comment": "ok"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "approved" and r.json()["approved_by"] == ["andy"]
    done = served.wait(admin, eid, ["succeeded", "failed"])
    assert done["state"] == "succeeded"


def test_a_role_the_step_does_not_name_cannot_approve(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#change", confirm=True).json()["id"]
    served.wait(op, eid, ["AwaitingApproval"])
    other = served.user("otto", ["operator"])
    r = other.post(f"/api/v1/executions/{eid}/approval", json={"decision": "approve"})
    assert r.status_code == 403 and "approver" in r.json()["detail"]
    bad = other.post(f"/api/v1/executions/{eid}/approval", json={"decision": "maybe"})
    assert bad.status_code == 422 and bad.json()["field"] == "decision"


def test_reject_fails_the_run(served: Served, op: httpx.Client, approver: httpx.Client) -> None:
    eid = start(op, "checks#change", confirm=True).json()["id"]
    served.wait(op, eid, ["AwaitingApproval"])
    r = approver.post(f"/api/v1/executions/{eid}/approval", json={"decision": "reject"})
    assert r.status_code == 200 and r.json()["verdict"] == "rejected"
    done = served.wait(op, eid, ["failed", "succeeded"])
    assert done["state"] == "failed"


def test_abort_waiting_and_running(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#manual").json()["id"]
    served.wait(op, eid, ["waiting"])
    r = op.post(f"/api/v1/executions/{eid}/abort", json={"reason": "not today"})
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    assert op.post(f"/api/v1/executions/{eid}/abort", json={}).status_code == 409
    slow = start(op, "checks#slow").json()["id"]
    served.wait(op, slow, ["running"])
    r = op.post(f"/api/v1/executions/{slow}/abort", json={})
    assert r.status_code == 200
    done = served.wait(op, slow, ["aborted"], timeout=15)
    assert done["state"] == "aborted"


def test_resume_validation_and_conflicts(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#quick").json()["id"]
    served.wait(op, eid, ["succeeded"])
    assert op.post(f"/api/v1/executions/{eid}/resume", json={}).status_code == 409
    r = op.post(f"/api/v1/executions/{eid}/resume", json={"decision": "later"})
    assert r.status_code == 422 and r.json()["field"] == "decision"
    waiting = start(op, "checks#manual").json()["id"]
    served.wait(op, waiting, ["waiting"])
    r = op.post(f"/api/v1/executions/{waiting}/resume", json={})
    assert r.status_code == 200 and r.json()["state"] == "waiting"


def test_events_and_server_sent_events(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#quick").json()["id"]
    served.wait(op, eid, ["succeeded"])
    events = op.get(f"/api/v1/executions/{eid}/events").json()
    actions = [e["action"] for e in events]
    assert actions[0] == "execution.created" and "execution.succeeded" in actions
    later = op.get(f"/api/v1/executions/{eid}/events", params={"after": events[1]["id"]}).json()
    assert [e["id"] for e in later] == [e["id"] for e in events[2:]]
    seen: list[str] = []
    with op.stream("GET", f"/api/v1/executions/{eid}/stream") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
            if line == "event: end":
                break
    assert seen.count("journal") == len(events) and seen[-1] == "end"
    with op.stream(
        "GET", f"/api/v1/executions/{eid}/stream", headers={"Last-Event-ID": str(events[-2]["id"])}
    ) as r:
        ids = [int(line[4:]) for line in r.iter_lines() if line.startswith("id: ")]
    assert ids == [events[-1]["id"]]


def test_live_stream_follows_a_waiting_run(served: Served, op: httpx.Client) -> None:
    eid = start(op, "checks#manual").json()["id"]
    served.wait(op, eid, ["waiting"])
    other = served.api(served.token("olivia"))
    with op.stream("GET", f"/api/v1/executions/{eid}/stream") as r:
        lines = r.iter_lines()
        for line in lines:
            if "execution.waiting" in line:
                break
        assert other.post(f"/api/v1/executions/{eid}/attest", json={}).status_code == 200
        rest = []
        for line in lines:
            rest.append(line)
            if line == "event: end":
                break
    assert any("execution.succeeded" in x for x in rest)
