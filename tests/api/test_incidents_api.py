"""/api/v1/incidents, the console pages, the signed acknowledgement link and /status, on a
real server (uvicorn) with a real SMTP server and webhook receiver."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.workspace.init import template_files
from tests.api.harness import Served, serve
from tests.incidents.harness import (
    Receiver,
    SmtpSink,
    contacts_yaml,
    http_receiver,
    policy_yaml,
    smtp_server,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, SmtpSink, Receiver]]:
    template = dict(template_files())
    policy = next(v for k, v in template.items() if k.name == "incident_policy.yaml").decode()
    with smtp_server() as smtp, http_receiver() as hooks:
        root = Path(tmp_path_factory.mktemp("incidents-api")) / "ws"
        with serve(root) as s:
            (root / "incident_policy.yaml").write_text(
                policy_yaml(policy, smtp_port=smtp.port, public=s.url)
            )
            (root / "contacts.yaml").write_text(contacts_yaml(hooks.url))
            yield s, smtp, hooks


def _declare(s: Served, **body: object) -> dict[str, object]:
    api = s.user("olga", ["operator"])
    r = api.post(
        "/api/v1/incidents",
        json={
            "title": "Accounts down",
            "services": ["account"],
            "impact": "significant",
            "urgency": "high",
            **body,
        },
    )
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def test_declare_pages_and_the_lifecycle_over_the_api(
    world: tuple[Served, SmtpSink, Receiver],
) -> None:
    s, smtp, hooks = world
    inc = _declare(s)
    ref = str(inc["ref"])
    assert inc["severity"] == "SEV2" and inc["status"] == "investigating"
    smtp.wait_for(1)
    assert smtp.to("l1@bank.test")[0].subject == f"[SEV2] {ref} Accounts down"
    deadline = time.monotonic() + 10
    while not hooks.on("/hook/l1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hooks.on("/hook/l1")[-1].json()["incident"]["ref"] == ref
    olga, pete = s.user("olga", ["operator"]), s.user("pete", ["engineer"])
    assert olga.post(f"/api/v1/incidents/{ref}/ack").json()["acknowledged_by"] == "olga"
    r = olga.post(
        f"/api/v1/incidents/{ref}/update",
        json={"severity": "SEV4", "reason": "one customer", "note": "looked"},
    )
    assert r.json()["pending_severity"] == "SEV4"
    r = olga.post(f"/api/v1/incidents/{ref}/update", json={"downgrade": "approve"})
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    r = pete.post(
        f"/api/v1/incidents/{ref}/update", json={"downgrade": "approve", "status": "identified"}
    )
    assert (r.json()["severity"], r.json()["status"]) == ("SEV4", "identified")
    r = olga.post(f"/api/v1/incidents/{ref}/assign", json={"role": "scribe", "person": "sam"})
    assert r.json()["roles"] == {"scribe": "sam"}
    assert olga.post(f"/api/v1/incidents/{ref}/resolve", json={"note": "ok"}).status_code == 200
    assert olga.post(f"/api/v1/incidents/{ref}/close", json={}).status_code == 200
    r = olga.post(f"/api/v1/incidents/{ref}/ack")
    assert r.status_code == 409 and "closed" in r.json()["detail"]
    events = olga.get(f"/api/v1/incidents/{ref}/timeline").json()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "declared" and "severity.downgrade_approved" in kinds
    assert events[kinds.index("acknowledged")]["actor"] == "olga"
    md = olga.get(f"/api/v1/incidents/{ref}/review")
    assert md.headers["content-type"].startswith("text/markdown")
    assert f"# Post-incident review: {ref} Accounts down" in md.text
    listed = olga.get("/api/v1/incidents", params={"status": "closed"}).json()["items"]
    assert ref in [i["ref"] for i in listed]
    rep = olga.get("/api/v1/incidents/report", params={"since": "2020-01-01"}).json()
    assert rep["by_severity"]["SEV4"]["incidents"] >= 1


def test_permissions_and_problems(world: tuple[Served, SmtpSink, Receiver]) -> None:
    s, _, _ = world
    viewer = s.user("vic", ["viewer"])
    r = viewer.post("/api/v1/incidents", json={"title": "x", "severity": "SEV4"})
    assert r.status_code == 403
    assert viewer.get("/api/v1/incidents").status_code == 200
    assert s.api().get("/api/v1/incidents").status_code == 401
    op = s.user("olga", ["operator"])
    r = op.post("/api/v1/incidents", json={"title": "x", "severity": "SEV9"})
    assert r.status_code == 422 and r.json()["field"] == "severity"
    r = op.post(
        "/api/v1/incidents", json={"title": "x", "severity": "SEV3", "services": ["mainframe"]}
    )
    assert r.status_code == 422 and "unknown service" in r.json()["detail"]
    assert op.get("/api/v1/incidents/INC-99999").status_code == 404
    assert op.get("/api/v1/incidents/nope").status_code == 422


def test_start_a_procedure_from_the_incident(world: tuple[Served, SmtpSink, Receiver]) -> None:
    s, _, _ = world
    ref = _declare(s, severity="SEV3", impact=None, urgency=None)["ref"]
    op = s.user("olga", ["operator"])
    r = op.post(f"/api/v1/incidents/{ref}/executions", json={"ref": "checks#quick"})
    assert r.status_code == 201, r.text
    s.wait(op, r.json()["id"], ["Succeeded", "Failed"])
    events = op.get(f"/api/v1/incidents/{ref}/timeline").json()
    steps = [e for e in events if e["source"] == "execution"]
    assert any(e["kind"] == "execution.step.succeeded" for e in steps), steps
    assert op.get(f"/api/v1/incidents/{ref}/suggestions").status_code == 200


def test_status_page_is_public_and_discreet(world: tuple[Served, SmtpSink, Receiver]) -> None:
    s, _, _ = world
    _declare(s, title="Secret internal detail")
    page = s.api().get("/status")
    assert page.status_code == 200
    assert "Accounts: <strong>Partial outage</strong>" in page.text
    assert "Payments: <strong>Operational</strong>" in page.text
    assert "Secret internal detail" not in page.text
    ref = _declare(s, title="Published", commander="olga")["ref"]
    op = s.user("olga", ["operator"])
    r = op.post(f"/api/v1/incidents/{ref}/update", json={"public": "Card payments are slow"})
    assert r.status_code == 200
    assert "Card payments are slow" not in s.api().get("/status").text  # not yet approved
    events = op.get(f"/api/v1/incidents/{ref}/timeline").json()
    update_id = next(e["payload"]["update"] for e in events if e["kind"] == "update.public")
    r = op.post(f"/api/v1/incidents/{ref}/update", json={"publish": update_id})
    assert r.status_code == 200, r.text
    assert "Card payments are slow" in s.api().get("/status").text


def test_signed_link_acknowledges_and_forgeries_do_not(
    world: tuple[Served, SmtpSink, Receiver],
) -> None:
    s, smtp, _ = world
    ref = _declare(s, title="Link test")["ref"]
    deadline = time.monotonic() + 10
    while not [m for m in smtp.mails if "Link test" in m.subject] and time.monotonic() < deadline:
        time.sleep(0.05)
    mail = next(m for m in smtp.mails if "Link test" in m.subject)
    link = re.search(r"(http://\S+/ack\?t=(\S+))", mail.body)
    assert link and link.group(1).startswith(s.url)
    anon = s.api()
    assert anon.get(f"/incidents/{ref}/ack", params={"t": "bad.sig"}).status_code == 403
    other = anon.post(f"/incidents/INC-{int(str(ref)[4:]) + 1000}/ack", data={"t": link.group(2)})
    assert other.status_code == 403  # a token for one incident never acknowledges another
    assert anon.post(f"/incidents/{ref}/ack", data={"t": link.group(2)}).status_code == 200
    body = s.user("olga", ["operator"]).get(f"/api/v1/incidents/{ref}").json()
    assert body["acknowledged_by"] == "link:l1"


def test_console_pages(world: tuple[Served, SmtpSink, Receiver]) -> None:
    s, _, _ = world
    ref = _declare(s, title="Console page")["ref"]
    op = s.user("olga", ["operator"])
    assert "Console page" in op.get("/incidents").text
    page = op.get(f"/incidents/{ref}")
    assert page.status_code == 200 and "Declared SEV2" in page.text


def test_incidents_page_with_limit_and_cursor(world: tuple[Served, SmtpSink, Receiver]) -> None:
    """One pagination style (issue 18): limit + the opaque next_cursor, as executions."""
    s = world[0]
    op = s.user("pat", ["operator"])
    for n in range(3):
        r = op.post("/api/v1/incidents", json={"title": f"page {n}", "severity": "SEV4"})
        assert r.status_code == 201, r.text
    first = op.get("/api/v1/incidents", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = op.get("/api/v1/incidents", params={"limit": 2, "cursor": first["next_cursor"]})
    everything = op.get("/api/v1/incidents", params={"limit": 500}).json()["items"]
    refs = [i["ref"] for i in first["items"] + rest.json()["items"]]
    assert refs == [i["ref"] for i in everything][: len(refs)]
    assert op.get("/api/v1/incidents", params={"cursor": "x"}).status_code == 422
