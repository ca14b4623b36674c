"""The console's release pages (issue 11) on a real server: /releases lists an environment's
releases newest first with how each ended and a DORA summary; /releases/{id} shows the change
record with the journal's approvals, the testing evidence and the executions linked, the
freeze met and every rollout decision. Rows are made by the real domain functions
(opsbook.deploy.records) over real runs (a checklist, a deploy run approved by a second
person); read-only, escaped, refused without runbooks:read, 404 for an unknown release."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsbook.deploy import records
from opsbook.errors import ConflictError
from tests.api.harness import Served, serve
from tests.web.console import csrf_of, signin
from tests.web.test_browser import CHROMIUM, _shots, browser, server, sign_in

__all__ = ["browser", "server"]

PW = "correct horse battery staple"

DEPLOY_RUNBOOK = """\
---
id: deployment-procedures
title: Deployment procedures (test)
purpose: The checklist and the approved deploy a release's change record reads
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [test]
---

# Deployment procedures

## Pre-deployment checklist

```yaml procedure
id: pre-deployment-checklist
permissions: [operator]
risk: low
params:
  service: {type: string, required: true}
  version: {type: string, required: true}
```

### Check the release

```sh {timeout=30s}
echo checked
```

## Deploy

```yaml procedure
id: deploy
permissions: [operator]
risk: high
params:
  service: {type: string, required: true}
  version: {type: string, required: true}
```

### Approval from a second engineer

```approval
quorum: 1
roles: [approver]
```

### Deploy it

