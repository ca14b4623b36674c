"""The review's payments line when the metrics endpoint fails: one Markdown list item with a
short reason, never a raw httpx message over two lines (issue 18 §4)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from opsbook.incidents import impact, lifecycle
from opsbook.incidents.review import draft
from tests.conftest import free_port, serving
from tests.incidents.harness import Env
from tests.incidents.test_impact import _declare, _point_sandbox_at, _take


@contextmanager
def unavailable() -> Iterator[str]:
    """Every GET answers 503 Service Unavailable."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(Handler) as url:
        yield url


def test_metrics_answering_503_read_as_http_503(env: Env) -> None:
    with unavailable() as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment"])
        _take(env)
        lifecycle.resolve(db=env.db, ref=ref, actor="bob")
        _take(env)
    md = draft(db=env.db, ref=ref, workspace=env.ws)
    assert "  - payment: not measured: metrics unreachable (HTTP 503)\n" in md
    assert "developer.mozilla.org" not in md and "Server error" not in md


def test_a_refused_connection_is_one_short_line() -> None:
    got = impact.read_payments({"payment": f"http://127.0.0.1:{free_port()}/metrics"})
    assert got == {"payment": {"error": "connection refused"}}


def test_an_old_raw_error_is_shortened_to_one_line(env: Env) -> None:
    """Readings stored before this change hold httpx's two-line message."""
    raw = (
        "HTTPStatusError: Server error '503 Service Unavailable' for url 'http://x/metrics'\n"
        "For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/503"
    )
    assert impact.short_error(raw) == "HTTP 503"
    assert impact.short_error("ConnectError: [Errno 111] Connection refused") == (
        "connection refused"
    )
    assert impact.short_error("ReadTimeout: \nmore") == "ReadTimeout"
