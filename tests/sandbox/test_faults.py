"""Each fault, injected into the real sandbox, shows the way an operator would see it (health,
metrics, logs, latency, status) and goes away when cleared."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest

from opsbook.errors import ConflictError, NotFoundError, OpsbookError, UsageError
from opsbook.sandbox import chaos
from opsbook.sandbox.faults import read_chaos_log
from tests.sandbox.harness import Sandbox, http, metric, wait_for

TRANSFER = {"from_account": 3, "to_account": 4, "amount_cents": 1}


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, *, actor: str, action: str, subject: str, payload: Mapping[str, Any]) -> None:
        self.records.append({"actor": actor, "action": action, "subject": subject, **payload})


def inject(sb: Sandbox, fault: str, service: str | None = None, **kw: Any) -> dict[str, Any]:
    return chaos.inject(control=sb.control(), fault=fault, service=service, actor="pytest", **kw)


def clear(sb: Sandbox, fault: str | None = None) -> dict[str, Any]:
    return chaos.clear(control=sb.control(), fault=fault, actor="pytest")


def healthy(sb: Sandbox, name: str) -> bool:
    code, body = http(f"{sb.url(name)}/health", timeout=3)
    return code == 200 and isinstance(body, dict) and body["status"] == "UP"


def test_crash_is_down_until_restarted(sb: Sandbox) -> None:
    inject(sb, "crash", "payment")
    code, body = http(f"{sb.url('payment')}/health")
    assert code == 503 and body["status"] == "DOWN" and "no healthy upstream" in body["error"]
    svc = sb.service("payment")
    assert svc["state"] == "crashed" and svc["ready"] == 0
    assert any(p["exit_code"] == 70 for p in svc["pods"])
    events = [line["event"] for line in sb.log_lines("payment")]
    assert any(e.startswith("fatal error") for e in events) and "replica exited" in events
    time.sleep(1.5)  # no auto-restart: still down a while later
    assert sb.service("payment")["state"] == "crashed"
    result = sb.control().call("restart", {"service": "payment"})
    assert result["healthy"] and result["cleared_faults"] == ["crash"]
    assert healthy(sb, "payment") and sb.service("payment")["restarts"] >= 1


def test_hang_times_out_probes_then_recovers(sb: Sandbox) -> None:
    inject(sb, "hang", "notification")
    assert http(f"{sb.url('notification')}/health", timeout=1.0) == (None, None)
    wait_for(lambda: sb.service("notification")["ready"] == 0, timeout=5)
    assert sb.service("notification")["state"] == "running"  # alive, not answering
    clear(sb, "hang")
    wait_for(lambda: healthy(sb, "notification"))


def test_latency_shows_in_timings_and_histograms(sb: Sandbox) -> None:
    inject(sb, "latency", "account")
    started = time.perf_counter()
    assert http(f"{sb.url('account')}/accounts/3")[0] == 200
    assert time.perf_counter() - started > 1.0
    _, text = http(f"{sb.url('account')}/metrics")
    slow = metric(text, "http_request_duration_seconds_count", route="/accounts/{id}")
    fast = metric(text, "http_request_duration_seconds_bucket", route="/accounts/{id}", le="1.0")
    assert slow - fast >= 1
    clear(sb, "latency")
    started = time.perf_counter()
    http(f"{sb.url('account')}/accounts/3")
    assert time.perf_counter() - started < 1.0


def test_error_rate_fails_requests_but_not_health(sb: Sandbox) -> None:
    inject(sb, "error-rate", "transaction")
    codes = [
        http(f"{sb.url('transaction')}/transfers", method="POST", body=TRANSFER)[0]
        for _ in range(30)
    ]
    assert 500 in codes and 201 in codes
    assert healthy(sb, "transaction")
    _, text = http(f"{sb.url('transaction')}/metrics")
    assert metric(text, "http_requests_total", route="/transfers", status="500") >= 1
    assert any(line["level"] == "error" for line in sb.log_lines("transaction"))
    clear(sb)
    codes = [
        http(f"{sb.url('transaction')}/transfers", method="POST", body=TRANSFER)[0]
        for _ in range(10)
    ]
    assert set(codes) == {201}


def test_db_down_fails_health_and_api(sb: Sandbox) -> None:
    inject(sb, "db-down")
    code, body = http(f"{sb.url('account')}/health")
    assert code == 503 and body["checks"]["database"]["status"] == "DOWN"
    code, body = http(f"{sb.url('account')}/accounts/3")
    assert code == 503 and body["error"] == "database_unavailable"
    _, text = http(f"{sb.url('account')}/metrics")
    assert metric(text, "db_errors_total", kind="connect") >= 1
    clear(sb, "db-down")
    assert all(healthy(sb, name) for name in ("account", "transaction", "notification"))


def test_pool_exhaustion_holds_every_connection(sb: Sandbox) -> None:
    inject(sb, "db-connections-exhausted", "transaction")

    def exhausted() -> bool:
        _, text = http(f"{sb.url('transaction')}/metrics")
        return metric(text, "db_pool_connections_in_use") == metric(text, "db_pool_size")

    wait_for(exhausted, timeout=5)
    code, body = http(f"{sb.url('transaction')}/health")
    assert code == 503
    assert "connection pool exhausted" in body["checks"]["database"]["error"]
    code, body = http(f"{sb.url('transaction')}/transfers", method="POST", body=TRANSFER)
    assert code == 503 and "pool" in body["message"]
    assert healthy(sb, "account")  # only the transaction service was hit
    clear(sb)
    wait_for(lambda: healthy(sb, "transaction"))


def test_slow_payment_network_fails_payments(sb: Sandbox) -> None:
    inject(sb, "dependency-slow")
    code, body = http(f"{sb.url('payment')}/health")
    assert code == 503 and body["status"] == "DEGRADED"
    assert body["checks"]["dependencies"]["payment_network"]["error"].startswith("timed out")
    code, body = http(
        f"{sb.url('payment')}/payments",
        method="POST",
        body={"account_id": 3, "amount_cents": 100},
    )
    assert code == 504 and body["status"] == "failed"
    _, text = http(f"{sb.url('payment')}/metrics")
    assert metric(text, "bank_payments_total", status="failed") >= 1
    clear(sb)
    wait_for(lambda: healthy(sb, "payment"))
    code, body = http(
        f"{sb.url('payment')}/payments",
        method="POST",
        body={"account_id": 3, "amount_cents": 100},
    )
    assert code in (201, 402)  # approved, or declined by the network's 1% failure rate


def test_memory_leak_grows_until_cleared(sb: Sandbox) -> None:
    before = sb.service("notification")["memory"]
    inject(sb, "memory-leak", "notification")
    wait_for(lambda: sb.service("notification")["memory"] > before + 60, timeout=8)
    assert any(line["event"] == "heap growing" for line in sb.log_lines("notification"))
    clear(sb, "memory-leak")
    wait_for(lambda: sb.service("notification")["memory"] < before + 40, timeout=8)
    assert any(line["event"] == "memory released" for line in sb.log_lines("notification"))


def test_disk_full_refuses_writes(sb: Sandbox) -> None:
    inject(sb, "disk-full")
    assert (sb.data_dir / "ballast.img").exists()

    def full() -> Any:
        code, body = http(f"{sb.url('account')}/health")
        return code == 503 and body["checks"]["disk"]["status"] == "DOWN"

    wait_for(full, timeout=5)
    code, body = http(f"{sb.url('account')}/accounts", method="POST", body={"owner": "zed"})
    assert code == 503 and "No space left on device" in body["message"]
    assert http(f"{sb.url('account')}/accounts/3")[0] == 200  # reads still work
    clear(sb)
    assert not (sb.data_dir / "ballast.img").exists()
    wait_for(lambda: healthy(sb, "account"), timeout=5)


def test_cert_expiring_warns_without_an_outage(sb: Sandbox) -> None:
    inject(sb, "cert-expiring")

    def tls() -> Any:
        code, body = http(f"{sb.url('payment')}/health")
        check = body["checks"]["tls"] if isinstance(body, dict) else {}
        return code == 200 and check.get("status") == "WARN" and check

    check = wait_for(tls, timeout=6)
    assert check["days_left"] < 6
    _, text = http(f"{sb.url('payment')}/metrics")
    assert 0 < metric(text, "tls_certificate_expiry_seconds") < 6 * 86400
    assert any(line["event"] == "TLS certificate expires soon" for line in sb.log_lines("payment"))
    clear(sb)

    def renewed() -> Any:
        _, body = http(f"{sb.url('payment')}/health")
        return isinstance(body, dict) and body["checks"]["tls"].get("days_left", 0) > 300

    wait_for(renewed, timeout=6)


def test_suspicious_logins_leave_security_events(sb: Sandbox) -> None:
    inject(sb, "suspicious-logins")

    def failures() -> list[dict[str, Any]]:
        return [e for e in sb.log_lines("account") if e["event"] == "auth.login_failed"]

    seen = wait_for(lambda: len(failures()) >= 5 and failures(), timeout=5)
    assert {e["category"] for e in seen} == {"security"}
    assert {e["src_ip"] for e in seen} & {"203.0.113.7", "203.0.113.42"}
    _, text = http(f"{sb.url('account')}/metrics")
    assert metric(text, "auth_login_failures_total") >= 5
    clear(sb)
    count = len(failures())
    time.sleep(0.6)
    assert len(failures()) <= count + 1  # the burst stopped


def test_bad_deploy_is_partly_caught_and_rolled_back(sb: Sandbox) -> None:
    before = sb.service("transaction")["revision"]
    result = inject(sb, "bad-deploy", "transaction")
    assert result["params"]["revision"] == before + 1
    svc = sb.service("transaction")
    assert svc["revision"] == before + 1 and svc["version"] == "1.4.3"
    codes = [
        http(f"{sb.url('transaction')}/transfers", method="POST", body=TRANSFER)[0]
        for _ in range(9)
    ]
    assert codes.count(500) == 3 and codes.count(201) == 6
    probes = [http(f"{sb.url('transaction')}/health")[0] for _ in range(6)]
    assert 200 in probes and 503 in probes  # the health check catches it only now and then
    rolled = sb.control().call("rollback", {"service": "transaction"})
    assert rolled["version"] == "1.4.2" and rolled["cleared_faults"] == ["bad-deploy"]
    assert chaos.active(control=sb.control()) == []
    codes = [
        http(f"{sb.url('transaction')}/transfers", method="POST", body=TRANSFER)[0]
        for _ in range(6)
    ]
    assert set(codes) == {201}


def test_a_fault_with_a_duration_expires(sb: Sandbox) -> None:
    result = inject(sb, "latency", "account", duration="1s")
    assert result["until"] is not None

    def actions() -> list[str]:
        return [e["action"] for e in read_chaos_log(sb.data_dir) if e["id"] == result["id"]]

    wait_for(lambda: len(actions()) == 2, timeout=5)
    assert actions() == ["sandbox.fault.injected", "sandbox.fault.expired"]
    assert chaos.active(control=sb.control()) == []


def test_injections_are_audited(sb: Sandbox) -> None:
    sink = RecordingSink()
    done = chaos.inject(
        control=sb.control(), fault="latency", service="payment", actor="carol", sink=sink
    )
    chaos.clear(control=sb.control(), fault="latency", actor="dave", sink=sink)
    assert [(r["actor"], r["action"]) for r in sink.records] == [
        ("carol", "sandbox.fault.injected"),
        ("dave", "sandbox.fault.cleared"),
    ]
    assert sink.records[0]["subject"] == "sandbox:fault:latency:payment"
    lines = [e for e in read_chaos_log(sb.data_dir) if e["id"] == done["id"]]
    assert [(e["action"], e["actor"]) for e in lines] == [
        ("sandbox.fault.injected", "carol"),
        ("sandbox.fault.cleared", "dave"),
    ]
    raw = (sb.data_dir / "chaos.jsonl").read_text().splitlines()
    assert all(json.loads(line)["ts"] for line in raw)


@pytest.mark.parametrize(
    ("fault", "service", "kw", "error", "text"),
    [
        ("meteor", None, {}, NotFoundError, "unknown fault 'meteor'"),
        ("latency", "ledger", {}, UsageError, "unknown service 'ledger'"),
        ("crash", None, {}, UsageError, "crash needs --service"),
        ("dependency-slow", "payment", {}, UsageError, "drop --service"),
        ("crash", "payment", {"duration": "5s"}, UsageError, "takes no --duration"),
        ("latency", "payment", {"duration": "soon"}, UsageError, "not a duration"),
    ],
)
def test_bad_fault_requests_are_refused(
    sb: Sandbox,
    fault: str,
    service: str | None,
    kw: dict[str, Any],
    error: type[OpsbookError],
    text: str,
) -> None:
    with pytest.raises(error, match=text) as info:
        inject(sb, fault, service, **kw)
    assert info.value.exit_code == 2
    assert chaos.active(control=sb.control()) == []


def test_the_same_fault_twice_is_a_conflict(sb: Sandbox) -> None:
    inject(sb, "error-rate", "account")
    with pytest.raises(ConflictError, match="already active"):
        inject(sb, "error-rate")
    assert len(chaos.active(control=sb.control())) == 1
