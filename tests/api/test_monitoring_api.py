"""/api/v1 monitoring routes on a real server: the Alertmanager webhook (auth, idempotency,
422 naming the field, 413 for huge bodies, all-or-nothing), alerts, silences, probes, SLOs,
SLA reports and health reports."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.api.harness import Served
from tests.monitoring.test_alerts import payload

HOOK = "/api/v1/alerts/alertmanager"


@pytest.fixture(scope="module")
def ingest(served: Served) -> httpx.Client:
    """A token limited to the ``alerts`` scope, as Alertmanager's http_config would carry."""
    served.account("alertmanager", ["operator"])
    return served.api(served.token("alertmanager", scopes=["alerts"]))


def hook_body(tag: str, n: int = 2, **kw: Any) -> dict[str, Any]:
    body = payload(n, **kw)
    for a in body["alerts"]:
        a["fingerprint"] = f"{tag}{a['fingerprint'][len(tag) :]}"
    return body


def test_webhook_stores_alerts_once(served: Served, ingest: httpx.Client) -> None:
    body = hook_body("a1")
    first = ingest.post(HOOK, json=body)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "received": 2,
        "created": 2,
        "resolved": 0,
        "refired": 0,
        "duplicates": 0,
    }
    again = ingest.post(HOOK, json=body)
    assert again.json()["duplicates"] == 2
    resolved = ingest.post(HOOK, json=hook_body("a1", status="resolved"))
    assert resolved.json()["resolved"] == 2
    rows = served.db.query("SELECT status, received FROM mon_alerts WHERE fingerprint LIKE 'a1%'")
    assert rows == [{"status": "resolved", "received": 3}] * 2
    (event,) = [
        e
        for e in served.audit_actions(action="alerts.ingested")
        if '"a1' in e["payload"] and "created" in e["payload"] and '"created":["a1' in e["payload"]
    ]
    assert event["actor"] == "alertmanager"


def test_webhook_needs_the_ingest_permission(served: Served) -> None:
    assert served.api().post(HOOK, json=hook_body("a2")).status_code == 401
    viewer = served.user("watcher", ["viewer"])
    denied = viewer.post(HOOK, json=hook_body("a2"))
    assert denied.status_code == 403
    assert served.db.query("SELECT id FROM mon_alerts WHERE fingerprint LIKE 'a2%'") == []


def test_the_server_checkpoints_from_its_own_thread(served: Served) -> None:
    mode = served.ctx.db.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert mode == 0  # commits on the event loop never wait for a checkpoint


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("version"), "version"),
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b["alerts"][1].pop("startsAt"), "alerts[1].startsAt"),
        (lambda b: b["alerts"][1]["labels"].update(pod=7), "alerts[1].labels.pod"),
        (lambda b: b["alerts"][0].update(status="pending"), "alerts[0].status"),
    ],
)
def test_malformed_payloads_are_422_with_the_field(
    served: Served, ingest: httpx.Client, mutate: Any, field: str
) -> None:
    body = copy.deepcopy(hook_body("a3"))
    mutate(body)
    reply = ingest.post(HOOK, json=body)
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["code"] == "validation"
    assert field in [e["field"] for e in problem["errors"]]
    assert served.db.query("SELECT id FROM mon_alerts WHERE fingerprint LIKE 'a3%'") == []


