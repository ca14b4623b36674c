"""The Sigma rules without a sandbox: pySigma's SQLite backend evaluates the shipped rules over
events written here (a burst of failed logins from one address fires the brute-force
correlation, a quiet window fires nothing), a workspace rule replaces a shipped one by id, a
malformed rule is refused naming its file, line and field (exit 2 from the CLI), samples are
redacted, and hits become finding candidates (source ``detection``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine.redaction import Redactor
from opsbook.errors import ValidationError
from opsbook.secops.detection import finding_inputs, redact_sample, rule_descriptions
from opsbook.secops.sigma import Hit, evaluate, load_rules
from opsbook.workspace import Workspace
from tests.engine.conftest import make_workspace

BRUTE = "9a1c2f4e-5b6d-4e7f-8a9b-0c1d2e3f4a02"
T0 = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)


def _ts(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _failed(ip: str, n: int, start: datetime = T0) -> list[dict[str, Any]]:
    return [
        {
            "ts": _ts(start + timedelta(milliseconds=70 * i)),
            "source": "sandbox",
            "service": "account",
            "level": "warning",
            "event": "auth.login_failed",
            "user": f"user{i % 3}",
            "src_ip": ip,
            "reason": "bad password",
        }
        for i in range(n)
    ]


def _quiet() -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = [
        {"ts": _ts(T0 + timedelta(seconds=i)), "source": "sandbox", "event": "http.request"}
        for i in range(20)
    ]
    return [
        *requests,
        {
            "ts": _ts(T0),
            "source": "audit",
            "action": "user.role.granted",
            "actor": "ada",
            "subject": "user:bob",
            "change": "CHG-12",
        },
        {
            "ts": _ts(T0),
            "source": "ledger",
            "event": "ledger.transfer",
            "amount_cents": 5000000,
            "hour_utc": 14,
        },
        *_failed("192.0.2.9", 3),
    ]


def _by_rule(hits: list[Hit]) -> dict[str, list[Hit]]:
    out: dict[str, list[Hit]] = {}
    for h in hits:
        out.setdefault(h.rule.id, []).append(h)
    return out


def test_a_quiet_window_fires_nothing(tmp_path: Path) -> None:
    rules = load_rules(Workspace(root=tmp_path))
    assert len(rules) == 6
    assert evaluate(rules, _quiet()) == []


def test_a_burst_of_failed_logins_fires_the_correlation_once_per_address(tmp_path: Path) -> None:
    rules = load_rules(Workspace(root=tmp_path))
    hits = evaluate(rules, _quiet() + _failed("203.0.113.7", 15))
    (brute,) = _by_rule(hits)[BRUTE]
    assert brute.group_key == "src_ip=203.0.113.7" and brute.events >= 10
    assert brute.rule.correlation and brute.rule.level == "high"
    assert set(_by_rule(hits)) == {BRUTE}  # the base rule is not alerted on by itself


def test_a_workspace_rule_replaces_a_shipped_one_by_id(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "src/opsbook/secops/sigma_rules"
    text = (shipped / "login_brute_force.yml").read_text()
    stricter = text.replace("gte: 10", "gte: 50").replace(
        "title: Login brute force from one address", "title: Login brute force (site rule)"
    )
    rules_dir = tmp_path / "security" / "detections"
    rules_dir.mkdir(parents=True)
    (rules_dir / "our-brute-force.yml").write_text(stricter)
    rules = load_rules(Workspace(root=tmp_path))
    assert len(rules) == 6
    (brute,) = [r for r in rules if r.id == BRUTE]
    assert brute.title == "Login brute force (site rule)" and "our-brute-force" in brute.path
    assert evaluate(rules, _failed("203.0.113.7", 15)) == []
    assert [h.group_key for h in evaluate(rules, _failed("203.0.113.7", 60))] == [
        "src_ip=203.0.113.7"
    ]


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("title: no detection\nlogsource: {product: opsbook}\n", "detection", 1),
        (
            "title: t\nlogsource: {product: opsbook}\ndetection:\n  sel: {event: x}\n",
            "detection.condition",
            4,
        ),
        (
            "title: c\ncorrelation:\n  type: event_count\n  rules: [x]\n  condition: {gte: 2}\n",
            "correlation.timespan",
            3,
        ),
    ],
)
def test_a_malformed_rule_names_its_file_line_and_field(
    tmp_path: Path, body: str, field: str, line: int
) -> None:
    rules_dir = tmp_path / "security" / "detections"
    rules_dir.mkdir(parents=True)
    (rules_dir / "broken.yml").write_text(body)
    with pytest.raises(ValidationError) as err:
        load_rules(Workspace(root=tmp_path))
    assert err.value.location is not None
    assert err.value.location.path.endswith("broken.yml") and err.value.location.line == line
    assert err.value.field == field and field in err.value.message


def test_the_cli_refuses_a_malformed_rule_with_exit_2_and_lists_rules_as_json(
    tmp_path: Path,
) -> None:
    root = make_workspace(tmp_path / "ws").root
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
    argv = [sys.executable, "-m", "opsbook.cli.main", "security", "detect", "--rules", "--json"]
    ok = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    listed = json.loads(ok.stdout)["rules"]
    assert {"id", "title", "level", "file", "correlation"} <= set(listed[0])
    assert BRUTE in {r["id"] for r in listed}
    (root / "security" / "detections").mkdir(parents=True)
    (root / "security" / "detections" / "nodetect.yml").write_text(
        "title: t\nlogsource: {product: opsbook}\n"
    )
    bad = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 2
    assert "nodetect.yml" in bad.stderr and "detection" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_samples_are_redacted() -> None:
    secret = "s3cr3t-Value-42"
    out = redact_sample(
        {
            "user": "ops-batch",
            "password": "hunter2!",
            "authorization": "Bearer sbx.7.abcdef",
            "token_id": "7",
            "message": "charge 4111 1111 1111 1111 ok",
            "note": f"leaked {secret} here",
            "nested": {"api_key": "k-123456"},
            "new_address": True,
        },
        redactor=Redactor([secret]),
    )
    assert out["password"] == "***" and out["authorization"] == "***"
    assert out["nested"] == {"api_key": "***"}
    assert out["token_id"] == "7" and out["user"] == "ops-batch" and out["new_address"] is True
    assert "4111 1111 1111 1111" not in out["message"] and "1111" in out["message"]
    assert secret not in out["note"] and "***" in out["note"]


def test_hits_become_finding_candidates(tmp_path: Path) -> None:
    rules = load_rules(Workspace(root=tmp_path))
    result = {
        "environment": "sandbox",
        "hits": [
            {
                "rule": BRUTE,
                "title": "Login brute force from one address",
                "level": "high",
                "group": "src_ip=203.0.113.7",
                "events": n,
                "first": "2026-12-04T14:00:00Z",
                "last": "2026-12-04T14:00:01Z",
                "new": True,
            }
            for n in (15, 40)  # two windows, one attacker: one finding
        ],
    }
    (fi,) = finding_inputs(result, descriptions=rule_descriptions(r.path for r in rules))
    assert fi.source == "detection" and fi.severity == "high"
    assert fi.subject == "src_ip=203.0.113.7" and fi.environment == "sandbox"
    assert fi.rule_id == f"sigma.{BRUTE}"
    assert fi.requirements == ("8.3.4", "10.2.1.4")
    assert fi.to_dict()["fingerprint"] == fi.identity


def test_odd_field_names_in_a_log_line_do_not_stop_the_rules(tmp_path: Path) -> None:
    rules = load_rules(Workspace(root=tmp_path))
    odd = {"ts": _ts(T0), "User": "x", 'we"ird': 1, "timestamp": "now", "Timestamp": 2}
    hits = evaluate(rules, [odd, *_failed("203.0.113.7", 12)])
    assert [h.group_key for h in hits] == ["src_ip=203.0.113.7"]
