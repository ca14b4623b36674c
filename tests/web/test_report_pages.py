"""Console pages that report (issue 18 §4, §2): the SLA and health report pages are styled
under the Content-Security-Policy (a linked stylesheet, no inline style), the dashboard lists
the open incidents, and an incident's failed page shows why it failed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from opsbook.incidents.config import load_config
from opsbook.incidents.service import declare
from opsbook.monitoring import health, render
from opsbook.notify.deliver import deliver_pending
from opsbook.workspace.init import template_files
from tests.api.harness import Served, serve
from tests.conftest import free_port
from tests.incidents.harness import contacts_yaml, policy_yaml
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    template = dict(template_files())
    policy = next(v for k, v in template.items() if k.name == "incident_policy.yaml").decode()
    root = Path(tmp_path_factory.mktemp("report-pages")) / "ws"
    with serve(root) as s:
        # pages go to a closed SMTP port and a closed webhook port: they fail, with a reason
        closed = free_port()
        (root / "incident_policy.yaml").write_text(policy_yaml(policy, smtp_port=closed))
        (root / "contacts.yaml").write_text(contacts_yaml(f"http://127.0.0.1:{closed}"))
        s.account("olga", ["operator"], password=PW)
        yield s


def test_the_sla_page_links_the_static_stylesheet(site: Served) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        page = c.get("/monitoring/sla?month=2026-11")
        assert page.status_code == 200
        assert "style-src 'self'" in page.headers["content-security-policy"]
        assert "<style" not in page.text and "style=" not in page.text
        assert '<link rel="stylesheet" href="/static/report.css">' in page.text
        css = c.get("/static/report.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "border-collapse" in css.text and ".bad" in css.text


def test_the_static_stylesheet_is_the_reports_own(site: Served) -> None:
    """Files written by `report sla --out` stay self-contained with the same rules."""
    static = Path(render.__file__).parents[1] / "web" / "static" / "report.css"
    rules = re.sub(r"/\*.*?\*/", "", static.read_text(), flags=re.S)
    assert "".join(rules.split()) == "".join(render.REPORT_CSS.split())


def test_a_stored_health_report_is_served_with_the_stylesheet(site: Served) -> None:
    data = {
        "environment": "sandbox",
        "generated": "2026-11-25 07:00",
        "execution_id": "feedc0de",
        "hours": [],
        "probes": [],
        "slos": [],
        "alerts": [],
        "resources": {},
        "backups": "not measured",
        "ok": True,
    }
    health.store_report(site.db, execution_id="feedc0de", environment="sandbox", data=data)
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        page = c.get("/monitoring/health/feedc0de")
        assert page.status_code == 200
        assert "<style" not in page.text
        assert '<link rel="stylesheet" href="/static/report.css">' in page.text


def test_the_dashboard_lists_open_incidents_and_a_failed_page_says_why(site: Served) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        assert "No open incidents." in c.get("/").text
        config = load_config(site.ws)
        out = declare(
            db=site.db,
            config=config,
            title="Card payments failing",
            actor="olga",
            services=["account"],
            impact="significant",
            urgency="high",
        )
        done = asyncio.run(
            deliver_pending(
                db=site.db,
                settings=config.policy.notify,
                key=config.webhook_key,
                owner="test",
                ids=list(out.notifications),
            )
        )
        assert done and all(d.outcome == "failed" for d in done)
        home = c.get("/").text
        ref = out.incident.ref
        assert "not tracked" not in home
        assert f'<a href="/incidents/{ref}">{ref}</a>' in home
        assert "Card payments failing" in home
        page = c.get(f"/incidents/{ref}").text
        assert "failed" in page and "Connection refused" in page
