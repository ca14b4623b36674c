"""The incident console over real HTTP (uvicorn, a real SMTP server and webhook receiver):
declare from the form, acknowledge, status and notes, roles, updates and publishing, resolve,
close, start a suggested procedure; CSRF, ``incidents:manage`` (403, audited), refused changes
flashed back; the public status page's subscription form and the email to subscribers."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
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
from tests.web.console import signin

PW = "correct horse battery staple"
RECOVERY = """\
---
id: recovery
title: Service recovery
purpose: Bring a service back
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [incident]
services: [account]
---

# Service recovery

## Restart

```yaml procedure
id: restart
permissions: [operator]
risk: low
```

### Restart the service

```sh {timeout=30s}
echo restarted
```
"""

World = tuple[Served, SmtpSink, Receiver]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    template = dict(template_files())
    policy = next(v for k, v in template.items() if k.name == "incident_policy.yaml").decode()
    with smtp_server() as smtp, http_receiver() as hooks:
        root = Path(tmp_path_factory.mktemp("incident-pages")) / "ws"
        with serve(root) as s:
            (root / "incident_policy.yaml").write_text(
                policy_yaml(policy, smtp_port=smtp.port, public=s.url)
            )
            (root / "contacts.yaml").write_text(contacts_yaml(hooks.url))
            (root / "runbooks" / "recovery.md").write_text(RECOVERY)
            s.account("olga", ["operator"], password=PW)
            s.account("pete", ["engineer"], password=PW)
            s.account("vic", ["viewer"], password=PW)
            yield s, smtp, hooks


def _flash(client: httpx.Client, r: httpx.Response) -> str:
    """Follow a form's 303 and return the page's flash message."""
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    m = re.search(r'<p class="flash" role="status">([^<]*)</p>', page.text)
    assert m, page.text[:2000]
    return html.unescape(m.group(1))


def _declare(client: httpx.Client, csrf: str, title: str, **fields: object) -> str:
    data: dict[str, object] = {
        "csrf": csrf,
        "title": title,
        "type": "outage",
        "services": ["account"],
        "impact": "significant",
        "urgency": "high",
        **fields,
    }
    r = client.post("/incidents", data=data)
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/incidents/(INC-\d+)", r.headers["location"])
    assert m, r.headers["location"]
    return m.group(1)


def test_declare_and_respond_from_the_console(world: World) -> None:
    s, smtp, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        page = c.get("/incidents")
        assert '<label for="inc-title">Title (required)</label>' in page.text
        assert "<legend>Affected services</legend>" in page.text
        r = c.post(
            "/incidents",
            data={
                "csrf": csrf,
                "title": "Card payments failing",
                "type": "outage",
                "services": ["account", "payment"],
                "impact": "significant",
                "urgency": "high",
                "summary": "5xx on /payments",
            },
        )
        ref = r.headers["location"].rsplit("/", 1)[1]
        flash = _flash(c, r)
        assert flash.startswith(f"Declared {ref} SEV") and "page" in flash
        api = s.user("olga", ["operator"])
        inc = api.get(f"/api/v1/incidents/{ref}").json()
        assert inc["services"] == ["account", "payment"] and inc["source"] == "console"
        smtp.wait_for(1)
        assert any(ref in m.subject for m in smtp.to("l1@bank.test"))

        detail = c.get(f"/incidents/{ref}").text
        assert f"Acknowledge {ref}</button>" in detail
        assert '<label for="st-note">Note</label>' in detail
        r = c.post(f"/incidents/{ref}/acknowledge", data={"csrf": csrf})
        assert _flash(c, r) == f"{ref} acknowledged by olga; escalation stopped."
        assert f"Acknowledge {ref}</button>" not in c.get(f"/incidents/{ref}").text

        r = c.post(
            f"/incidents/{ref}/status",
            data={"csrf": csrf, "status": "identified", "note": "bad deploy 4.2"},
        )
        assert _flash(c, r) == f"{ref} is identified."
        r = c.post(f"/incidents/{ref}/status", data={"csrf": csrf, "status": "", "note": "hm"})
        assert _flash(c, r) == "Note added to the timeline."
        r = c.post(
            f"/incidents/{ref}/assign", data={"csrf": csrf, "role": "commander", "person": "olga"}
        )
        assert _flash(c, r) == "olga is commander."
        r = c.post(
            f"/incidents/{ref}/updates",
            data={"csrf": csrf, "audience": "internal", "text": "rolling back"},
        )
        # Sent to everyone the incident has paged so far (one message per person).
        assert re.fullmatch(
            r"Internal update posted and sent to [1-9]\d* responder\(s\)\.", _flash(c, r)
        )
        r = c.post(
            f"/incidents/{ref}/updates",
            data={"csrf": csrf, "audience": "public", "text": "Card payments are failing"},
        )
        assert "commander publishes it" in _flash(c, r)
        assert "Card payments are failing" not in httpx.get(s.url + "/status").text
        detail = c.get(f"/incidents/{ref}").text
        publish = re.search(rf'action="/incidents/{ref}/updates/(\d+)/publish"', detail)
        assert publish
        r = c.post(publish.group(0).split('"')[1], data={"csrf": csrf})
        assert _flash(c, r).startswith("Published on the status page")
        assert "Card payments are failing" in httpx.get(s.url + "/status").text

        r = c.post(f"/incidents/{ref}/resolve", data={"csrf": csrf, "note": "rolled back"})
        assert _flash(c, r) == f"{ref} resolved; escalation and reminders stopped."
        r = c.post(f"/incidents/{ref}/close", data={"csrf": csrf})
        assert _flash(c, r) == f"{ref} closed."
        detail = c.get(f"/incidents/{ref}").text
        assert 'id="respond"' not in detail  # nothing to change on a closed incident

    kinds = [e["kind"] for e in api.get(f"/api/v1/incidents/{ref}/timeline").json()]
    for kind in (
        "declared",
        "acknowledged",
        "status.changed",
        "note",
        "role.assigned",
        "update.internal",
        "update.public",
        "update.published",
    ):
        assert kind in kinds, kinds
    audit = [e["action"] for e in s.audit_actions(subject=ref, actor="olga")]
    assert "incident.declare" in audit and "incident.acknowledged" in audit


def test_declare_form_problems_come_back_on_the_form(world: World) -> None:
    s, _, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        r = c.post("/incidents", data={"csrf": csrf, "title": "", "severity": "SEV3"})
        assert r.status_code == 422
        assert 'role="alert"' in r.text and "an incident needs a title" in r.text
        assert 'id="inc-title" name="title" value="" required maxlength="300" aria-invalid' in (
            r.text
        )
        r = c.post(
            "/incidents",
            data={"csrf": csrf, "title": "Keep my words", "impact": "significant"},
        )
        assert r.status_code == 422 and "give both impact and urgency" in r.text
        assert 'value="Keep my words"' in r.text
        r = c.post(
            "/incidents",
            data={"csrf": csrf, "title": "x", "severity": "SEV3", "services": "mainframe"},
        )
        assert r.status_code == 422 and "unknown service" in r.text
        ref = _declare(c, csrf, "Explicit severity", impact="", urgency="", severity="SEV4")
        assert (
            s.user("olga", ["operator"]).get(f"/api/v1/incidents/{ref}").json()["severity"]
            == "SEV4"
        )


def test_refused_changes_are_flashed_back(world: World) -> None:
    s, _, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        ref = _declare(c, csrf, "Not resolved yet")
        r = c.post(f"/incidents/{ref}/close", data={"csrf": csrf})
        assert _flash(c, r).startswith(f"Not done: {ref} must be resolved before it is closed.")
        c.post(f"/incidents/{ref}/status", data={"csrf": csrf, "status": "identified"})
        r = c.post(f"/incidents/{ref}/status", data={"csrf": csrf, "status": "investigating"})
        assert "Fix: statuses move forward: investigating -> identified" in _flash(c, r)
        r = c.post(
            f"/incidents/{ref}/assign", data={"csrf": csrf, "role": "sme", "person": "Łukasz"}
        )
        assert _flash(c, r) == "?ukasz is sme."  # the flash cookie is ASCII; the name is not
        api = s.user("olga", ["operator"])
        assert api.get(f"/api/v1/incidents/{ref}").json()["roles"]["sme"] == ["Łukasz"]
        r = c.post(f"/incidents/{ref}/updates", data={"csrf": csrf, "text": "  "})
        assert _flash(c, r).startswith("Not done: the update is empty.")
        c.post(f"/incidents/{ref}/updates", data={"csrf": csrf, "audience": "public", "text": "x"})
        detail = c.get(f"/incidents/{ref}").text
        publish = re.search(rf"/incidents/{ref}/updates/\d+/publish", detail)
        assert publish
        other = _declare(c, csrf, "Another incident")
        wrong = publish.group(0).replace(f"/incidents/{ref}/", f"/incidents/{other}/")
        assert c.post(wrong, data={"csrf": csrf}).status_code == 404  # not that incident's
        r = c.post(publish.group(0), data={"csrf": csrf})  # olga is not the commander
        assert _flash(c, r).startswith("Not allowed: only the incident commander")
        assert c.post("/incidents/INC-999999/acknowledge", data={"csrf": csrf}).status_code == 404


def test_viewers_see_no_forms_and_cannot_post_them(world: World) -> None:
    s, _, _ = world
    op, op_csrf = signin(s.url, "olga", PW)
    with closing(op):
        ref = _declare(op, op_csrf, "Viewer test")
    c, csrf = signin(s.url, "vic", PW)
    with closing(c):
        assert 'action="/incidents"' not in c.get("/incidents").text
        detail = c.get(f"/incidents/{ref}").text
        assert "Viewer test" in detail and "/acknowledge" not in detail
        r = c.post("/incidents", data={"csrf": csrf, "title": "x", "severity": "SEV4"})
        assert r.status_code == 403
        r = c.post(f"/incidents/{ref}/acknowledge", data={"csrf": csrf})
        assert r.status_code == 403
        r = c.post(f"/incidents/{ref}/run", data={"csrf": csrf, "procedure": "recovery#restart"})
        assert r.status_code == 403
    denied = s.audit_actions(action="access.denied", actor="vic")
    assert {d["subject"] for d in denied} >= {"incidents", ref}
    assert all('"incidents:manage"' in d["payload"] for d in denied)
    inc = s.user("olga", ["operator"]).get(f"/api/v1/incidents/{ref}").json()
    assert inc["acknowledged_at"] is None


def test_forms_need_the_session_csrf_token(world: World) -> None:
    s, _, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        ref = _declare(c, csrf, "CSRF test")
        assert c.post(f"/incidents/{ref}/acknowledge", data={}).status_code == 403
        r = c.post(f"/incidents/{ref}/acknowledge", data={"csrf": "forged"})
        assert r.status_code == 403
        assert c.post("/incidents", data={"title": "x", "severity": "SEV4"}).status_code == 403
    assert httpx.post(s.url + f"/incidents/{ref}/resolve").status_code == 401


def test_start_a_suggested_procedure(world: World) -> None:
    s, _, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        ref = _declare(c, csrf, "Accounts down", severity="SEV3", impact="", urgency="")
        detail = c.get(f"/incidents/{ref}").text
        assert "<code>recovery#restart</code>" in detail
        assert f'aria-label="Start Restart for {ref}"' in detail
        r = c.post(f"/incidents/{ref}/run", data={"csrf": csrf, "procedure": "recovery#restart"})
        assert r.status_code == 303
        execution = r.headers["location"].rsplit("/", 1)[1]
        assert r.headers["location"] == f"/executions/{execution}"
        api = s.user("olga", ["operator"])
        s.wait(api, execution, ["Succeeded", "Failed"])
        events = api.get(f"/api/v1/incidents/{ref}/timeline").json()
        assert any(e["kind"] == "execution.linked" for e in events)
        assert any(e["source"] == "execution" for e in events)
        r = c.post(f"/incidents/{ref}/run", data={"csrf": csrf, "procedure": "nope#nothing"})
        assert _flash(c, r).startswith("Not started:")


def test_status_page_subscribers_get_published_updates(world: World) -> None:
    s, smtp, _ = world
    anon = httpx.Client(base_url=s.url, timeout=30)
    with closing(anon):
        page = anon.get("/status")
        assert '<label for="sub-email">Email address</label>' in page.text
        r = anon.post("/status/subscribe", data={"email": "Customer@Example.com"})
        assert r.status_code == 200 and "Check your inbox" in r.text
        r = anon.post("/status/subscribe", data={"email": "not an address"})
        assert r.status_code == 422 and "is not an email address" in r.text
        assert 'aria-invalid="true"' in r.text and 'value="not an address"' in r.text
        r = anon.post("/status/subscribe", json={"email": "api@example.com"})
        assert r.status_code == 202 and r.json()["pending"] is True
        r = anon.post("/status/subscribe", json={"email": "nope"})
        assert r.status_code == 422 and r.json()["field"] == "email"
        for address in ("customer@example.com", "api@example.com"):  # double opt-in (issue 16)
            deadline = time.monotonic() + 20
            while not smtp.to(address) and time.monotonic() < deadline:
                time.sleep(0.05)
            link = re.search(r"/status/confirm\?t=\S+", smtp.to(address)[0].body)
            assert link
            assert "Subscribed: " in anon.get(link.group(0)).text
    rows = s.db.query("SELECT * FROM status_subscribers WHERE state = 'confirmed' ORDER BY id")
    assert [r["email"] for r in rows] == ["customer@example.com", "api@example.com"]
    assert s.audit_actions(action="status.subscribe")

    c, csrf = signin(s.url, "pete", PW)
    with closing(c):
        ref = _declare(c, csrf, "Internal title", commander="pete")
        c.post(
            f"/incidents/{ref}/updates",
            data={"csrf": csrf, "audience": "public", "text": "Logins are slow; we are on it"},
        )
        detail = c.get(f"/incidents/{ref}").text
        publish = re.search(rf"/incidents/{ref}/updates/\d+/publish", detail)
        assert publish
        r = c.post(publish.group(0), data={"csrf": csrf})
        assert "emailed to 2 subscriber(s)" in _flash(c, r)
    deadline = time.monotonic() + 20
    while len(smtp.to("customer@example.com")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    mail = smtp.to("customer@example.com")[1]  # after the confirmation request
    assert "Logins are slow; we are on it" in mail.body and f"{s.url}/status" in mail.body
    assert "Internal title" not in mail.subject + mail.body  # customers never see titles
    sql = (
        "SELECT a.outcome, a.channel, a.target FROM notification_attempts a JOIN notifications n"
        " ON n.id = a.notification_id WHERE n.kind = 'update' AND n.incident_id = ?"
        " ORDER BY a.target"
    )
    deadline = time.monotonic() + 20
    while len(s.db.query(sql, (int(ref[4:]),))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the attempt is recorded just after the mail is accepted
    assert s.db.query(sql, (int(ref[4:]),)) == [
        {"outcome": "sent", "channel": "email", "target": "api@example.com"},
        {"outcome": "sent", "channel": "email", "target": "customer@example.com"},
    ]


def test_the_incident_page_shows_its_latest_diagnosis(world: World) -> None:
    """Issue 12: "Diagnose now" runs a diagnosis for the incident's service and the page shows
    the latest one: its top cause, evidence and the fix; a stored diagnosis is shown as saved."""
    from opsbook.troubleshoot import store

    s, _, _ = world
    c, csrf = signin(s.url, "olga", PW)
    with closing(c):
        ref = _declare(c, csrf, "Account errors", severity="SEV3")
        page = c.get(f"/incidents/{ref}")
        assert "No diagnosis for this incident yet." in page.text
        # no sandbox runs here: the diagnosis still comes back, saying what it could not read
        flash = _flash(c, c.post(f"/incidents/{ref}/diagnose", data={"csrf": csrf}))
        assert re.match(r"Diagnosis dg-[0-9a-f]{12}: ", flash), flash
        stored = store.latest_for_incident(s.db, ref)
        assert stored is not None and stored["target"]["service"] == "account"
        assert stored["sources"]["platform"]["ok"] is False  # said, not hidden
        store.save(
            s.db,
            diagnosis={
                **stored,
                "id": "dg-000000000001",
                "top": {
                    "cause": "crash",
                    "service": "account",
                    "title": "account has crashed: 0/1 replicas ready, exit 70",
                    "confidence": "high",
                    "score": 0.95,
                    "evidence": [{"source": "platform", "text": "status crashed", "data": {}}],
                    "procedure": "troubleshooting#service-connectivity",
                    "params": {"service": "account"},
                    "known_error": None,
                },
            },
            actor="olga",
        )
        page = c.get(f"/incidents/{ref}").text
        assert "dg-000000000001" in page and "high: crash on account" in page
        assert "opsbook run troubleshooting#service-connectivity -p service=account" in page
        assert "[platform] status crashed" in page
        # diagnosing needs the CSRF token like every form
        assert c.post(f"/incidents/{ref}/diagnose", data={}).status_code in (400, 403)
