"""Console pages for runbook metrics (issue 15): /runbooks/stats and /runbooks/{id}/stats
with server-side SVG charts under the CSP, linked from the nav and the runbook page; the
feedback form on a finished execution's page (CSRF checked, audited, a bad rating refused)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import csrf_of, signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("lifecycle-metrics-pages")) / "ws"
    with serve(root) as s:
        s.account("olga", ["operator"], password=PW)
        yield s


@pytest.fixture(scope="module")
def finished(site: Served) -> str:
    """One real run of checks#quick, started through the API, finished."""
    api = site.user("runner", ["operator"])
    r = api.post("/api/v1/executions", json={"ref": "checks#quick", "environment": "sandbox"})
    assert r.status_code in (200, 201, 202), r.text
    eid = str(r.json()["id"])
    assert site.wait(api, eid, ["succeeded", "failed"])["state"] == "succeeded"
    return eid


def test_all_runbooks_stats_page(site: Served, finished: str) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        assert c.get("/runbooks/checks/quick/run").status_code == 200  # opens checks#quick
        page = c.get("/runbooks/stats")
        assert page.status_code == 200, page.text
        assert "style-src 'self'" in page.headers["content-security-policy"]
        assert "<script" not in page.text.split("</head>")[1]  # no inline script in the body
        assert "<svg" in page.text and "Success rate per procedure" in page.text
        # opened once (the run form), run once
        assert re.search(r"checks</a>#quick</td>\s*<td>1</td>\s*<td>1</td>", page.text)
        assert "opsbook runbooks show" in page.text
        assert '<a href="/runbooks/stats"' in page.text  # in the nav
        assert "No certifications." in page.text


def test_one_runbook_stats_page_and_its_link(site: Served, finished: str) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        rb = c.get("/runbooks/checks")
        assert '<a href="/runbooks/checks/stats">' in rb.text
        page = c.get("/runbooks/checks/stats?since=30d")
        assert page.status_code == 200, page.text
        assert page.text.count("<svg") == 2  # runs per day, success per procedure
        assert "Runs per day" in page.text and "1 run(s)" in page.text
        assert "checks</a>#manual" in page.text  # a procedure with no runs is listed
        assert c.get("/runbooks/nope/stats").status_code == 404
        assert c.get("/runbooks/checks/stats?since=banana").status_code == 422


def test_feedback_form_on_a_finished_execution(site: Served, finished: str) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        page = c.get(f"/executions/{finished}")
        assert f'action="/executions/{finished}/feedback"' in page.text
        csrf = csrf_of(page.text)
        no_token = c.post(f"/executions/{finished}/feedback", data={"rating": "4"})
        assert no_token.status_code == 403
        bad = c.post(f"/executions/{finished}/feedback", data={"csrf": csrf, "rating": "9"})
        assert bad.status_code == 303
        assert "rating" in c.get(bad.headers["location"]).text  # flash names the field
        ok = c.post(
            f"/executions/{finished}/feedback",
            data={"csrf": csrf, "rating": "4", "comment": "step 1 could say more"},
        )
        assert ok.status_code == 303
        assert "rated 4/5" in c.get(ok.headers["location"]).text
    rows = site.db.query("SELECT * FROM runbook_feedback WHERE execution_id = ?", (finished,))
    assert [(r["person"], r["rating"], r["comment"]) for r in rows] == [
        ("olga", 4, "step 1 could say more")
    ]
    audited = site.audit_actions(action="runbook.feedback")
    assert audited and audited[-1]["actor"] == "olga"
    c2, _ = signin(site.url, "olga", PW)
    with closing(c2):
        stats = c2.get("/runbooks/checks/stats")
        assert "step 1 could say more" in stats.text and "4.0 (1)" in stats.text
