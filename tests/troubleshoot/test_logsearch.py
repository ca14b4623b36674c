"""Log search and request tracing (issue 12): the query language and its errors, search over
generated log files (terms, levels, free text, since/until, limit, newest first), a request
traced on the real sandbox (its log lines and ledger rows), and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsbook.errors import NotFoundError, ValidationError
from opsbook.troubleshoot.logsearch import parse_query, search, trace
from tests.sandbox.harness import Sandbox

T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


def line(i: int, service: str, level: str = "info", **extra: object) -> str:
    ts = (T0 + timedelta(seconds=i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {"ts": ts, "level": level, "service": service, "event": "request", "status": 200, **extra}
    )


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    for service in ("account", "payment"):
        rows = [line(i, service, request_id=f"{service}-{i:04d}") for i in range(100)]
        rows[40] = line(40, service, "error", status=500, error="Upstream RESET by peer")
        rows[70] = line(70, service, "warning", event="slow request", duration_ms=1500)
        (tmp_path / f"{service}.log").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_the_query_language() -> None:
    q = parse_query('service=payment level>=warning status!=200 "reset by"')
    assert [(t.key, t.op, t.value) for t in q.terms] == [
        ("service", "=", "payment"),
        ("level", ">=", "warning"),
        ("status", "!=", "200"),
    ]
    assert q.text == ("reset by",)
    for bad, says in (
        ('service="payment', "does not parse"),
        ("status>=200", "compare levels only"),
        ("=payment", "is not a term"),
    ):
        with pytest.raises(ValidationError, match=says) as err:
            parse_query(bad)
        assert err.value.field == "query"


def test_search_terms_levels_text_and_time(logs: Path) -> None:
    found = search(log_dir=logs, query="service=payment level>=warning")
    assert found.matched == 2 and found.files == 2
    assert [h["level"] for h in found.hits] == ["warning", "error"]  # newest first
    assert search(log_dir=logs, query="status=500").matched == 2
    assert search(log_dir=logs, query="service=payment status!=200").matched == 1
    text = search(log_dir=logs, query='"upstream reset"')  # any case
    assert text.matched == 2 and all(h["status"] == 500 for h in text.hits)
    window = search(
        log_dir=logs,
        query="service=account",
        since=T0 + timedelta(seconds=60),
        until=T0 + timedelta(seconds=80),
    )
    assert window.matched == 20
    assert min(h["ts"] for h in window.hits) == "2026-12-04T00:01:00.000Z"
    assert len(search(log_dir=logs, query="event=request", limit=5).hits) == 5
    assert search(log_dir=logs, query="service=nobody").matched == 0


def _traced(
    log_dir: Path, rid: str, ledger_url: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The trace once ``done`` holds: a service writes its request line after the response
    has gone out, so the client can be faster than the log (a CI run saw an empty trace)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            t = trace(log_dir=log_dir, request_id=rid, ledger_url=ledger_url)
        except NotFoundError:
            t = {"events": [], "hops": [], "ledger": []}
        if done(t) or time.monotonic() > deadline:
            return t
        time.sleep(0.05)


def test_trace_on_the_real_sandbox(sb: Sandbox) -> None:
    rid = "pytesttrace0001"
    r = httpx.post(
        sb.url("account") + "/accounts",
        json={"owner": "trace test", "initial_cents": 1000},
        headers={"x-request-id": rid},
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    assert r.headers.get("x-request-id") == rid
    log_dir = sb.data_dir / "logs"
    ledger_url = f"sqlite:///{sb.data_dir / 'ledger.db'}"
    t = _traced(log_dir, rid, ledger_url, lambda t: bool(t["hops"]))
    assert t["events"] and t["events"][0]["offset_ms"] == 0.0
    assert {"service": "account", "path": "/accounts", "status": r.status_code} == {
        k: t["hops"][0][k] for k in ("service", "path", "status")
    }
    # a payment crosses services: payment -> the payment network -> the ledger
    account = r.json()["id"]
    pay_id = "pytesttracepay1"
    paid = httpx.post(
        sb.url("payment") + "/payments",
        json={"account_id": account, "amount_cents": 250, "payee": "shop"},
        headers={"x-request-id": pay_id},
        timeout=10,
    )
    assert paid.status_code in (200, 201, 402), paid.text
    t = _traced(
        log_dir,
        pay_id,
        ledger_url,
        lambda t: {"payment", "payment-network"} <= {e["service"] for e in t["events"]},
    )
    services = [e["service"] for e in t["events"]]
    assert "payment" in services and "payment-network" in services, t["events"]
    assert t["events"] == sorted(t["events"], key=lambda e: e["offset_ms"])
    assert any(r["table"] == "payments" for r in t["ledger"])
    with pytest.raises(NotFoundError, match="no log line or ledger row"):
        trace(log_dir=log_dir, request_id="nosuchrequest00")
    with pytest.raises(ValidationError):
        trace(log_dir=log_dir, request_id="bad id; rm -rf /")

    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", "logs", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=sb.ws.root,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        )

    data = json.loads(ob("trace", rid, "--json").stdout)
    assert data["request_id"] == rid and data["hops"]
    found = json.loads(ob("search", f"request_id={rid}", "--since", "10m", "--json").stdout)
    assert found["matched"] >= 1 and found["hits"][0]["request_id"] == rid
    human = ob("search", "service=account event=request", "--since", "10m", "--limit", "3")
    assert human.returncode == 0 and "line(s) matched" in human.stdout
    bad = ob("search", "status>=200")
    assert bad.returncode == 2 and "compare levels only" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert ob("trace", "nosuchrequest00").returncode == 2
