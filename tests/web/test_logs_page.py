"""The console's log search and trace pages (issue 12) over real log files of the served
workspace's sandbox directory, under the console's CSP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("logs-page")) / "ws"
    with serve(root) as s:
        logs = s.ws.root / ".opsbook" / "sandbox" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rows = [
            {
                "ts": now,
                "level": "info",
                "service": "payment",
                "event": "request",
                "request_id": "abcd1234efgh",
                "path": "/payments",
                "status": 201,
                "duration_ms": 12.5,
            },
            {
                "ts": now,
                "level": "error",
                "service": "payment",
                "event": "payment failed",
                "request_id": "abcd1234efgh",
                "error": "payment network <timed out>",
            },
        ]
        (logs / "payment.log").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        s.account("mona", ["viewer"], password=PW)
        yield s


def test_search_and_trace_pages(site: Served) -> None:
    c, _ = signin(site.url, "mona", PW)
    with closing(c):
        page = c.get("/logs", params={"q": "service=payment level>=warning", "since": "1h"})
        assert page.status_code == 200, page.text
        assert "1 line(s) matched" in page.text
        assert "payment network &lt;timed out&gt;" in page.text  # escaped
        assert '<a href="/logs/trace/abcd1234efgh">' in page.text
        assert '<a href="/logs"' in page.text  # in the nav
        assert "style-src 'self'" in page.headers["content-security-policy"]
        bad = c.get("/logs", params={"q": "status>=200"})
        assert bad.status_code == 200 and "compare levels only" in bad.text
        trace = c.get("/logs/trace/abcd1234efgh")
        assert trace.status_code == 200, trace.text
        assert "Request abcd1234efgh" in trace.text and "/payments" in trace.text
        assert c.get("/logs/trace/nosuchrequest").status_code == 404
        assert c.get("/logs", params={"since": "forever"}).status_code == 422
