"""Customer impact in the review from the sandbox's /metrics: payment counters read at
declaration and at resolution (a real HTTP server serving Prometheus text), subtracted per
affected service; otherwise the placeholder says why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import yaml

from opsbook.db import open_database
from opsbook.incidents import impact, lifecycle
from opsbook.incidents.review import draft
from opsbook.incidents.service import declare, get, timeline
from tests.conftest import free_port, serving
from tests.incidents.harness import Env


@contextmanager
def metrics_server(counters: dict[str, dict[str, float]]) -> Iterator[str]:
    """``GET /<service>/metrics``: ``bank_payments_total`` from ``counters`` (mutable)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            service = self.path.strip("/").split("/")[0]
            lines = ["# TYPE bank_payments counter"]
            for status, n in counters.get(service, {}).items():
                lines.append(f'bank_payments_total{{status="{status}"}} {n}')
            lines.append("# TYPE http_requests counter\nhttp_requests_total 3")
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(Handler) as url:
        yield url


def _point_sandbox_at(env: Env, base: str) -> None:
    path = env.ws.environments_dir / "sandbox.yaml"
    data = yaml.safe_load(path.read_text())
    for s in data["services"]:
        s["metrics_url"] = f"{base}/{s['name']}/metrics"
    path.write_text(yaml.safe_dump(data))


def _declare(env: Env, services: list[str]) -> str:
    return declare(
        db=env.db,
        config=env.config,
        title="Payments failing",
        actor="alice",
        services=services,
        severity="SEV2",
    ).incident.ref


def _take(env: Env) -> int:
    return impact.take_due(db=env.db, workspace=env.ws, owner="test")


def test_payments_failed_and_succeeded_during_the_incident(env: Env) -> None:
    counters = {"payment": {"succeeded": 100.0, "failed": 2.0}}
    with metrics_server(counters) as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment", "account"])
        assert _take(env) == 1
        assert _take(env) == 0  # taken once
        counters["payment"] = {"succeeded": 150.0, "failed": 42.0}
        open_md = draft(db=env.db, ref=ref, workspace=env.ws)
        assert "declared → now (still open)" in open_md
        assert "  - payment: 40 failed (44.4% of 90), 50 succeeded" in open_md
        lifecycle.resolve(db=env.db, ref=ref, actor="bob")
        assert _take(env) == 1
        counters["payment"] = {"succeeded": 900.0, "failed": 42.0}  # after: not counted
        md = draft(db=env.db, ref=ref, workspace=env.ws)
    assert "- Payments during the incident (sandbox `/metrics`, declared → resolved):" in md
    assert "  - payment: 40 failed (44.4% of 90), 50 succeeded" in md
    assert "account" not in md.split("## Detection")[0].split("Payments during")[1]
    assert "fill in" not in md.lower().split("## detection")[0]
    shots = [
        e
        for e in timeline(db=env.db, incident=get(db=env.db, ref=ref))
        if e.kind == "impact.snapshot"
    ]
    assert [e.payload["point"] for e in shots] == ["start", "end"]
    assert shots[0].actor == "system:impact"


def test_no_reading_at_declaration_says_why(env: Env) -> None:
    ref = _declare(env, ["payment"])
    lifecycle.resolve(db=env.db, ref=ref, actor="bob")
    md = draft(db=env.db, ref=ref)
    assert "- Customers and payments affected: not measured — no sandbox metrics reading" in md
    assert "Fill in from the platform's metrics." in md


def test_an_unreachable_sandbox_says_so(env: Env) -> None:
    _point_sandbox_at(env, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    ref = _declare(env, ["payment"])
    _take(env)
    lifecycle.resolve(db=env.db, ref=ref, actor="bob")
    _take(env)
    md = draft(db=env.db, ref=ref, workspace=env.ws)
    assert "  - payment: not measured: metrics unreachable (connection refused)" in md


def test_not_the_sandbox_says_so(env: Env) -> None:
    toml = env.ws.root / "opsbook.toml"
    toml.write_text(
        toml.read_text().replace(
            'default_environment = "sandbox"', 'default_environment = "production"'
        )
    )
    from opsbook.workspace import Workspace

    ws = Workspace.load(env.ws.root)
    ref = _declare(env, ["payment"])
    impact.take_due(db=env.db, workspace=ws, owner="test")
    md = draft(db=env.db, ref=ref, workspace=ws)
    assert "not measured — the environment (production) is not the sandbox." in md


def test_a_counter_reset_is_not_read_as_negative_payments(env: Env) -> None:
    counters = {"payment": {"succeeded": 500.0, "failed": 5.0}}
    with metrics_server(counters) as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment"])
        _take(env)
        counters["payment"] = {"succeeded": 3.0, "failed": 1.0}  # the service restarted
        lifecycle.resolve(db=env.db, ref=ref, actor="bob")
        _take(env)
    md = draft(db=env.db, ref=ref)
    assert "  - payment: not measured — the service restarted (counters reset)" in md


def test_two_processes_record_one_reading(env: Env) -> None:
    counters = {"payment": {"succeeded": 1.0, "failed": 0.0}}
    with metrics_server(counters) as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment"])
        other = open_database(env.db.url)
        try:
            a = impact.take_due(db=env.db, workspace=env.ws, owner="a")
            b = impact.take_due(db=other, workspace=env.ws, owner="b")
        finally:
            other.close()
    assert (a, b) == (1, 0)
    kinds = [e.kind for e in timeline(db=env.db, incident=get(db=env.db, ref=ref))]
    assert kinds.count("impact.snapshot") == 1


async def test_the_serve_loop_reads_off_the_event_loop(env: Env) -> None:
    counters = {"payment": {"succeeded": 7.0, "failed": 1.0}}
    with metrics_server(counters) as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment"])
        assert await impact.take_due_async(db=env.db, workspace=env.ws, owner="serve") == 1
    shot = next(
        e
        for e in timeline(db=env.db, incident=get(db=env.db, ref=ref))
        if e.kind == "impact.snapshot"
    )
    assert shot.payload["payments"]["payment"]["succeeded"] == 7.0
    assert datetime.now(UTC) >= datetime.fromisoformat(shot.ts.replace("Z", "+00:00"))


def test_a_reading_still_due_is_taken_by_the_review(env: Env) -> None:
    counters = {"payment": {"succeeded": 10.0, "failed": 0.0}}
    with metrics_server(counters) as base:
        _point_sandbox_at(env, base)
        ref = _declare(env, ["payment"])
        _take(env)
        counters["payment"] = {"succeeded": 12.0, "failed": 3.0}
        lifecycle.resolve(db=env.db, ref=ref, actor="bob")  # nobody took the end reading yet
        md = draft(db=env.db, ref=ref, workspace=env.ws)
    assert "  - payment: 3 failed (60.0% of 5), 2 succeeded" in md
