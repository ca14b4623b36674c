"""The resolve target from contacts.yaml (``escalation_policy.resolve_timeout``): an incident
not resolved in time pages the next level once, durably (a timer row), never twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.db import open_database
from opsbook.errors import ValidationError
from opsbook.incidents import escalation, lifecycle
from opsbook.incidents.config import load_config
from opsbook.incidents.service import declare, get, timeline
from tests.incidents.harness import Env, incident_env

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
RESOLVE = "  resolve_timeout: {SEV-1: 30m, SEV-2: 1h, SEV-3: 4h, 4: 1d}\n"


@pytest.fixture
def renv(tmp_path: Path) -> Iterator[Env]:
    with incident_env(tmp_path, ack="1h") as e:
        path = e.ws.contacts_path
        path.write_text(path.read_text() + RESOLVE)
        e.config = load_config(e.ws)
        yield e


def _declare(env: Env, severity: str = "SEV2") -> str:
    return declare(
        db=env.db,
        config=env.config,
        title="Payments slow",
        actor="alice",
        services=["payment"],
        severity=severity,
        now=T0,
    ).incident.ref


def _fire(env: Env, at: datetime, owner: str = "test") -> list[escalation.Fired]:
    out = []
    for t in escalation.due_timers(db=env.db, now=at):
        f = escalation.fire(
            db=env.db,
            timer=t,
            policy=env.config.policy,
            contacts=env.config.contacts,
            key=env.config.key,
            owner=owner,
            now=at,
        )
        if f is not None:
            out.append(f)
    return out


def _paged(env: Env, ref: str) -> list[tuple[str, str]]:
    inc = get(db=env.db, ref=ref)
    return [
        (e.payload["level"], e.payload["reason"])
        for e in timeline(db=env.db, incident=inc)
        if e.kind == "escalation.paged"
    ]


def test_contacts_file_gives_the_resolve_targets(renv: Env) -> None:
    assert dict(renv.config.contacts.resolve_timeout) == {
        "SEV1": 1800.0,
        "SEV2": 3600.0,
        "SEV3": 14400.0,
        "SEV4": 86400.0,
    }


def test_not_resolved_in_time_pages_the_next_level_once(renv: Env) -> None:
    ref = _declare(renv)
    lifecycle.acknowledge(db=renv.db, ref=ref, actor="bob", now=T0 + timedelta(minutes=1))
    assert [f.kind for f in _fire(renv, T0 + timedelta(minutes=59))] == []
    fired = _fire(renv, T0 + timedelta(hours=1))
    outcomes = {f.kind: f.outcome for f in fired}
    assert outcomes["resolve"] == "resolve:level-2"
    assert next(f for f in fired if f.kind == "resolve").notifications  # l2 and l2chat
    assert _paged(renv, ref)[-1] == (
        "level-2",
        "not resolved within 1h (the SEV2 resolve target)",
    )
    assert get(db=renv.db, ref=ref).level == 1
    later = _fire(renv, T0 + timedelta(days=2))
    assert all(f.kind == "update_reminder" for f in later)  # the resolve timer never re-arms
    assert [lv for lv, _ in _paged(renv, ref)] == ["level-1", "level-2"]
    audit = renv.db.query("SELECT payload FROM events WHERE action = 'incident.timer.resolve'")
    assert len(audit) == 1 and "resolve:level-2" in audit[0]["payload"]


def test_two_processes_racing_page_once(renv: Env) -> None:
    ref = _declare(renv)
    at = T0 + timedelta(hours=1, seconds=1)
    timer = next(t for t in escalation.due_timers(db=renv.db, now=at) if t["kind"] == "resolve")
    other = open_database(renv.db.url)
    try:
        results = [
            escalation.fire(
                db=db,
                timer=timer,
                policy=renv.config.policy,
                contacts=renv.config.contacts,
                key=renv.config.key,
                owner=owner,
                now=at,
            )
            for db, owner in ((renv.db, "a"), (other, "b"))
        ]
    finally:
        other.close()
    assert results[0] is not None and results[1] is None
    reasons = [r for _, r in _paged(renv, ref) if "resolve target" in r]
    assert len(reasons) == 1


def test_resolving_in_time_cancels_it(renv: Env) -> None:
    ref = _declare(renv)
    lifecycle.resolve(db=renv.db, ref=ref, actor="bob", now=T0 + timedelta(minutes=30))
    assert _fire(renv, T0 + timedelta(hours=5)) == []
    assert [lv for lv, _ in _paged(renv, ref)] == ["level-1"]


def test_a_lowered_severity_moves_the_target_later(renv: Env) -> None:
    ref = _declare(renv, "SEV3")  # 4 h
    lifecycle.acknowledge(db=renv.db, ref=ref, actor="bob", now=T0)
    lifecycle.change_severity(db=renv.db, ref=ref, actor="bob", severity="SEV4")  # 1 d
    fired = [f for f in _fire(renv, T0 + timedelta(hours=4)) if f.kind == "resolve"]
    assert [f.outcome for f in fired] == ["postponed"]
    assert [lv for lv, _ in _paged(renv, ref)] == ["level-1"]
    fired = [f for f in _fire(renv, T0 + timedelta(days=1)) if f.kind == "resolve"]
    assert [f.outcome for f in fired] == ["resolve:level-2"]
    assert [f for f in _fire(renv, T0 + timedelta(days=9)) if f.kind == "resolve"] == []


def test_the_last_level_is_paged_when_there_is_no_next(renv: Env) -> None:
    ref = _declare(renv, "SEV1")  # pages level-1..3 at once in the default policy
    assert get(db=renv.db, ref=ref).level == 2
    fired = [f for f in _fire(renv, T0 + timedelta(minutes=30)) if f.kind == "resolve"]
    assert [f.outcome for f in fired] == ["resolve:level-3"]


def test_a_bad_resolve_timeout_names_the_line(env: Env) -> None:
    path = env.ws.contacts_path
    path.write_text(path.read_text() + "  resolve_timeout: {SEV-9: 1h}\n")
    with pytest.raises(ValidationError) as err:
        load_config(env.ws)
    assert "unknown severity 'SEV-9'" in err.value.message
    assert err.value.location is not None and err.value.location.line > 1
    path.write_text(path.read_text().replace("SEV-9: 1h", "SEV-1: soon"))
    with pytest.raises(ValidationError, match="is not a duration"):
        load_config(env.ws)


def test_a_raised_severity_brings_the_target_forward(renv: Env) -> None:
    ref = _declare(renv, "SEV3")  # 4 h
    lifecycle.acknowledge(db=renv.db, ref=ref, actor="bob", now=T0)
    lifecycle.change_severity(
        db=renv.db,
        ref=ref,
        actor="bob",
        severity="SEV1",
        contacts=renv.config.contacts,
        now=T0 + timedelta(minutes=10),
    )
    fired = [f for f in _fire(renv, T0 + timedelta(minutes=30)) if f.kind == "resolve"]
    assert [f.outcome for f in fired] == ["resolve:level-2"]
    # paged once: lowering afterwards arms nothing new
    lifecycle.change_severity(
        db=renv.db, ref=ref, actor="bob", severity="SEV3", contacts=renv.config.contacts
    )
    lifecycle.decide_downgrade(
        db=renv.db, ref=ref, actor="carol", approve=True, contacts=renv.config.contacts
    )
    assert get(db=renv.db, ref=ref).severity == "SEV3"
    assert [f for f in _fire(renv, T0 + timedelta(days=3)) if f.kind == "resolve"] == []


def test_raising_to_a_severity_with_a_target_arms_one(tmp_path: Path) -> None:
    with incident_env(tmp_path, ack="1h") as e:
        path = e.ws.contacts_path
        path.write_text(path.read_text() + "  resolve_timeout: {SEV-1: 30m}\n")
        e.config = load_config(e.ws)
        ref = _declare(e, "SEV3")  # no target for SEV3
        lifecycle.acknowledge(db=e.db, ref=ref, actor="bob", now=T0)
        assert [f for f in _fire(e, T0 + timedelta(hours=5)) if f.kind == "resolve"] == []
        lifecycle.change_severity(
            db=e.db, ref=ref, actor="bob", severity="SEV1", contacts=e.config.contacts
        )  # 30 min after declaration is long past: due at once
        fired = [f for f in _fire(e, datetime.now(UTC)) if f.kind == "resolve"]
        assert [f.outcome for f in fired] == ["resolve:level-2"]
