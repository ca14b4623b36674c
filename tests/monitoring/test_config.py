"""Monitoring configuration in environment files: valid shapes load; every mistake is a
ValidationError pointing at file:line and nothing is half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.errors import NotFoundError, ValidationError
from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.slo_specs import parse_sloth
from opsbook.workspace.init import init_workspace
from tests.monitoring.conftest import make_ws

GOOD = """\
name: sandbox
services:
  - name: payment
    port: 18103
    health_url: http://127.0.0.1:18103/health
    probes:
      - name: payment-health
        http: {url: "${service.health_url}"}
        interval: 10s
        expect: ['status == 200', 'json.status == "UP"']
  - name: account
monitoring:
  prometheus: http://127.0.0.1:9090
  probes:
    - {name: account-port, service: account, tcp: "127.0.0.1:18101", interval: 5s}
  slos:
    - {name: payment-availability, service: payment, objective: 99.9, probe: payment-health}
  maintenance:
    - {start: 2026-11-14T02:00:00Z, end: 2026-11-14T03:00:00Z, services: [payment],
       approved_by: cab, change: CHG-1}
  alert_runbooks: {HighErrorRate: troubleshooting#performance-investigation}
  service_runbooks: {payment: troubleshooting#service-connectivity}
  kpi_thresholds:
    payment: {error_rate: {max: 0.05}}
"""


def test_a_valid_file_loads(tmp_path: Path) -> None:
    cfg = load_monitoring(make_ws(tmp_path, GOOD), "sandbox")
    assert [p.name for p in cfg.probes] == ["payment-health", "account-port"]
    health = cfg.probe("payment-health")
    assert health.target["url"] == "http://127.0.0.1:18103/health"  # {{ service.X }} read
    assert health.interval == 10 and health.expect[1] == 'json.status == "UP"'
    port = cfg.probe("account-port")
    assert (port.kind, port.target, port.service) == (
        "tcp",
        {"host": "127.0.0.1", "port": "18101"},
        "account",
    )
    assert cfg.slos[0].objective == 99.9 and cfg.slos[0].budget == pytest.approx(0.001)
    assert cfg.maintenance[0].approved
    assert cfg.runbook_for(alertname="HighErrorRate", service="payment") == (
        "troubleshooting#performance-investigation"
    )
    assert cfg.runbook_for(alertname="Other", service="payment") == (
        "troubleshooting#service-connectivity"
    )
    assert cfg.kpi_thresholds == {"payment": {"error_rate": ("max", 0.05)}}
    assert [e.level for e in cfg.escalation] == ["level-2", "level-3"]  # the default policy


def test_the_shipped_sandbox_environment_loads(tmp_path: Path) -> None:
    init_workspace(target=tmp_path / "ws")
    from opsbook.workspace import Workspace

    cfg = load_monitoring(Workspace.load(tmp_path / "ws"), "sandbox")
    assert {p.kind for p in cfg.probes} == {"http", "sql", "tls"}
    assert len(cfg.slos) == 4
    assert cfg.probe("payment-network-tls").target["port"] == "18105"


def _error(tmp_path: Path, text: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        load_monitoring(make_ws(tmp_path, text), "sandbox")
    return info.value


def test_unknown_service_points_at_the_line(tmp_path: Path) -> None:
    text = GOOD.replace("service: account, tcp", "service: ledger, tcp")
    err = _error(tmp_path, text)
    assert "unknown service 'ledger'" in err.message
    assert err.location is not None and err.location.line == 15
    assert err.location.path.endswith("sandbox.yaml")


def test_invalid_cel_is_reported_with_its_location(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("'status == 200'", "'status === 200'"))
    assert "invalid CEL" in err.message and err.location and err.location.line == 7


@pytest.mark.parametrize("objective", ["100", "0", "-5", "100.5", "abc"])
def test_impossible_slo_targets_are_refused(tmp_path: Path, objective: str) -> None:
    err = _error(tmp_path, GOOD.replace("objective: 99.9", f"objective: {objective}"))
    assert "objective" in err.message and err.location and err.location.line == 17


def test_other_mistakes(tmp_path: Path) -> None:
    assert (
        "exactly one of" in _error(tmp_path, GOOD.replace('tcp: "127.0.0.1:18101", ', "")).message
    )
    assert (
        "not a duration"
        in _error(tmp_path, GOOD.replace("interval: 10s", "interval: soon")).message
    )
    assert (
        "ends before"
        in _error(tmp_path, GOOD.replace("end: 2026-11-14T03", "end: 2026-11-14T01")).message
    )
    assert (
        "unknown probe"
        in _error(tmp_path, GOOD.replace("probe: payment-health}", "probe: x}")).message
    )
    assert (
        "unknown KPI" in _error(tmp_path, GOOD.replace("error_rate: {max", "vibes: {max")).message
    )
    assert (
        "${service.nope}"
        in _error(tmp_path, GOOD.replace("service.health_url", "service.nope")).message
    )


def test_environment_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    ws = make_ws(tmp_path, GOOD)
    with pytest.raises(NotFoundError):
        load_monitoring(ws, "../opsbook")


SLOTH = """\
version: "prometheus/v1"
service: "payment"
labels: {owner: "platform"}
slos:
  - name: "requests-availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{service="payment",status=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{service="payment"}[{{.window}}]))
    alerting:
      name: PaymentHighErrorRate
      page_alert: {labels: {severity: page}}
      ticket_alert: {labels: {severity: ticket}}
"""


def test_sloth_specs_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "payment-slo.yaml"
    path.write_text(SLOTH, encoding="utf-8")
    (slo,) = parse_sloth(path, ("payment",))
    assert slo.name == "payment-requests-availability" and slo.objective == 99.9
    assert slo.error_query and "5.." in slo.error_query


def test_sloth_specs_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SLOTH.replace("objective: 99.9", "objective: 100"), encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        parse_sloth(path, ("payment",))
    assert info.value.location and info.value.location.line == 5
    path.write_text(SLOTH, encoding="utf-8")
    with pytest.raises(ValidationError, match="unknown service"):
        parse_sloth(path, ("account",))


def test_sloth_sli_needs_both_queries(tmp_path: Path) -> None:
    path = tmp_path / "half.yaml"
    path.write_text(
        "\n".join(line for line in SLOTH.splitlines() if "total_query" not in line),
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="both error_query and total_query") as info:
        parse_sloth(path, ("payment",))
    assert info.value.location and info.value.location.line == 5
