"""The diagnosis and known-error console over real HTTP (uvicorn): the Diagnose form runs a
diagnosis (CSRF) and shows it, a stored diagnosis with its fix linked to the run form, known
errors listed and shown, confirming a fix refused with a flash or by permission (issue 12)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsbook.troubleshoot import known_errors, store
from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("diagnose-pages")) / "ws") as s:
        s.account("olga", ["operator"], password=PW)
        s.account("vic", ["viewer"], password=PW)
        yield s


def _flash(client: httpx.Client, r: httpx.Response) -> str:
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    m = re.search(r'<p class="flash" role="status">([^<]*)</p>', page.text)
    assert m, page.text[:2000]
    return html.unescape(m.group(1))


def _diagnosis(top: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "dg-00000000abcd",
        "environment": "sandbox",
        "target": {"service": "payment", "alert": None, "incident": None},
        "started_at": "2026-12-04T00:00:00Z",
        "took_ms": 1234,
        "hypotheses": [top, {**top, "cause": "latency", "confidence": "low", "score": 0.2}]
        if top
        else [],
        "top": top,
        "sources": {"logs": {"ok": False, "took_ms": 1, "error": "no log directory"}},
        "facts": {"changes": []},
        "bundle": "/tmp/dg-00000000abcd.tar",
    }


TOP = {
    "cause": "crash",
    "service": "payment",
    "title": "payment has crashed: 0/1 replicas, exit 70",
    "confidence": "high",
    "score": 0.95,
    "evidence": [{"source": "platform", "text": "payment status crashed", "data": {}}],
    "procedure": "troubleshooting#service-connectivity",
    "params": {"service": "payment"},
    "known_error": None,
}


def test_diagnose_from_the_console(served: Served) -> None:
    c, csrf = signin(served.url, "olga", PW)
    with closing(c):
        page = c.get("/diagnose")
        assert page.status_code == 200
        assert 'href="/diagnose"' in page.text and 'action="/diagnose"' in page.text
        assert c.get("/diagnose?alert=a-17").text.count('value="a-17"') == 1
        # no sandbox runs here (and this workspace has no payment service): the diagnosis
        # still comes back, saying what it could not read
        flash = _flash(c, c.post("/diagnose", data={"csrf": csrf, "service": "payment"}))
        assert flash.startswith("The diagnosis did not run: no service 'payment'"), flash
        r = c.post("/diagnose", data={"csrf": csrf})
        assert r.status_code == 303, r.text
        m = re.fullmatch(r"/diagnoses/(dg-[0-9a-f]{12})", r.headers["location"])
        assert m, r.headers["location"]
        shown = c.get(r.headers["location"]).text
        assert f"Diagnosis {m.group(1)}" in shown and "Sources not read" in shown
        assert m.group(1) in c.get("/diagnose").text  # in the recent list
        assert c.post("/diagnose", data={"service": "payment"}).status_code in (400, 403)


def test_a_stored_diagnosis_shows_its_fix_and_the_rest(served: Served) -> None:
    store.save(served.db, diagnosis=_diagnosis(TOP), actor="olga")
    c, _ = signin(served.url, "vic", PW)
    with closing(c):
        page = c.get("/diagnoses/dg-00000000abcd").text
        assert "high: crash on payment" in page
        assert "[platform] payment status crashed" in page
        assert (
            'href="/runbooks/troubleshooting/service-connectivity/run'
            '?environment=sandbox&amp;service=payment"' in page
        )
        assert "opsbook run troubleshooting#service-connectivity -p service=payment" in page
        assert "Other causes" in page and "low: latency on payment" in page
        assert "logs: no log directory" in page and "/tmp/dg-00000000abcd.tar" in page
        assert "Confirm as a known error" not in page  # a viewer does not confirm
        assert c.get("/diagnoses/dg-nothere").status_code == 404


def test_known_errors_pages_and_confirming(served: Served) -> None:
    with served.db.transaction():
        ke = known_errors.create(
            db=served.db,
            actor="olga",
            title="Payment worker crash loop",
            cause="crash",
            service="payment",
            symptoms=[{"log": "worker exited"}, {"fact": "logs.fresh.http_500", "above": 5}],
        )
    c, csrf = signin(served.url, "olga", PW)
    with closing(c):
        listing = c.get("/known-errors").text
        assert ke["id"] in listing and "Payment worker crash loop" in listing
        one = c.get(f"/known-errors/{ke['id']}").text
        assert "a log template contains “worker exited”" in one
        assert "fact logs.fresh.http_500 &gt; 5" in one
        flash = _flash(
            c,
            c.post(
                "/known-errors/confirm",
                data={"csrf": csrf, "diagnosis": "dg-00000000abcd", "execution": "ex-none"},
            ),
        )
        assert flash.startswith("Not confirmed: no execution ex-none"), flash
    v, vcsrf = signin(served.url, "vic", PW)
    with closing(v):
        r = v.post(
            "/known-errors/confirm",
            data={"csrf": vcsrf, "diagnosis": "dg-00000000abcd", "execution": "ex-none"},
        )
        assert r.status_code == 403


def test_each_firing_alert_links_to_diagnose(served: Served) -> None:
    from opsbook.monitoring import alerts
    from opsbook.monitoring.webhook import parse_webhook
    from tests.monitoring.test_alerts import payload

    _, incoming = parse_webhook(payload(1))
    alerts.ingest(
        served.db, alerts=incoming, source="alertmanager", actor="am", runbook_for=lambda a: None
    )
    first = served.db.query("SELECT id FROM mon_alerts ORDER BY id")[0]["id"]
    c, _ = signin(served.url, "vic", PW)
    with closing(c):
        page = c.get("/monitoring").text
        link = f'href="/diagnose?alert={first}&amp;service=payment"'
        assert link in page, page[:3000]
        form = c.get(f"/diagnose?alert={first}&service=payment").text
        assert f'value="{first}"' in form and "<option selected>payment</option>" in form


def test_a_fix_link_fills_the_run_form_in(served: Served) -> None:
    """The fix link's query (?service=…&environment=…) fills the run form; the POST still
    checks every value."""
    c, _ = signin(served.url, "olga", PW)
    with closing(c):
        form = c.get("/runbooks/checks/quick/run", params={"service": "account", "count": "3"})
        assert form.status_code == 200, form.text
        assert "<option selected>account</option>" in form.text
        assert re.search(r'name="param.count"[^>]*value="3"', form.text), form.text
        plain = c.get("/runbooks/checks/quick/run")
        assert "<option selected>payment</option>" in plain.text  # the default