def test_missing_alertname_and_bad_json(ingest: httpx.Client) -> None:
    body = hook_body("a4")
    del body["alerts"][0]["labels"]["alertname"]
    reply = ingest.post(HOOK, json=body)
    assert reply.status_code == 422
    assert reply.json()["field"] == "alerts[0].labels.alertname"
    broken = ingest.post(HOOK, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422


def test_huge_bodies_are_refused_before_parsing(ingest: httpx.Client) -> None:
    body = hook_body("a5", n=1)
    body["commonAnnotations"] = {"x": "y" * 2_000_000}
    reply = ingest.post(HOOK, json=body)
    assert reply.status_code == 413 and reply.json()["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit applies while reading
        yield b'{"version": "4", "pad": "'
        for _ in range(20):
            yield b"z" * 100_000
        yield b'"}'

    streamed = ingest.post(HOOK, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_alerts_ack_and_silences(served: Served, ingest: httpx.Client) -> None:
    ingest.post(HOOK, json=hook_body("b1", n=1))
    op = served.user("olivia", ["operator"])
    listed = op.get("/api/v1/alerts", params={"status": "firing"}).json()["items"]
    alert = next(a for a in listed if a["fingerprint"].startswith("b1"))
    assert alert["labels"]["alertname"] == "HighErrorRate"
    acked = op.post(f"/api/v1/alerts/{alert['id']}/ack", json={"comment": "on it"})
    assert acked.status_code == 200 and acked.json()["acked_by"] == "olivia"
    viewer = served.user("vic", ["viewer"])
    assert viewer.post(f"/api/v1/alerts/{alert['id']}/ack", json={}).status_code == 403
    created = op.post(
        "/api/v1/silences",
        json={"matchers": {"pod": "p0"}, "duration_minutes": 60, "comment": "deploy"},
    )
    assert created.status_code == 201 and created.json()["created_by"] == "olivia"
    listed = op.get("/api/v1/alerts").json()["items"]
    assert next(a for a in listed if a["id"] == alert["id"])["silenced"] == created.json()["id"]
    bad = op.post("/api/v1/silences", json={"matchers": {}, "duration_minutes": 60, "comment": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "matchers"
    assert created.json()["matchers"] == ["pod=p0"]
    regex = op.post(
        "/api/v1/silences",
        json={
            "matchers": ["alertname=HighErrorRate", 'pod=~"p[0-9]+"'],
            "duration_minutes": 5,
            "comment": "regex",
        },
    )
    assert regex.status_code == 201, regex.text
    assert regex.json()["matchers"] == ["alertname=HighErrorRate", "pod=~p[0-9]+"]
    broken = op.post(
        "/api/v1/silences", json={"matchers": ["pod=~("], "duration_minutes": 5, "comment": "x"}
    )
    assert broken.status_code == 422 and broken.json()["field"] == "matchers[0]"
    assert op.delete(f"/api/v1/silences/{regex.json()['id']}").status_code == 204
    sid = created.json()["id"]
    assert op.delete(f"/api/v1/silences/{sid}").status_code == 204
    assert op.get("/api/v1/silences").json() == []
    assert op.delete(f"/api/v1/silences/{sid}").status_code == 409


def test_read_endpoints(served: Served) -> None:
    viewer = served.user("vera", ["viewer"])
    assert viewer.get("/api/v1/monitoring/probes").json() == []
    assert viewer.get("/api/v1/monitoring/slos").json() == []
    sla = viewer.get("/api/v1/monitoring/sla", params={"month": "2026-11"})
    assert sla.status_code == 200 and sla.json()["services"][0]["service"] == "account"
    assert viewer.get("/api/v1/monitoring/sla", params={"month": "2026-13"}).status_code == 422
    assert viewer.get("/api/v1/monitoring/slos", params={"environment": "../x"}).status_code == 422
    assert viewer.get("/api/v1/monitoring/health-reports/abc").status_code == 404
    page = viewer.get("/monitoring")
    assert page.status_code == 200 and "Firing alerts" in page.text
    report = viewer.get("/monitoring/sla", params={"month": "2026-11"})
    assert report.status_code == 200 and "<svg" in report.text


def test_alerts_page_with_limit_and_cursor(served: Served, ingest: httpx.Client) -> None:
    """One pagination style (issue 18): limit + the opaque next_cursor, as executions."""
    ingest.post(HOOK, json=hook_body("pg", n=5))
    op = served.user("paula", ["operator"])
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "status": "all"}
        if cursor:
            params["cursor"] = cursor
        page = op.get("/api/v1/alerts", params=params).json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = op.get("/api/v1/alerts", params={"status": "all", "limit": 500}).json()
    assert seen == [a["id"] for a in everything["items"]] and len(seen) >= 5
    bad = op.get("/api/v1/alerts", params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
