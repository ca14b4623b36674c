"""The execution pages while a run goes on: dry runs marked (the list, the page), each failed
attempt of a retrying step shown while it waits for the next one, and a running step's output
shown before the step ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


RETRY = """---
id: retry
title: Retry
---

# Retry

## Proc

```yaml procedure
permissions: [operator]
```

### Payment health

```sh {name=health retries=1 retry_delay=2}
echo '{"status": "DOWN"}'
```

```expect
json.status == "UP"
```
"""


LIVE = """---
id: live
title: Live
---

# Live

## Proc

```yaml procedure
permissions: [operator]
```

### Wait for the go

```sh {timeout=60s}
echo waiting-for-go
while [ ! -f go ]; do sleep 0.05; done
echo got-it
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("dry")) / "ws") as s:
        s.account("op1", ["operator"], password=PW)
        (s.ws.runbooks_dir / "retry.md").write_text(RETRY)
        (s.ws.runbooks_dir / "live.md").write_text(LIVE)
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


def test_a_retrying_step_shows_each_failed_attempt(site: Served) -> None:
    c, csrf = signin(site.url, "op1", PW)
    with closing(c):
        deadline = time.monotonic() + 20
        while c.get("/runbooks/retry/proc/run").status_code == 404:  # the catalogue re-reads
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = c.post("/runbooks/retry/proc/run", data={"csrf": csrf, "environment": "sandbox"})
        assert r.status_code == 303, r.text
        eid = r.headers["location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 20
        # While it waits for the next attempt, the step says so and why.
        while "Retrying" not in (page := c.get(f"/executions/{eid}/fragment").text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "attempt 1 of 2 failed: expected json.status == &#34;UP&#34;" in page
        assert "next attempt in 2s" in page
        while "state-failed" not in (page := c.get(f"/executions/{eid}/fragment").text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "Attempt 1 failed: expected json.status" in page


def test_a_running_steps_output_is_shown_before_it_ends(site: Served) -> None:
    c, csrf = signin(site.url, "op1", PW)
    with closing(c):
        deadline = time.monotonic() + 30
        while c.get("/runbooks/live/proc/run").status_code == 404:  # the catalogue re-reads
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = c.post("/runbooks/live/proc/run", data={"csrf": csrf, "environment": "sandbox"})
        assert r.status_code == 303, r.text
        eid = r.headers["location"].rsplit("/", 1)[1]
        # The step waits for a file the test writes only once the page shows its first line.
        while "waiting-for-go" not in (page := c.get(f"/executions/{eid}/fragment").text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "row-running" in page and "live-output" in page
        (site.ws.root / "go").write_text("")
        while "state-succeeded" not in (page := c.get(f"/executions/{eid}/fragment").text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "got-it" in page
