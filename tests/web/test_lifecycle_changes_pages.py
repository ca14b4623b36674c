"""Console pages for runbook changes (issue 15) on a real server: the list, one change with its
seven steps, and the whole change done from the console by the people it needs (two reviewers,
a test run started through the API, an approver, the proposer publishing to real git, an
acknowledgement), with CSRF, the refusals flashed and the forms each person is offered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from opsbook.lifecycle import changes, gitrepo
from tests.api.harness import Served, serve
from tests.web.console import csrf_of, signin

PW = "correct horse battery staple"
PEOPLE = {
    "alice": ["operator", "engineer"],
    "tess": ["engineer"],
    "olga": ["approver"],
    "mia": ["manager"],
    "viv": ["viewer"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("lifecycle-changes-pages")) / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
            mp.setenv(key, "opsbook tests")
        for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
            mp.setenv(key, "tests@opsbook.invalid")
        with serve(root) as s:
            for name, roles in PEOPLE.items():
                s.account(name, roles, password=PW)
            yield s


def post(c: httpx.Client, path: str, **data: str) -> str:
    """POST a console form with the page's CSRF token; returns the flash shown after."""
    page = c.get(path.rsplit("/", 1)[0])
    r = c.post(path, data={"csrf": csrf_of(page.text), **data})
    assert r.status_code == 303, r.text
    return c.get(r.headers["location"]).text


def as_(site: Served, name: str) -> httpx.Client:
    c, _ = signin(site.url, name, PW)
    return c


def test_a_change_done_from_the_console(site: Served) -> None:
    cid = changes.propose(
        db=site.db,
        workspace=site.ws,
        path=site.ws.runbooks_dir / "checks.md",
        reason="INC-3: say what the quick check covers",
        actor="alice",
    ).change.id
    path = f"/changes/{cid}"

    with closing(as_(site, "alice")) as c:
        listing = c.get("/changes")
        assert listing.status_code == 200 and '<a href="/changes"' in listing.text  # nav
        assert f'<a href="/changes/{cid}">{cid}</a>' in listing.text
        page = c.get(path)
        assert "The seven steps" in page.text and "INC-3" in page.text
        assert "style-src 'self'" in page.headers["content-security-policy"]
        assert f'action="/changes/{cid}/review"' not in page.text  # not for their own change
        assert f'action="/changes/{cid}/withdraw"' in page.text
        assert 'class="diff-add"' in page.text  # first publication: every line is added

    with closing(as_(site, "tess")) as c:
        page = c.get(path)
        assert 'value="technical"' in page.text and 'value="operational"' not in page.text
        no_token = c.post(f"{path}/review", data={"kind": "technical"})
        assert no_token.status_code == 403
        assert "technical review approved" in post(c, f"{path}/review", kind="technical")
        # Both reviews by one person: refused, flashed, audited.
        flash = post(c, f"{path}/review", kind="operational")
        assert "Not done" in flash and "the two reviews need two people" in flash

    with closing(as_(site, "olga")) as c:
        assert "the change is reviewed" in post(c, f"{path}/review", kind="operational")

    api = site.user("runner", ["operator"])
    r = api.post("/api/v1/executions", json={"ref": "checks#quick", "environment": "sandbox"})
    assert r.status_code in (200, 201, 202), r.text
    eid = str(r.json()["id"])
    assert site.wait(api, eid, ["succeeded", "failed"])["state"] == "succeeded"

    with closing(as_(site, "alice")) as c:
        assert f"Test run {eid} on sandbox recorded" in post(c, f"{path}/test")
        flash = post(c, f"{path}/approve", decision="approve")
        assert "nobody approves their own change" in flash

    with closing(as_(site, "mia")) as c:
        page = c.get(path)
        assert f'href="/executions/{eid}"' in page.text  # the test evidence, linked
        assert "The change is approved" in post(c, f"{path}/approve", decision="approve")

    with closing(as_(site, "alice")) as c:
        flash = post(c, f"{path}/publish", inform="viv")
        assert "Published checks v1 (runbook/checks/v1)" in flash
    assert gitrepo.versions(site.ws.root, "checks") == [1]

    with closing(as_(site, "viv")) as c:  # a viewer acknowledges, and changes nothing else
        assert (
            c.post(f"{path}/withdraw", data={"csrf": csrf_of(c.get(path).text)}).status_code == 403
        )
        assert "the change is trained" in post(c, f"{path}/ack", note="read it")
        listing = c.get("/changes")
        assert "runbook/checks/v1" in listing.text

    denied = site.audit_actions(action="runbook.change.denied")
    assert [d["actor"] for d in denied] == ["tess", "alice"]
    assert changes.get_change(db=site.db, change_id=cid).state is changes.ChangeState.TRAINED


def test_unknown_change_is_404(site: Served) -> None:
    with closing(as_(site, "viv")) as c:
        assert c.get("/changes/999").status_code == 404
        assert c.get("/changes/abc").status_code == 422
