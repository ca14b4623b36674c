"""The execution pages while a run goes on: dry runs marked (the list, the page), each failed
attempt of a retrying step shown while it waits for the next one, and a running step's output
shown before the step ends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

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


TICKER = """---
id: ticker
title: Ticker
---

# Ticker

## Proc

```yaml procedure
permissions: [operator]
```

### Count while waiting

```sh {timeout=60s}
echo first-line
while [ ! -f go1 ]; do sleep 0.05; done
echo second-line
while [ ! -f go2 ]; do sleep 0.05; done
echo done-line
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("dry")) / "ws") as s:
        s.account("op1", ["operator"], password=PW)
        (s.ws.runbooks_dir / "retry.md").write_text(RETRY)
        (s.ws.runbooks_dir / "live.md").write_text(LIVE)
        (s.ws.runbooks_dir / "ticker.md").write_text(TICKER)
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


def _start(c: Any, csrf: str, runbook: str) -> str:
    deadline = time.monotonic() + 30
    while c.get(f"/runbooks/{runbook}/proc/run").status_code == 404:  # the catalogue re-reads
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = c.post(f"/runbooks/{runbook}/proc/run", data={"csrf": csrf, "environment": "sandbox"})
    assert r.status_code == 303, r.text
    return str(r.headers["location"].rsplit("/", 1)[1])


def test_the_event_stream_sends_a_running_steps_output_as_it_is_produced(site: Served) -> None:
    c, csrf = signin(site.url, "op1", PW)
    for name in ("go1", "go2"):
        (site.ws.root / name).unlink(missing_ok=True)
    with closing(c):
        eid = _start(c, csrf, "ticker")
        seen: list[dict[str, Any]] = []
        event = ""
        with c.stream("GET", f"/api/v1/executions/{eid}/stream", timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "output":
                    seen.append(json.loads(line[6:]))
                    text = seen[-1]["text"]
                    if text == "first-line":  # the step waits for go1: still running
                        (site.ws.root / "go1").write_text("")
                    elif text == "first-line\nsecond-line":
                        (site.ws.root / "go2").write_text("")
                elif event == "end":
                    break
        texts = [o["text"] for o in seen]
        assert texts[:2] == ["first-line", "first-line\nsecond-line"], texts
        assert {o["step"] for o in seen} == {"count-while-waiting"}


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is absent")
def test_the_execution_page_shows_output_live_without_reloading(site: Served) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.web.test_browser import ARGS, CHROMIUM, sign_in

    c, csrf = signin(site.url, "op1", PW)
    for name in ("go1", "go2"):
        (site.ws.root / name).unlink(missing_ok=True)
    with closing(c), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            sign_in(page, site.url, "op1", PW)
            eid = _start(c, csrf, "ticker")
            page.goto(f"{site.url}/executions/{eid}")
            page.evaluate("window.__same_page = true")
            live = page.locator("#step-count-while-waiting pre.live-output")
            live.filter(has_text="first-line").wait_for(timeout=15000)
            (site.ws.root / "go1").write_text("")
            live.filter(has_text="second-line").wait_for(timeout=15000)
            assert page.evaluate("window.__same_page") is True  # updated in place, no reload
            assert "row-running" in (
                page.locator("#step-count-while-waiting").get_attribute("class") or ""
            )
            (site.ws.root / "go2").write_text("")
            page.locator("#step-count-while-waiting.row-succeeded").wait_for(timeout=15000)
        finally:
            browser.close()
