"""Alert ingest (Alertmanager webhook v4): idempotent on fingerprint, resolve and re-fire,
all-or-nothing validation, acknowledgement and silences, every change audited."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsbook.audit import verify
from opsbook.db import Database
from opsbook.errors import ConflictError, ValidationError
from opsbook.monitoring import alerts
from opsbook.monitoring.service import ingest_alertmanager
from tests.monitoring.conftest import make_ws

ENV = """\
name: sandbox
services: [{name: payment}]
monitoring:
  alert_runbooks: {HighErrorRate: troubleshooting#performance-investigation}
"""
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def payload(
    n: int = 2, status: str = "firing", starts: str = "2026-11-26T07:00:00Z"
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "opsbook",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "HighErrorRate",
                    "service": "payment",
                    "pod": f"p{i}",
                    "severity": "critical",
                },
                "annotations": {"summary": f"errors on p{i}"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-26T07:30:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": f"{i:016x}",
            }
            for i in range(n)
        ],
    }


def post(db: Database, tmp_path: Path, body: Any) -> alerts.IngestResult:
    ws = make_ws(tmp_path, ENV)
    return ingest_alertmanager(db=db, workspace=ws, body=body, actor="alertmanager", now=NOW)


def test_alerts_are_stored_with_their_runbook(db: Database, tmp_path: Path) -> None:
    body = payload(2)
    body["alerts"][1]["annotations"]["runbook_url"] = "https://wiki/runbooks/errors"
    result = post(db, tmp_path, body)
    assert result.to_dict() == {
        "received": 2,
        "created": 2,
        "resolved": 0,
        "refired": 0,
        "duplicates": 0,
    }
    rows = {r["fingerprint"]: r for r in alerts.list_alerts(db, now=NOW)}
    assert rows["0000000000000000"]["runbook"] == "troubleshooting#performance-investigation"
    assert rows["0000000000000001"]["runbook"] == "https://wiki/runbooks/errors"
    assert rows["0000000000000000"]["labels"]["pod"] == "p0"
    assert rows["0000000000000000"]["service"] == "payment"


def test_duplicates_from_alertmanager_ha_are_idempotent(db: Database, tmp_path: Path) -> None:
    post(db, tmp_path, payload(3))
    again = post(db, tmp_path, payload(3))
    assert (again.created, again.duplicates) == (0, 3)
    assert len(alerts.list_alerts(db, status=None)) == 3
    assert all(r["received"] == 2 for r in alerts.list_alerts(db, status=None))
    events = db.query("SELECT action FROM events WHERE action = 'alerts.ingested'")
    assert len(events) == 1  # a pure duplicate changes nothing worth auditing


def test_resolve_and_fire_again(db: Database, tmp_path: Path) -> None:
    post(db, tmp_path, payload(1))
    alerts.acknowledge(db, ref="0000000000000000", actor="alice", comment="looking", now=NOW)
    resolved = post(db, tmp_path, payload(1, status="resolved"))
    assert resolved.resolved == 1
    (row,) = alerts.list_alerts(db, status="resolved")
    assert row["ends_at"] == "2026-11-26T07:30:00Z"
    late = post(db, tmp_path, payload(1))  # HA peer's late firing copy: not a new alert
    assert late.duplicates == 1 and alerts.list_alerts(db, status="firing") == []
    again = post(db, tmp_path, payload(1, starts="2026-11-26T09:00:00Z"))
    assert again.refired == 1
    (row,) = alerts.list_alerts(db, status="firing")
    assert row["starts_at"] == "2026-11-26T09:00:00Z" and row["acked_by"] is None
    assert verify(db=db).ok


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("version"), "version"),
        (lambda b: b.update(version=4), "version"),
        (lambda b: b.pop("receiver"), "receiver"),
        (lambda b: b.update(alerts="many"), "alerts"),
        (lambda b: b["alerts"][1].pop("status"), "alerts[1].status"),
        (lambda b: b["alerts"][1]["labels"].pop("alertname"), "alerts[1].labels.alertname"),
        (lambda b: b["alerts"][1]["labels"].update(pod=7), "alerts[1].labels.pod"),
        (lambda b: b["alerts"][1].update(startsAt="yesterday"), "alerts[1].startsAt"),
        (lambda b: b["alerts"][1].update(fingerprint=""), "alerts[1].fingerprint"),
        (lambda b: b.update(alerts=b["alerts"] * 600), "alerts"),
    ],
)
def test_malformed_payloads_name_the_field_and_store_nothing(
    db: Database, tmp_path: Path, mutate: Any, field: str
) -> None:
    body = copy.deepcopy(payload(2))
    mutate(body)
    with pytest.raises(ValidationError) as info:
        post(db, tmp_path, body)
    assert info.value.field == field
    assert db.query("SELECT id FROM mon_alerts") == []


def test_acknowledge_is_audited_and_only_for_firing_alerts(db: Database, tmp_path: Path) -> None:
    post(db, tmp_path, payload(1))
    row = alerts.acknowledge(db, ref="0000000000000000", actor="alice", comment="on it", now=NOW)
    assert (row["acked_by"], row["ack_comment"]) == ("alice", "on it")
    event = db.one("SELECT actor, payload FROM events WHERE action = 'alert.acknowledged'")
    assert (
        event and event["actor"] == "alice" and json.loads(event["payload"])["comment"] == "on it"
    )
    post(db, tmp_path, payload(1, status="resolved"))
    with pytest.raises(ConflictError):
        alerts.acknowledge(db, ref=str(row["id"]), actor="alice")


def test_silences_match_record_who_and_why_and_expire(db: Database, tmp_path: Path) -> None:
    post(db, tmp_path, payload(2))
    s = alerts.create_silence(
        db,
        matchers={"pod": "p1", "service": "payment"},
        duration=timedelta(hours=1),
        actor="bob",
        comment="payment network maintenance CHG-9",
        now=NOW,
    )
    by_fp = {r["fingerprint"]: r for r in alerts.list_alerts(db, now=NOW + timedelta(minutes=5))}
    assert by_fp["0000000000000001"]["silenced"] == s["id"]
    assert by_fp["0000000000000000"]["silenced"] is None
    later = alerts.list_alerts(db, now=NOW + timedelta(hours=2))
    assert all(r["silenced"] is None for r in later)  # expired by itself
    assert alerts.list_silences(db, now=NOW + timedelta(hours=2)) == []
    event = db.one("SELECT actor, payload FROM events WHERE action = 'silence.created'")
    assert event and event["actor"] == "bob"
    assert json.loads(event["payload"])["comment"] == "payment network maintenance CHG-9"


def test_silences_can_be_ended_early_and_need_a_reason(db: Database) -> None:
    with pytest.raises(ValidationError, match="why"):
        alerts.create_silence(
            db, matchers={"a": "b"}, duration=timedelta(hours=1), actor="bob", comment=" "
        )
    with pytest.raises(ValidationError, match="matcher"):
        alerts.create_silence(
            db, matchers={}, duration=timedelta(hours=1), actor="bob", comment="x"
        )
    s = alerts.create_silence(
        db, matchers={"a": "b"}, duration=timedelta(hours=1), actor="bob", comment="x"
    )
    alerts.expire_silence(db, silence_id=int(s["id"]), actor="carol")
    assert alerts.list_silences(db) == []
    with pytest.raises(ConflictError):
        alerts.expire_silence(db, silence_id=int(s["id"]), actor="carol")
    assert db.one("SELECT actor FROM events WHERE action = 'silence.expired'") == {"actor": "carol"}


def test_times_are_normalised_once_per_text_and_zero_end_means_none() -> None:
    from opsbook.monitoring.webhook import parse_webhook

    body = payload(4, starts="2026-11-26T08:00:00+01:00")
    body["alerts"][1]["endsAt"] = "2026-11-26T07:30:00.123Z"
    body["alerts"][2]["startsAt"] = "2026-11-26T07:00:00Z"
    body["alerts"][3]["endsAt"] = None
    _, got = parse_webhook(body)
    assert [a.starts_at for a in got] == ["2026-11-26T07:00:00Z"] * 4
    assert [a.ends_at for a in got] == [None, "2026-11-26T07:30:00Z", None, None]
    body["alerts"][3]["endsAt"] = "2026-11-26 07:30"  # no time zone: refused, field named
    with pytest.raises(ValidationError) as info:
        parse_webhook(body)
    assert info.value.field == "alerts[3].endsAt"
    body["alerts"][3]["endsAt"] = None
    body["alerts"][2]["annotations"] = {"summary": "x" * 5000}
    with pytest.raises(ValidationError) as info:
        parse_webhook(body)
    assert info.value.field == "alerts[2].annotations.summary"


def test_silences_take_regex_and_negative_matchers(db: Database, tmp_path: Path) -> None:
    post(db, tmp_path, payload(3))  # pods p0, p1, p2
    s = alerts.create_silence(
        db,
        matchers=["service=payment", 'pod=~"p[12]"', "severity!=info"],
        duration=timedelta(hours=1),
        actor="bob",
        comment="pods 1 and 2 are being replaced",
        now=NOW,
    )
    assert s["matchers"] == ["service=payment", "pod=~p[12]", "severity!=info"]
    rows = alerts.list_alerts(db, now=NOW + timedelta(minutes=5))
    silenced = sorted(r["labels"]["pod"] for r in rows if r["silenced"] == s["id"])
    assert silenced == ["p1", "p2"]
    event = db.one("SELECT payload FROM events WHERE action = 'silence.created'")
    assert event and json.loads(event["payload"])["matchers"] == s["matchers"]
    with pytest.raises(ValidationError) as info:
        alerts.create_silence(
            db, matchers=["pod=~("], duration=timedelta(hours=1), actor="bob", comment="x"
        )
    assert info.value.field == "matchers[0]"