```sh {timeout=30s}
echo deployed
```
"""

#: A canary's decisions as opsbook.deploy.rollout.run_rollout records them.
DECISIONS: list[dict[str, Any]] = [
    {"at": "2026-12-04T10:00:00.000000Z", "t": 0.0, "kind": "started", "strategy": "canary",
     "version": "2.4.1", "revision": 7},
    {"at": "2026-12-04T10:00:01.000000Z", "t": 1.0, "kind": "weight", "step": 1, "weight": 20},
    {"at": "2026-12-04T10:00:31.000000Z", "t": 31.0, "kind": "measurement", "step": 1,
     "weight": 20, "metric": "error-rate", "provider": "sandbox", "query": "http_5xx / http",
     "value": "0.004", "baseline": "0.003", "condition": "result <= baseline * 2 + 0.01",
     "verdict": "successful", "reason": "within the bound", "requests": 412},
    {"at": "2026-12-04T10:00:31.500000Z", "t": 31.5, "kind": "analysis", "step": 1,
     "weight": 20, "template": "canary-health", "verdict": "successful",
     "reason": "every metric of canary-health passed (error-rate 1 of 1 successful)"},
    {"at": "2026-12-04T10:01:02.000000Z", "t": 62.0, "kind": "promoted", "keep_old_for": 60.0},
]  # fmt: skip
ABORTED: list[dict[str, Any]] = [
    {"at": "2026-12-04T09:00:01.000000Z", "t": 1.0, "kind": "weight", "step": 1, "weight": 10},
    {"at": "2026-12-04T09:00:11.000000Z", "t": 11.0, "kind": "measurement", "step": 1,
     "weight": 10, "metric": "error-rate", "value": "0.31", "baseline": "0.002",
     "condition": "result <= baseline * 2 + 0.01", "verdict": "failed",
     "reason": "0.31 is above the bound"},
    {"at": "2026-12-04T09:00:11.200000Z", "t": 11.2, "kind": "aborted", "step": 1,
     "weight": 10, "reason": "analysis failed at step 1 (10% of traffic)"},
]  # fmt: skip


@dataclass
class Seeded:
    """The releases made, by name, and the runs behind the promoted one."""

    ids: dict[str, str]
    checklist: str  # the pre-deployment checklist run (testing evidence)
    deploy: str  # the approved deploy run (its approvals are the record's)


def _begin(site: Served, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "environment_name": "sandbox",
        "environment": {},  # no tier: production (the safe default)
        "strategy": "canary",
        "security_impact": "none: no change to authentication or data flows",
        "backout": "roll back to the previous revision",
        "emergency": False,
        "actor": "olly",
        "execution_id": None,
        "freezes": [],
    } | kw
    return records.begin(site.db, **args)


def _run(site: Served, client: httpx.Client, body: dict[str, Any], states: list[str]) -> str:
    r = client.post("/api/v1/executions", json=body)
    assert r.status_code in (200, 201, 202), r.text
    eid = str(r.json()["id"])
    site.wait(client, eid, states)
    return eid


def seed(site: Served) -> Seeded:
    """Accounts, the deployment runbook, two real runs and six releases made with the real
    domain functions: five in sandbox (rolled back, aborted in a freeze, refused, promoted
    with approval and evidence, running), one promoted in production."""
    site.account("olly", ["operator"], password=PW)
    site.account("ana", ["approver"], password=PW)
    site.account("vic", ["viewer"], password=PW)
    site.account("nobody", [], password=PW)
    (site.ws.runbooks_dir / "deployment-procedures.md").write_text(DEPLOY_RUNBOOK)
    olly = site.api(site.token("olly"))
    deadline = time.monotonic() + 30
    while olly.get("/api/v1/runbooks/deployment-procedures").status_code != 200:
        assert time.monotonic() < deadline, "the server did not load the new runbook"
        time.sleep(0.1)
    params = {"service": "payment", "version": "2.4.1"}
    checklist = _run(
        site,
        olly,
        {"ref": "deployment-procedures#pre-deployment-checklist", "params": params},
        ["succeeded"],
    )
    deploy = _run(
        site,
        olly,
        {"ref": "deployment-procedures#deploy", "params": params, "confirm": True},
        ["AwaitingApproval"],
    )
    ana = site.api(site.token("ana"))
    r = ana.post(
        f"/api/v1/executions/{deploy}/approval",
        json={"decision": "approve", "comment": "checked the canary plan"},
    )
    assert r.status_code == 200, r.text
    assert site.wait(olly, deploy, ["succeeded", "failed"])["state"] == "succeeded"

    ids: dict[str, str] = {}
    # 1. account 1.0.0 -> 1.0.1, an emergency change, promoted then rolled back (INC-7).
    rel = _begin(
        site,
        service="account",
        version="1.0.1",
        previous_version="1.0.0",
        ticket="CHG-100",
        reason="fix the statement rounding",
        emergency=True,
    )
    ids["rolled_back"] = rel["id"]
    records.finish(
        site.db,
        release_id=rel["id"],
        state="promoted",
        rollout={"outcome": "promoted", "decisions": []},
        actor="olly",
    )
    assert records.rolled_back(
        site.db,
        environment="sandbox",
        service="account",
        from_version="1.0.1",
        actor="olly",
        execution_id=None,
        ticket="INC-7",
        rolled_back_at=records.now_z(),
        restored_at=records.now_z(),
    )
    # 2. account 1.0.2, in the year-end freeze as an emergency change, aborted by the analysis.
    rel = _begin(
        site,
        service="account",
        version="1.0.2",
        previous_version="1.0.0",
        ticket="CHG-101",
        reason="the rounding fix, again",
        emergency=True,
        freezes=[
            {
                "name": "year-end",
                "reason": "year-end closing",
                "window_start": "2026-12-04T00:00:00+00:00",
                "window_end": "2026-12-05T00:00:00+00:00",
            }
        ],
    )
    ids["aborted"] = rel["id"]
    records.finish(
        site.db,
        release_id=rel["id"],
        state="aborted",
        rollout={
            "outcome": "aborted",
            "reason": "analysis failed at step 1 (10% of traffic)",
            "decisions": ABORTED,
        },
        actor="olly",
    )
    # 3. transaction 3.0.0 without testing evidence: refused (and recorded).
    with pytest.raises(ConflictError, match="no testing evidence"):
        _begin(
            site, service="transaction", version="3.0.0", previous_version="2.9.0",
            ticket="CHG-102", reason="new limits",
        )  # fmt: skip
    (refused,) = records.list_releases(site.db, environment="sandbox", service="transaction")
    ids["refused"] = refused["id"]
    # 4. payment 2.4.0 -> 2.4.1 by the approved run, with the checklist as evidence: promoted.
    rel = _begin(
        site,
        service="payment",
        version="2.4.1",
        previous_version="2.4.0",
        ticket="CHG-103",
        reason="faster <b>card</b> authorisations",
        execution_id=deploy,
    )
    ids["promoted"] = rel["id"]
    records.finish(
        site.db,
        release_id=rel["id"],
        state="promoted",
        rollout={"outcome": "promoted", "reason": "every analysis passed", "decisions": DECISIONS},
        actor="olly",
    )
    # 5. notification 0.9.1, an emergency change still running.
    ids["running"] = _begin(
        site, service="notification", version="0.9.1", previous_version="0.9.0",
        ticket="CHG-104", reason="quieter retries", emergency=True,
    )["id"]  # fmt: skip
    # 6. payment 2.4.1 in production (the same evidence), promoted.
    rel = _begin(
        site,
        environment_name="production",
        service="payment",
        version="2.4.1",
        previous_version="2.4.0",
        ticket="CHG-105",
        reason="faster card authorisations",
    )
    ids["production"] = rel["id"]
    records.finish(
        site.db,
        release_id=rel["id"],
        state="promoted",
        rollout={"outcome": "promoted", "decisions": []},
        actor="olly",
    )
    return Seeded(ids, checklist, deploy)


#: The sandbox releases, newest first.
SANDBOX_ORDER = ("running", "promoted", "refused", "aborted", "rolled_back")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Seeded]]:
    root = Path(tmp_path_factory.mktemp("release-pages")) / "ws"
    with serve(root) as s:
        yield s, seed(s)


def _cells(html: str, release_id: str) -> str:
    """The table row of ``release_id`` on the list page."""
    m = re.search(rf'<tr>\s*<td><a href="/releases/{release_id}">.*?</tr>', html, re.S)
    assert m, f"no row for {release_id}"
    return m.group(0)


def test_the_list_shows_an_environments_releases_newest_first_with_their_states(
    site: tuple[Served, Seeded],
) -> None:
    served, seeded = site
    c, _ = signin(served.url, "vic", PW)
    with closing(c):
        page = c.get("/releases")
        assert page.status_code == 200, page.text
        text = page.text
        assert '<a href="/releases" aria-current="page">Releases</a>' in text  # in the nav
        assert '<a href="/backups">Backups</a>' in text
        positions = [text.index(f'href="/releases/{seeded.ids[k]}"') for k in SANDBOX_ORDER]
        assert positions == sorted(positions)
        assert seeded.ids["production"] not in text  # another environment
        badges = {
            "running": "running",
            "promoted": "succeeded",
            "refused": "failed",
            "aborted": "aborted",
            "rolled_back": "failed",
        }
        for name, css in badges.items():
            row = _cells(text, seeded.ids[name])
            assert f'class="state state-{css}" data-state="{name}"' in row, row
        promoted = _cells(text, seeded.ids["promoted"])
        assert "2.4.0 → 2.4.1" in promoted and "canary" in promoted
        assert "CHG-103" in promoted and "olly" in promoted
        assert "rolled back" in _cells(text, seeded.ids["rolled_back"])
        refused = _cells(text, seeded.ids["refused"])
        assert "no testing evidence for transaction 3.0.0" in refused
        assert "emergency" in _cells(text, seeded.ids["running"])
        assert "emergency" not in promoted
        # DORA, last 30 days, production tier: 3 deployments (2 promoted, 1 rolled back).
        assert "3 deployments" in text and "33.3 % (1 of 3)" in text
        assert "Time to restore" in text and "no restored failure" not in text

        prod = c.get("/releases?env=production").text
        assert f'href="/releases/{seeded.ids["production"]}"' in prod
        assert seeded.ids["promoted"] not in prod
        assert "<option selected>production</option>" in prod

        typo = c.get("/releases?env=prodution")
        assert typo.status_code == 200
        assert "prodution is not an environment of this workspace" in typo.text
        assert "No release in prodution yet." in typo.text


def test_the_change_record_shows_approvals_evidence_executions_and_decisions(
    site: tuple[Served, Seeded],
) -> None:
    served, seeded = site
    c, _ = signin(served.url, "vic", PW)
    with closing(c):
        page = c.get(f"/releases/{seeded.ids['promoted']}")
        assert page.status_code == 200, page.text
        text = page.text
        assert "payment 2.4.0 → 2.4.1" in text and "CHG-103" in text
        assert 'data-state="promoted"' in text
        assert "faster &lt;b&gt;card&lt;/b&gt; authorisations" in text and "<b>card" not in text
        assert "none: no change to authentication or data flows" in text
        assert "roll back to the previous revision" in text
        assert "Approvals (1)" in text
        approvals = text.split('id="approvals"', 1)[1].split("</section>", 1)[0]
        assert "ana" in approvals and "approve" in approvals
        assert "checked the canary plan" in approvals
        assert f'<a href="/executions/{seeded.deploy}">' in approvals
        evidence = text.split('id="evidence"', 1)[1].split("</section>", 1)[0]
        assert f'<a href="/executions/{seeded.checklist}">' in evidence
        assert "None: the pre-deployment checklist" not in evidence
        executions = text.split('id="executions"', 1)[1].split("</section>", 1)[0]
        assert f'<a href="/executions/{seeded.deploy}">' in executions
        assert "deployment-procedures#deploy" in executions and "succeeded" in executions
        assert "Not inside a freeze window." in text
        decisions = text.split('id="decisions"', 1)[1].split("</section>", 1)[0]
        assert "Rollout decisions (5)" in decisions
        rows = decisions.split("<tr>")[2:]
        assert [re.findall(r"<td>([a-z]+)</td>", r)[0] for r in rows] == [
            "started",
            "weight",
            "measurement",
            "analysis",
            "promoted",
        ]
        measurement = rows[2]
        for cell in ("20 %", "error-rate", "0.004", "0.003", "result &lt;= baseline * 2 + 0.01"):
            assert cell in measurement, cell
        assert 'class="state state-succeeded">successful' in measurement

        aborted = c.get(f"/releases/{seeded.ids['aborted']}").text
        assert "year-end" in aborted and "year-end closing" in aborted
        assert "emergency change" in aborted and "yes: allowed in a freeze" in aborted
        assert 'data-state="aborted"' in aborted
        assert "analysis failed at step 1 (10% of traffic)" in aborted
        assert 'class="state state-failed">failed' in aborted  # the failed measurement
        assert "None: the pre-deployment checklist has not succeeded" in aborted
        assert "No execution recorded" in aborted

        rolled = c.get(f"/releases/{seeded.ids['rolled_back']}").text
        assert 'data-state="rolled_back"' in rolled and "INC-7" in rolled

        refused = c.get(f"/releases/{seeded.ids['refused']}").text
        assert 'data-state="refused"' in refused and "the rollout never started" in refused


def test_an_unknown_release_is_the_consoles_404_page(site: tuple[Served, Seeded]) -> None:
    served, _ = site
    c, _ = signin(served.url, "vic", PW)
    with closing(c):
        page = c.get("/releases/rel-20261204000000-000000")
        assert page.status_code == 404
        assert "Not found" in page.text and "no release rel-20261204000000-000000" in page.text
        assert "opsbook releases list" in page.text  # the fix


def test_someone_without_runbooks_read_is_refused_and_it_is_audited(
    site: tuple[Served, Seeded],
) -> None:
    served, seeded = site
    with httpx.Client(base_url=served.url, timeout=30) as c:
        form = c.get("/signin")
        r = c.post(
            "/signin",
            data={"csrf": csrf_of(form.text), "username": "nobody", "password": PW, "next": "/"},
        )
        assert r.status_code == 303, r.text
        listing = c.get("/releases")
        assert listing.status_code == 403
        assert "nobody may not runbooks read" in listing.text
        assert seeded.ids["promoted"] not in listing.text
        record = c.get(f"/releases/{seeded.ids['promoted']}")
        assert record.status_code == 403 and "CHG-103" not in record.text
    denied = served.audit_actions(action="access.denied", actor="nobody")
    assert {d["subject"] for d in denied} >= {"releases", f"release:{seeded.ids['promoted']}"}


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)
def test_the_nav_link_leads_to_the_releases_in_a_browser(
    server: dict[str, str], browser: Any
) -> None:
    """On the workspace from `opsbook init` served by `opsbook serve`: a release made there is
    reached from the nav link, and its change record from the list."""
    from opsbook.config import Settings
    from opsbook.db import open_database
    from opsbook.workspace import Workspace

    ws = Workspace.load(Path(server["ws"]))
    db = open_database(Settings().database_url_for(ws.state_dir))
    try:
        rel = records.begin(
            db,
            environment_name=ws.default_environment,
            environment={},
            service="payment",
            version="2.4.1",
            strategy="blue-green",
            ticket="CHG-900",
            reason="browser check",
            security_impact="",
            backout="switch back to blue",
            emergency=True,
            actor="admin",
            execution_id=None,
            freezes=[],
            previous_version="2.4.0",
        )
        records.finish(
            db,
            release_id=rel["id"],
            state="promoted",
            rollout={"outcome": "promoted", "decisions": DECISIONS[:2]},
            actor="admin",
        )
    finally:
        db.close()
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, server["url"], "admin", server["password"])
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Releases").click()
        page.get_by_role("heading", level=1, name=re.compile(r"^Releases")).wait_for()
        row = page.get_by_role("row").filter(has_text="CHG-900")
        assert "promoted" in row.inner_text() and "2.4.0 → 2.4.1" in row.inner_text()
        row.get_by_role("link", name=rel["id"]).click()
        page.get_by_role("heading", name="Change record").wait_for()
        assert "switch back to blue" in page.content()
        assert page.get_by_role("heading", name="Rollout decisions (2)").count() == 1
    except Exception as exc:
        shots = _shots({"releases": page}, server["artifacts"])
        raise AssertionError(f"browser flow failed: {exc}; screenshots: {shots}") from exc
