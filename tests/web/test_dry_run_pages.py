"""The console marks dry runs: in the executions list and on the execution's page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("dry")) / "ws") as s:
        s.account("op1", ["operator"], password=PW)
        yield s


def test_a_dry_run_is_marked_in_the_list_and_on_its_page(site: Served) -> None:
    c, csrf = signin(site.url, "op1", PW)
    with closing(c):
        r = c.post(
            "/runbooks/checks/quick/run",
            data={
                "csrf": csrf,
                "environment": "sandbox",
                "param.count": "2",
                "param.service": "account",
                "dry_run": "1",
            },
        )
        assert r.status_code == 303, r.text
        eid = r.headers["location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 20
        while "state-succeeded" not in c.get(f"/executions/{eid}/fragment").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "<strong>dry run</strong>" in c.get(f"/executions/{eid}").text
        listed = c.get("/executions").text
        row = next(line for line in listed.split("<tr>") if eid in line)
        assert "(dry run)" in row
