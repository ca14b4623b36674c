"""Declaring and changing incidents: status machine, four-eyes, timeline, audit, alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsbook import audit
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.incidents import lifecycle, metrics, review
from opsbook.incidents.service import declare, declare_from_alert, get, timeline
from tests.incidents.harness import Env

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _declare(env: Env, **kw: object) -> str:
    args: dict[str, object] = {
        "title": "Payments failing",
        "actor": "alice",
        "services": ["payment"],
        "impact": "moderate",
        "urgency": "high",
    }
    args.update(kw)
    return declare(db=env.db, config=env.config, **args).incident.ref  # type: ignore[arg-type]


def test_declare_classifies_records_and_audits(env: Env) -> None:
    out = declare(
        db=env.db,
        config=env.config,
        title="Transfers stopped",
        actor="alice",
        services=["transaction"],
        impact="extensive",
        urgency="high",
        now=T0,
        impact_start="2026-11-26T09:50:00Z",
        commander="carol",
    )
    inc = out.incident
    assert (inc.severity, inc.status, inc.roles["commander"]) == ("SEV1", "investigating", "carol")
    assert inc.declared_at == "2026-11-26T10:00:00.000000Z"
    assert inc.impact_start_at == "2026-11-26T09:50:00.000000Z"
    kinds = [e.kind for e in timeline(db=env.db, incident=inc)]
    assert kinds[:2] == ["declared", "role.assigned"]
    assert kinds.count("escalation.paged") == 3  # SEV1 pages levels 1, 2 and 3 at once
    assert len(out.notifications) == 6
    actions = [
        r["action"] for r in env.db.query("SELECT action FROM events WHERE subject = ?", (inc.ref,))
    ]
    assert actions == ["incident.declare"]
    assert audit.verify(db=env.db).ok


def test_the_higher_severity_wins(env: Env) -> None:
    ref = _declare(env, severity="SEV1")  # matrix says SEV3
    assert get(db=env.db, ref=ref).severity == "SEV1"
    ref = _declare(env, severity="SEV4")
    assert get(db=env.db, ref=ref).severity == "SEV3"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"severity": "SEV9", "impact": None, "urgency": None}, "severity"),
        ({"services": ["mainframe"]}, "services"),
        ({"type_": "meteor"}, "type"),
        ({"impact": "huge"}, "impact"),
        ({"urgency": None}, "urgency"),
        ({"title": " "}, "title"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    env: Env, kw: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _declare(env, **kw)
    assert caught.value.field == field
    assert env.db.one("SELECT COUNT(*) AS n FROM incidents")["n"] == 0  # type: ignore[index]


def test_status_machine(env: Env) -> None:
    ref = _declare(env)
    with pytest.raises(ConflictError, match="resolved before it is closed"):
        lifecycle.close(db=env.db, ref=ref, actor="bob")
    lifecycle.set_status(db=env.db, ref=ref, actor="bob", status="identified")
    with pytest.raises(ConflictError, match="cannot go back"):
        lifecycle.set_status(db=env.db, ref=ref, actor="bob", status="investigating")
    inc = lifecycle.set_status(db=env.db, ref=ref, actor="bob", status="monitoring")
    assert inc.mitigated_at is not None
    inc = lifecycle.resolve(db=env.db, ref=ref, actor="bob", note="rolled back")
    assert inc.resolved_at and inc.acknowledged_by == "bob"
    pending = env.db.query(
        "SELECT kind FROM incident_timers WHERE incident_id = ? AND state = 'pending'", (inc.id,)
    )
    assert pending == [{"kind": "snapshot_end"}]  # only the customer-impact reading is left
    inc = lifecycle.close(db=env.db, ref=ref, actor="bob")
    assert inc.closed_at
    with pytest.raises(ConflictError, match="closed"):
        lifecycle.acknowledge(db=env.db, ref=ref, actor="bob")
    with pytest.raises(ConflictError):
        lifecycle.set_status(db=env.db, ref=ref, actor="bob", status="investigating")
    with pytest.raises(NotFoundError):
        get(db=env.db, ref="INC-999")


def test_reopening_a_resolved_incident(env: Env) -> None:
    ref = _declare(env)
    lifecycle.resolve(db=env.db, ref=ref, actor="bob")
    inc = lifecycle.set_status(db=env.db, ref=ref, actor="bob", status="investigating")
    assert inc.status == "investigating" and inc.resolved_at is None


def test_downgrading_a_major_incident_needs_a_second_person(env: Env) -> None:
    ref = _declare(env, impact="significant", urgency="high", services=["account"])  # SEV2
    inc = lifecycle.change_severity(db=env.db, ref=ref, actor="alice", severity="SEV-4")
    assert (inc.severity, inc.pending_severity) == ("SEV2", "SEV4")
    with pytest.raises(PermissionDenied, match="four-eyes"):
        lifecycle.decide_downgrade(db=env.db, ref=ref, actor="alice", approve=True)
    inc = lifecycle.decide_downgrade(db=env.db, ref=ref, actor="bob", approve=True)
    assert (inc.severity, inc.pending_severity) == ("SEV4", None)
    # raising is immediate; lowering SEV3/SEV4 too
    assert lifecycle.change_severity(db=env.db, ref=ref, actor="a", severity="3").severity == "SEV3"
    kinds = [e.kind for e in timeline(db=env.db, incident=inc)]
    assert "severity.downgrade_requested" in kinds and "severity.downgrade_approved" in kinds
    denied = env.db.query("SELECT actor FROM events WHERE action = 'incident.downgrade.denied'")
    assert [d["actor"] for d in denied] == ["alice"]


def test_roles_notes_and_evidence_land_on_the_timeline(env: Env) -> None:
    ref = _declare(env)
    lifecycle.assign(db=env.db, ref=ref, actor="alice", role="comms-lead", person="dave")
    lifecycle.assign(db=env.db, ref=ref, actor="alice", role="sme", person="erin")
    lifecycle.add_note(db=env.db, ref=ref, actor="erin", text="5xx from payment", kind="evidence")
    inc = get(db=env.db, ref=ref)
    assert inc.roles == {"comms_lead": "dave", "sme": ["erin"]}
    last = timeline(db=env.db, incident=inc)[-1]
    assert (last.kind, last.actor, last.payload["text"]) == ("evidence", "erin", "5xx from payment")
    with pytest.raises(ValidationError):
        lifecycle.assign(db=env.db, ref=ref, actor="alice", role="chef", person="x")


def test_an_alert_opens_one_incident_and_attaches_repeats(env: Env) -> None:
    first = declare_from_alert(
        db=env.db,
        config=env.config,
        alert_name="PaymentErrors",
        service="payment",
        severity="SEV2",
        labels={"team": "payments"},
        summary="error rate 12%",
    )
    again = declare_from_alert(
        db=env.db,
        config=env.config,
        alert_name="PaymentErrors",
        service="payment",
        severity="SEV2",
        labels={},
    )
    assert first.created and not again.created
    assert again.incident.id == first.incident.id
    assert first.incident.source == "alert" and first.incident.severity == "SEV2"
    kinds = [e.kind for e in timeline(db=env.db, incident=first.incident)]
    assert kinds.count("alert.attached") == 1
    lifecycle.resolve(db=env.db, ref=first.incident.ref, actor="bob")
    third = declare_from_alert(
        db=env.db,
        config=env.config,
        alert_name="PaymentErrors",
        service="payment",
        severity="SEV2",
        labels={},
    )
    assert third.created and third.incident.id != first.incident.id


def test_review_draft_and_report_use_the_raw_timestamps(env: Env) -> None:
    out = declare(
        db=env.db,
        config=env.config,
        title="Payments down",
        actor="alice",
        services=["payment"],
        severity="SEV2",
        now=T0,
        impact_start="2026-11-26T09:55:00Z",
    )
    ref = out.incident.ref
    lifecycle.acknowledge(db=env.db, ref=ref, actor="bob", now=T0 + timedelta(minutes=4))
    lifecycle.set_status(
        db=env.db, ref=ref, actor="bob", status="monitoring", now=T0 + timedelta(minutes=20)
    )
    lifecycle.resolve(db=env.db, ref=ref, actor="bob", now=T0 + timedelta(minutes=30))
    review.add_action(
        db=env.db,
        ref=ref,
        actor="bob",
        title="Alert on queue depth",
        owner="erin",
        due="2026-11-01",
    )
    review.flag_runbook(
        db=env.db, ref=ref, actor="bob", runbook="troubleshooting", reason="missing queue step"
    )
    text = review.draft(db=env.db, ref=ref)
    assert "| Time to acknowledge (declared → acknowledged) | 4m 00s |" in text
    assert "| Time to resolve (detected → resolved) | 30m 00s |" in text
    assert "| Time to detect (impact start → detected) | 5m 00s |" in text
    assert "**overdue**" in text and "`troubleshooting`: missing queue step" in text
    assert "| 2026-11-26 10:00:00 | alice | Declared SEV2" in text
    # a drill with a terrible MTTA is excluded from the report
    drill = declare(
        db=env.db,
        config=env.config,
        title="Drill",
        actor="alice",
        severity="SEV2",
        drill=True,
        now=T0,
    )
    lifecycle.acknowledge(
        db=env.db, ref=drill.incident.ref, actor="bob", now=T0 + timedelta(hours=5)
    )
    rep = metrics.report(db=env.db, since="2026-11-01T00:00:00Z")
    sev2 = rep["by_severity"]["SEV2"]
    assert rep["drills_excluded"] == 1 and sev2["incidents"] == 1
    assert sev2["mtta"]["median_s"] == 240 and sev2["mttr"]["p90_s"] == 1800
    assert rep["overdue_actions"][0]["owner"] == "erin"


def test_percentiles() -> None:
    assert metrics.percentile(list(range(1, 11)), 90) == 9
    assert metrics.median([1.0, 3.0]) == 2.0
    assert metrics.percentile([], 90) is None
