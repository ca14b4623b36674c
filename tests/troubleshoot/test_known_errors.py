"""Known errors (issue 12): created and validated, made from review action items and from a
diagnosis confirmed by a successful fix, and re-ranking a diagnosis' hypotheses. Real SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import Database
from opsbook.errors import NotFoundError, ValidationError
from opsbook.incidents.review import add_action
from opsbook.incidents.service import declare
from opsbook.troubleshoot import known_errors as ke
from opsbook.troubleshoot import store
from opsbook.troubleshoot.model import PROCEDURES
from tests.incidents.harness import Env, incident_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with incident_env(tmp_path) as e:
        yield e


def hyp(cause: str, score: float, service: str | None = "payment", **extra: Any) -> dict[str, Any]:
    return {
        "cause": cause,
        "service": service,
        "title": f"{service} {cause}",
        "confidence": "high" if score >= 0.7 else "medium" if score >= 0.4 else "low",
        "score": score,
        "evidence": [
            {"source": "platform", "text": f"{service} has 0/1 replicas", "data": {}},
            {"source": "health", "text": f"{service} health check is down", "data": {}},
        ],
        "procedure": "troubleshooting#service-connectivity",
        "params": {"service": service} if service else {},
        "known_error": None,
        **extra,
    }


FACTS: dict[str, Any] = {
    "logs": {
        "templates": [
            {"template": "payment worker exited with code <*>", "count": 3, "new": True},
        ],
        "fresh": {"http_500": 12},
    },
    "health": {"payment": {"state": "down"}},
}


def diagnosis(*, top: dict[str, Any] | None, incident: str | None = None) -> dict[str, Any]:
    import secrets

    hyps = [top] if top else []
    return {
        "id": f"dg-{secrets.token_hex(6)}",
        "environment": "sandbox",
        "target": {"service": "payment", "alert": None, "incident": incident},
        "started_at": "2026-12-04T00:00:00Z",
        "took_ms": 10,
        "hypotheses": hyps,
        "top": top,
        "sources": {},
        "facts": FACTS,
        "bundle": None,
    }


def add_execution(
    db: Database, *, ex_id: str, procedure: str, params: dict[str, Any], state: str
) -> None:
    runbook, _, proc = procedure.partition("#")
    now = "2099-01-01T00:00:00.000000Z"  # after any diagnosis made in the test
    with db.transaction():
        db.execute(
            "INSERT INTO executions (id, parent_id, runbook_id, runbook_path, runbook_hash,"
            " procedure_id, environment, params, digest, state, state_name, reason, cursor,"
            " dry_run, started_by, owner, created_at, updated_at, finished_at)"
            " VALUES (?, NULL, ?, 'r.md', 'h', ?, 'sandbox', ?, 'd', ?, ?, NULL, 0, 0, 'alice',"
            " 'alice', ?, ?, ?)",
            (ex_id, runbook, proc, json.dumps(params), state, state, now, now, now),
        )


def test_create_list_get_retire(env: Env) -> None:
    with env.db.transaction():
        made = ke.create(
            db=env.db,
            actor="alice",
            title="Payment worker crash loop",
            cause="crash",
            service="payment",
            symptoms=[{"log": "worker exited"}, {"fact": "health.payment.state", "equals": "down"}],
        )
    assert made["id"].startswith("ke-")
    assert made["procedure"] == PROCEDURES["crash"][0]
    assert made["params"] == {"service": "payment"}
    assert made["source"] == "manual" and made["confirmed"] == 0
    assert [k["id"] for k in ke.list_known_errors(db=env.db)] == [made["id"]]
    assert ke.get(db=env.db, known_error_id=made["id"])["symptoms"][0] == {"log": "worker exited"}
    with env.db.transaction():
        ke.retire(db=env.db, actor="alice", known_error_id=made["id"], reason="fixed for good")
    assert ke.list_known_errors(db=env.db) == []
    assert len(ke.list_known_errors(db=env.db, include_retired=True)) == 1
    actions = [r["action"] for r in env.db.query("SELECT action FROM events ORDER BY id")]
    assert "known_error.create" in actions and "known_error.retire" in actions
    with pytest.raises(NotFoundError):
        ke.get(db=env.db, known_error_id="ke-missing")


@pytest.mark.parametrize(
    ("symptoms", "field"),
    [
        ([], "symptoms"),
        ("log", "symptoms"),
        ([{"log": "x"}, 3], "symptoms[1]"),
        ([{"log": "x", "fact": "a.b", "equals": 1}], "symptoms[0]"),
        ([{"evidence": "tea-leaves"}], "symptoms[0].evidence"),
        ([{"fact": "logs.fresh.http_500"}], "symptoms[0].fact"),
        ([{"fact": "logs.fresh.http_500", "above": "many"}], "symptoms[0].above"),
        ([{"log": "x", "colour": "red"}], "symptoms[0].colour"),
        ([{"log": "  "}], "symptoms[0].log"),
        ([{"fact": "changes.0.text", "equals": "chaos"}], "symptoms[0].fact"),
    ],
)
def test_bad_matchers_are_refused_naming_the_field(env: Env, symptoms: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ke.create(db=env.db, actor="alice", title="t", cause="crash", symptoms=symptoms)
    assert err.value.field == field
    assert ke.list_known_errors(db=env.db) == []


def test_unknown_cause_is_refused(env: Env) -> None:
    with pytest.raises(ValidationError) as err:
        ke.create(db=env.db, actor="a", title="t", cause="gremlins", symptoms=[{"log": "x"}])
    assert err.value.field == "cause"


def _incident(env: Env) -> str:
    return declare(
        db=env.db,
        config=env.config,
        title="Payments down",
        actor="alice",
        services=["payment"],
        severity="SEV2",
    ).incident.ref


def test_from_review_takes_the_incidents_diagnosis(env: Env) -> None:
    ref = _incident(env)
    item = add_action(
        db=env.db, ref=ref, actor="alice", title="Payment crash loop", owner="bob", due="2027-01-01"
    )
    with pytest.raises(ValidationError) as err:
        ke.from_review(db=env.db, actor="alice", incident_ref=ref, action_item=item)
    assert err.value.field == "cause"  # no diagnosis yet, no cause given
    store.save(env.db, diagnosis=diagnosis(top=hyp("crash", 0.9), incident=ref), actor="alice")
    with env.db.transaction():
        made = ke.from_review(db=env.db, actor="alice", incident_ref=ref, action_item=item)
    assert made["title"] == "Payment crash loop"
    assert made["cause"] == "crash" and made["service"] == "payment"
    assert made["source"] == "review" and made["source_ref"] == f"{ref}/action/{item}"
    assert {"evidence": "platform"} in made["symptoms"]
    assert {"log": "payment worker exited with code"} in made["symptoms"]
    with pytest.raises(NotFoundError):
        ke.from_review(db=env.db, actor="alice", incident_ref=ref, action_item=item + 99)


def test_from_review_with_a_cause_and_symptoms_given(env: Env) -> None:
    ref = _incident(env)
    item = add_action(
        db=env.db, ref=ref, actor="a", title="Disk fills", owner="b", due="2027-01-01"
    )
    made = ke.from_review(
        db=env.db,
        actor="a",
        incident_ref=ref,
        action_item=item,
        cause="disk-full",
        symptoms=[{"log": "No space left"}],
    )
    assert made["cause"] == "disk-full" and made["procedure"] == PROCEDURES["disk-full"][0]


def test_confirm_from_fix_refuses_failed_and_unrelated_executions(env: Env) -> None:
    top = hyp("crash", 0.8)
    dg = diagnosis(top=top)
    store.save(env.db, diagnosis=dg, actor="alice")
    add_execution(
        env.db, ex_id="ex-failed", procedure=top["procedure"], params=top["params"], state="failed"
    )
    add_execution(
        env.db,
        ex_id="ex-other",
        procedure="troubleshooting#infrastructure",
        params={},
        state="succeeded",
    )
    add_execution(
        env.db,
        ex_id="ex-elsewhere",
        procedure=top["procedure"],
        params={"service": "account"},
        state="succeeded",
    )
    for ex_id, words in (
        ("ex-failed", "did not succeed"),
        ("ex-other", "not the diagnosis' fix"),
        ("ex-elsewhere", "service='account'"),
    ):
        with pytest.raises(ValidationError) as err:
            ke.confirm_from_fix(db=env.db, actor="alice", diagnosis_id=dg["id"], execution_id=ex_id)
        assert words in str(err.value) and err.value.field == "execution"
    with pytest.raises(NotFoundError):
        ke.confirm_from_fix(db=env.db, actor="alice", diagnosis_id=dg["id"], execution_id="ex-no")
    assert ke.list_known_errors(db=env.db) == []


def test_confirm_from_fix_makes_then_strengthens_a_known_error(env: Env) -> None:
    top = hyp("crash", 0.8)
    first, second = diagnosis(top=top), diagnosis(top=top)
    for dg in (first, second):
        store.save(env.db, diagnosis=dg, actor="alice")
    add_execution(
        env.db, ex_id="ex-1", procedure=top["procedure"], params=top["params"], state="succeeded"
    )
    add_execution(
        env.db, ex_id="ex-2", procedure=top["procedure"], params=top["params"], state="succeeded"
    )
    with env.db.transaction():
        made = ke.confirm_from_fix(
            db=env.db, actor="alice", diagnosis_id=first["id"], execution_id="ex-1"
        )
    assert made["source"] == "diagnosis" and made["confirmed"] == 1
    assert made["last_confirmed_at"]
    again = ke.confirm_from_fix(
        db=env.db, actor="alice", diagnosis_id=second["id"], execution_id="ex-2"
    )
    assert again["id"] == made["id"] and again["confirmed"] == 2
    assert len(ke.list_known_errors(db=env.db)) == 1


def test_apply_known_errors_reranks_matching_causes(env: Env) -> None:
    hyps = [hyp("latency", 0.6), hyp("crash", 0.5)]
    assert ke.apply_known_errors(db=env.db, hypotheses=hyps, facts=FACTS) == hyps  # none yet
    made = ke.create(
        db=env.db,
        actor="alice",
        title="Payment crash loop",
        cause="crash",
        service="payment",
        symptoms=[{"evidence": "health", "contains": "down"}, {"log": "worker exited"}],
    )
    ranked = ke.apply_known_errors(db=env.db, hypotheses=hyps, facts=FACTS)
    assert [h["cause"] for h in ranked] == ["crash", "latency"]
    assert ranked[0]["known_error"] == made["id"]
    assert ranked[0]["score"] == pytest.approx(0.75) and ranked[0]["confidence"] == "high"
    assert ranked[0]["evidence"][-1]["source"] == "known_error"
    assert hyps[1]["known_error"] is None  # the input is not changed
    # a symptom that does not match leaves the ranking alone
    no_log = {**FACTS, "logs": {"templates": []}}
    assert [
        h["cause"] for h in ke.apply_known_errors(db=env.db, hypotheses=hyps, facts=no_log)
    ] == [
        "latency",
        "crash",
    ]


def test_apply_known_errors_adds_a_cause_matched_on_facts(env: Env) -> None:
    ke.create(
        db=env.db,
        actor="alice",
        title="500s after a bad config push",
        cause="error-rate",
        service="payment",
        symptoms=[{"fact": "logs.fresh.http_500", "above": 10}],
    )
    ranked = ke.apply_known_errors(db=env.db, hypotheses=[hyp("latency", 0.2)], facts=FACTS)
    assert ranked[0]["cause"] == "error-rate" and ranked[0]["known_error"]
    assert ranked[0]["params"] == {"service": "payment"}
    facts = {**FACTS, "logs": {"fresh": {"http_500": 3}}}
    assert len(ke.apply_known_errors(db=env.db, hypotheses=[], facts=facts)) == 0


def test_diagnose_ranks_a_matching_known_error(tmp_path: Path) -> None:
    """diagnose() applies the known errors of its database: here one matching a fact of a
    workspace without a sandbox becomes the top cause, and a retired one does not."""
    from opsbook.db import open_database
    from opsbook.troubleshoot.diagnose import diagnose
    from tests.api.harness import make_workspace

    ws = make_workspace(tmp_path / "ws")
    db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    try:
        made = ke.create(
            db=db,
            actor="alice",
            title="No payment network seen: the card gateway is unreachable",
            cause="dependency-slow",
            symptoms=[{"fact": "payment_network.applicable", "equals": False}],
        )

        def run() -> dict[str, Any]:
            return diagnose(
                workspace=ws,
                environment=ws.default_environment,
                db=db,
                actor="alice",
                write_bundle=False,
            ).to_dict()

        top = run()["top"]
        assert top is not None and top["cause"] == "dependency-slow"
        assert top["known_error"] == made["id"]
        assert top["evidence"][-1]["source"] == "known_error"
        ke.retire(db=db, actor="alice", known_error_id=made["id"])
        assert run()["top"] is None
    finally:
        db.close()
